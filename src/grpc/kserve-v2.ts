// inference.GRPCInferenceService (KServe Open Inference Protocol v2 over gRPC): a codec between the
// protobuf messages and the same decoded request / named outputs that REST /v2 uses (src/http/v2), so
// the two transports answer identically. Raw inputs become typed-array views over the received
// message (no copy when aligned) and answers use raw outputs when the request did.
import type { ServerDuplexStream, UntypedServiceImplementation } from '@grpc/grpc-js';
import { BadRequestError } from '../errors.js';
import type { DType } from '../native.js';
import {
  bytesOfStrings,
  bytesOfTensor,
  type Cursor,
  decodeBinaryBytes,
  type DecodedInput,
  type DecodedRequest,
  type DecodeLimits,
  elementCursor,
  fillTypedArray,
  type NamedOutput,
  resolveShape,
  tensorToJson,
  viewOf,
} from '../http/v2/codec.js';
import { ITEM_SIZE, SUPPORTED_DATATYPES, V2_TO_DTYPE, isNumericDatatype, type V2Datatype } from '../http/v2/datatypes.js';
import { checkElementCount } from '../service/index.js';
import { modelMetadata, selectOutputs, serverVersion, v2ServiceRequest } from '../http/v2/index.js';
import { answerInOrder, type CallContext, type ServiceOptions, statusMessage, unary } from './calls.js';
import { resolveModel } from './torchserve.js';

type Long = string;

interface InferParameter {
  parameter_choice?: 'bool_param' | 'int64_param' | 'string_param' | 'double_param' | 'uint64_param';
  bool_param?: boolean;
  int64_param?: Long;
  string_param?: string;
  double_param?: number;
  uint64_param?: Long;
}

interface InferTensorContents {
  bool_contents: boolean[];
  int_contents: number[];
  int64_contents: Long[];
  uint_contents: number[];
  uint64_contents: Long[];
  fp32_contents: number[];
  fp64_contents: number[];
  bytes_contents: Buffer[];
}

interface InferInputTensor {
  name: string;
  datatype: string;
  shape: Long[];
  parameters: Record<string, InferParameter>;
  contents: InferTensorContents | null;
}

interface ModelInferRequest {
  model_name: string;
  model_version: string;
  id: string;
  parameters: Record<string, InferParameter>;
  inputs: InferInputTensor[];
  outputs: { name: string; parameters: Record<string, InferParameter> }[];
  raw_input_contents: Buffer[];
}

interface InferOutputTensor {
  name: string;
  datatype: string;
  shape: number[];
  contents?: Partial<Record<keyof InferTensorContents, unknown[]>>;
}

/** InferParameter map → plain values (64-bit integers as numbers: they are step counts and indices). */
function plainParameters(map: Record<string, InferParameter> | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, p] of Object.entries(map ?? {})) {
    const choice = p.parameter_choice;
    if (!choice) continue;
    const v = p[choice];
    out[k] = choice === 'int64_param' || choice === 'uint64_param' ? Number(v) : v;
  }
  return out;
}

/** Which typed-contents field carries each datatype (FP16/BF16 have none: raw only). */
const CONTENTS_FIELD: Partial<Record<V2Datatype, keyof InferTensorContents>> = {
  BOOL: 'bool_contents',
  INT8: 'int_contents',
  INT16: 'int_contents',
  INT32: 'int_contents',
  INT64: 'int64_contents',
  UINT8: 'uint_contents',
  FP32: 'fp32_contents',
  FP64: 'fp64_contents',
  BYTES: 'bytes_contents',
};

function decodeInput(input: InferInputTensor, index: number, raw: Buffer | undefined, cursor: Cursor): DecodedInput {
  const where = input.name ? `input "${input.name}"` : `inputs[${index}]`;
  if (!input.name) throw new BadRequestError(`${where}: "name" must be a non-empty string`);
  const datatype = input.datatype.toUpperCase();
  if (!isNumericDatatype(datatype) && datatype !== 'BYTES') {
    throw new BadRequestError(`${where}: unknown datatype "${input.datatype}"; expected one of ${SUPPORTED_DATATYPES.join(', ')}`);
  }
  const shape = input.shape.map(Number);
  if (!shape.every((d) => Number.isInteger(d) && d >= -1)) {
    throw new BadRequestError(`${where}: "shape" must be non-negative integers (one -1 may be inferred)`);
  }
  if (shape.filter((d) => d === -1).length > 1) throw new BadRequestError(`${where}: at most one -1 in "shape"`);
  const parameters = plainParameters(input.parameters);

  if (raw) {
    if (datatype === 'BYTES') return decodeBinaryBytes(input.name, where, shape, raw, parameters, cursor);
    const dtype = V2_TO_DTYPE[datatype];
    const size = ITEM_SIZE[dtype];
    if (raw.length % size !== 0) throw new BadRequestError(`${where}: raw_input_contents has ${raw.length} bytes, not a multiple of ${size} (${datatype})`);
    const resolved = resolveShape(where, shape, raw.length / size);
    return { name: input.name, datatype, shape: resolved, tensor: { data: viewOf(dtype, raw), shape: resolved, dtype }, parameters };
  }

  const field = CONTENTS_FIELD[datatype];
  if (!field) throw new BadRequestError(`${where}: ${datatype} has no typed contents field; send it in raw_input_contents`);
  const values = (input.contents?.[field] ?? []) as unknown[];
  const resolved = resolveShape(where, shape, values.length);
  if (datatype === 'BYTES') {
    cursor.elements += values.length;
    checkElementCount(cursor.elements, 'BYTES elements', cursor.limits.maxElements);
  }
  if (datatype === 'BYTES') return { name: input.name, datatype, shape: resolved, bytes: values as Buffer[], parameters };
  const dtype = V2_TO_DTYPE[datatype] as DType;
  // INT64 arrives as decimal strings (exact); everything else as JS numbers/booleans, range-checked as in JSON.
  const data = dtype === 'int64' ? BigInt64Array.from(values as Long[], (v) => BigInt(v)) : fillTypedArray(where, dtype, values);
  return { name: input.name, datatype, shape: resolved, tensor: { data, shape: resolved, dtype }, parameters };
}

/** ModelInferRequest → the request REST /v2 decodes from JSON; `raw` says whether raw contents were used. */
export function decodeModelInfer(req: ModelInferRequest, limits: DecodeLimits = { maxElements: Infinity, maxJsonDepth: 64 }): { request: DecodedRequest; raw: boolean } {
  if (req.inputs.length === 0) throw new BadRequestError('"inputs" must be a non-empty list of tensors');
  const raw = req.raw_input_contents.length > 0;
  if (raw) {
    if (req.raw_input_contents.length !== req.inputs.length) {
      throw new BadRequestError(`raw_input_contents has ${req.raw_input_contents.length} entries for ${req.inputs.length} inputs: give one per input, in order`);
    }
    const typed = req.inputs.find((i) => i.contents !== null && Object.values(i.contents).some((v) => Array.isArray(v) && v.length > 0));
    if (typed) throw new BadRequestError(`input "${typed.name}": has contents, but the request uses raw_input_contents (use one or the other)`);
  }
  const cursor = elementCursor(limits);
  const inputs = req.inputs.map((input, i) => decodeInput(input, i, raw ? req.raw_input_contents[i] : undefined, cursor));
  return {
    raw,
    request: {
      id: req.id || undefined,
      inputs,
      outputs: req.outputs.length > 0 ? req.outputs.map((o) => ({ name: o.name, binary: false })) : undefined,
      binaryOutputs: false,
      parameters: plainParameters(req.parameters),
    },
  };
}

/** One output as typed contents (FP16/BF16 have no typed field: the caller answers raw then). */
function typedContents(o: NamedOutput): InferOutputTensor['contents'] {
  if (!o.tensor) return { bytes_contents: (o.strings ?? []).map((s) => Buffer.from(s, 'utf8')) };
  const t = o.tensor;
  switch (o.datatype) {
    case 'INT64':
      // Exact: decimal strings, never through a double.
      return { int64_contents: Array.from(t.data as BigInt64Array, (v) => v.toString()) };
    case 'FP32':
    case 'FP64':
      return { [CONTENTS_FIELD[o.datatype]!]: Array.from(t.data as Float32Array) };
    default:
      return { [CONTENTS_FIELD[o.datatype]!]: tensorToJson(t) };
  }
}

/** Named outputs → ModelInferResponse fields; raw when asked or when any output is FP16/BF16. */
export function encodeOutputs(outputs: NamedOutput[], raw: boolean): { outputs: InferOutputTensor[]; raw_output_contents: Buffer[] } {
  const useRaw = raw || outputs.some((o) => CONTENTS_FIELD[o.datatype] === undefined);
  return {
    outputs: outputs.map((o) => ({
      name: o.name,
      datatype: o.datatype,
      shape: o.shape,
      ...(useRaw ? {} : { contents: typedContents(o) }),
    })),
    raw_output_contents: useRaw ? outputs.map((o) => (o.tensor ? bytesOfTensor(o.tensor) : bytesOfStrings(o.strings ?? []))) : [],
  };
}

export function kserveV2Service(o: ServiceOptions): UntypedServiceImplementation {
  const { registry, service } = o.deps;
  /** One ModelInfer: resolve, a queue slot before any decoding, the service, the answer (raw if the request was). */
  const modelInfer = async (req: ModelInferRequest, ctx: CallContext) => {
    const mv = resolveModel(registry, req.model_name, req.model_version, ctx);
    // The slot first: a refused call decodes nothing.
    const admission = service.admit({ model: mv.spec.name, version: mv.spec.version, protocol: 'grpc-kserve-v2', signal: ctx.signal, deadline: ctx.deadline });
    let decoded: ReturnType<typeof decodeModelInfer>;
    let outputs;
    try {
      decoded = decodeModelInfer(req, { maxElements: service.limits.maxRequestElements, maxJsonDepth: service.limits.maxJsonDepth });
      const result = await admission.run(v2ServiceRequest(decoded.request, false));
      outputs = result.kind === 'tensors' ? result.outputs : [];
    } finally {
      admission.release();
    }
    const { request, raw } = decoded;
    const selected = selectOutputs(request, outputs);
    return {
      model_name: mv.spec.name,
      model_version: mv.spec.version,
      id: req.id,
      ...encodeOutputs(selected.outputs, raw),
    };
  };

  return {
    ServerLive: unary(o, 'ServerLive', () => ({ live: true })),
    ServerReady: unary(o, 'ServerReady', () => ({ ready: o.state.ready() })),
    ModelReady: unary(o, 'ModelReady', (req: { name: string; version: string }, ctx: CallContext) => {
      const mv = resolveModel(registry, req.name, req.version, ctx);
      return { ready: !o.state.draining && mv.ready };
    }),
    ServerMetadata: unary(o, 'ServerMetadata', () => ({ name: 'torchd', version: serverVersion, extensions: [] })),
    ModelMetadata: unary(o, 'ModelMetadata', (req: { name: string; version: string }, ctx: CallContext) =>
      modelMetadata(o.deps, resolveModel(registry, req.name, req.version, ctx)),
    ),
    ModelInfer: unary(o, 'ModelInfer', modelInfer),
    ModelStreamInfer(call: ServerDuplexStream<ModelInferRequest, unknown>) {
      answerInOrder(o, 'ModelStreamInfer', call, async (req, ctx) => ({ error_message: '', infer_response: await modelInfer(req, ctx) }), (err) => ({
        error_message: statusMessage(err, o.deps.config.maxRequestSize).message,
      }));
    },
  };
}


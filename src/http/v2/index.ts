// KServe v2 / Open Inference Protocol routes (mounted at /v2 by the inference app). The router parses its
// own bodies as raw bytes, so binary tensors are never touched by a JSON parser.
import express, { type Request, type Response } from 'express';
import { readFileSync } from 'node:fs';
import { BadRequestError, MethodNotAllowedError } from '../../errors.js';
import type { InferOptions, ModelVersion, TensorMetadata } from '../../engine/types.js';
import { OrderedJson, postprocessRow, preprocessBytes } from '../../handlers/index.js';
import type { OutputTree, Tensor } from '../../native.js';
import { sendJson } from '../respond.js';
import * as health from '../health.js';
import type { AppDeps } from '../types.js';
import {
  HEADER_LENGTH,
  type DecodedInput,
  type DecodedRequest,
  decodeInferRequest,
  encodeInferResponse,
  isTensor,
  type NamedOutput,
  namedOutputs,
} from './codec.js';
import { DTYPE_TO_V2, ITEM_SIZE } from './datatypes.js';

/** torchd's version, from package.json (three levels up from src/http/v2 and its build output). */
const serverVersion: string = (
  JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

const PLATFORM = 'pytorch_torchscript';

export { serverVersion };




function isVision(mv: ModelVersion): boolean {
  return mv.spec.handler.name === 'image_classifier';
}

/** Aborted when the client goes away before the response is written, so a queued job is dropped. */
function inferOptions(mv: ModelVersion, res: Response): InferOptions {
  const controller = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) controller.abort(new Error('client disconnected'));
  });
  return { signal: controller.signal, deadline: Date.now() + mv.settings.responseTimeout * 1000 };
}

/** What the last successful request showed of a version's tensors, for metadata TorchScript cannot give. */
const observed = new WeakMap<ModelVersion, { inputs?: TensorMetadata[]; outputs?: TensorMetadata[] }>();

function metaOf(name: string, datatype: string, shape: number[]): TensorMetadata {
  // The leading dimension is the batch: any size is accepted.
  return { name, datatype, shape: shape.length > 0 ? [-1, ...shape.slice(1)] : [] };
}

export function modelMetadata(deps: Pick<AppDeps, 'registry'>, mv: ModelVersion): Record<string, unknown> {
  const seen = observed.get(mv) ?? {};
  const strip = (m: TensorMetadata) => ({ name: m.name, datatype: m.datatype, shape: m.shape });
  let inputs: TensorMetadata[];
  let outputs: TensorMetadata[];
  if (isVision(mv)) {
    inputs = mv.spec.inputs ?? [{ name: mv.model.inputs[0]?.name ?? 'input0', datatype: 'BYTES', shape: [-1] }];
    const out = mv.spec.handler.output;
    outputs = mv.spec.outputs ?? [
      out === 'argmax'
        ? { name: 'output0', datatype: 'INT64', shape: [-1] }
        : out === 'topk'
          ? { name: 'output0', datatype: 'BYTES', shape: [-1] }
          : { name: 'output0', datatype: 'FP32', shape: [-1, -1] },
    ];
  } else {
    // TorchScript gives forward's argument names but not dtypes or shapes: declared metadata wins, then
    // what a request showed, then FP32 of unknown shape.
    inputs = mv.spec.inputs ?? seen.inputs ?? mv.model.inputs.map((i) => ({ name: i.name, datatype: 'FP32', shape: [-1] }));
    outputs = mv.spec.outputs ?? seen.outputs ?? [];
  }
  return {
    name: mv.spec.name,
    versions: deps.registry.versions(mv.spec.name).map((v) => v.spec.version),
    platform: PLATFORM,
    inputs: inputs.map(strip),
    outputs: outputs.map(strip),
    // Not in the protocol's metadata: which module forward runs (see the describe API's forwardModule).
    parameters: { forward_module: mv.model.optimization.serving },
  };
}

/** Request inputs as forward's arguments: by name when the names are forward's, else in order. */
function forwardArgs(mv: ModelVersion, inputs: DecodedInput[]): Tensor[] {
  const declared = mv.spec.inputs;
  const names = declared?.map((d) => d.name) ?? mv.model.inputs.map((i) => i.name);
  for (const input of inputs) {
    if (!input.tensor) {
      throw new BadRequestError(`input "${input.name}": BYTES inputs are for image models; model ${mv.spec.name} takes numeric tensors`);
    }
  }
  let ordered: DecodedInput[];
  const byName = new Map(inputs.map((i) => [i.name, i]));
  if (names.length > 0 && inputs.every((i) => names.includes(i.name))) {
    ordered = names.map((n) => {
      const found = byName.get(n);
      if (!found) throw new BadRequestError(`Missing input "${n}": model ${mv.spec.name} forward takes (${names.join(', ')})`);
      return found;
    });
  } else if (names.length === 0 || inputs.length === names.length) {
    ordered = inputs;
  } else if (inputs.length < names.length) {
    throw new BadRequestError(
      `Missing input: model ${mv.spec.name} forward takes ${names.length} inputs (${names.join(', ')}), the request has ${inputs.length} (${inputs.map((i) => i.name).join(', ')})`,
    );
  } else {
    throw new BadRequestError(
      `Too many inputs: model ${mv.spec.name} forward takes ${names.length} (${names.join(', ')}), the request has ${inputs.length}`,
    );
  }
  return ordered.map((input, i) => {
    const d = declared?.[i];
    if (d && d.datatype !== input.datatype) {
      throw new BadRequestError(`input "${input.name}": datatype ${input.datatype} but the model declares ${d.datatype}`);
    }
    if (input.shape.length === 0) throw new BadRequestError(`input "${input.name}": needs a leading batch dimension, got shape []`);
    return input.tensor!;
  });
}

/** Rename outputs to the model config's declared names when they line up one to one. */
function applyDeclaredNames(mv: ModelVersion, outputs: NamedOutput[]): NamedOutput[] {
  const declared = mv.spec.outputs;
  if (!declared || declared.length !== outputs.length) return outputs;
  return outputs.map((o, i) => ({ ...o, name: declared[i].name }));
}

/** One example's image-model input from a numeric tensor: [C,H,W] gains a batch dim, [N,C,H,W] splits into N. */
function splitExamples(input: DecodedInput, channels: number): Tensor[] {
  const t = input.tensor!;
  let shape = t.shape;
  if (shape.length === 2 && channels === 1) shape = [1, 1, ...shape];
  else if (shape.length === 3) shape = [1, ...shape];
  if (shape.length !== 4) {
    throw new BadRequestError(`input "${input.name}": an image model takes [C,H,W] or [N,C,H,W] tensors (or BYTES images), got [${t.shape.join(', ')}]`);
  }
  const n = shape[0];
  const per = shape[1] * shape[2] * shape[3];
  const size = ITEM_SIZE[t.dtype];
  return Array.from({ length: n }, (_, i) => {
    const Ctor = t.data.constructor as new (b: ArrayBufferLike, o: number, l: number) => Tensor['data'];
    return { dtype: t.dtype, shape: [1, shape[1], shape[2], shape[3]], data: new Ctor(t.data.buffer, t.data.byteOffset + i * per * size, per) };
  });
}

/** JSON text of a row; top-k objects keep their descending-probability key order (even numeric labels). */
function rowJson(row: unknown): string {
  if (row instanceof OrderedJson) return `{${row.entries.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`;
  return JSON.stringify(row);
}

/** Post-processed rows of an image model as one v2 output: class indices INT64, score lists FP32, others JSON BYTES. */
function rowsOutput(name: string, rows: unknown[]): NamedOutput {
  const n = rows.length;
  if (rows.every((r) => Number.isInteger(r))) {
    return { name, datatype: 'INT64', shape: [n], tensor: { data: BigInt64Array.from(rows as number[], (r) => BigInt(r)), shape: [n], dtype: 'int64' } };
  }
  if (rows.every((r) => Array.isArray(r) && r.every((v) => typeof v === 'number')) && rows.length > 0) {
    const width = (rows[0] as number[]).length;
    if (rows.every((r) => (r as number[]).length === width)) {
      const data = new Float32Array(n * width);
      rows.forEach((r, i) => data.set(r as number[], i * width));
      return { name, datatype: 'FP32', shape: [n, width], tensor: { data, shape: [n, width], dtype: 'float32' } };
    }
  }
  return { name, datatype: 'BYTES', shape: [n], strings: rows.map(rowJson) };
}

/** The image-model inputs of a request: one list of forward args per example. */
async function visionExamples(mv: ModelVersion, request: DecodedRequest): Promise<Tensor[][]> {
  if (request.inputs.length !== 1) {
    throw new BadRequestError(`Model ${mv.spec.name} takes one input (images as BYTES), the request has ${request.inputs.length}`);
  }
  const input = request.inputs[0];
  if (input.bytes) {
    if (input.bytes.length === 0) throw new BadRequestError(`input "${input.name}": no images`);
    return Promise.all(input.bytes.map((b) => preprocessBytes(mv, b)));
  }
  return splitExamples(input, mv.spec.handler.channels).map((t) => [t]);
}

export function selectOutputs(request: DecodedRequest, outputs: NamedOutput[]): { outputs: NamedOutput[]; binary: (name: string) => boolean } {
  if (!request.outputs) return { outputs, binary: () => request.binaryOutputs };
  const byName = new Map(outputs.map((o) => [o.name, o]));
  const chosen = request.outputs.map((r) => {
    const o = byName.get(r.name);
    if (!o) throw new BadRequestError(`Requested output "${r.name}" is not an output of the model; outputs: ${outputs.map((x) => x.name).join(', ')}`);
    return o;
  });
  const flags = new Map(request.outputs.map((r) => [r.name, r.binary || request.binaryOutputs]));
  return { outputs: chosen, binary: (name) => flags.get(name) ?? false };
}

function sendInferResponse(res: Response, mv: ModelVersion, request: DecodedRequest, outputs: NamedOutput[]): void {
  const selected = selectOutputs(request, outputs);
  const head: Record<string, unknown> = {};
  if (request.id !== undefined) head.id = request.id;
  head.model_name = mv.spec.name;
  head.model_version = mv.spec.version;
  const encoded = encodeInferResponse(head, selected.outputs, selected.binary);
  res.status(200);
  res.setHeader('Content-Type', encoded.contentType);
  if (encoded.headerLength !== undefined) res.setHeader('Inference-Header-Content-Length', String(encoded.headerLength));
  res.setHeader('Content-Length', String(encoded.chunks.reduce((a, c) => a + c.length, 0)));
  // Written piece by piece: binary outputs go out from the tensors' own memory, never concatenated.
  for (const chunk of encoded.chunks) res.write(chunk);
  res.end();
}

function numberParam(params: Record<string, unknown>, key: string): number | number[] | undefined {
  const v = params[key];
  if (v === undefined) return undefined;
  if (Number.isInteger(v) && (v as number) >= 0) return v as number;
  if (Array.isArray(v) && v.every((x) => Number.isInteger(x) && x >= 0)) return v as number[];
  throw new BadRequestError(`parameters.${key} must be a non-negative integer (or a list of them), got ${JSON.stringify(v)}`);
}

async function explainArgs(mv: ModelVersion, args: Tensor[], request: DecodedRequest, options: InferOptions, index: number) {
  const batch = args[0].shape[0] ?? 1;
  const steps = numberParam(request.parameters, 'n_steps');
  if (Array.isArray(steps) || steps === 0) throw new BadRequestError('parameters.n_steps must be a positive integer');
  const given = numberParam(request.parameters, 'target');
  // No target: the native IG takes each example's predicted class from its own forward on x.
  if (given === undefined) return mv.batcher.explain(args, { steps }, options);
  let target: number[];
  if (Array.isArray(given)) target = given.length === batch ? given : given.slice(index, index + batch);
  else target = Array(batch).fill(given);
  if (target.length !== batch) throw new BadRequestError(`parameters.target has ${target.length} entries for ${batch} examples`);
  return mv.batcher.explain(args, { target, steps }, options);
}

/** Concatenate same-dtype tensors along dim 0 (attributions of several images into one output). */
function concat(tensors: Tensor[]): Tensor {
  if (tensors.length === 1) return tensors[0];
  const first = tensors[0];
  const total = tensors.reduce((a, t) => a + t.data.length, 0);
  const Ctor = first.data.constructor as new (n: number) => Tensor['data'];
  const data = new Ctor(total);
  let off = 0;
  for (const t of tensors) {
    (data as Float32Array).set(t.data as Float32Array, off);
    off += t.data.length;
  }
  return { data, dtype: first.dtype, shape: [tensors.reduce((a, t) => a + t.shape[0], 0), ...first.shape.slice(1)] };
}

/**
 * The outputs of one decoded v2 infer request (the codec-independent part shared by REST /v2 and gRPC
 * ModelInfer): image models take BYTES images or [N,C,H,W] tensors and answer one row per example;
 * tensor models take forward's arguments by name or in order and answer the forward's output tree.
 */
export async function inferOutputs(mv: ModelVersion, request: DecodedRequest, options: InferOptions): Promise<NamedOutput[]> {
  if (isVision(mv)) {
    const examples = await visionExamples(mv, request);
    const rows = await Promise.all(examples.map(async (args) => postprocessRow(mv, await mv.batcher.infer(args, options))));
    return [rowsOutput(mv.spec.outputs?.[0]?.name ?? 'output0', rows)];
  }
  const args = forwardArgs(mv, request.inputs);
  const outputs = applyDeclaredNames(mv, namedOutputs(await mv.batcher.infer(args, options)));
  if (!mv.spec.inputs || !mv.spec.outputs) {
    observed.set(mv, {
      inputs: request.inputs.map((i) => metaOf(i.name, i.datatype, i.shape)),
      outputs: outputs.map((o) => metaOf(o.name, o.datatype, o.shape)),
    });
  }
  return outputs;
}

/** The /v2 router: server and model metadata, health, infer and explain (JSON or binary tensors). */
export function v2Router(deps: AppDeps): express.Router {
  const { registry, config } = deps;
  const router = express.Router({ strict: false });
  const rawBody = express.raw({ type: () => true, limit: config.maxRequestSize });

  const resolve = (req: Request, res: Response): ModelVersion => {
    const mv = registry.resolve(req.params.model_name as string, req.params.model_version as string | undefined);
    res.locals.model = mv.spec.name;
    res.locals.version = mv.spec.version;
    return mv;
  };
  const bodyOf = (req: Request): DecodedRequest => {
    const body: unknown = req.body;
    const header = req.get(HEADER_LENGTH);
    if (Buffer.isBuffer(body)) return decodeInferRequest(body, header);
    // Parsed by an upstream JSON parser already (no binary part possible then), or no body at all.
    if (body && typeof body === 'object') return decodeInferRequest(body as Record<string, unknown>);
    return decodeInferRequest(Buffer.alloc(0), header);
  };

  router.get('/', (_req, res) => sendJson(res, 200, { name: 'torchd', version: serverVersion, extensions: ['binary_tensor_data'] }));
  router.get('/health/live', health.v2Live(deps));
  router.get('/health/ready', health.v2Ready(deps));

  const metadata = (req: Request, res: Response) => sendJson(res, 200, modelMetadata(deps, resolve(req, res)));
  const ready = (req: Request, res: Response) => {
    const mv = resolve(req, res);
    sendJson(res, mv.ready ? 200 : 503, { name: mv.spec.name, ready: mv.ready });
  };

  const infer = async (req: Request, res: Response) => {
    const mv = resolve(req, res);
    const request = bodyOf(req);
    sendInferResponse(res, mv, request, await inferOutputs(mv, request, inferOptions(mv, res)));
  };

  const explain = async (req: Request, res: Response) => {
    const mv = resolve(req, res);
    const request = bodyOf(req);
    const options = inferOptions(mv, res);
    const examples = isVision(mv) ? await visionExamples(mv, request) : [forwardArgs(mv, request.inputs)];
    let seen = 0;
    const results = await Promise.all(
      examples.map((args) => {
        const index = seen;
        seen += args[0].shape[0] ?? 1;
        return explainArgs(mv, args, request, options, index);
      }),
    );
    const attributions = concat(results.map((r) => r.attributions));
    const delta = results.flatMap((r) => r.delta);
    sendInferResponse(res, mv, request, [
      { name: 'attributions', datatype: DTYPE_TO_V2[attributions.dtype], shape: attributions.shape, tensor: attributions },
      { name: 'delta', datatype: 'FP64', shape: [delta.length], tensor: { data: Float64Array.from(delta), shape: [delta.length], dtype: 'float64' } },
    ]);
  };

  for (const base of ['/models/:model_name', '/models/:model_name/versions/:model_version']) {
    router.get(base, metadata);
    router.get(`${base}/ready`, ready);
    // Resolve the model before reading the body, so an unknown model is a 404 without buffering it.
    router.post(`${base}/infer`, (req, res, next) => (resolve(req, res), next()), rawBody, infer);
    router.post(`${base}/explain`, (req, res, next) => (resolve(req, res), next()), rawBody, explain);
  }

  const allowed: Record<string, string> = {
    '/': 'GET',
    '/health/live': 'GET',
    '/health/ready': 'GET',
  };
  for (const base of ['/models/:model_name', '/models/:model_name/versions/:model_version']) {
    allowed[base] = 'GET';
    allowed[`${base}/ready`] = 'GET';
    allowed[`${base}/infer`] = 'POST';
    allowed[`${base}/explain`] = 'POST';
  }
  for (const [path, methods] of Object.entries(allowed)) {
    router.all(path, (req, res, next) => {
      res.setHeader('Allow', methods);
      next(new MethodNotAllowedError(`Method ${req.method} is not allowed on ${req.baseUrl}${req.path}; allowed: ${methods}`));
    });
  }
  return router;
}

// The tensor handler: inputs are tensors (JSON nested arrays, {data, shape, dtype}, raw little-endian bytes with
// ?shape=&dtype=, KServe v2 tensors); the output is the model's output tree (tensors, tuples, dicts) as it is.
import { BadRequestError } from '../errors.js';
import { firstNonFinite, isTensor } from '../engine/tensors.js';
import type { TensorMetadata } from '../engine/types.js';
import type { OutputTree, Tensor } from '../native.js';
import { parseJsonBounded, parseJsonBoundedAsync } from '../bounded-json.js';
import type { DecodeContext, DecodeLimits, Example, HandlerModel, InputPart, ModelHandler, NamedInput, NamedOutput } from './model-handler.js';
import { namedOutputs, outputJson, TensorJson } from './output.js';
import { bytesToTensor, jsonToTensor, parseDType } from './tensors.js';

const isText = (contentType: string | undefined) => contentType !== undefined && /^text\//i.test(contentType);
const isJsonType = (contentType: string | undefined) => contentType !== undefined && /^application\/([\w.+-]+\+)?json\b/i.test(contentType);
const isPlainObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Refuses NaN/±Infinity in a floating input unless the model allows them (model config `allowNonFinite`). */
export function checkFinite(t: Tensor, input: string, limits: DecodeLimits): Tensor {
  if (limits.allowNonFinite) return t;
  const i = firstNonFinite(t);
  if (i >= 0) {
    throw new BadRequestError(
      `Input "${input}" holds a non-finite number (NaN or ±Infinity) at element ${i}; set allowNonFinite: true in the model config to accept them`,
    );
  }
  return t;
}

/**
 * Drops the batch dimension we added to a tensor instance from every tensor of its output. Tensors stay TensorJson
 * (written when the body is, a large one off the event loop).
 */
function unbatch(out: OutputTree): unknown {
  if (isTensor(out)) return new TensorJson(out, out.shape[0] === 1 ? 1 : 0);
  if (Array.isArray(out)) return out.map(unbatch);
  if (out !== null && typeof out === 'object') return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, unbatch(v)]));
  return outputJson(out);
}

function metaOf(name: string, datatype: string, shape: number[]): TensorMetadata {
  // The leading dimension is the batch: any size is accepted.
  return { name, datatype, shape: shape.length > 0 ? [-1, ...shape.slice(1)] : [] };
}

export class TensorHandler implements ModelHandler {
  readonly name = 'tensor' as const;
  /** What the last successful v2 request showed of the tensors, for metadata TorchScript cannot give. */
  private observed: { inputs?: TensorMetadata[]; outputs?: TensorMetadata[] } = {};

  constructor(private readonly model: HandlerModel) {}

  private get argumentNames(): string[] {
    return this.model.argumentNames;
  }

  /** One part → one tensor: JSON (parsed, a JSON part, or a JSON-looking text field), else raw bytes with ?shape. */
  private async partTensor(part: InputPart, ctx: DecodeContext): Promise<Tensor> {
    const dtype = ctx.dtype !== undefined ? parseDType(ctx.dtype) : 'float32';
    let t: Tensor;
    if ('json' in part) t = jsonToTensor(part.json, dtype);
    // JSON sent as a file part or as a text field (`-F data='[[1,2]]'`).
    else if (isJsonType(part.contentType) || (isText(part.contentType) && /^\s*[[{\d.-]/.test(part.data.toString('latin1', 0, 64)))) {
      const bounds = { maxDepth: ctx.limits.maxJsonDepth, maxElements: ctx.limits.maxElements };
      // A large part is parsed off the event loop, as a large body is (DecodeLimits.offLoopJsonBytes).
      const json = part.data.length >= (ctx.limits.offLoopJsonBytes ?? Infinity)
        ? await parseJsonBoundedAsync(part.data, bounds, 'JSON input')
        : parseJsonBounded(part.data, bounds, 'JSON input');
      t = jsonToTensor(json, dtype);
    } else t = bytesToTensor(part.data, ctx.shape, ctx.dtype);
    return checkFinite(t, part.name, ctx.limits);
  }

  partExamples(parts: InputPart[], ctx: DecodeContext): Example[] {
    const names = this.argumentNames;
    const k = names.length;
    if (k <= 1) return parts.map((part) => ({ decode: async () => [await this.partTensor(part, ctx)] }));
    // A k-input model: one example whose arguments are the parts (or the keys of one JSON object).
    const only = parts.length === 1 ? parts[0] : undefined;
    if (only && 'json' in only && isPlainObject(only.json) && names.every((n) => n in (only.json as object))) {
      const body = only.json as Record<string, unknown>;
      return [{ decode: () => Promise.all(names.map((n) => this.partTensor({ name: n, json: body[n] }, ctx))) }];
    }
    if (parts.length !== k) {
      throw new BadRequestError(
        `Model ${this.model.name} takes ${k} inputs (${names.join(', ')}) but the request has ${parts.length} part(s): ` +
          `send one part per input, named ${names.join(', ')}, or a JSON object with those keys`,
      );
    }
    const byName = new Map(parts.map((p) => [p.name, p]));
    const ordered = byName.size === k && names.every((n) => byName.has(n)) ? names.map((n) => byName.get(n)!) : parts;
    return [{ decode: () => Promise.all(ordered.map((p) => this.partTensor(p, ctx))) }];
  }

  /** A v1 instance is one example (nested array or {data, shape, dtype}): a batch dimension of 1 is added. */
  instanceExamples(instances: unknown[], ctx: DecodeContext): Example[] {
    const dtype = ctx.dtype !== undefined ? parseDType(ctx.dtype) : 'float32';
    return instances.map((instance, i) => ({
      addedBatch: true,
      decode: async () => {
        const t = checkFinite(jsonToTensor(instance, dtype), `instances[${i}]`, ctx.limits);
        return [{ ...t, shape: [1, ...t.shape] }];
      },
    }));
  }

  /** v2 inputs are forward's arguments: by name when the names are forward's, else in order. One example. */
  tensorExamples(inputs: NamedInput[], ctx: DecodeContext): Example[] {
    const declared = this.model.inputs;
    const names = declared?.map((d) => d.name) ?? this.argumentNames;
    for (const input of inputs) {
      if (!input.tensor) {
        throw new BadRequestError(`input "${input.name}": BYTES inputs are for image models; model ${this.model.name} takes numeric tensors`);
      }
    }
    let ordered: NamedInput[];
    const byName = new Map(inputs.map((i) => [i.name, i]));
    if (names.length > 0 && inputs.every((i) => names.includes(i.name))) {
      ordered = names.map((n) => {
        const found = byName.get(n);
        if (!found) throw new BadRequestError(`Missing input "${n}": model ${this.model.name} forward takes (${names.join(', ')})`);
        return found;
      });
    } else if (names.length === 0 || inputs.length === names.length) {
      ordered = inputs;
    } else if (inputs.length < names.length) {
      throw new BadRequestError(
        `Missing input: model ${this.model.name} forward takes ${names.length} inputs (${names.join(', ')}), the request has ${inputs.length} (${inputs.map((i) => i.name).join(', ')})`,
      );
    } else {
      throw new BadRequestError(
        `Too many inputs: model ${this.model.name} forward takes ${names.length} (${names.join(', ')}), the request has ${inputs.length}`,
      );
    }
    const args = ordered.map((input, i) => {
      const d = declared?.[i];
      if (d && d.datatype !== input.datatype) {
        throw new BadRequestError(`input "${input.name}": datatype ${input.datatype} but the model declares ${d.datatype}`);
      }
      if (input.shape.length === 0) throw new BadRequestError(`input "${input.name}": needs a leading batch dimension, got shape []`);
      return checkFinite(input.tensor!, input.name, ctx.limits);
    });
    return [{ decode: async () => args }];
  }

  row(out: OutputTree, example: Example): unknown {
    return example.addedBatch ? unbatch(out) : outputJson(out);
  }

  /** The output tree's leaves, named (output0…, dict keys), renamed to the model config's outputs when they line up. */
  namedOutputs(outs: OutputTree[], inputs: NamedInput[]): NamedOutput[] {
    let outputs = outs.flatMap((o) => namedOutputs(o));
    const declared = this.model.outputs;
    if (declared && declared.length === outputs.length) outputs = outputs.map((o, i) => ({ ...o, name: declared[i].name }));
    if (!this.model.inputs || !this.model.outputs) {
      this.observed = {
        inputs: inputs.map((i) => metaOf(i.name, i.datatype, i.shape)),
        outputs: outputs.map((o) => metaOf(o.name, o.datatype, o.shape)),
      };
    }
    return outputs;
  }

  /** Declared metadata wins, then what a request showed, then FP32 of unknown shape (TorchScript has no dtypes). */
  metadata(): { inputs: TensorMetadata[]; outputs: TensorMetadata[] } {
    return {
      inputs: this.model.inputs ?? this.observed.inputs ?? this.argumentNames.map((name) => ({ name, datatype: 'FP32', shape: [-1] })),
      outputs: this.model.outputs ?? this.observed.outputs ?? [],
    };
  }
}

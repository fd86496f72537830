// Model output → JSON: tensors as nested arrays, class scores as top-k / argmax / probabilities / logits,
// and a serializer that keeps label order and yields to the event loop on big bodies.
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { InternalServerError } from '../errors.js';
import type { HandlerConfig } from '../engine/types.js';
import type { OutputTree, Tensor } from '../native.js';
import { DTYPE_TO_V2, isTensor, tensorValues } from '../engine/tensors.js';
import type { NamedOutput } from './model-handler.js';
import { encodeTensorJsonOffLoop } from './response-encoder.js';

/**
 * An object whose key order matters (top-k labels in descending probability). Plain JS objects put
 * integer-like keys ("281") first in ascending order; serializeJson writes these entries in order.
 * `toJSON` keeps plain JSON.stringify working (with JS key order).
 */
export class OrderedJson {
  constructor(readonly entries: [string, unknown][]) {}
  toJSON(): Record<string, unknown> {
    return Object.fromEntries(this.entries);
  }
}

/** Nested arrays of `values` in `shape` (row-major). */
function nest(values: ArrayLike<unknown>, shape: number[], offset = 0, dim = 0): unknown {
  if (dim === shape.length) return values[offset];
  const n = shape[dim];
  let stride = 1;
  for (let d = dim + 1; d < shape.length; d++) stride *= shape[d];
  const out = new Array(n);
  if (dim === shape.length - 1) {
    for (let i = 0; i < n; i++) out[i] = values[offset + i];
  } else {
    for (let i = 0; i < n; i++) out[i] = nest(values, shape, offset + i * stride, dim + 1);
  }
  return out;
}

/** A tensor as nested arrays (a 0-d tensor as its value), `dropDims` leading dimensions removed (they must be 1). */
export function tensorToJson(t: Tensor, dropDims = 0): unknown {
  return nest(tensorValues(t), t.shape.slice(dropDims));
}

/**
 * A tensor in a response body, encoded to JSON text only when the body is written (serializeJsonBuffer): as nested
 * arrays with `dropDims` leading dimensions removed (they must be 1), or `flat` row-major as KServe v2 sends it.
 * Building the JS arrays of a large tensor on the event loop alone took 4–9 ms (nested) and 27–33 ms (flat
 * Array.from) for 700 000 float32s, so a large one is handed to the response encoder thread as its typed array
 * instead (response-encoder.ts). `toJSON` gives the arrays, so JSON.stringify writes the same text.
 */
export class TensorJson {
  constructor(readonly tensor: Tensor, readonly dropDims = 0, readonly flat = false) {}
  /** Number of values (the text's numbers or booleans). */
  get size(): number {
    return this.tensor.data.length;
  }
  toJSON(): unknown {
    return this.flat ? Array.from(tensorValues(this.tensor)) : tensorToJson(this.tensor, this.dropDims);
  }
}

/**
 * The JSON text of `JSON.stringify(t.toJSON())`, written row by row from the typed array without building the whole
 * nested array (the response encoder thread runs this). Numbers are printed by JSON.stringify itself, so float32 values
 * (widened to double), int64 (as Number), fp16/bf16 (decoded), booleans and NaN/±Infinity (null) read exactly as
 * the synchronous path writes them.
 */
export function tensorJsonText(t: TensorJson): string {
  const values = tensorValues(t.tensor);
  const shape = t.flat ? [values.length] : t.tensor.shape.slice(t.dropDims);
  if (shape.length === 0) return JSON.stringify(values[0]) ?? 'null';
  const parts: string[] = [];
  const row = (offset: number, dim: number): void => {
    const n = shape[dim];
    if (dim === shape.length - 1) {
      const r = new Array(n);
      for (let i = 0; i < n; i++) r[i] = values[offset + i];
      parts.push(JSON.stringify(r));
      return;
    }
    let stride = 1;
    for (let d = dim + 1; d < shape.length; d++) stride *= shape[d];
    parts.push('[');
    for (let i = 0; i < n; i++) {
      if (i) parts.push(',');
      row(offset + i * stride, dim + 1);
    }
    parts.push(']');
  };
  row(0, 0);
  return parts.join('');
}

/** Tensors → nested arrays, tuples/lists → arrays, dicts → objects, scalars as they are. */
export function outputToJson(out: OutputTree): unknown {
  if (isTensor(out)) return tensorToJson(out);
  if (Array.isArray(out)) return out.map(outputToJson);
  if (out !== null && typeof out === 'object') {
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, outputToJson(v)]));
  }
  return out;
}

/** outputToJson with its tensors left as TensorJson, encoded when the body is written (a large one off the loop). */
export function outputJson(out: OutputTree): unknown {
  if (isTensor(out)) return new TensorJson(out);
  if (Array.isArray(out)) return out.map(outputJson);
  if (out !== null && typeof out === 'object') {
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, outputJson(v)]));
  }
  return out;
}

/** The class-score tensor of an output: the tensor itself, the first of a tuple, `logits`/first value of a dict. */
export function scoresTensor(out: OutputTree): Tensor | undefined {
  if (isTensor(out)) return out;
  if (Array.isArray(out)) return out.length ? scoresTensor(out[0]) : undefined;
  if (out !== null && typeof out === 'object') {
    const values = Object.values(out);
    return scoresTensor((out as Record<string, OutputTree>).logits ?? values[0]);
  }
  return undefined;
}

/** One example's class scores (the output must be [1, classes] or [classes]). */
export function scoresRow(out: OutputTree, what = 'class scores'): number[] {
  const t = scoresTensor(out);
  if (!t || t.shape.length === 0 || t.shape.slice(0, -1).some((d) => d !== 1)) {
    const shape = t ? `[${t.shape.join(', ')}]` : 'no tensor';
    throw new InternalServerError(`Model output ${shape} is not ${what} of one example ([1, classes]); use the tensor handler for other outputs`);
  }
  return Array.from(tensorValues(t), Number);
}

export function softmax(logits: number[]): number[] {
  let max = -Infinity;
  for (const v of logits) if (v > max) max = v;
  const exps = logits.map((v) => Math.exp(v - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / sum);
}

export function argmax(values: number[]): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

/**
 * The indices of the k largest values, largest first, ties (and NaNs, which softmax gives to every class or none)
 * in index order: what sorting all indices by (value desc, index asc) and keeping k gives, in one pass over the
 * values instead of a comparator sort of all of them (1000 ImageNet classes: ≈ 10 000 comparator calls per
 * request, bench/NOTES.md §35).
 */
export function topIndices(values: ArrayLike<number>, k: number): number[] {
  const n = Math.min(k, values.length);
  const best: number[] = [];
  for (let i = 0; i < values.length && n > 0; i++) {
    // Strictly larger only: an equal (or NaN) value never displaces the lower index already kept.
    if (best.length === n) {
      if (!(values[i] > values[best[n - 1]])) continue;
      best.pop();
    }
    let at = best.length;
    best.push(i);
    while (at > 0 && values[i] > values[best[at - 1]]) {
      best[at] = best[at - 1];
      at--;
    }
    best[at] = i;
  }
  return best;
}

/** One example's class scores as the image_classifier `output` mode asks (top-k with `labels`, argmax, …). */
export function postprocessScores(h: HandlerConfig, labels: Record<string, string> | undefined, out: OutputTree): unknown {
  const logits = scoresRow(out);
  switch (h.output) {
    case 'logits':
      return logits;
    case 'probabilities':
      return softmax(logits);
    case 'argmax':
      return argmax(logits);
    case 'topk': {
      const probs = softmax(logits);
      return new OrderedJson(topIndices(probs, h.topk).map((i) => [labels?.[String(i)] ?? String(i), probs[i]]));
    }
  }
}

/**
 * JSON text of a response body: like JSON.stringify, but OrderedJson keeps its key order and long arrays
 * are written in slices with event-loop yields in between (an ImageNet attribution is 150k numbers).
 */
export async function serializeJson(body: unknown): Promise<string> {
  const parts: string[] = [];
  const budget: Budget = { n: 0 };
  await write(body, parts, budget);
  return parts.join('');
}

/**
 * serializeJson's text as UTF-8 bytes, converted slice by slice at each yield: a 3.4 MB attribution body is
 * then never joined and encoded in one piece on the event loop (≈ 3–6 ms measured, bench/NOTES.md §14).
 * A TensorJson of `offLoopNumbers` values or more (the service's OFF_LOOP_JSON_NUMBERS) is encoded on the JSON
 * encoder thread into its bytes (the same text; bench/NOTES.md §31); smaller ones keep this sliced path. Rejects
 * with InternalServerError if that thread fails.
 */
export async function serializeJsonBuffer(body: unknown, offLoopNumbers = Infinity): Promise<Buffer> {
  const chunks = await serializeJsonChunks(body, offLoopNumbers);
  return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
}

/**
 * serializeJsonBuffer's bytes as the pieces it wrote, in order, never joined: concatenating a 13 MB body held the
 * event loop 8–15 ms (bench/NOTES.md §31), so the HTTP codecs write the pieces as they are (respond.ts writeBody).
 */
export async function serializeJsonChunks(body: unknown, offLoopNumbers = Infinity): Promise<Buffer[]> {
  const parts: string[] = [];
  const chunks: Buffer[] = [];
  const flush = () => {
    if (parts.length === 0) return;
    chunks.push(Buffer.from(parts.join(''), 'utf8'));
    parts.length = 0;
  };
  const offLoop = async (t: TensorJson) => {
    flush();
    chunks.push(await encodeTensorJsonOffLoop(t));
  };
  await write(body, parts, { n: 0, flush, offLoop, offLoopNumbers });
  flush();
  return chunks;
}

interface Budget {
  /** Numbers written since the last yield. */
  n: number;
  /** Called before each yield (serializeJsonBuffer encodes what was written so far). */
  flush?: () => void;
  /** Writes a large TensorJson's bytes in place (serializeJsonBuffer: on the encoder thread). */
  offLoop?: (t: TensorJson) => Promise<void>;
  /** Values from which a TensorJson goes to offLoop. */
  offLoopNumbers?: number;
}

async function pause(budget: Budget): Promise<void> {
  budget.flush?.();
  await yieldToLoop();
}

/**
 * Numbers written between two yields: JSON.stringify prints a float32 attribution in ≈ 0.25–0.3 µs here, so
 * a slice of 4096 stays near 1 ms of loop time (32 768 gave 8–10 ms slices; bench/NOTES.md §12).
 */
const YIELD_EVERY = 1 << 12;

async function write(v: unknown, out: string[], budget: Budget): Promise<void> {
  if (v instanceof TensorJson) {
    if (budget.offLoop && v.size >= (budget.offLoopNumbers ?? Infinity)) await budget.offLoop(v);
    else await write(v.toJSON(), out, budget);
    return;
  }
  if (v instanceof OrderedJson) {
    out.push('{');
    let first = true;
    for (const [k, x] of v.entries) {
      if (x === undefined) continue;
      out.push(`${first ? '' : ','}${JSON.stringify(k)}:`);
      first = false;
      await write(x, out, budget);
    }
    out.push('}');
    return;
  }
  if (Array.isArray(v)) {
    if (v.every((x) => typeof x === 'number')) {
      if (v.length <= YIELD_EVERY) {
        out.push(JSON.stringify(v));
        budget.n += v.length;
      } else {
        // A long flat array is written in slices, with a yield after each.
        for (let i = 0; i < v.length; i += YIELD_EVERY) {
          const slice = JSON.stringify(v.slice(i, i + YIELD_EVERY));
          out.push(i === 0 ? slice.slice(0, -1) : `,${slice.slice(1, -1)}`);
          await pause(budget);
        }
        out.push(']');
      }
    } else {
      out.push('[');
      for (let i = 0; i < v.length; i++) {
        if (i) out.push(',');
        if (v[i] === undefined || typeof v[i] === 'function') out.push('null');
        else await write(v[i], out, budget);
      }
      out.push(']');
    }
    if (budget.n >= YIELD_EVERY) {
      budget.n = 0;
      await pause(budget);
    }
    return;
  }
  if (v !== null && typeof v === 'object' && typeof (v as { toJSON?: unknown }).toJSON !== 'function' && !ArrayBuffer.isView(v)) {
    out.push('{');
    let first = true;
    for (const [k, x] of Object.entries(v)) {
      if (x === undefined || typeof x === 'function') continue;
      out.push(`${first ? '' : ','}${JSON.stringify(k)}:`);
      first = false;
      await write(x, out, budget);
    }
    out.push('}');
    return;
  }
  out.push(JSON.stringify(v) ?? 'null');
}

/**
 * Name the leaves of a forward's output tree: a bare tensor is `output0`, tuple element i is
 * `output{i}`, a dict entry keeps its key; nested leaves join with '.'. Scalars become 0-d tensors
 * (integers INT64, other numbers FP64, booleans BOOL), strings BYTES.
 */
export function namedOutputs(tree: OutputTree): NamedOutput[] {
  const out: NamedOutput[] = [];
  const visit = (node: OutputTree, name: string): void => {
    if (node === null) return;
    if (isTensor(node)) {
      out.push({ name, datatype: DTYPE_TO_V2[node.dtype], shape: node.shape, tensor: node });
    } else if (Array.isArray(node)) {
      node.forEach((e, i) => visit(e, name === '' ? `output${i}` : `${name}.${i}`));
    } else if (typeof node === 'object') {
      for (const [k, v] of Object.entries(node)) visit(v, name === '' ? k : `${name}.${k}`);
    } else if (typeof node === 'number') {
      out.push(
        Number.isInteger(node)
          ? { name: name || 'output0', datatype: 'INT64', shape: [], tensor: { data: BigInt64Array.of(BigInt(node)), shape: [], dtype: 'int64' } }
          : { name: name || 'output0', datatype: 'FP64', shape: [], tensor: { data: Float64Array.of(node), shape: [], dtype: 'float64' } },
      );
    } else if (typeof node === 'boolean') {
      out.push({ name: name || 'output0', datatype: 'BOOL', shape: [], tensor: { data: Uint8Array.of(node ? 1 : 0), shape: [], dtype: 'bool' } });
    } else {
      out.push({ name: name || 'output0', datatype: 'BYTES', shape: [1], strings: [node] });
    }
  };
  visit(tree, isTensor(tree) ? 'output0' : '');
  return out;
}


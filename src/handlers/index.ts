// Per-model request handling: request parts → forward arguments (image_classifier / tensor), the batcher
// call, and post-processing; TorchServe bodies, explanations (integrated gradients) and KServe v1 envelopes.
import { BadRequestError } from '../errors.js';
import type { ModelVersion } from '../engine/types.js';
import type { ServerMetrics, Stage } from '../metrics/types.js';
import type { OutputTree, Tensor } from '../native.js';
import { decodeBase64Image, imageToTensor, isEncodedImage } from './image.js';
import { outputToJson, postprocessRow, scoresRow, tensorToJson } from './output.js';
import { bytesToTensor, jsonToTensor, parseDType } from './tensors.js';

export { outputToJson, postprocessRow, serializeJson, serializeJsonBuffer, OrderedJson, softmax } from './output.js';
export { closeImageWorkers, MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE } from './image.js';

export type InputPart = { name: string; contentType?: string; data: Buffer } | { name: string; json: unknown };

export interface HandleOptions {
  query: Record<string, string | undefined>;
  signal?: AbortSignal;
  deadline?: number;
  metrics?: ServerMetrics;
}

/** Request fields that are parameters of the call, never model inputs. */
const PARAMETER_NAMES = new Set(['target', 'n_steps']);
export const DEFAULT_IG_STEPS = 15;
const MAX_IG_STEPS = 1024;

async function timed<T>(mv: ModelVersion, o: HandleOptions, stage: Stage, work: () => Promise<T> | T): Promise<T> {
  const start = performance.now();
  try {
    return await work();
  } finally {
    o.metrics?.stage(mv.spec.name, mv.spec.version, stage, performance.now() - start);
  }
}

function isText(contentType: string | undefined): boolean {
  return contentType !== undefined && /^text\//i.test(contentType);
}

function isJsonType(contentType: string | undefined): boolean {
  return contentType !== undefined && /^application\/([\w.+-]+\+)?json\b/i.test(contentType);
}

/** A JSON value that carries an image: `"<base64>"`, `{"data": "<base64>"}` or `{"b64": "<base64>"}`. */
function jsonImageBytes(value: unknown): Buffer {
  if (typeof value === 'string') return decodeBase64Image(value);
  if (value !== null && typeof value === 'object') {
    const v = value as { data?: unknown; b64?: unknown };
    if (typeof v.data === 'string') return decodeBase64Image(v.data);
    if (typeof v.b64 === 'string') return decodeBase64Image(v.b64);
    if (v.data !== null && typeof v.data === 'object' && typeof (v.data as { b64?: unknown }).b64 === 'string') {
      return decodeBase64Image((v.data as { b64: string }).b64);
    }
  }
  throw new BadRequestError('Expected an image: raw bytes, base64 text, or JSON {"data": "<base64 image>"}');
}

/** Decodes one image for a vision model into its forward arguments ([1, C, H, W] float32). */
export async function preprocessBytes(mv: ModelVersion, bytes: Buffer): Promise<Tensor[]> {
  if (mv.spec.handler.name !== 'image_classifier') {
    throw new BadRequestError(`Model ${mv.spec.name} uses the ${mv.spec.handler.name} handler, which takes tensors, not image bytes`);
  }
  return [await imageToTensor(bytes, mv.spec.handler)];
}

/** One request part → one tensor for the model's handler. */
async function partToTensor(mv: ModelVersion, part: InputPart, o: HandleOptions): Promise<Tensor> {
  if (mv.spec.handler.name === 'image_classifier') {
    if ('json' in part) return imageToTensor(jsonImageBytes(part.json), mv.spec.handler);
    if (isText(part.contentType) && !isEncodedImage(part.data)) return imageToTensor(decodeBase64Image(part.data.toString('latin1')), mv.spec.handler);
    if (isJsonType(part.contentType)) return imageToTensor(jsonImageBytes(parseJsonPart(part.data)), mv.spec.handler);
    return imageToTensor(part.data, mv.spec.handler);
  }
  const dtype = o.query.dtype !== undefined ? parseDType(o.query.dtype) : 'float32';
  if ('json' in part) return jsonToTensor(part.json, dtype);
  // JSON sent as a file part or as a text field (`-F data='[[1,2]]'`).
  if (isJsonType(part.contentType) || (isText(part.contentType) && /^\s*[[{\d.-]/.test(part.data.toString('latin1', 0, 64)))) {
    return jsonToTensor(parseJsonPart(part.data), dtype);
  }
  return bytesToTensor(part.data, o.query.shape, o.query.dtype);
}

function parseJsonPart(data: Buffer): unknown {
  try {
    return JSON.parse(data.toString('utf8'));
  } catch (err) {
    throw new BadRequestError(`Malformed JSON input: ${(err as Error).message}`);
  }
}

interface Parameters {
  target?: string;
  n_steps?: string;
}

/** Splits parameter fields (`target`, `n_steps`) from input parts; the query string supplies them too. */
function splitParts(parts: InputPart[], o: HandleOptions): { inputs: InputPart[]; params: Parameters } {
  const params: Parameters = { target: o.query.target, n_steps: o.query.n_steps };
  const inputs: InputPart[] = [];
  for (const part of parts) {
    if (PARAMETER_NAMES.has(part.name)) {
      const value = 'json' in part ? JSON.stringify(part.json) : part.data.toString('utf8').trim();
      params[part.name as keyof Parameters] = value;
    } else {
      inputs.push(part);
    }
  }
  // A JSON body may carry the parameters as fields next to its input: {"data": ..., "target": 3}.
  if (inputs.length === 1 && 'json' in inputs[0] && inputs[0].json !== null && typeof inputs[0].json === 'object' && !Array.isArray(inputs[0].json)) {
    const body = inputs[0].json as Record<string, unknown>;
    for (const key of PARAMETER_NAMES) if (body[key] !== undefined) params[key as keyof Parameters] = String(body[key]);
  }
  if (inputs.length === 0) {
    throw new BadRequestError('Missing input: send the input as the request body (curl -T FILE), a multipart part (curl -F data=@FILE) or JSON');
  }
  return { inputs, params };
}

function argumentNames(mv: ModelVersion): string[] {
  return (mv.model.inputs ?? []).map((i) => i.name);
}

/**
 * Forward arguments for a k-input model (k > 1) from its request parts: matched by field name when the names are
 * forward's argument names, else in order; a single JSON object keyed by argument names works too.
 */
async function multiArgs(mv: ModelVersion, inputs: InputPart[], o: HandleOptions): Promise<Tensor[]> {
  const names = argumentNames(mv);
  const k = names.length;
  if (inputs.length === 1 && 'json' in inputs[0] && inputs[0].json !== null && typeof inputs[0].json === 'object' && !Array.isArray(inputs[0].json)) {
    const body = inputs[0].json as Record<string, unknown>;
    if (names.every((n) => n in body)) {
      return Promise.all(names.map((n) => partToTensor(mv, { name: n, json: body[n] }, o)));
    }
  }
  if (inputs.length !== k) {
    throw new BadRequestError(
      `Model ${mv.spec.name} takes ${k} inputs (${names.join(', ')}) but the request has ${inputs.length} part(s): ` +
        `send one part per input, named ${names.join(', ')}, or a JSON object with those keys`,
    );
  }
  const byName = new Map(inputs.map((p) => [p.name, p]));
  const ordered = byName.size === k && names.every((n) => byName.has(n)) ? names.map((n) => byName.get(n)!) : inputs;
  return Promise.all(ordered.map((p) => partToTensor(mv, p, o)));
}

/** Runs `perInput` for each input of a one-argument model concurrently (so they batch); one result or an array. */
async function eachInput<T>(mv: ModelVersion, inputs: InputPart[], o: HandleOptions, perInput: (args: Tensor[]) => Promise<T>): Promise<T | T[]> {
  const k = argumentNames(mv).length;
  if (k > 1) {
    const args = await timed(mv, o, 'preprocess', () => multiArgs(mv, inputs, o));
    return perInput(args);
  }
  const results = inputs.map(async (part) => {
    const tensor = await timed(mv, o, 'preprocess', () => partToTensor(mv, part, o));
    return perInput([tensor]);
  });
  if (results.length === 1) return results[0];
  // Settle all before reporting the first failure, so no rejection is left unhandled.
  const settled = await Promise.allSettled(results);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<T>).value);
}

async function inferRow(mv: ModelVersion, args: Tensor[], o: HandleOptions): Promise<unknown> {
  const out = await mv.batcher.infer(args, { signal: o.signal, deadline: o.deadline });
  return timed(mv, o, 'postprocess', () => postprocessRow(mv, out));
}

/** TorchServe's /predictions body: one result, or a JSON array of per-part results for a one-input model. */
export async function predict(mv: ModelVersion, parts: InputPart[], o: HandleOptions): Promise<unknown> {
  const { inputs } = splitParts(parts, o);
  return eachInput(mv, inputs, o, (args) => inferRow(mv, args, o));
}

function parseSteps(value: string | undefined): number {
  if (value === undefined || value === '') return DEFAULT_IG_STEPS;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > MAX_IG_STEPS) {
    throw new BadRequestError(`n_steps must be an integer from 1 to ${MAX_IG_STEPS}, got ${JSON.stringify(value)}`);
  }
  return n;
}

function parseTarget(value: unknown): number | undefined {
  if (value === undefined || value === '' || value === null) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new BadRequestError(`target must be a non-negative integer class index, got ${JSON.stringify(value)}`);
  return n;
}

/**
 * Integrated gradients for one example: target = `target` or the predicted class; attributions with the input's
 * shape minus the batch dimension, as nested arrays.
 */
async function explainRow(mv: ModelVersion, args: Tensor[], target: number | undefined, steps: number, o: HandleOptions): Promise<unknown> {
  const options = { signal: o.signal, deadline: o.deadline };
  if (target !== undefined && target > 0) {
    // The forward gives the class count that bounds an explicit target, for a message naming the range.
    const classes = scoresRow(await mv.batcher.infer(args, options), 'class scores to explain').length;
    if (target >= classes) {
      throw new BadRequestError(`target ${target} is out of range: the model has ${classes} classes (0..${classes - 1})`);
    }
  }
  // No target: the native IG takes the predicted class from its own forward on x (no extra round trip).
  const result = await mv.batcher.explain(args, target === undefined ? { steps } : { target: [target], steps }, options);
  return timed(mv, o, 'postprocess', () => tensorToJson(result.attributions, 1));
}

/** /explanations body: attributions for each input (one, or an array for several parts of a one-input model). */
export async function explain(mv: ModelVersion, parts: InputPart[], o: HandleOptions): Promise<unknown> {
  const { inputs, params } = splitParts(parts, o);
  const steps = parseSteps(params.n_steps);
  const target = parseTarget(params.target);
  return eachInput(mv, inputs, o, (args) => explainRow(mv, args, target, steps, o));
}

function instancesOf(body: unknown): unknown[] {
  const instances = (body as { instances?: unknown } | null)?.instances;
  if (!Array.isArray(instances) || instances.length === 0) {
    throw new BadRequestError('Expected a KServe v1 body {"instances": [...]} with at least one instance');
  }
  return instances;
}

/**
 * One KServe v1 instance → forward arguments. Vision models: base64 image (`{"data": ...}`/`{"b64": ...}`/string).
 * Tensor models: the instance is one example (nested array or {data, shape, dtype}); a batch dimension of 1 is added.
 */
async function instanceArgs(mv: ModelVersion, instance: unknown, o: HandleOptions): Promise<{ args: Tensor[]; batched: boolean }> {
  if (mv.spec.handler.name === 'image_classifier') return { args: [await imageToTensor(jsonImageBytes(instance), mv.spec.handler)], batched: false };
  const t = jsonToTensor(instance, o.query.dtype !== undefined ? parseDType(o.query.dtype) : 'float32');
  return { args: [{ ...t, shape: [1, ...t.shape] }], batched: true };
}

/** Drops the batch dimension we added to a tensor instance from every tensor of its output. */
function unbatch(out: OutputTree): unknown {
  if (out !== null && typeof out === 'object' && !Array.isArray(out) && ArrayBuffer.isView((out as Tensor).data)) {
    const t = out as Tensor;
    return tensorToJson(t, t.shape[0] === 1 ? 1 : 0);
  }
  if (Array.isArray(out)) return out.map(unbatch);
  if (out !== null && typeof out === 'object') return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, unbatch(v)]));
  return outputToJson(out);
}

async function settleAll<T>(work: Promise<T>[]): Promise<T[]> {
  const settled = await Promise.allSettled(work);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<T>).value);
}

/** `/v1/models/{m}:predict`: `{"predictions": [...]}`, one per instance (instances batch together). */
export async function kserveV1Predict(mv: ModelVersion, body: unknown, o: HandleOptions): Promise<{ predictions: unknown[] }> {
  const instances = instancesOf(body);
  const predictions = await settleAll(instances.map(async (instance) => {
    const { args, batched } = await timed(mv, o, 'preprocess', () => instanceArgs(mv, instance, o));
    const out = await mv.batcher.infer(args, { signal: o.signal, deadline: o.deadline });
    return timed(mv, o, 'postprocess', () => (batched && mv.spec.handler.name === 'tensor' ? unbatch(out) : postprocessRow(mv, out)));
  }));
  return { predictions };
}

/** `/v1/models/{m}:explain`: `{"explanations": [...]}`; an instance may carry `"target": n`. */
export async function kserveV1Explain(mv: ModelVersion, body: unknown, o: HandleOptions): Promise<{ explanations: unknown[] }> {
  const instances = instancesOf(body);
  const steps = parseSteps(o.query.n_steps ?? ((body as { n_steps?: unknown }).n_steps as string | undefined)?.toString());
  const explanations = await settleAll(instances.map(async (instance) => {
    const target = parseTarget((instance as { target?: unknown } | null)?.target ?? o.query.target);
    const { args } = await timed(mv, o, 'preprocess', () => instanceArgs(mv, instance, o));
    // Attributions drop the batch dimension, whether the instance brought it (images) or we added it (tensors).
    return explainRow(mv, args, target, steps, o);
  }));
  return { explanations };
}

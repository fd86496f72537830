// Test helpers for the handlers: a ModelVersion over a real loadModel() with a pass-through batcher (unit tests of
// this layer; the engine's DynamicBatcher has its own tests), run through the real inference service and the
// protocols' request builders (predict/explain/kserveV1*), fixture paths, crafted images.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';
import type { HandlerConfig, ModelSpec, ModelVersion } from '../../src/engine/types.js';
import { kserveV1Request } from '../../src/http/kserve-v1.js';
import { torchserveRequest } from '../../src/http/torchserve.js';
import { TensorJson, type InputPart } from '../../src/handlers/index.js';
import { noopMetrics, type ServerMetrics } from '../../src/metrics/types.js';
import { loadModel, type Model } from '../../src/native.js';
import { createInferenceService, DEFAULT_LIMITS, type InferenceService, type ServiceLimits } from '../../src/service/index.js';
import { PRESETS } from '../../src/store/index.js';

export const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/models');
export const fx = (name: string): string => path.join(FIXTURES, name);
export const readFx = (name: string): Buffer => readFileSync(fx(name));
export const references = JSON.parse(readFileSync(fx('references.json'), 'utf8'));

export const MNIST: HandlerConfig = { name: 'image_classifier', preset: 'mnist', ...PRESETS.mnist };
export const IMAGENET: HandlerConfig = { name: 'image_classifier', preset: 'imagenet', ...PRESETS.imagenet };
export const TENSOR: HandlerConfig = { name: 'tensor', ...PRESETS.imagenet };

export interface TestModelVersion extends ModelVersion {
  /** batcher.infer/explain calls so far */
  calls: { infer: number; explain: number };
  /** The native model under the pass-through batcher (tests dispose it). */
  model: Model;
}

/** resnet18.pt is not committed (45 MB): the fixture recipe regenerates it deterministically when missing. */
export function ensureResnet(): string {
  const file = fx('resnet18.pt');
  if (!existsSync(file)) execFileSync('/usr/bin/python3', [fx('make_models.py'), '--resnet'], { stdio: 'inherit' });
  return file;
}

export async function modelVersion(file: string, handler: HandlerConfig, labels?: Record<string, string>, version = '1.0'): Promise<TestModelVersion> {
  const model = await loadModel(file);
  const spec: ModelSpec = { name: path.basename(file, '.pt'), version, url: file, dir: FIXTURES, serializedFile: file, handler, settings: {}, labels };
  const calls = { infer: 0, explain: 0 };
  return {
    spec, model, calls, ready: true, loadedAtStartup: false, loadedAt: new Date(), workers: 1, pending: 0, running: 0, stuck: 0, optimization: { serving: 'original', reason: 'test version' },
    info: { device: model.device, inputs: model.inputs.map((i) => i.name), parameterCount: model.parameterCount, parameterBytes: model.parameterBytes },
    settings: { batchSize: 1, maxBatchDelay: 0, minWorkers: 1, maxWorkers: 1, responseTimeout: 120, device: 'cpu', precision: 'fp32', jobQueueSize: 100 },
    batcher: {
      pending: 0,
      running: 0,
      stuck: 0,
      infer: (args) => { calls.infer++; return model.forward(args); },
      explain: (args, ig) => { calls.explain++; return model.integratedGradients(args, ig); },
      // Nothing is batched here: an announcement has nothing to hold back.
      expect: () => ({ cancel() {} }),
    },
  };
}

export interface CallOptions {
  query?: Record<string, string>;
  metrics?: ServerMetrics;
  limits?: Partial<ServiceLimits>;
}

/** The inference service over one test version (its registry resolves every name to it). */
export function serviceFor(mv: ModelVersion, o: CallOptions = {}): InferenceService {
  return createInferenceService({ registry: { resolve: () => mv }, metrics: o.metrics ?? noopMetrics, limits: { ...DEFAULT_LIMITS, ...o.limits } });
}

/**
 * A result row with its TensorJson leaves (tensors the codec encodes when it writes the body) as the nested arrays
 * they stand for; OrderedJson and Buffers stay as they are.
 */
export function plainRow(v: unknown): unknown {
  if (v instanceof TensorJson) return v.toJSON();
  if (Array.isArray(v)) return v.map(plainRow);
  if (v !== null && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plainRow(x)]));
  }
  return v;
}

async function torchserve(mv: ModelVersion, parts: InputPart[], o: CallOptions, explain: boolean): Promise<unknown> {
  const result = await serviceFor(mv, o).infer({ model: mv.spec.name, protocol: 'test' }, torchserveRequest(parts, o.query ?? {}, explain));
  const rows = result.kind === 'rows' ? result.rows.map(plainRow) : [];
  return rows.length === 1 ? rows[0] : rows;
}

/** A /predictions body through the service: one result, or an array of one per part. */
export const predict = (mv: ModelVersion, parts: InputPart[], o: CallOptions = {}) => torchserve(mv, parts, o, false);
/** An /explanations body through the service. */
export const explain = (mv: ModelVersion, parts: InputPart[], o: CallOptions = {}) => torchserve(mv, parts, o, true);

async function kserveV1(mv: ModelVersion, body: unknown, o: CallOptions, explain: boolean): Promise<unknown[]> {
  const service = serviceFor(mv, o);
  const result = await service.infer({ model: mv.spec.name, protocol: 'test' }, kserveV1Request(body, o.query ?? {}, explain, service));
  return result.kind === 'rows' ? result.rows.map(plainRow) : [];
}

export const kserveV1Predict = async (mv: ModelVersion, body: unknown, o: CallOptions = {}) => ({ predictions: await kserveV1(mv, body, o, false) });
export const kserveV1Explain = async (mv: ModelVersion, body: unknown, o: CallOptions = {}) => ({ explanations: await kserveV1(mv, body, o, true) });

const crcTable = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf: Buffer): number {
  let c = 0xffffffff;
  for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function chunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

/** A PNG whose header claims width×height RGB pixels, with a tiny IDAT (decoding would need ~1.2 GB for 20000²). */
export function pngHeaderOnly(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(Buffer.alloc(16))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** Deterministic pseudo-random bytes (xorshift), not starting with any image signature. */
export function randomBytes(n: number, seed = 12345): Buffer {
  const out = Buffer.alloc(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

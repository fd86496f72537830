// Test helpers for the handlers: a ModelVersion over a real loadModel() with a pass-through batcher (unit tests of
// this layer; the engine's DynamicBatcher has its own tests), fixture paths, crafted images.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';
import type { HandlerConfig, ModelSpec, ModelVersion } from '../../src/engine/types.js';
import { loadModel } from '../../src/native.js';
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
    spec, model, calls, ready: true, loadedAtStartup: false, loadedAt: new Date(),
    settings: { batchSize: 1, maxBatchDelay: 0, minWorkers: 1, maxWorkers: 1, responseTimeout: 120, device: 'cpu', precision: 'fp32', jobQueueSize: 100 },
    batcher: {
      pending: 0,
      running: 0,
      infer: (args) => { calls.infer++; return model.forward(args); },
      explain: (args, ig) => { calls.explain++; return model.integratedGradients(args, ig); },
    },
  };
}

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

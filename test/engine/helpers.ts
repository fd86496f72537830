// Shared setup of the engine tests: specs for the fixture models of test/fixtures/engine and a
// registry with a silent logger. Real LibTorch throughout.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import type { ModelSettings, ModelSpec } from '../../src/engine/types.js';
import { createRegistry, type RegistryOptions } from '../../src/engine/registry.js';
import { noopMetrics, type ServerMetrics } from '../../src/metrics/types.js';
import type { Tensor } from '../../src/native.js';

export const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'engine');

export const DEFAULTS: ModelSettings = {
  batchSize: 1,
  maxBatchDelay: 100,
  minWorkers: 1,
  maxWorkers: 1,
  responseTimeout: 120,
  device: 'cpu',
  precision: 'fp32',
  jobQueueSize: 100,
};

export function specFor(file: string, name = path.basename(file, '.pt'), version = '1.0'): ModelSpec {
  const serializedFile = path.isAbsolute(file) ? file : path.join(FIXTURES, file);
  return {
    name,
    version,
    url: path.basename(serializedFile),
    dir: path.dirname(serializedFile),
    serializedFile,
    handler: { name: 'tensor', image_size: null, crop_size: null, channels: 3, mean: [], std: [], topk: 5, output: 'logits' },
    settings: {},
  };
}

export function makeRegistry(options: Partial<RegistryOptions> = {}, metrics: ServerMetrics = noopMetrics) {
  return createRegistry({ metrics, logger: pino({ level: 'silent' }), defaults: DEFAULTS, cores: 2, ...options });
}

export function f32(rows: number[][]): Tensor {
  return { data: Float32Array.from(rows.flat()), shape: [rows.length, rows[0].length], dtype: 'float32' };
}

/** Plain numbers of a tensor output, for deepEqual/tolerance checks. */
export function values(t: unknown): number[] {
  return Array.from((t as Tensor).data as Float32Array);
}

export function assertClose(actual: number[], expected: number[], tol = 1e-5): string | undefined {
  if (actual.length !== expected.length) return `length ${actual.length} != ${expected.length}`;
  for (let i = 0; i < actual.length; i++) {
    if (Math.abs(actual[i] - expected[i]) > tol * (1 + Math.abs(expected[i]))) return `index ${i}: ${actual[i]} != ${expected[i]}`;
  }
  return undefined;
}

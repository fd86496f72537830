// Shared by the test/native suites: fixture paths, the Python reference numbers, and comparisons.
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { Tensor } from '../../src/native.js';

export const fixtures = resolve(dirname(fileURLToPath(import.meta.url)), '../fixtures/native');
export const fixture = (name: string): string => resolve(fixtures, name);

export interface RefTensor {
  shape: number[];
  dtype: string;
  data: number[];
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const reference: any = JSON.parse(readFileSync(fixture('reference.json'), 'utf8'));

export function f32(ref: RefTensor): Tensor {
  return { data: Float32Array.from(ref.data), shape: [...ref.shape], dtype: 'float32' };
}

/** Largest |a - b| / max(|b|, floor) over all elements; throws on a length mismatch. */
export function maxRelError(actual: ArrayLike<number>, expected: ArrayLike<number>, floor = 1e-3): number {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} != ${expected.length}`);
  let worst = 0;
  for (let i = 0; i < actual.length; i++) {
    const err = Math.abs(actual[i] - expected[i]) / Math.max(Math.abs(expected[i]), floor);
    worst = Math.max(worst, err);
  }
  return worst;
}

export function maxAbsError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} != ${expected.length}`);
  let worst = 0;
  for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]));
  return worst;
}

export function isTensor(value: unknown): value is Tensor {
  return typeof value === 'object' && value !== null && 'data' in value && 'shape' in value && 'dtype' in value;
}

export function asTensor(value: unknown): Tensor {
  if (!isTensor(value)) throw new Error(`expected a tensor, got ${JSON.stringify(value)}`);
  return value;
}

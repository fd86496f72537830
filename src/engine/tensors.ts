// Tensor plumbing of the batcher: validating one request's arguments, concatenating compatible
// requests along dim 0 into one contiguous buffer, and splitting an output tree back per request.
import { BadRequestError } from '../errors.js';
import type { OutputTree, Tensor, TypedArray } from '../native.js';

/** Number of elements of a shape (1 for a scalar). */
export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function isTensor(value: unknown): value is Tensor {
  return (
    typeof value === 'object' && value !== null && ArrayBuffer.isView((value as Tensor).data) &&
    Array.isArray((value as Tensor).shape) && typeof (value as Tensor).dtype === 'string'
  );
}

/**
 * Checks one request's forward arguments before they can join a batch (a malformed tensor must be a
 * 400 for its own request, never a failed batch). Throws BadRequestError.
 */
export function validateArgs(args: readonly Tensor[]): void {
  if (!Array.isArray(args)) throw new BadRequestError('Model input must be a list of tensors');
  args.forEach((t, i) => {
    if (!isTensor(t)) throw new BadRequestError(`Input ${i} is not a tensor (expected {data, shape, dtype})`);
    if (!t.shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new BadRequestError(`Input ${i} has an invalid shape [${t.shape.join(', ')}]: dimensions must be integers >= 0`);
    }
    const expected = elementCount(t.shape);
    if (t.data.length !== expected) {
      throw new BadRequestError(
        `Input ${i} has ${t.data.length} elements but shape [${t.shape.join(', ')}] needs ${expected}`,
      );
    }
  });
}

/**
 * The rows (dim 0) one request contributes to a batch, or -1 when it cannot be batched: no
 * arguments, a scalar argument, zero rows, or arguments that disagree on dim 0.
 */
export function batchRows(args: readonly Tensor[]): number {
  if (args.length === 0) return -1;
  const rows = args[0].shape[0];
  if (rows === undefined || rows < 1) return -1;
  for (const t of args) if (t.shape.length === 0 || t.shape[0] !== rows) return -1;
  return rows;
}

/** Requests with equal keys can be concatenated: same arity, and per argument same dtype and shape but dim 0. */
export function compatibilityKey(args: readonly Tensor[]): string {
  return args.map((t) => `${t.dtype}[${t.shape.slice(1).join(',')}]`).join('|');
}

/** Concatenates tensors of one dtype and equal trailing shape along dim 0 into one new contiguous buffer. */
export function concatRows(parts: readonly Tensor[]): Tensor {
  const first = parts[0];
  let total = 0;
  let rows = 0;
  for (const p of parts) {
    total += p.data.length;
    rows += p.shape[0];
  }
  const Ctor = first.data.constructor as new (length: number) => TypedArray;
  const data = new Ctor(total);
  let offset = 0;
  for (const p of parts) {
    // Same dtype → same typed-array kind, so set() is a straight memcpy.
    (data as Float32Array).set(p.data as Float32Array, offset);
    offset += p.data.length;
  }
  return { data, shape: [rows, ...first.shape.slice(1)], dtype: first.dtype };
}

/**
 * Splits a batched output tree into one tree per request: every tensor whose dim 0 equals the total
 * rows is sliced by each request's row count (views, no copy); tuples/lists and dicts are split
 * element-wise. Returns null when any leaf cannot be attributed to requests (a scalar, a string, a
 * tensor with another leading size): the caller then runs the requests one by one.
 */
export function splitRows(tree: OutputTree, rows: readonly number[]): OutputTree[] | null {
  const total = rows.reduce((a, b) => a + b, 0);
  const walk = (node: OutputTree): OutputTree[] | null => {
    if (isTensor(node)) {
      if (node.shape.length === 0 || node.shape[0] !== total) return null;
      const rowElems = elementCount(node.shape.slice(1));
      const out: OutputTree[] = [];
      let offset = 0;
      for (const r of rows) {
        out.push({
          data: node.data.subarray(offset * rowElems, (offset + r) * rowElems) as TypedArray,
          shape: [r, ...node.shape.slice(1)],
          dtype: node.dtype,
        });
        offset += r;
      }
      return out;
    }
    if (Array.isArray(node)) {
      const children: OutputTree[][] = [];
      for (const child of node) {
        const parts = walk(child);
        if (parts === null) return null;
        children.push(parts);
      }
      return rows.map((_, i) => children.map((c) => c[i]));
    }
    if (typeof node === 'object' && node !== null) {
      const keys = Object.keys(node);
      const children: OutputTree[][] = [];
      for (const k of keys) {
        const parts = walk(node[k]);
        if (parts === null) return null;
        children.push(parts);
      }
      return rows.map((_, i) => Object.fromEntries(keys.map((k, j) => [k, children[j][i]])));
    }
    return null;
  };
  return walk(tree);
}

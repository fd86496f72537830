// Concatenation and splitting of the batcher, and validation of one request's tensors (no LibTorch:
// these are the pure functions the batching tests exercise end to end).
import test from 'ava';
import { BadRequestError } from '../../src/errors.js';
import type { Tensor } from '../../src/native.js';
import { batchRows, compatibilityKey, concatRows, firstNonFinite, splitRows, validateArgs } from '../../src/engine/tensors.js';
import { toBfloat16, toHalf } from '../../src/float16.js';

const t = (data: number[], shape: number[]): Tensor => ({ data: Float32Array.from(data), shape, dtype: 'float32' });

test('concatRows makes one contiguous buffer along dim 0', (tt) => {
  const out = concatRows([t([1, 2, 3], [1, 3]), t([4, 5, 6, 7, 8, 9], [2, 3])]);
  tt.deepEqual(out.shape, [3, 3]);
  tt.is(out.dtype, 'float32');
  tt.true(out.data instanceof Float32Array);
  tt.deepEqual(Array.from(out.data as Float32Array), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
});

test('concatRows keeps int64 as BigInt64Array', (tt) => {
  const a: Tensor = { data: BigInt64Array.from([1n, 2n]), shape: [1, 2], dtype: 'int64' };
  const b: Tensor = { data: BigInt64Array.from([3n, 4n]), shape: [1, 2], dtype: 'int64' };
  const out = concatRows([a, b]);
  tt.true(out.data instanceof BigInt64Array);
  tt.deepEqual(Array.from(out.data as BigInt64Array), [1n, 2n, 3n, 4n]);
});

test('splitRows slices tensors, tuples and dicts per request', (tt) => {
  const tree = { logits: t([1, 2, 3, 4, 5, 6], [3, 2]), extra: [t([7, 8, 9], [3])] };
  const parts = splitRows(tree, [1, 2]);
  tt.truthy(parts);
  const [a, b] = parts as { logits: Tensor; extra: Tensor[] }[];
  tt.deepEqual(a.logits.shape, [1, 2]);
  tt.deepEqual(Array.from(a.logits.data as Float32Array), [1, 2]);
  tt.deepEqual(b.logits.shape, [2, 2]);
  tt.deepEqual(Array.from(b.logits.data as Float32Array), [3, 4, 5, 6]);
  tt.deepEqual(Array.from(a.extra[0].data as Float32Array), [7]);
  tt.deepEqual(Array.from(b.extra[0].data as Float32Array), [8, 9]);
});

test('splitRows refuses outputs it cannot attribute to requests', (tt) => {
  tt.is(splitRows(t([1, 2], [2]), [1, 2]), null, 'dim 0 differs from the total rows');
  tt.is(splitRows([t([1, 2, 3], [3]), 4], [1, 2]), null, 'a scalar leaf');
  tt.is(splitRows({ s: 'x' }, [1, 1]), null, 'a string leaf');
  tt.is(splitRows(t([5], []), [1]), null, 'a 0-d tensor');
});

test('batchRows and compatibilityKey decide what can share a batch', (tt) => {
  tt.is(batchRows([t([1, 2], [2, 1])]), 2);
  tt.is(batchRows([t([1, 2], [2, 1]), t([1], [1, 1])]), -1, 'arguments disagree on dim 0');
  tt.is(batchRows([]), -1);
  tt.is(batchRows([t([], [0, 3])]), -1, 'zero rows');
  tt.is(compatibilityKey([t([1, 2, 3], [1, 3])]), compatibilityKey([t([1, 2, 3, 4, 5, 6], [2, 3])]));
  tt.not(compatibilityKey([t([1, 2, 3], [1, 3])]), compatibilityKey([t([1, 2, 3], [3, 1])]));
  tt.not(
    compatibilityKey([t([1], [1, 1])]),
    compatibilityKey([{ data: Float64Array.from([1]), shape: [1, 1], dtype: 'float64' }]),
  );
});

const badArgs: [string, unknown, string][] = [
  ['not a list', 'x', 'Model input must be a list of tensors'],
  ['not a tensor', [{ shape: [1] }], 'Input 0 is not a tensor (expected {data, shape, dtype})'],
  ['negative dim', [t([1], [-1])], 'Input 0 has an invalid shape [-1]: dimensions must be integers >= 0'],
  ['fractional dim', [t([1], [1.5])], 'Input 0 has an invalid shape [1.5]: dimensions must be integers >= 0'],
  ['size mismatch', [t([1, 2, 3], [1, 3]), t([1, 2, 3], [2, 2])], 'Input 1 has 3 elements but shape [2, 2] needs 4'],
];
for (const [title, args, message] of badArgs) {
  test(`validateArgs rejects ${title}`, (tt) => {
    const err = tt.throws(() => validateArgs(args as Tensor[]), { instanceOf: BadRequestError });
    tt.is(err?.message, message);
    tt.is(err?.status, 400);
  });
}

test('firstNonFinite finds the first NaN or ±Inf of every float dtype, at any position, from the raw bits', (tt) => {
  const n = 37;
  const make: Record<string, (v: number[]) => Tensor> = {
    float32: (v) => ({ data: Float32Array.from(v), shape: [v.length], dtype: 'float32' }),
    float64: (v) => ({ data: Float64Array.from(v), shape: [v.length], dtype: 'float64' }),
    float16: (v) => ({ data: Uint16Array.from(v, toHalf), shape: [v.length], dtype: 'float16' }),
    bfloat16: (v) => ({ data: Uint16Array.from(v, toBfloat16), shape: [v.length], dtype: 'bfloat16' }),
  };
  for (const [dtype, of] of Object.entries(make)) {
    const finite = Array.from({ length: n }, (_, i) => (i % 3 === 0 ? -i : i * 0.5));
    tt.is(firstNonFinite(of(finite)), -1, `${dtype}: all finite`);
    for (const bad of [NaN, Infinity, -Infinity]) {
      for (const at of [0, 1, 18, n - 1]) {
        const v = finite.slice();
        v[at] = bad;
        if (at + 5 < n) v[at + 5] = NaN; // a later one never hides the first
        tt.is(firstNonFinite(of(v)), at, `${dtype}: ${bad} at ${at}`);
      }
    }
  }
  // Finite extremes whose exponent bits are nearly all set, denormals and −0 are finite.
  tt.is(firstNonFinite(make.float32([3.4028234663852886e38, -3.4028234663852886e38, 1e-45, -0])), -1);
  tt.is(firstNonFinite(make.float64([Number.MAX_VALUE, -Number.MAX_VALUE, Number.MIN_VALUE, -0])), -1);
  tt.is(firstNonFinite(make.float16([65504, -65504, 6e-8, -0])), -1);
  tt.is(firstNonFinite(make.bfloat16([3.3895313892515355e38, -3.3895313892515355e38, 1e-40, -0])), -1);
  // A float64 view at an offset into a larger buffer: the index is in elements of the view.
  const backing = new Float64Array([NaN, 1, 2, Infinity]);
  tt.is(firstNonFinite({ data: backing.subarray(1), shape: [3], dtype: 'float64' }), 2);
  // Integer dtypes have no non-finite values.
  tt.is(firstNonFinite({ data: Int32Array.from([0x7f800000, -1]), shape: [2], dtype: 'int32' }), -1);
});

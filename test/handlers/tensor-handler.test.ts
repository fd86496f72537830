// The tensor handler's input forms and refusals, and outputToJson over real TorchScript outputs.
import test from 'ava';
import { BadRequestError } from '../../src/errors.js';
import { outputToJson } from '../../src/handlers/index.js';
import { bytesToTensor, jsonToTensor } from '../../src/handlers/tensors.js';
import { fromHalf, toHalf } from '../../src/float16.js';
import { TENSOR, fx, kserveV1Predict, modelVersion, predict } from './helpers.js';

test('JSON nested arrays → float32 with the nested shape; booleans → bool', (t) => {
  const a = jsonToTensor([[1, 2, 3], [4, 5, 6]]);
  t.deepEqual(a.shape, [2, 3]);
  t.is(a.dtype, 'float32');
  t.deepEqual(Array.from(a.data as Float32Array), [1, 2, 3, 4, 5, 6]);
  const b = jsonToTensor([true, false]);
  t.is(b.dtype, 'bool');
  t.deepEqual(Array.from(b.data as Uint8Array), [1, 0]);
  t.deepEqual(jsonToTensor(2.5).shape, []);
});

test('{data, shape, dtype} with flat data, every dtype', (t) => {
  const i64 = jsonToTensor({ data: [1, 2, 3, 4], shape: [2, 2], dtype: 'int64' });
  t.deepEqual(i64.shape, [2, 2]);
  t.true(i64.data instanceof BigInt64Array);
  t.deepEqual(Array.from(i64.data as BigInt64Array), [1n, 2n, 3n, 4n]);
  const h = jsonToTensor({ data: [0.5, -2, 65504], dtype: 'float16' });
  t.deepEqual(Array.from(h.data as Uint16Array, fromHalf), [0.5, -2, 65504]);
  t.is(toHalf(1), 0x3c00);
  t.is(jsonToTensor({ data: [1], dtype: 'FP64' }).dtype, 'float64');
  t.is(jsonToTensor({ data: [255], dtype: 'uint8' }).data[0], 255);
});

test('raw little-endian bytes with ?shape=&dtype=', (t) => {
  const src = new Float32Array([1.5, -2, 3, 4, 5, 6]);
  const buf = Buffer.from(src.buffer);
  const tensor = bytesToTensor(buf.subarray(0), '2,3', 'float32');
  t.deepEqual(tensor.shape, [2, 3]);
  t.deepEqual(Array.from(tensor.data as Float32Array), Array.from(src));
  const i32 = bytesToTensor(Buffer.from(new Int32Array([7, 8]).buffer), '[1, 2]', 'int32');
  t.deepEqual(Array.from(i32.data as Int32Array), [7, 8]);
});

test('raw bytes: an aligned body is viewed in place, an unaligned one is copied into an aligned buffer', (t) => {
  const aligned = Buffer.from(new Float64Array([0.25, -8]).buffer);
  const view = bytesToTensor(aligned, '2', 'float64');
  t.is(view.data.buffer, aligned.buffer);
  t.deepEqual(Array.from(view.data as Float64Array), [0.25, -8]);
  // The same 16 bytes at offset 3 of a larger allocation: not a multiple of 8, so copied (a Float64Array there throws).
  const backing = Buffer.alloc(19);
  aligned.copy(backing, 3);
  const odd = bytesToTensor(backing.subarray(3), '2', 'float64');
  t.not(odd.data.buffer, backing.buffer);
  t.is(odd.data.byteOffset, 0);
  t.deepEqual(Array.from(odd.data as Float64Array), [0.25, -8]);
});

const badTensors: [string, () => unknown, string][] = [
  ['ragged nested array', () => jsonToTensor([[1, 2], [3]]), 'Ragged nested array at [1]: expected a list of 2, found a list of 1'],
  ['shape/data mismatch', () => jsonToTensor({ data: [1, 2, 3], shape: [2, 2] }), 'Tensor data has 3 elements but shape [2, 2] needs 4'],
  ['unknown dtype', () => jsonToTensor({ data: [1], dtype: 'complex64' }),
    'Unknown dtype "complex64": expected one of float32, float16, bfloat16, float64, int64, int32, int16, int8, uint8, bool'],
  ['non-integer for int64', () => jsonToTensor({ data: [1, 2.5], dtype: 'int64' }), 'Element 1 (2.5) is not a valid int64 value'],
  ['string element', () => jsonToTensor([1, 'a']), 'Element 1 ("a") is not a valid float32 value'],
  ['out of range uint8', () => jsonToTensor({ data: [256], dtype: 'uint8' }), 'Element 0 (256) is not a valid uint8 value'],
  ['not a tensor', () => jsonToTensor({ foo: 1 }),
    'Expected a tensor as JSON: nested arrays of numbers, or {"data": [...], "shape": [...], "dtype": "float32"}'],
  ['raw bytes without shape', () => bytesToTensor(Buffer.alloc(8), undefined, undefined),
    'Raw tensor bytes need ?shape=...&dtype=... (e.g. ?shape=1,3,224,224&dtype=float32); got 8 bytes and no shape'],
  ['raw bytes of the wrong length', () => bytesToTensor(Buffer.alloc(10), '1,3', 'float32'), 'Raw tensor has 10 bytes but shape [1, 3] of float32 needs 12'],
  ['bad shape', () => bytesToTensor(Buffer.alloc(4), '1,x', 'float32'), 'Invalid shape "1,x": expected non-negative integers, e.g. 1,3,224,224'],
];
for (const [what, call, message] of badTensors) {
  test(`refused: ${what}`, (t) => {
    t.throws(call, { instanceOf: BadRequestError, message });
  });
}

test('two-input model: parts matched by name (either order), in order otherwise, or one JSON object', async (t) => {
  const mv = await modelVersion(fx('add2.pt'), TENSOR);
  t.teardown(() => mv.model.dispose());
  const json = (name: string, value: unknown) => ({ name, contentType: 'application/json', data: Buffer.from(JSON.stringify(value)) });
  t.deepEqual(await predict(mv, [json('b', [[10, 20]]), json('a', [[1, 2]])], { query: {} }), [[11, 22]]);
  t.deepEqual(await predict(mv, [json('x', [1]), json('y', [2])], { query: {} }), [3]);
  t.deepEqual(await predict(mv, [{ name: 'body', json: { a: [1, 1], b: [2, 3] } }], { query: {} }), [3, 4]);
  // Raw bytes per part with the query's shape/dtype.
  const raw = (name: string, v: number[]) => ({ name, data: Buffer.from(new Float32Array(v).buffer) });
  t.deepEqual(await predict(mv, [raw('a', [1, 2]), raw('b', [0.5, 0.5])], { query: { shape: '2', dtype: 'float32' } }), [1.5, 2.5]);
  await t.throwsAsync(predict(mv, [json('a', [1])], { query: {} }), {
    instanceOf: BadRequestError,
    message: 'Model add2 takes 2 inputs (a, b) but the request has 1 part(s): send one part per input, named a, b, or a JSON object with those keys',
  });
});

test('tuple and dict outputs become arrays and objects; KServe v1 instances gain and lose a batch dimension', async (t) => {
  const mv = await modelVersion(fx('multi_out.pt'), TENSOR);
  t.teardown(() => mv.model.dispose());
  const out = await mv.model.forward([jsonToTensor([[1, 2, 3]])]);
  t.deepEqual(outputToJson(out), [[[2, 4, 6]], { sum: [6], max: [3] }]);
  t.deepEqual(await predict(mv, [{ name: 'body', json: { data: [[1, -1]], dtype: 'float32' } }], { query: {} }), [[[2, -2]], { sum: [0], max: [1] }]);
  t.deepEqual(await kserveV1Predict(mv, { instances: [[1, 2], [3, 5]] }, { query: {} }), {
    predictions: [[[2, 4], { sum: 3, max: 2 }], [[6, 10], { sum: 8, max: 5 }]],
  });
});

// forward(): results equal the Python reference; every dtype crosses intact; output trees keep their shape.
import test from 'ava';

import { buildInfo, loadModel, type Tensor } from '../../src/native.js';
import { asTensor, f32, fixture, maxRelError, reference } from './helpers.js';

test('buildInfo reports the LibTorch it was built against', (t) => {
  const info = buildInfo();
  t.regex(info.torchVersion, /^\d+\.\d+/);
  t.is(typeof info.cudaCompiled, 'boolean');
  t.is(typeof info.cudaAvailable, 'boolean');
  t.true(Number.isInteger(info.deviceCount));
  if (!info.cudaAvailable) t.is(info.deviceCount, 0);
});

test('linear model: introspection and output within 1e-5 of the Python reference', async (t) => {
  const m = await loadModel(fixture('linear.pt'), { device: 'cpu' });
  t.deepEqual(m.inputs, [{ name: 'x' }]);
  t.is(m.parameterCount, 10 * 3 + 3);
  t.is(m.parameterBytes, (10 * 3 + 3) * 4);
  t.is(m.device, 'cpu');
  t.is(m.workers, 1);
  t.is(m.path, fixture('linear.pt'));
  const out = asTensor(await m.forward([f32(reference.linear.input)]));
  t.is(out.dtype, 'float32');
  t.deepEqual(out.shape, [4, 3]);
  t.true(out.data instanceof Float32Array);
  t.true(maxRelError(out.data as Float32Array, reference.linear.output.data) < 1e-5);
  t.is(m.forwardCalls, 1);
  await m.dispose();
});

test('MNIST-shaped CNN: [2,1,28,28] -> [2,10] within 1e-5 relative', async (t) => {
  const m = await loadModel(fixture('cnn.pt'));
  const out = asTensor(await m.forward([f32(reference.cnn.input)]));
  t.deepEqual(out.shape, [2, 10]);
  t.true(maxRelError(out.data as Float32Array, reference.cnn.output.data) < 1e-5);
  await m.dispose();
});

test('two-input model takes both inputs by schema order', async (t) => {
  const m = await loadModel(fixture('two_input.pt'));
  t.deepEqual(m.inputs, [{ name: 'left' }, { name: 'right' }]);
  const out = asTensor(await m.forward([f32(reference.two_input.left), f32(reference.two_input.right)]));
  t.deepEqual(out.shape, [3, 2]);
  t.true(maxRelError(out.data as Float32Array, reference.two_input.output.data) < 1e-5);
  await m.dispose();
});

test('tuple and dict outputs come back as array and object', async (t) => {
  const x: Tensor = { data: Float32Array.from([1, 2, 3, 4, 5, 6]), shape: [2, 3], dtype: 'float32' };
  const tuple = await loadModel(fixture('tuple_out.pt'));
  const pair = (await tuple.forward([x])) as Tensor[];
  t.true(Array.isArray(pair));
  t.is(pair.length, 2);
  t.deepEqual(Array.from(pair[0].data as Float32Array), [2, 4, 6, 8, 10, 12]);
  t.deepEqual(pair[1].shape, [2]);
  t.deepEqual(Array.from(pair[1].data as Float32Array), [6, 15]);
  const dict = await loadModel(fixture('dict_out.pt'));
  const named = (await dict.forward([x])) as Record<string, Tensor>;
  t.deepEqual(Object.keys(named).sort(), ['double', 'negated']);
  t.deepEqual(Array.from(named.negated.data as Float32Array), [-1, -2, -3, -4, -5, -6]);
  await tuple.dispose();
  await dict.dispose();
});

test('nested trees with Python scalars, strings and None', async (t) => {
  const m = await loadModel(fixture('tree_out.pt'));
  const out = await m.forward([{ data: Float32Array.from([1, 2, 3, 4]), shape: [2, 2], dtype: 'float32' }]);
  t.true(Array.isArray(out));
  const [dict, f, i, b, s, none] = out as unknown[];
  const parts = (dict as { parts: Tensor[] }).parts;
  t.deepEqual(Array.from(parts[0].data as Float32Array), [2, 3, 4, 5]);
  // x.t() is a non-contiguous view: it must arrive as a dense row-major copy.
  t.deepEqual(Array.from(parts[1].data as Float32Array), [1, 3, 2, 4]);
  t.is(f, 2.5);
  t.is(i, 7);
  t.is(b, true);
  t.is(s, 'ok');
  t.is(none, null);
  await m.dispose();
});

test('int64 input as BigInt64Array; int64 output as BigInt64Array', async (t) => {
  const m = await loadModel(fixture('int64_in.pt'));
  const ref = reference.int64_in;
  const ids = BigInt64Array.from((ref.input.data as number[]).map((v) => BigInt(v)));
  const [mean, doubled] = (await m.forward([{ data: ids, shape: ref.input.shape, dtype: 'int64' }])) as Tensor[];
  t.true(maxRelError(mean.data as Float32Array, ref.mean.data) < 1e-5);
  t.is(doubled.dtype, 'int64');
  t.true(doubled.data instanceof BigInt64Array);
  t.deepEqual(Array.from(doubled.data as BigInt64Array), (ref.doubled.data as number[]).map((v) => BigInt(v)));
  await m.dispose();
});

test('every dtype round-trips bit for bit through an identity model', async (t) => {
  const m = await loadModel(fixture('echo.pt'));
  const cases: Tensor[] = [
    { dtype: 'float32', shape: [3], data: Float32Array.from([1.5, -2, 3e-8]) },
    // 1.0, -2.0, 65504 (max) as IEEE half bit patterns
    { dtype: 'float16', shape: [3], data: Uint16Array.from([0x3c00, 0xc000, 0x7bff]) },
    // 1.0, -2.0, 3.140625 as bfloat16 bit patterns
    { dtype: 'bfloat16', shape: [3], data: Uint16Array.from([0x3f80, 0xc000, 0x4049]) },
    { dtype: 'float64', shape: [2], data: Float64Array.from([Math.PI, -1e300]) },
    { dtype: 'int64', shape: [2], data: BigInt64Array.from([2n ** 62n, -5n]) },
    { dtype: 'int32', shape: [2], data: Int32Array.from([2 ** 31 - 1, -7]) },
    { dtype: 'int16', shape: [2], data: Int16Array.from([32767, -3]) },
    { dtype: 'int8', shape: [2], data: Int8Array.from([127, -128]) },
    { dtype: 'uint8', shape: [2], data: Uint8Array.from([255, 0]) },
    { dtype: 'bool', shape: [3], data: Uint8Array.from([1, 0, 1]) },
  ];
  for (const input of cases) {
    const out = asTensor(await m.forward([input]));
    t.is(out.dtype, input.dtype, input.dtype);
    t.deepEqual(out.shape, input.shape, input.dtype);
    t.is(out.data.constructor, input.data.constructor, input.dtype);
    t.deepEqual(Array.from(out.data as ArrayLike<number>), Array.from(input.data as ArrayLike<number>), input.dtype);
    // The output owns its memory: it never aliases the caller's input buffer.
    t.not(out.data.buffer, input.data.buffer, input.dtype);
  }
  await m.dispose();
});

test('outputs on both sides of the copy threshold (16 KB: copied; larger: the tensor\'s own memory) round-trip', async (t) => {
  const m = await loadModel(fixture('echo.pt'));
  for (const n of [4095, 4096, 4097, 100_000]) {
    const input: Tensor = { dtype: 'float32', shape: [n], data: Float32Array.from({ length: n }, (_, i) => i * 0.5 - 7) };
    const out = asTensor(await m.forward([input]));
    t.deepEqual(out.shape, [n]);
    t.is(out.data.length, n);
    t.deepEqual(Array.from(out.data as Float32Array), Array.from(input.data as Float32Array), `${n} values`);
    t.is((out.data as Float32Array).byteOffset, 0);
  }
  await m.dispose();
});

test('inputs may be views into a larger buffer (byteOffset respected)', async (t) => {
  const m = await loadModel(fixture('echo.pt'));
  const backing = Float32Array.from([9, 9, 1, 2, 3, 9]);
  const view = new Float32Array(backing.buffer, 8, 3);
  const out = asTensor(await m.forward([{ data: view, shape: [3], dtype: 'float32' }]));
  t.deepEqual(Array.from(out.data as Float32Array), [1, 2, 3]);
  await m.dispose();
});

test('zero-element tensors work', async (t) => {
  const m = await loadModel(fixture('echo.pt'));
  const out = asTensor(await m.forward([{ data: new Float32Array(0), shape: [0, 4], dtype: 'float32' }]));
  t.deepEqual(out.shape, [0, 4]);
  t.is(out.data.length, 0);
  await m.dispose();
});

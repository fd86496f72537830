// integratedGradients(): exact on a linear model, equal to the Python reference on a CNN, and the
// same whether the steps run in one pass or in chunks.
import test from 'ava';

import { loadModel, type Tensor } from '../../src/native.js';
import { f32, fixture, maxAbsError, maxRelError, reference } from './helpers.js';

test('linear model: attributions equal (x - baseline) * w_target within 1e-5', async (t) => {
  const m = await loadModel(fixture('linear.pt'));
  const x = f32(reference.linear.input);
  const target = [0, 1, 2, 0];
  const w: number[] = reference.linear.weight.data; // [3, 10] row-major
  const r = await m.integratedGradients([x], { target });
  t.deepEqual(r.attributions.shape, [4, 10]);
  t.is(r.attributions.dtype, 'float32');
  const expected: number[] = [];
  for (let i = 0; i < 4; i++) {
    for (let j = 0; j < 10; j++) expected.push((x.data as Float32Array)[i * 10 + j] * w[target[i] * 10 + j]);
  }
  t.true(maxRelError(r.attributions.data as Float32Array, expected) < 1e-5);
  t.is(r.delta.length, 4);
  for (const d of r.delta) t.true(Math.abs(d) < 1e-5, `completeness delta ${d}`);
  t.true(maxAbsError(r.attributions.data as Float32Array, reference.linear.ig.attributions.data) < 1e-5);
  await m.dispose();
});

test('linear model with a given baseline: (x - b) * w_target', async (t) => {
  const m = await loadModel(fixture('linear.pt'));
  const x = f32(reference.linear.input);
  const baseline: Tensor = { data: new Float32Array(10).fill(0.25), shape: [10], dtype: 'float32' };
  const w: number[] = reference.linear.weight.data;
  const r = await m.integratedGradients([x], { target: [2, 2, 2, 2], baseline, steps: 4 });
  const expected = Array.from(x.data as Float32Array, (v, k) => (v - 0.25) * w[2 * 10 + (k % 10)]);
  t.true(maxRelError(r.attributions.data as Float32Array, expected) < 1e-5);
  await m.dispose();
});

test('CNN: attributions equal the Python Gauss-Legendre reference within 1e-4; delta reported', async (t) => {
  const m = await loadModel(fixture('cnn.pt'));
  const ref = reference.cnn.ig;
  const r = await m.integratedGradients([f32(reference.cnn.input)], { target: ref.target, steps: ref.steps });
  t.deepEqual(r.attributions.shape, [2, 1, 28, 28]);
  t.true(maxAbsError(r.attributions.data as Float32Array, ref.attributions.data) < 1e-4);
  t.is(r.delta.length, 2);
  for (let i = 0; i < 2; i++) t.true(Math.abs(r.delta[i] - ref.delta[i]) < 1e-4, `delta ${r.delta[i]} vs ${ref.delta[i]}`);
  await m.dispose();
});

test('CNN with a constant baseline matches the reference', async (t) => {
  const m = await loadModel(fixture('cnn.pt'));
  const ref = reference.cnn.ig_baseline;
  const r = await m.integratedGradients([f32(reference.cnn.input)], {
    target: ref.target,
    steps: ref.steps,
    baseline: f32(ref.baseline),
  });
  t.true(maxAbsError(r.attributions.data as Float32Array, ref.attributions.data) < 1e-4);
  for (let i = 0; i < 2; i++) t.true(Math.abs(r.delta[i] - ref.delta[i]) < 1e-4);
  await m.dispose();
});

test('chunked and unchunked integration agree', async (t) => {
  const m = await loadModel(fixture('cnn.pt'));
  const x = f32(reference.cnn.input);
  const whole = await m.integratedGradients([x], { target: [3, 7], steps: 15 });
  for (const chunk of [1, 4, 15, 100]) {
    const parts = await m.integratedGradients([x], { target: [3, 7], steps: 15, chunk });
    t.true(maxAbsError(parts.attributions.data as Float32Array, whole.attributions.data as Float32Array) < 1e-6, `chunk ${chunk}`);
    t.true(maxAbsError(parts.delta, whole.delta) < 1e-6, `chunk ${chunk}`);
  }
  await m.dispose();
});

test('riemann_trapezoid is exact on a linear model too', async (t) => {
  const m = await loadModel(fixture('linear.pt'));
  const x = f32(reference.linear.input);
  const r = await m.integratedGradients([x], { target: [1, 1, 1, 1], steps: 5, method: 'riemann_trapezoid' });
  for (const d of r.delta) t.true(Math.abs(d) < 1e-5);
  await m.dispose();
});

test('more steps shrink the CNN completeness delta (Gauss-Legendre converges)', async (t) => {
  const m = await loadModel(fixture('cnn.pt'));
  const x = f32(reference.cnn.input);
  const coarse = await m.integratedGradients([x], { target: [3, 7], steps: 2 });
  const fine = await m.integratedGradients([x], { target: [3, 7], steps: 50 });
  const size = (d: number[]): number => d.reduce((s, v) => s + Math.abs(v), 0);
  t.true(size(fine.delta) <= size(coarse.delta));
  await m.dispose();
});

test('two-input model: attributions for the first input, the second held fixed per example', async (t) => {
  const m = await loadModel(fixture('two_input.pt'));
  const left = f32(reference.two_input.left);
  const right = f32(reference.two_input.right);
  const r = await m.integratedGradients([left, right], { target: [0, 1, 0], steps: 3, chunk: 2 });
  t.deepEqual(r.attributions.shape, [3, 4]);
  // forward is linear in `left`, so completeness holds exactly: sum(attr) = F(left, right) - F(0, right).
  for (const d of r.delta) t.true(Math.abs(d) < 1e-5, `delta ${d}`);
  const zeroRight = await m.integratedGradients([left, { ...right, data: new Float32Array(12) }], { target: [0, 1, 0], steps: 3 });
  // The right input only shifts the output: attributions for `left` do not depend on it.
  t.true(maxAbsError(zeroRight.attributions.data as Float32Array, r.attributions.data as Float32Array) < 1e-6);
});

test('CNN without target: same as target = argmax of a forward, per example', async (t) => {
  const m = await loadModel(fixture('cnn.pt'));
  const x = f32(reference.cnn.input);
  const out = (await m.forward([x])) as Tensor;
  const scores = out.data as Float32Array;
  const k = scores.length / 2;
  const argmax = [0, 1].map((r) => {
    let best = 0;
    for (let j = 1; j < k; j++) if (scores[r * k + j] > scores[r * k + best]) best = j;
    return best;
  });
  const given = await m.integratedGradients([x], { target: argmax, steps: 8 });
  const picked = await m.integratedGradients([x], { steps: 8 });
  t.deepEqual(picked.attributions.shape, [2, 1, 28, 28]);
  t.true(maxAbsError(picked.attributions.data as Float32Array, given.attributions.data as Float32Array) < 1e-6);
  t.true(maxAbsError(picked.delta, given.delta) < 1e-9);
  // A wrong class must give different attributions, so the comparison above can fail.
  const other = await m.integratedGradients([x], { target: argmax.map((c) => (c + 1) % k), steps: 8 });
  t.true(maxAbsError(other.attributions.data as Float32Array, given.attributions.data as Float32Array) > 1e-4);
  await m.dispose();
});

test('explicit targets are still checked against the output width; null target is refused', async (t) => {
  const m = await loadModel(fixture('cnn.pt'));
  const x = f32(reference.cnn.input);
  const e = await t.throwsAsync(m.integratedGradients([x], { target: [0, 10] }), { instanceOf: RangeError });
  t.is((e as { code?: string }).code, 'E_ARGUMENT');
  t.is(e?.message, 'target[1] = 10 is out of range for 10 outputs');
  await t.throwsAsync(m.integratedGradients([x], { target: null as unknown as number[] }), {
    instanceOf: TypeError,
    message: 'options.target must be an array of class indices',
  });
  await m.dispose();
});

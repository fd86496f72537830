// The optimised forward module (LoadOptions.optimize, default true): a frozen + optimize_for_inference copy
// that serves only after its first output matched the original's; IG always runs the original.
import test from 'ava';
import { resolve } from 'node:path';

import { loadModel, type OutputTree, type Tensor } from '../../src/native.js';
import { asTensor, f32, fixture, isTensor, maxRelError, reference } from './helpers.js';

const models = resolve(fixture('.'), '../models');
const engine = resolve(fixture('.'), '../engine');

/** Seeded float32 values in [-2, 2). */
function seeded(shape: number[], seed = 7): Tensor {
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  let state = seed;
  for (let i = 0; i < data.length; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    data[i] = state / 2 ** 30 - 2;
  }
  return { data, shape, dtype: 'float32' };
}

const small = (): Tensor => ({ data: Float32Array.from([1, 2, 3, 4, 5, 6]), shape: [2, 3], dtype: 'float32' });

/** Every TorchScript fixture the tests use, with an input it accepts. */
const FIXTURES: [string, () => Tensor[]][] = [
  [fixture('linear.pt'), () => [f32(reference.linear.input)]],
  [fixture('cnn.pt'), () => [f32(reference.cnn.input)]],
  [fixture('two_input.pt'), () => [f32(reference.two_input.left), f32(reference.two_input.right)]],
  [fixture('tuple_out.pt'), () => [small()]],
  [fixture('dict_out.pt'), () => [small()]],
  [fixture('tree_out.pt'), () => [{ data: Float32Array.from([1, 2, 3, 4]), shape: [2, 2], dtype: 'float32' }]],
  [fixture('int64_in.pt'), () => [{ data: BigInt64Array.from((reference.int64_in.input.data as number[]).map(BigInt)), shape: reference.int64_in.input.shape, dtype: 'int64' }]],
  [fixture('echo.pt'), () => [small()]],
  [fixture('raises.pt'), () => [seeded([2, 4])]],
  [resolve(models, 'add2.pt'), () => [seeded([2, 3], 1), seeded([2, 3], 2)]],
  [resolve(models, 'multi_out.pt'), () => [seeded([2, 5])]],
  [resolve(models, 'mnist.pt'), () => [seeded([3, 1, 28, 28])]],
  [resolve(models, 'mnist_v2.pt'), () => [seeded([3, 1, 28, 28])]],
  [resolve(models, 'resnet18.pt'), () => [seeded([2, 3, 224, 224])]],
  [resolve(engine, 'rows.pt'), () => [seeded([3, 4])]],
  [resolve(engine, 'busy.pt'), () => [{ data: Float32Array.from([1, 2]), shape: [1, 2], dtype: 'float32' }]],
];

/** Walks two output trees; tensors must agree within `rtol` × max|expected| (exactly for integer dtypes). */
function compareTrees(t: import('ava').ExecutionContext, actual: OutputTree, expected: OutputTree, rtol: number, where: string): void {
  if (isTensor(expected)) {
    const a = asTensor(actual);
    t.deepEqual(a.shape, expected.shape, where);
    t.is(a.dtype, expected.dtype, where);
    if (expected.data instanceof BigInt64Array) {
      t.deepEqual(Array.from(a.data as BigInt64Array), Array.from(expected.data), where);
      return;
    }
    const e = expected.data as ArrayLike<number>;
    let scale = 0;
    let diff = 0;
    for (let i = 0; i < e.length; i++) {
      scale = Math.max(scale, Math.abs(e[i]));
      diff = Math.max(diff, Math.abs((a.data as ArrayLike<number>)[i] - e[i]));
    }
    t.true(diff <= rtol * scale, `${where}: max |difference| ${diff} > ${rtol} × ${scale}`);
  } else if (Array.isArray(expected)) {
    t.true(Array.isArray(actual), where);
    t.is((actual as OutputTree[]).length, expected.length, where);
    expected.forEach((e, i) => compareTrees(t, (actual as OutputTree[])[i], e, rtol, `${where}[${i}]`));
  } else if (expected !== null && typeof expected === 'object') {
    t.deepEqual(Object.keys(actual as object).sort(), Object.keys(expected).sort(), where);
    for (const key of Object.keys(expected)) compareTrees(t, (actual as Record<string, OutputTree>)[key], expected[key], rtol, `${where}.${key}`);
  } else {
    t.is(actual, expected, where);
  }
}

test('every fixture model: the optimised module serves after its first output matched the original within 1e-3', async (t) => {
  for (const [path, input] of FIXTURES) {
    const name = path.split('/').pop()!;
    const optimised = await loadModel(path);
    t.deepEqual(optimised.optimization, { serving: 'pending', reason: '' }, name);
    const original = await loadModel(path, { optimize: false });
    t.deepEqual(original.optimization, { serving: 'original', reason: 'optimize is off' }, name);
    const fast = await optimised.forward(input());
    t.deepEqual(optimised.optimization, { serving: 'optimized', reason: '' }, name);
    const slow = await original.forward(input());
    compareTrees(t, fast, slow, 1e-3, name);
    // Later calls (past the first, checked one) still agree.
    compareTrees(t, await optimised.forward(input()), slow, 1e-3, `${name} (second call)`);
    await optimised.dispose();
    await original.dispose();
  }
});

test('optimize: false serves the saved module: the Python reference within 1e-5, and not the optimised numbers', async (t) => {
  const saved = await loadModel(fixture('cnn.pt'), { optimize: false });
  const out = asTensor(await saved.forward([f32(reference.cnn.input)]));
  t.true(maxRelError(out.data as Float32Array, reference.cnn.output.data) < 1e-5);
  t.is(saved.optimization.serving, 'original');
  await saved.dispose();
  // ResNet-18's batch norms are folded into its convolutions when frozen, which changes the rounding: the two
  // modules give different bits, so which one answered is observable.
  const x = seeded([1, 3, 224, 224]);
  const plain = await loadModel(resolve(models, 'resnet18.pt'), { optimize: false });
  const folded = await loadModel(resolve(models, 'resnet18.pt'));
  const a = asTensor(await plain.forward([x]));
  const b = asTensor(await folded.forward([x]));
  t.is(folded.optimization.serving, 'optimized');
  t.notDeepEqual(Array.from(a.data as Float32Array), Array.from(b.data as Float32Array));
  const again = asTensor(await plain.forward([x]));
  t.deepEqual(Array.from(again.data as Float32Array), Array.from(a.data as Float32Array));
  await plain.dispose();
  await folded.dispose();
});

test('outputs that differ from the original (a model adding fresh noise) keep the original serving, with the reason', async (t) => {
  const m = await loadModel(fixture('noisy.pt'));
  t.is(m.optimization.serving, 'pending');
  const settled = m.optimizationSettled();
  const out = asTensor(await m.forward([small()]));
  t.deepEqual(out.shape, [2, 3]);
  const state = await settled;
  t.is(state.serving, 'original');
  t.regex(state.reason, /^outputs differ from the original's on the first input \(output: max \|difference\| [\d.e-]+ exceeds 0\.001 × max \|value\| [\d.e-]+\)$/);
  t.deepEqual(m.optimization, state);
  // Still answers, from the original, for every later call.
  const later = asTensor(await m.forward([small()]));
  t.deepEqual(later.shape, [2, 3]);
  await m.dispose();
});

test('a failing first input leaves the check pending; the next good one settles it', async (t) => {
  const m = await loadModel(fixture('raises.pt'));
  await t.throwsAsync(m.forward([{ data: new Float32Array(6), shape: [2, 3], dtype: 'float32' }]), { message: /expected 4 features/ });
  t.is(m.optimization.serving, 'pending');
  const out = asTensor(await m.forward([{ data: Float32Array.from([1, 2, 3, 4]), shape: [1, 4], dtype: 'float32' }]));
  t.deepEqual(Array.from(out.data as Float32Array), [3, 6, 9, 12]);
  t.is(m.optimization.serving, 'optimized');
  // The optimised module still raises the model's own error.
  await t.throwsAsync(m.forward([{ data: new Float32Array(6), shape: [2, 3], dtype: 'float32' }]), { message: /model raised: builtins\.ValueError: expected 4 features/ });
  await m.dispose();
});

test('integrated gradients are the same with optimize on or off (IG reloads and runs the original module)', async (t) => {
  const ref = reference.cnn.ig;
  const results = [];
  for (const optimize of [true, false]) {
    const m = await loadModel(fixture('cnn.pt'), { optimize });
    await m.forward([f32(reference.cnn.input)]); // settles the check: the original is dropped when optimised
    const r = await m.integratedGradients([f32(reference.cnn.input)], { target: ref.target, steps: ref.steps });
    results.push(r);
    // Forward keeps serving the optimised module after an explanation.
    await m.forward([f32(reference.cnn.input)]);
    t.is(m.optimization.serving, optimize ? 'optimized' : 'original');
    await m.dispose();
  }
  t.deepEqual(Array.from(results[0].attributions.data as Float32Array), Array.from(results[1].attributions.data as Float32Array));
  t.deepEqual(results[0].delta, results[1].delta);
});

test('concurrent first forwards on 4 workers: one check, every caller gets a correct answer', async (t) => {
  const m = await loadModel(fixture('cnn.pt'), { workers: 4 });
  const outs = await Promise.all(Array.from({ length: 8 }, () => m.forward([f32(reference.cnn.input)])));
  for (const out of outs) t.true(maxRelError(asTensor(out).data as Float32Array, reference.cnn.output.data) < 1e-4);
  t.is(m.optimization.serving, 'optimized');
  await m.dispose();
});

test('optimize must be a boolean', async (t) => {
  const error = await t.throwsAsync(loadModel(fixture('linear.pt'), { optimize: 'yes' as unknown as boolean }));
  t.is((error as { code?: string }).code, 'E_ARGUMENT');
  t.true(error instanceof TypeError);
  t.regex(error!.message, /options\.optimize must be a boolean/);
});

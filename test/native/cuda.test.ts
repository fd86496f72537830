// CUDA: load onto the GPU, forward and IG equal the CPU results. Skips with a printed reason when
// no CUDA device is usable (buildInfo().cudaAvailable is false).
import test from 'ava';

import { buildInfo, loadModel } from '../../src/native.js';
import { asTensor, f32, fixture, maxAbsError, maxRelError, reference } from './helpers.js';

const info = buildInfo();
const reason = info.cudaCompiled
  ? 'LibTorch has CUDA but no CUDA device is available here'
  : `this addon is built against a CPU-only LibTorch ${info.torchVersion}`;
const cudaTest = info.cudaAvailable ? test : test.skip;
if (!info.cudaAvailable) console.log(`cuda.test.ts: skipping CUDA tests: ${reason}`);

test('without CUDA, asking for a CUDA device is E_DEVICE', async (t) => {
  if (info.cudaAvailable) {
    await t.throwsAsync(loadModel(fixture('linear.pt'), { device: `cuda:${info.deviceCount}` }), { code: 'E_DEVICE' } as never);
    return;
  }
  t.is(info.deviceCount, 0);
  const error = await t.throwsAsync(loadModel(fixture('linear.pt'), { device: 'cuda' }));
  t.is((error as { code?: string }).code, 'E_DEVICE');
  t.regex(error!.message, /cuda/);
});

cudaTest('forward on cuda:0 equals the Python reference (copies through pinned memory)', async (t) => {
  const m = await loadModel(fixture('cnn.pt'), { device: 'cuda:0', workers: 2 });
  t.is(m.device, 'cuda:0');
  const out = asTensor(await m.forward([f32(reference.cnn.input)]));
  t.deepEqual(out.shape, [2, 10]);
  // TF32 convolutions may be enabled on Ampere+: allow a little more than the CPU tolerance.
  t.true(maxRelError(out.data as Float32Array, reference.cnn.output.data) < 1e-3);
  await m.dispose();
});

cudaTest('32 concurrent forwards on per-worker streams equal sequential ones', async (t) => {
  const m = await loadModel(fixture('cnn.pt'), { device: 'cuda', workers: 4 });
  const inputs = Array.from({ length: 32 }, (_, i) => ({
    data: new Float32Array(784).fill(i / 32),
    shape: [1, 1, 28, 28],
    dtype: 'float32' as const,
  }));
  const sequential = [];
  for (const x of inputs) sequential.push(asTensor(await m.forward([x])).data as Float32Array);
  const concurrent = await Promise.all(inputs.map((x) => m.forward([x])));
  for (let i = 0; i < 32; i++) {
    t.true(maxAbsError(asTensor(concurrent[i]).data as Float32Array, sequential[i]) < 1e-5, `input ${i}`);
  }
  await m.dispose();
});

cudaTest('IG on CUDA equals the Python reference', async (t) => {
  const m = await loadModel(fixture('cnn.pt'), { device: 'cuda:0' });
  const ref = reference.cnn.ig;
  const r = await m.integratedGradients([f32(reference.cnn.input)], { target: ref.target, steps: ref.steps, chunk: 5 });
  t.true(maxAbsError(r.attributions.data as Float32Array, ref.attributions.data) < 1e-3);
  await m.dispose();
});

cudaTest('fp16 precision returns float32 scores close to fp32', async (t) => {
  const m = await loadModel(fixture('cnn.pt'), { device: 'cuda:0', precision: 'fp16' });
  const out = asTensor(await m.forward([f32(reference.cnn.input)]));
  t.is(out.dtype, 'float32');
  t.true(maxAbsError(out.data as Float32Array, reference.cnn.output.data) < 5e-2);
  await m.dispose();
});

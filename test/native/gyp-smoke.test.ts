// Smoke test of the node-gyp build (binding.gyp): the same addon sources, loaded through
// TORCHD_ADDON. Runs when TORCHD_GYP_ADDON points at the built torchd.node:
//   bash native/gyp/build.sh
//   TORCHD_GYP_ADDON=build/gyp/build/Release/torchd.node npx ava test/native/gyp-smoke.test.ts
import test from 'ava';
import { resolve } from 'node:path';

import { asTensor, f32, fixture, maxRelError, reference } from './helpers.js';

const gypAddon = process.env.TORCHD_GYP_ADDON;

if (!gypAddon) {
  console.log('gyp-smoke.test.ts: skipping: TORCHD_GYP_ADDON is not set (build with `bash native/gyp/build.sh`)');
  test.skip('gyp-built addon: load, forward, IG and error codes', () => {});
} else {
  // native.ts reads TORCHD_ADDON when it first loads the addon; this file runs in its own process.
  process.env.TORCHD_ADDON = resolve(gypAddon);

  test('gyp-built addon: load, forward, IG and error codes', async (t) => {
    const native = await import('../../src/native.js');
    t.regex(native.buildInfo().torchVersion, /^\d+\.\d+/);
    const m = await native.loadModel(fixture('linear.pt'));
    const out = asTensor(await m.forward([f32(reference.linear.input)]));
    t.true(maxRelError(out.data as Float32Array, reference.linear.output.data) < 1e-5);
    const ig = await m.integratedGradients([f32(reference.linear.input)], { target: [0, 1, 2, 0] });
    t.true(ig.delta.every((d) => Math.abs(d) < 1e-5));
    await t.throwsAsync(m.forward([{ data: new Float32Array(3), shape: [4], dtype: 'float32' }]), { code: 'E_SHAPE' } as never);
    await t.throwsAsync(native.loadModel(fixture('random.bin')), { code: 'E_LOAD' } as never);
    await m.dispose();
  });
}

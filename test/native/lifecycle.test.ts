// Lifetimes: dispose waits for running calls, outputs outlive their model, and a process with
// models loaded (or a call in flight) exits cleanly.
import test from 'ava';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

import { loadModel, type Tensor } from '../../src/native.js';
import { asTensor, f32, fixture, maxRelError, reference } from './helpers.js';

const run = promisify(execFile);
const nativeModule = new URL('../../src/native.ts', import.meta.url).href;

/** Runs an ES module snippet in a fresh Node process with tsx; resolves with its exit code and output. */
async function child(code: string, extraArgs: string[] = []): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(
      process.execPath,
      ['--import', 'tsx', ...extraArgs, '--input-type=module', '-e', `import * as native from '${nativeModule}';\n${code}`],
      { timeout: 60_000 },
    );
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; signal?: string; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: `${e.signal ?? ''} ${e.stderr ?? ''}` };
  }
}

test('dispose() while an IG call runs waits for it, then frees; later calls reject E_DISPOSED', async (t) => {
  const m = await loadModel(fixture('cnn.pt'));
  const x: Tensor = { data: new Float32Array(4 * 784).fill(0.3), shape: [4, 1, 28, 28], dtype: 'float32' };
  const order: string[] = [];
  const ig = m.integratedGradients([x], { target: [0, 1, 2, 3], steps: 200, chunk: 50 }).then((r) => {
    order.push('ig');
    return r;
  });
  const disposed = m.dispose().then(() => order.push('dispose'));
  const lateCall = m.forward([x]);
  await t.throwsAsync(lateCall, { code: 'E_DISPOSED' } as never);
  const [result] = await Promise.all([ig, disposed]);
  t.deepEqual(order, ['ig', 'dispose']);
  t.deepEqual(result.attributions.shape, [4, 1, 28, 28]);
  t.true(result.delta.every((d) => Number.isFinite(d)));
});

test('outputs outlive their model (the ArrayBuffer owns the tensor memory)', async (t) => {
  const m = await loadModel(fixture('linear.pt'));
  const out = asTensor(await m.forward([f32(reference.linear.input)]));
  await m.dispose();
  t.true(maxRelError(out.data as Float32Array, reference.linear.output.data) < 1e-5);
  (out.data as Float32Array)[0] = 42; // writable, and writing cannot touch any model state
  t.is((out.data as Float32Array)[0], 42);
});

test('a child process with models loaded and never disposed exits with code 0', async (t) => {
  const result = await child(`
    const a = await native.loadModel(${JSON.stringify(fixture('cnn.pt'))}, { workers: 2 });
    const b = await native.loadModel(${JSON.stringify(fixture('linear.pt'))});
    const out = await a.forward([{ data: new Float32Array(784), shape: [1, 1, 28, 28], dtype: 'float32' }]);
    await b.integratedGradients([{ data: new Float32Array(10).fill(1), shape: [1, 10], dtype: 'float32' }], { target: [0] });
    console.log('loaded', out.shape.join('x'), a.forwardCalls);
  `);
  t.is(result.code, 0, result.stderr);
  t.is(result.stdout.trim(), 'loaded 1x10 1');
});

test('process.exit() while a call is in flight exits with code 0 (no abort from native threads)', async (t) => {
  const result = await child(`
    const m = await native.loadModel(${JSON.stringify(fixture('cnn.pt'))}, { workers: 2 });
    const x = { data: new Float32Array(8 * 784).fill(0.5), shape: [8, 1, 28, 28], dtype: 'float32' };
    m.integratedGradients([x], { target: new Array(8).fill(1), steps: 400 });
    m.forward([x]);
    setTimeout(() => { console.log('exiting'); process.exit(0); }, 20);
  `);
  t.is(result.code, 0, result.stderr);
  t.is(result.stdout.trim(), 'exiting');
});

test('garbage-collected outputs and models free cleanly', async (t) => {
  const result = await child(
    `
    for (let round = 0; round < 3; round++) {
      const m = await native.loadModel(${JSON.stringify(fixture('cnn.pt'))});
      for (let i = 0; i < 50; i++) await m.forward([{ data: new Float32Array(784), shape: [1, 1, 28, 28], dtype: 'float32' }]);
    }
    globalThis.gc();
    await new Promise((r) => setTimeout(r, 50));
    globalThis.gc();
    console.log('collected');
  `,
    ['--expose-gc'],
  );
  t.is(result.code, 0, result.stderr);
  t.is(result.stdout.trim(), 'collected');
});

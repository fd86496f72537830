// The engine sets OMP_WAIT_POLICY=PASSIVE before LibTorch (libgomp) is loaded, unless the user chose a policy:
// spinning OpenMP teams stalled forwards 5× next to image preprocessing on 2 cores (bench/NOTES.md §8).
import test from 'ava';
import { execFileSync } from 'node:child_process';

const registryUrl = new URL('../../src/engine/registry.ts', import.meta.url).href;
const nativeUrl = new URL('../../src/native.ts', import.meta.url).href;

function policyAfterImport(env: Record<string, string | undefined>): string {
  const script = `await import(${JSON.stringify(registryUrl)}); const n = await import(${JSON.stringify(nativeUrl)}); n.buildInfo(); console.log(process.env.OMP_WAIT_POLICY ?? 'unset');`;
  const childEnv = { ...process.env, ...env };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete childEnv[k];
  return execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { env: childEnv, encoding: 'utf8' }).trim();
}

test('importing the engine sets OMP_WAIT_POLICY=PASSIVE when the user set none (before the addon loads)', (t) => {
  t.is(policyAfterImport({ OMP_WAIT_POLICY: undefined }), 'PASSIVE');
});

test('a policy the user set is kept', (t) => {
  t.is(policyAfterImport({ OMP_WAIT_POLICY: 'ACTIVE' }), 'ACTIVE');
});

// The addon's first load settles the threading variables LibTorch's pools read once, when they are linked,
// unless the user chose a value: OMP_WAIT_POLICY=PASSIVE (spinning OpenMP teams stalled forwards 5× next to
// image preprocessing on 2 cores, bench/NOTES.md §8) and OPENBLAS_NUM_THREADS=1 (OpenBLAS's own spinning pool
// cost 4.8 ms of CPU per ResNet-18 request, NOTES.md §32). The BLAS count is read back from OpenBLAS itself.
import test from 'ava';
import { execFileSync } from 'node:child_process';

const nativeUrl = new URL('../../src/native.ts', import.meta.url).href;

function afterLoad(env: Record<string, string | undefined>): { omp: string; blasEnv: string; blasThreads: number } {
  const script = `const n = await import(${JSON.stringify(nativeUrl)}); const b = n.buildInfo();
    console.log(JSON.stringify({ omp: process.env.OMP_WAIT_POLICY ?? 'unset', blasEnv: process.env.OPENBLAS_NUM_THREADS ?? 'unset', blasThreads: b.blasThreads }));`;
  const childEnv = { ...process.env, ...env };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete childEnv[k];
  return JSON.parse(execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { env: childEnv, encoding: 'utf8' }).trim());
}

test('loading the addon sets OMP_WAIT_POLICY=PASSIVE and one OpenBLAS thread when the user set neither', (t) => {
  const r = afterLoad({ OMP_WAIT_POLICY: undefined, OPENBLAS_NUM_THREADS: undefined });
  t.is(r.omp, 'PASSIVE');
  t.is(r.blasEnv, '1');
  // Debian's LibTorch reaches OpenBLAS (libblas.so.3); a LibTorch with MKL reports -1 and the variable is moot.
  if (r.blasThreads === -1) t.log('the loaded BLAS is not OpenBLAS: its thread count is not checked');
  else t.is(r.blasThreads, 1);
});

test('values the user set are kept, and OpenBLAS runs the count asked for', (t) => {
  const r = afterLoad({ OMP_WAIT_POLICY: 'ACTIVE', OPENBLAS_NUM_THREADS: '2' });
  t.is(r.omp, 'ACTIVE');
  t.is(r.blasEnv, '2');
  if (r.blasThreads === -1) t.log('the loaded BLAS is not OpenBLAS: its thread count is not checked');
  else t.is(r.blasThreads, 2);
});

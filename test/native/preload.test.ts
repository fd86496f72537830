// `torchd start` links LibTorch on a worker thread while the server's modules load (src/native.ts
// preloadAddonInBackground, bench/NOTES.md §27). Each case runs in a fresh process: the libraries must not be
// loaded before the preload, must be after it (read from /proc/self/maps before the main thread touches the addon),
// and the main thread's own load must then work as usual. A missing addon resolves false, never throws.
import test from 'ava';
import { execFileSync } from 'node:child_process';

const nativeUrl = new URL('../../src/native.ts', import.meta.url).href;
const mnist = new URL('../fixtures/models/mnist.pt', import.meta.url).pathname;

function run(script: string, env: Record<string, string> = {}): Record<string, unknown> {
  const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    env: { ...process.env, ...env }, encoding: 'utf8',
  });
  return JSON.parse(out.trim().split('\n').at(-1)!) as Record<string, unknown>;
}


test('the preload links the addon and LibTorch on a worker; the main thread then loads and runs models as usual', (t) => {
  const script = `
    delete process.env.OMP_WAIT_POLICY;
    const n = await import(${JSON.stringify(nativeUrl)});
    const maps = async () => { const m = (await import('node:fs')).readFileSync('/proc/self/maps', 'utf8'); return { torch: /libtorch_cpu/.test(m), addon: /torchd\\.node/.test(m) }; };
    const before = await maps();
    const keep = setInterval(() => {}, 1000); // the preload's worker is unref'd: it never holds a process alive by itself
    const preloaded = await n.preloadAddonInBackground();
    clearInterval(keep);
    const after = await maps();
    const model = await n.loadModel(${JSON.stringify(mnist)}, { workers: 1, threads: 1 });
    const out = await model.forward([{ data: new Float32Array(784).fill(0.5), shape: [1, 1, 28, 28], dtype: 'float32' }]);
    model.dispose?.();
    console.log(JSON.stringify({ before, preloaded, after, shape: out.shape ?? out[0]?.shape, omp: process.env.OMP_WAIT_POLICY }));
  `;
  const r = run(script);
  t.deepEqual(r.before, { torch: false, addon: false });
  t.is(r.preloaded, true);
  t.deepEqual(r.after, { torch: true, addon: true });
  t.deepEqual(r.shape, [1, 10]);
  t.is(r.omp, 'PASSIVE');
});

test('OMP_WAIT_POLICY is settled before the preload links libgomp; a policy the user set is kept', (t) => {
  const script = (v: string) => `
    ${v === 'unset' ? 'delete process.env.OMP_WAIT_POLICY;' : ''}
    const n = await import(${JSON.stringify(nativeUrl)});
    const keep = setInterval(() => {}, 1000); // the preload's worker is unref'd: it never holds a process alive by itself
    const preloaded = await n.preloadAddonInBackground();
    clearInterval(keep);
    console.log(JSON.stringify({ preloaded, omp: process.env.OMP_WAIT_POLICY ?? 'unset' }));
  `;
  t.deepEqual(run(script('unset')), { preloaded: true, omp: 'PASSIVE' });
  t.deepEqual(run(script('kept'), { OMP_WAIT_POLICY: 'ACTIVE' }), { preloaded: true, omp: 'ACTIVE' });
});

test('a preload that cannot find the addon resolves false; loading it then fails with the usual E_LOAD', (t) => {
  const script = `
    const n = await import(${JSON.stringify(nativeUrl)});
    const keep = setInterval(() => {}, 1000); // the preload's worker is unref'd: it never holds a process alive by itself
    const preloaded = await n.preloadAddonInBackground();
    clearInterval(keep);
    let code; try { n.buildInfo(); } catch (e) { code = e.code; }
    console.log(JSON.stringify({ preloaded, code }));
  `;
  t.deepEqual(run(script, { TORCHD_ADDON: '/nonexistent/torchd.node' }), { preloaded: false, code: 'E_LOAD' });
});

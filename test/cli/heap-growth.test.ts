// heap_growing_percent (src/v8-heap.ts) in a real `torchd start`: the default fixed factor makes V8 run far fewer
// full GCs for the same stream of large requests than its own dynamic factor (0), whose limit the requests'
// ArrayBuffers (external memory) reach every few MB. Counted from the server's own nodejs_gc_duration_seconds.
import test from 'ava';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeModelStore } from '../http/_server.js';
import { LOOPBACK_HTTP_ONLY_ENV, spawnTorchd } from '../_torchd-child.js';
import { settleHeapGrowth } from '../../src/v8-heap.js';

/** 1 MiB of float32 per request through the tensor handler of multi_out (x·2, sums): the body and the tensors are ArrayBuffers. */
const ELEMENTS = 256 * 1024;
// 200: at 80 the dynamic factor once ran only 4 full GCs against 3 in a loaded suite run (7–10 usually).
const REQUESTS = 200;

async function majorGcs(metrics: string): Promise<number> {
  const text = await (await fetch(`${metrics}/metrics`)).text();
  const m = /^nodejs_gc_duration_seconds_count\{kind="major"\} (\d+)$/m.exec(text);
  return m ? Number(m[1]) : 0; // prom-client shows a kind only once one has run
}

async function run(store: string, percent: string | undefined): Promise<{ majors: number; logged: unknown }> {
  const cwd = await mkdtemp(join(tmpdir(), 'torchd-heap-'));
  const props = join(cwd, 'config.properties');
  await writeFile(props, percent === undefined ? '' : `heap_growing_percent=${percent}\n`);
  const torchd = spawnTorchd(['start', '--model-store', store, '--models', 'multi_out=multi_out.mar', '--ts-config', props, '--foreground'], {
    cwd, env: { ...process.env, ...LOOPBACK_HTTP_ONLY_ENV },
  });
  try {
    const logged = (await torchd.waitFor('V8 heap growing factor')).heapGrowingPercent;
    const ready = await torchd.waitFor('torchd ready');
    const { inference, metrics } = ready.addresses as { inference: string; metrics: string };
    const body = Buffer.from(new Float32Array(ELEMENTS).fill(1.5).buffer);
    const url = `${inference}/predictions/multi_out?shape=1,${ELEMENTS}&dtype=float32`;
    const send = async () => {
      const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body });
      if (res.status !== 200) throw new Error(`status ${res.status}: ${await res.text()}`);
      await res.arrayBuffer();
    };
    for (let i = 0; i < 5; i++) await send();
    const before = await majorGcs(metrics);
    for (let i = 0; i < REQUESTS; i++) await send();
    return { majors: (await majorGcs(metrics)) - before, logged };
  } finally {
    torchd.child.kill('SIGTERM');
    await torchd.exited;
  }
}

test('the default heap_growing_percent (300) runs far fewer full GCs than V8\'s dynamic factor (0) for the same large requests', async (t) => {
  const store = await makeModelStore(['multi_out']);
  const fixed = await run(store, undefined);
  const dynamic = await run(store, '0');
  t.log(`${REQUESTS} requests of 1 MiB: ${fixed.majors} full GCs at the default, ${dynamic.majors} with V8's dynamic factor`);
  t.is(fixed.logged, 300);
  t.is(dynamic.logged, 0);
  t.true(dynamic.majors >= 2 * Math.max(1, fixed.majors), `default ${fixed.majors} vs dynamic ${dynamic.majors}`);
});

test('node\'s own --heap-growing-percent wins over the config key', (t) => {
  t.is(settleHeapGrowth(300, ['--heap-growing-percent=50']), 'command line');
  t.is(settleHeapGrowth(300, ['--heap_growing_percent', '50']), 'command line');
  t.is(settleHeapGrowth(300, ['--heap-growing-percentage']), 300);
  t.is(settleHeapGrowth(0, []), 0);
});

// A worker that stays busy past its request's deadline plus a grace is reported as an operator sees
// it: the 504 names the configured timeout, describe shows the worker STUCK, /ping and
// /v2/health/ready say not ready, torchd_stuck_workers_total counts it; all clear once it returns.
// busy.pt runs x.max() matmuls in ONE forward, which cannot stop inside an operator.
import test from 'ava';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeMar } from '../../src/store/index.js';
import { startOnStore } from './_server.js';

const BUSY = fileURLToPath(new URL('../fixtures/engine/busy.pt', import.meta.url));

async function until(cond: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return cond();
}

test('a stuck worker: 504 with the real timeout, describe STUCK, /ping and v2 ready not ready, metric; then ready again', async (t) => {
  t.timeout(120_000);
  const store = await mkdtemp(join(tmpdir(), 'torchd-stuck-'));
  await writeMar({ modelName: 'busy', version: '1.0', serializedFile: BUSY, handler: 'tensor', exportPath: store });
  const server = await startOnStore(store, 'busy=busy.mar', { models: '{"busy": {"1.0": {"responseTimeout": 1}}}' });
  t.teardown(() => server.close());
  const { inference, management, metrics } = server.server.addresses;

  const infer = (n: number) =>
    fetch(`${inference}/v2/models/busy/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 1], datatype: 'FP32', data: [n] }] }),
    });
  const res = await infer(6000);
  t.is(res.status, 504);
  const body = (await res.json()) as { message?: string; error?: string };
  t.regex(JSON.stringify(body), /Request timed out after 1000 ms/);

  // Deadline 1 s + grace (one responseTimeout, at least 1 s): reported stuck from about 2 s.
  t.true(await until(async () => (await fetch(`${inference}/ping`)).status === 500, 20_000), '/ping goes Unhealthy');
  const ping = await fetch(`${inference}/ping`);
  t.deepEqual(await ping.json(), { status: 'Unhealthy' });
  t.is((await fetch(`${inference}/v2/health/ready`)).status, 503);
  const described = (await (await fetch(`${management}/models/busy`)).json()) as {
    workers: { status: string }[];
    jobQueueStatus: { stuckWorkers: number };
  }[];
  t.is(described[0].jobQueueStatus.stuckWorkers, 1);
  t.is(described[0].workers.filter((w) => w.status === 'STUCK').length, 1);
  const scrape = await (await fetch(`${metrics}/metrics`)).text();
  t.regex(scrape, /torchd_stuck_workers_total\{model_name="busy",model_version="1.0"\} 1/);

  t.true(await until(async () => (await fetch(`${inference}/ping`)).status === 200, 90_000), 'ready again once the worker returned');
  t.is((await fetch(`${inference}/v2/health/ready`)).status, 200);
  const ok = await infer(1);
  t.is(ok.status, 200);
});

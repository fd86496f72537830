// Backpressure over real HTTP: a full queue answers 503 ServiceUnavailableException with Retry-After at
// once and drains; a request that outlives responseTimeout gets 504 RequestTimeoutException. busy.pt
// (test/fixtures/engine) keeps its one worker busy for x.max() matmuls; the test waits on the server's own
// queue counters, never on a duration.
import test from 'ava';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeMar } from '../../src/store/index.js';
import { call, startOnStore, type TestServer } from './_server.js';

const BUSY = fileURLToPath(new URL('../fixtures/engine/busy.pt', import.meta.url));

async function startBusyServer(properties: Record<string, string>): Promise<TestServer> {
  const store = await mkdtemp(join(tmpdir(), 'torchd-busy-'));
  await writeMar({ modelName: 'busy', version: '1.0', serializedFile: BUSY, handler: 'tensor', exportPath: store });
  return startOnStore(store, 'busy=busy.mar', properties);
}

const predict = (url: string, n: number) =>
  call(`${url}/predictions/busy`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify([[n]]) });

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((r) => setTimeout(r, 5));
}

test('queue full → 503 ServiceUnavailableException with Retry-After at once; the queue drains and serves again', async (t) => {
  const s = await startBusyServer({ job_queue_size: '2', models: '{"busy": {"1.0": {"batchSize": 1}}}' });
  t.teardown(() => s.close());
  const batcher = s.server.registry.resolve('busy').batcher;
  const running = predict(s.url, 300);
  await until(() => batcher.running === 1);
  const queued = [predict(s.url, 1), predict(s.url, 2)];
  await until(() => batcher.pending === 2);

  const refused = await predict(s.url, 3);
  t.is(refused.status, 503);
  t.is(refused.headers.get('retry-after'), '1');
  t.truthy(refused.headers.get('x-request-id'));
  t.deepEqual(refused.json, {
    code: 503,
    type: 'ServiceUnavailableException',
    message: 'Model busy version 1.0 has too many pending requests (job_queue_size 2)',
  });

  const answers = await Promise.all([running, ...queued]);
  t.deepEqual(answers.map((a) => [a.status, a.json]), [[200, [[600]]], [200, [[2]]], [200, [[4]]]]);
  const after = await predict(s.url, 4);
  t.deepEqual([after.status, after.json], [200, [[8]]]);
});

test('a request still queued when responseTimeout passes → 504 RequestTimeoutException', async (t) => {
  const s = await startBusyServer({ models: '{"busy": {"1.0": {"batchSize": 1, "responseTimeout": 1}}}' });
  t.teardown(() => s.close());
  const batcher = s.server.registry.resolve('busy').batcher;
  // Keeps the only worker busy for several seconds (its own answer is not what this test checks).
  const blocker = predict(s.url, 3000).catch(() => undefined);
  await until(() => batcher.running === 1);
  const late = await predict(s.url, 1);
  t.is(late.status, 504);
  const body = late.json as { code: number; type: string; message: string };
  t.deepEqual([body.code, body.type], [504, 'RequestTimeoutException']);
  // The deadline is set when the request arrives; the batcher reports what was left of it at enqueue.
  t.regex(body.message, /^Request timed out after (9\d\d|1000) ms$/);
  await blocker;
});

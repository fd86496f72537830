// Backpressure and request lifetimes: a full queue answers 503 at once, deadlines give 504, a client
// that goes away has its queued request dropped. busy.pt keeps its worker busy for x.max() matmuls.
import test from 'ava';
import { RequestTimeoutError, ServiceUnavailableError } from '../../src/errors.js';
import { ClientClosedError, type DynamicBatcher } from '../../src/engine/batcher.js';
import type { Tensor } from '../../src/native.js';
import { f32, makeRegistry, specFor, values } from './helpers.js';

const busy = (n: number) => [f32([[n]])];

test('queue full → 503 ServiceUnavailableException with Retry-After, then the queue drains', async (t) => {
  const registry = makeRegistry();
  t.teardown(() => registry.close());
  const mv = await registry.register(specFor('busy.pt'), { batchSize: 1, jobQueueSize: 2 });
  const running = mv.batcher.infer(busy(300));
  const queued = [mv.batcher.infer(busy(1)), mv.batcher.infer(busy(2))];
  t.is(mv.batcher.running, 1);
  t.is(mv.batcher.pending, 2);
  const err = await t.throwsAsync(mv.batcher.infer(busy(3)), { instanceOf: ServiceUnavailableError });
  t.is(err?.status, 503);
  t.is(err?.type, 'ServiceUnavailableException');
  t.is(err?.headers['Retry-After'], '1');
  t.is(err?.message, 'Model busy version 1.0 has too many pending requests (job_queue_size 2)');
  const outs = (await Promise.all([running, ...queued])) as Tensor[];
  t.deepEqual(outs.map((o) => values(o)[0]), [600, 2, 4]);
  t.is(mv.batcher.pending, 0);
  t.is(mv.batcher.running, 0);
  t.deepEqual(values(await mv.batcher.infer(busy(4))), [8]);
});

test('a request past its deadline → 504 RequestTimeoutException and never runs', async (t) => {
  const registry = makeRegistry();
  t.teardown(() => registry.close());
  const mv = await registry.register(specFor('busy.pt'), { batchSize: 1 });
  const batcher = mv.batcher as DynamicBatcher;
  const before = batcher.nativeCalls;
  const running = batcher.infer(busy(300));
  // The limit is passed as the service passes it: derived from `deadline` alone it would read 19 ms whenever the
  // clock ticks between this line and the batcher taking the job.
  const late = batcher.infer(busy(1), { deadline: Date.now() + 20, timeoutMs: 20 });
  const err = await t.throwsAsync(late, { instanceOf: RequestTimeoutError });
  t.is(err?.status, 504);
  t.is(err?.type, 'RequestTimeoutException');
  t.is(err?.message, 'Request timed out after 20 ms');
  t.is(batcher.pending, 0, 'the timed-out request left the queue');
  t.deepEqual(values(await running), [600]);
  t.is(batcher.nativeCalls - before, 1);
});

test('responseTimeout (seconds) is the default deadline', async (t) => {
  const registry = makeRegistry();
  t.teardown(() => registry.close());
  const mv = await registry.register(specFor('busy.pt'), { batchSize: 1, responseTimeout: 0.02 });
  const running = mv.batcher.infer(busy(300));
  await t.throwsAsync(mv.batcher.infer(busy(1)), { instanceOf: RequestTimeoutError, message: 'Request timed out after 20 ms' });
  // The running request also exceeds its 20 ms: the client gets a 504 even though the call completes.
  await t.throwsAsync(running, { instanceOf: RequestTimeoutError });
  await (mv.batcher as DynamicBatcher).idle();
});

test('an aborted queued request is dropped from the queue', async (t) => {
  const registry = makeRegistry();
  t.teardown(() => registry.close());
  const mv = await registry.register(specFor('busy.pt'), { batchSize: 1 });
  const batcher = mv.batcher as DynamicBatcher;
  const before = batcher.nativeCalls;
  const running = batcher.infer(busy(200));
  const client = new AbortController();
  const dropped = batcher.infer(busy(1), { signal: client.signal });
  const kept = batcher.infer(busy(2));
  t.is(batcher.pending, 2);
  client.abort();
  t.is(batcher.pending, 1);
  const err = await t.throwsAsync(dropped, { instanceOf: ClientClosedError });
  t.is(err?.status, 499);
  t.deepEqual(values(await running), [400]);
  t.deepEqual(values(await kept), [4]);
  t.is(batcher.nativeCalls - before, 2, 'the dropped request never reached LibTorch');
  // Already aborted before queueing: refused at once.
  await t.throwsAsync(batcher.infer(busy(1), { signal: AbortSignal.abort() }), { instanceOf: ClientClosedError });
});

test('explanations run through the same worker slots, one native call each', async (t) => {
  const registry = makeRegistry();
  t.teardown(() => registry.close());
  const mv = await registry.register(specFor('busy.pt'), { batchSize: 8 });
  const batcher = mv.batcher as DynamicBatcher;
  const before = batcher.nativeCalls;
  const running = batcher.infer(busy(100));
  const explained = [batcher.explain(busy(5), { target: [0] }), batcher.explain(busy(3), { target: [0] })];
  t.is(batcher.pending, 2, 'explanations wait for the busy worker');
  await running;
  const [a, b] = await Promise.all(explained);
  // F(x) = 2x is linear: IG attribution = (x - 0) * dF/dx = 2x, completeness delta ~ 0.
  t.true(Math.abs(values(a.attributions)[0] - 10) < 1e-3, String(values(a.attributions)));
  t.true(Math.abs(values(b.attributions)[0] - 6) < 1e-3, String(values(b.attributions)));
  t.true(Math.abs(a.delta[0]) < 1e-3);
  t.is(batcher.nativeCalls - before, 3);
});

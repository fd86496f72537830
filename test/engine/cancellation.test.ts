// Native work ends with its request: a running explanation past its deadline is answered 504 naming the
// configured timeout and its native call stops at the next IG pass, so the worker takes the next
// request; a worker that stays busy past its request's deadline plus a grace (a forward cannot stop
// inside an operator) is reported: `stuck`, not healthy, counted by a metric, until it returns.
import test from 'ava';
import { RequestTimeoutError } from '../../src/errors.js';
import type { DynamicBatcher } from '../../src/engine/batcher.js';
import { createMetrics } from '../../src/metrics/index.js';
import type { Tensor } from '../../src/native.js';
import { fixture } from '../native/helpers.js';
import { f32, makeRegistry, specFor, values } from './helpers.js';

const MiB = 1024 * 1024;
const digits = (n: number): Tensor => ({ data: new Float32Array(n * 784).fill(0.5), shape: [n, 1, 28, 28], dtype: 'float32' });

async function until(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return cond();
}

test('an explanation past responseTimeout: 504 names the configured timeout, its native call stops, the worker is free', async (t) => {
  const registry = makeRegistry();
  t.teardown(() => registry.close());
  const mv = await registry.register(specFor(fixture('cnn.pt'), 'cnn'), { responseTimeout: 1, igMemoryBudget: MiB });
  const batcher = mv.batcher as DynamicBatcher;
  // Thousands of short passes: far longer than the timeout if it ran to the end.
  const explaining = batcher.explain([digits(8)], { target: new Array(8).fill(1), steps: 65_536 });
  const err = await t.throwsAsync(explaining, { instanceOf: RequestTimeoutError });
  t.is(err?.status, 504);
  t.is(err?.message, 'Request timed out after 1000 ms');
  const t0 = Date.now();
  await batcher.idle();
  const freeMs = Date.now() - t0;
  t.log(`worker free ${freeMs} ms after the 504`);
  t.true(freeMs < 1000, `the native call ran on for ${freeMs} ms`);
  t.is(batcher.stuck, 0);
  const out = (await batcher.infer([digits(1)])) as Tensor;
  t.deepEqual(out.shape, [1, 10]);
});

test('a client that goes away cancels its running explanation', async (t) => {
  const registry = makeRegistry();
  t.teardown(() => registry.close());
  const mv = await registry.register(specFor(fixture('cnn.pt'), 'cnn'), { igMemoryBudget: MiB });
  const batcher = mv.batcher as DynamicBatcher;
  const client = new AbortController();
  const explaining = batcher.explain([digits(8)], { target: new Array(8).fill(1), steps: 65_536 }, { signal: client.signal });
  await until(() => batcher.running === 1, 5000);
  await new Promise((r) => setTimeout(r, 100));
  client.abort();
  await t.throwsAsync(explaining, { message: 'Client closed the request before it ran' });
  const t0 = Date.now();
  await batcher.idle();
  t.true(Date.now() - t0 < 1000, `the native call ran on for ${Date.now() - t0} ms`);
});

test('a worker busy past its deadline + grace is stuck: not healthy, counted, metric; healthy again when it returns', async (t) => {
  const metrics = createMetrics({ defaultMetrics: false });
  const registry = makeRegistry({}, metrics);
  metrics.attach(registry);
  t.teardown(() => registry.close());
  // busy.pt: x.max() matmuls in ONE forward, which cannot stop inside (8000: ~8 s here, so the window between
  // "stuck" at 2 s and the return stays wide on a faster machine); deadline 1 s (not less: on a loaded machine an
  // event-loop stall could pass a shorter deadline before the call is even dispatched), grace 1 s.
  const mv = await registry.register(specFor('busy.pt'), { responseTimeout: 1 });
  const batcher = mv.batcher as DynamicBatcher;
  t.true(registry.healthy());
  const running = batcher.infer([f32([[8000]])]);
  await t.throwsAsync(running, { instanceOf: RequestTimeoutError, message: 'Request timed out after 1000 ms' });
  t.true(await until(() => mv.stuck === 1, 10_000), 'reported stuck after deadline + 1 s');
  t.false(registry.healthy(), 'not ready while a worker is stuck');
  const text = await metrics.text(['torchd_stuck_workers_total', 'torchd_stuck_workers']);
  t.regex(text, /torchd_stuck_workers_total\{model_name="busy",model_version="1.0"\} 1/);
  t.regex(text, /torchd_stuck_workers\{model_name="busy",model_version="1.0"\} 1/);
  await batcher.idle();
  t.is(mv.stuck, 0);
  t.true(registry.healthy(), 'ready again once the worker returned');
  t.deepEqual(values(await batcher.infer([f32([[1]])], { deadline: Date.now() + 60_000 })), [2]);
});

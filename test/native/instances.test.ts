// Per-instance native state: each model keeps its own intra-op thread count (applied on its own
// executor threads, not process-wide), and the threads a scale-down retires are joined, not leaked.
import test from 'ava';
import { readdirSync } from 'node:fs';

import { loadModel, type Tensor } from '../../src/native.js';
import { fixture } from './helpers.js';

const digit: Tensor = { data: new Float32Array(784).fill(0.5), shape: [1, 1, 28, 28], dtype: 'float32' };
const osThreads = () => readdirSync('/proc/self/task').length;

test('two models loaded with different intra-op thread counts keep them', async (t) => {
  const one = await loadModel(fixture('cnn.pt'), { threads: 1 });
  const two = await loadModel(fixture('cnn.pt'), { threads: 2 });
  t.teardown(() => Promise.all([one.dispose(), two.dispose()]));
  t.is(one.threads, 1);
  t.is(two.threads, 2);
  // Interleaved calls: the second load must not have changed the first model's count (it used to be a
  // process-wide setting, so the last model loaded set it for all).
  await Promise.all([one.forward([digit]), two.forward([digit]), one.forward([digit])]);
  t.is(await one.probeThreads(), 1);
  t.is(await two.probeThreads(), 2);
  const three = await loadModel(fixture('linear.pt'), { threads: 3 });
  t.teardown(() => three.dispose());
  t.is(await three.probeThreads(), 3);
  t.is(await one.probeThreads(), 1);
});

test('a scale-down joins the retired executor threads', async (t) => {
  const m = await loadModel(fixture('cnn.pt'), { workers: 1, threads: 1 });
  t.teardown(() => m.dispose());
  await m.forward([digit]);
  const before = osThreads();
  m.setWorkers(4);
  await Promise.all(Array.from({ length: 8 }, () => m.forward([digit])));
  t.is(m.executorThreads, 4);
  const grown = osThreads();
  m.setWorkers(1);
  // Idle threads retire as soon as they wake; the next call (or resize) after that joins them.
  const end = Date.now() + 10_000;
  do {
    await new Promise((r) => setTimeout(r, 20));
    await m.forward([digit]);
  } while (m.executorThreads > 1 && Date.now() < end);
  t.is(m.executorThreads, 1, 'the three retired threads were joined');
  // For the record only: Node starts and ends threads of its own meanwhile (other tests in this file).
  t.log(`OS threads: ${before} before, ${grown} with 4 workers, ${osThreads()} after the scale-down`);
});

test('spinMicros: a call queued while the thread still polls after the previous one is taken without a sleep', async (t) => {
  // One second of polling: each next call (submitted as soon as the previous one resolves) lands inside it.
  const polling = await loadModel(fixture('cnn.pt'), { workers: 1, threads: 1, spinMicros: 1_000_000 });
  const sleeping = await loadModel(fixture('cnn.pt'), { workers: 1, threads: 1 });
  // A forward takes far more than 1 µs: a thread polls only after a call shorter than its poll.
  const longCalls = await loadModel(fixture('cnn.pt'), { workers: 1, threads: 1, spinMicros: 1 });
  t.teardown(() => Promise.all([polling.dispose(), sleeping.dispose(), longCalls.dispose()]));
  for (const m of [polling, sleeping, longCalls]) for (let i = 0; i < 6; i++) await m.forward([digit]);
  t.true(polling.spinPickups >= 4, `${polling.spinPickups} of the 5 later calls taken while polling`);
  t.is(sleeping.spinPickups, 0, 'spinMicros 0 (the default): every thread sleeps between calls');
  t.is(longCalls.spinPickups, 0, 'no poll after a call longer than spinMicros');
  // The results do not depend on it.
  const [a, b] = await Promise.all([polling.forward([digit]), sleeping.forward([digit])]);
  t.deepEqual(Array.from((a as Tensor).data as Float32Array), Array.from((b as Tensor).data as Float32Array));
});

test('spinMicros outside [0, 1000000] or not an integer is refused', async (t) => {
  for (const [bad, type, message] of [
    [-1, RangeError, 'options.spinMicros must be an integer in [0, 1000000]'],
    [1.5, RangeError, 'options.spinMicros must be an integer in [0, 1000000]'],
    [2_000_000, RangeError, 'options.spinMicros must be an integer in [0, 1000000]'],
    ['10', TypeError, 'options.spinMicros must be a number'],
  ] as const) {
    await t.throwsAsync(loadModel(fixture('cnn.pt'), { spinMicros: bad as number }), { instanceOf: type, message }, String(bad));
  }
});

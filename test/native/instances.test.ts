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

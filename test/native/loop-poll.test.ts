// The event loop's poll after short forwards (native/addon/loop_poll.cpp): after a forward shorter than the
// model's spinMicros, the next forward keeps the loop polling with a zero timeout for that long, without ever
// blocking it. The turn counter is process-wide, so these tests run one at a time, in their own file.
import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';

import { buildInfo, loadModel, loopPollTurns, type Tensor } from '../../src/native.js';
import { fixture } from './helpers.js';

const digit: Tensor = { data: new Float32Array(784).fill(0.5), shape: [1, 1, 28, 28], dtype: 'float32' };
const POLL_US = 300_000;

/** Waits out any poll an earlier test left running (its window is POLL_US at most). */
async function settled(): Promise<number> {
  await sleep(POLL_US / 1000 + 50);
  return loopPollTurns();
}

test.before((t) => {
  if (!buildInfo().loopPoll) t.log('the addon was built without libuv\'s header: the poll is compiled out, these tests only check that');
});

test.serial('after a short forward the next one keeps the event loop polling', async (t) => {
  const m = await loadModel(fixture('cnn.pt'), { workers: 1, threads: 1, spinMicros: POLL_US });
  t.teardown(() => m.dispose());
  const before = await settled();
  await m.forward([digit]);
  t.is(loopPollTurns(), before, 'the first forward of a model has no duration to go by: no poll');
  await m.forward([digit]);
  if (!buildInfo().loopPoll) {
    t.is(loopPollTurns(), 0);
    return;
  }
  const during = loopPollTurns();
  t.true(during > before, `${during - before} turns while the second forward ran`);
  // The window goes on past the completion (for the client's next request), then ends by itself.
  await sleep(20);
  t.true(loopPollTurns() > during, 'still polling 20 ms after the completion');
  const ended = await settled();
  await sleep(50);
  t.is(loopPollTurns(), ended, 'no turns once the window has passed');
});

test.serial('integrated gradients: after a short one the next keeps the loop polling, as a forward does', async (t) => {
  const m = await loadModel(fixture('cnn.pt'), { workers: 1, threads: 1, spinMicros: POLL_US });
  t.teardown(() => m.dispose());
  const before = await settled();
  await m.integratedGradients([digit], { target: [3], steps: 4 });
  t.is(loopPollTurns(), before, 'no duration to go by yet');
  await m.forward([digit]);
  t.is(loopPollTurns(), before, "a forward goes by the last forward's duration, and there was none");
  await m.integratedGradients([digit], { target: [3], steps: 4 });
  t.is(loopPollTurns() > before, buildInfo().loopPoll, `${loopPollTurns() - before} turns while the second one ran`);
});

test.serial('no poll with spinMicros 0 (the addon default) or after a forward longer than spinMicros', async (t) => {
  const off = await loadModel(fixture('cnn.pt'), { workers: 1, threads: 1 });
  // A forward takes far more than 1 µs.
  const longCalls = await loadModel(fixture('cnn.pt'), { workers: 1, threads: 1, spinMicros: 1 });
  t.teardown(() => Promise.all([off.dispose(), longCalls.dispose()]));
  const before = await settled();
  for (const m of [off, longCalls]) for (let i = 0; i < 5; i++) await m.forward([digit]);
  await sleep(10);
  t.is(loopPollTurns(), before);
});

test.serial('timers run while the loop polls: nothing waits on the forward', async (t) => {
  // A one-second window: a synchronous wait would hold this timer back for that long.
  const m = await loadModel(fixture('cnn.pt'), { workers: 1, threads: 1, spinMicros: 1_000_000 });
  t.teardown(() => m.dispose());
  await m.forward([digit]);
  const result = m.forward([digit]);
  const t0 = performance.now();
  await sleep(10);
  const timerMs = performance.now() - t0;
  t.true(timerMs < 500, `a 10 ms timer fired after ${timerMs.toFixed(1)} ms inside a 1000 ms poll window`);
  const [a, b] = [(await result) as Tensor, (await m.forward([digit])) as Tensor];
  t.deepEqual(Array.from(a.data as Float32Array), Array.from(b.data as Float32Array), 'the outputs do not depend on it');
});

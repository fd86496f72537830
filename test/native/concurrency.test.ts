// Many calls at once on one module: results equal sequential ones, the event loop stays free while
// a long integrated-gradients call runs, and workers can be resized under load.
import test from 'ava';
import { cpus, loadavg } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';

import { loadModel, type Tensor } from '../../src/native.js';
import { asTensor, fixture } from './helpers.js';

/** Deterministic distinct MNIST-shaped inputs. */
function digit(seed: number): Tensor {
  const data = new Float32Array(784);
  let s = seed * 9973 + 1;
  for (let i = 0; i < data.length; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    data[i] = s / 2147483648;
  }
  return { data, shape: [1, 1, 28, 28], dtype: 'float32' };
}

test('32 concurrent forwards equal 32 sequential ones (4 workers over one module)', async (t) => {
  const m = await loadModel(fixture('cnn.pt'), { workers: 4 });
  t.is(m.workers, 4);
  const inputs = Array.from({ length: 32 }, (_, i) => digit(i));
  const sequential: Float32Array[] = [];
  for (const x of inputs) sequential.push(asTensor(await m.forward([x])).data as Float32Array);
  const concurrent = await Promise.all(inputs.map((x) => m.forward([x])));
  for (let i = 0; i < 32; i++) {
    t.deepEqual(Array.from(asTensor(concurrent[i]).data as Float32Array), Array.from(sequential[i]), `input ${i}`);
  }
  // Different inputs really gave different outputs (the comparison above is not vacuous).
  t.notDeepEqual(Array.from(sequential[0]), Array.from(sequential[1]));
  t.is(m.forwardCalls, 64);
  await m.dispose();
});

test('setWorkers grows and shrinks under load without losing calls', async (t) => {
  const m = await loadModel(fixture('cnn.pt'), { workers: 1 });
  const expected = asTensor(await m.forward([digit(5)])).data as Float32Array;
  const calls: Promise<unknown>[] = [];
  for (const n of [3, 1, 4, 2]) {
    m.setWorkers(n);
    t.is(m.workers, n);
    for (let i = 0; i < 8; i++) calls.push(m.forward([digit(5)]));
  }
  const results = await Promise.all(calls);
  for (const r of results) t.deepEqual(Array.from(asTensor(r).data as Float32Array), Array.from(expected));
  t.is(m.forwardCalls, 33);
  await m.dispose();
});

test.serial('the event loop stays responsive (< 20 ms delay) while an IG of >= 1 s runs', async (t) => {
  // One intra-op thread: the IG then occupies one core and the event loop has the other.
  const m = await loadModel(fixture('cnn.pt'), { workers: 1, threads: 1 });
  const x: Tensor = { data: new Float32Array(8 * 784).fill(0.5), shape: [8, 1, 28, 28], dtype: 'float32' };
  let steps = 1500;
  const runs: { max: number; p99: number; load: number }[] = [];
  // A loop blocked by native work shows delays as long as the call (>= 1 s) at p99 and max alike.
  // The machine is shared, so a single sample can catch another process's scheduler hiccup: the p99
  // must stay under 20 ms in every run, and the max in the best of up to three runs.
  for (let attempt = 0; attempt < 6 && runs.length < 3; attempt++) {
    const histogram = monitorEventLoopDelay({ resolution: 1 });
    histogram.enable();
    const started = performance.now();
    const r = await m.integratedGradients([x], { target: new Array(8).fill(1), steps, chunk: 100 });
    const elapsed = performance.now() - started;
    histogram.disable();
    t.is(r.delta.length, 8);
    if (elapsed < 1000) {
      // Faster than planned: this run proves nothing; lengthen it.
      steps *= 2;
      continue;
    }
    const run = { max: histogram.max / 1e6, p99: histogram.percentile(99) / 1e6, load: loadavg()[0] / cpus().length };
    runs.push(run);
    t.log(`IG of ${steps} steps: ${elapsed.toFixed(0)} ms; event-loop delay max ${run.max.toFixed(2)} ms, ` +
      `p99 ${run.p99.toFixed(2)} ms; load per core ${run.load.toFixed(1)}`);
    t.true(run.p99 < 20, `p99 event-loop delay ${run.p99} ms`);
    if (run.max < 20) break;
  }
  t.true(runs.length > 0, 'no IG call lasted one second');
  const bestMax = Math.min(...runs.map((r) => r.max));
  if (bestMax >= 20 && runs.every((r) => r.load > 1.5)) {
    // Other processes kept every core oversubscribed for the whole test: the max then measures them.
    t.log(`max event-loop delay ${bestMax.toFixed(2)} ms not asserted: machine oversubscribed (load per core > 1.5)`);
  } else {
    t.true(bestMax < 20, `max event-loop delays ${runs.map((r) => r.max.toFixed(2)).join(', ')} ms`);
  }
  await m.dispose();
});

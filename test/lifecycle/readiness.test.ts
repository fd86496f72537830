// The Lifecycle contract other listeners build on (gRPC health, "worker stuck" readiness): readiness
// combines every registered condition; onDraining fires once when shutdown begins; drainables drain
// in parallel and are forced past the timeout; disposers run after, told whether it was forced.
import test from 'ava';
import { Lifecycle, type Drainable } from '../../src/lifecycle.js';

test('readiness: starting → serving; each failed check is a reason; a removed check no longer counts', (t) => {
  const life = new Lifecycle();
  t.deepEqual(life.readiness(), { ready: false, draining: false, reasons: ['starting'] });
  life.markServing();
  t.true(life.isReady());
  let models = true;
  let stuck: string | undefined;
  life.addReadinessCheck('models', () => models);
  const removeStuck = life.addReadinessCheck('workers', () => stuck ?? true);
  models = false;
  stuck = 'worker 0 of digits@1.0 stuck past its deadline';
  t.deepEqual(life.readiness(), { ready: false, draining: false, reasons: ['models', 'worker 0 of digits@1.0 stuck past its deadline'] });
  models = true;
  t.false(life.isReady());
  removeStuck();
  t.true(life.isReady());
  t.true(life.isLive());
});

test('a check that throws makes the server not ready and says why', (t) => {
  const life = new Lifecycle();
  life.markServing();
  life.addReadinessCheck('grpc', () => {
    throw new Error('listener gone');
  });
  t.deepEqual(life.readiness().reasons, ['grpc: listener gone']);
});

test('shutdown: not ready at once (live until stopped), onDraining once, drainables in parallel, then disposers', async (t) => {
  const life = new Lifecycle();
  life.markServing();
  const events: string[] = [];
  life.onDraining(() => events.push(`draining ready=${life.isReady()} live=${life.isLive()}`));
  const drainable = (name: string, ms: number): Drainable => ({
    name,
    async drain() {
      events.push(`${name} drain`);
      await new Promise((r) => setTimeout(r, ms));
      events.push(`${name} drained`);
    },
    async forceClose() {
      events.push(`${name} forced`);
    },
  });
  life.addDrainable(drainable('http', 60));
  life.addDrainable(drainable('grpc', 20));
  life.addDisposer(({ forced }) => {
    events.push(`dispose forced=${forced}`);
  });
  const done = life.shutdown({ drainDelayMs: 50, timeoutMs: 5000 });
  t.is(life.phase, 'draining');
  t.false(life.isReady());
  t.deepEqual(life.readiness().reasons, ['draining']);
  t.is(life.shutdown(), done, 'idempotent');
  const report = await done;
  t.false(report.forced);
  t.true(report.ms >= 50 + 60 - 5, `${report.ms} ms`);
  t.deepEqual(events, ['draining ready=false live=true', 'http drain', 'grpc drain', 'grpc drained', 'http drained', 'dispose forced=false']);
  t.is(life.phase, 'stopped');
  t.false(life.isLive());
  let late = false;
  life.onDraining(() => (late = true));
  t.true(late, 'a listener added after the drain began is called at once');
});

test('shutdown past its timeout forces every drainable that has not finished and tells the disposers', async (t) => {
  const life = new Lifecycle();
  life.markServing();
  const forced: string[] = [];
  let release: () => void = () => {};
  life.addDrainable({
    name: 'stuck',
    drain: () => new Promise<void>((r) => (release = r)),
    async forceClose(reason) {
      forced.push(String(reason));
      release();
    },
  });
  let disposedForced: boolean | undefined;
  life.addDisposer(({ forced: f }) => {
    disposedForced = f;
  });
  const t0 = Date.now();
  const report = await life.shutdown({ drainDelayMs: 0, timeoutMs: 200 });
  t.true(report.forced);
  t.true(Date.now() - t0 >= 195);
  t.deepEqual(forced, ['shutdown_timeout (0.2 s) passed']);
  t.true(disposedForced);
});

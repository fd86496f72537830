// Rolling restart with nothing lost, for real: three torchd replicas, each in its own network namespace,
// behind HAProxy (the Kubernetes Service's stand-in) that health-checks the readiness route. Under steady
// load each replica in turn gets SIGTERM and is started again once it exited, as a rolling update does:
// no request may fail. Then one replica is SIGKILLed: only the requests it had in flight may fail, and
// HAProxy moves traffic to the others within its health-check interval. Needs root; skips (saying why)
// when namespaces cannot be made.
import test, { type ExecutionContext } from 'ava';
import autocannon from 'autocannon';
import type { EventEmitter } from 'node:events';
import { readFile, rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { makeModelStore } from '../http/_server.js';
import { CHECK, cannotRun, createCluster, type Cluster, type ServerStats } from './_netns-cluster.js';

const why = cannotRun();
const DIGIT = fileURLToPath(new URL('../fixtures/models/images/7.png', import.meta.url));
// Steady, bounded load: a fixed request rate over a few keep-alive connections (HAProxy reuses its own
// server-side connections, as a Service's clients would).
const LOAD = { connections: 6, overallRate: 90 } as const;
// drain_delay: how long a replica keeps serving after its readiness went false, so the balancer's health
// check (CHECK.fall failures CHECK.interMs apart) sees it before the listener stops accepting.
const DRAIN_DELAY_S = 3;

interface Sample {
  /** Date.now() when the response (or error) arrived */
  at: number;
  /** ms */
  latency: number;
  status?: number;
  error?: string;
}

interface Load {
  samples: Sample[];
  stop(): Promise<void>;
}

/** Runs until stop(): every response and error is recorded with its arrival time. */
function startLoad(url: string, body: Buffer): Load {
  const samples: Sample[] = [];
  const options = {
    url: `${url}/predictions/mnist`,
    method: 'POST',
    body,
    headers: { 'content-type': 'image/png' },
    connections: LOAD.connections,
    overallRate: LOAD.overallRate,
    duration: 3600,
    timeout: 30,
  };
  // autocannon returns a thenable EventEmitter with stop() (the bench's typing only needs the promise).
  const instance = autocannon(options as Parameters<typeof autocannon>[0]) as unknown as EventEmitter &
    PromiseLike<unknown> & { stop(): void };
  instance.on('response', (_client: unknown, status: number, _bytes: number, latency: number) => {
    samples.push({ at: Date.now(), latency, status });
  });
  instance.on('reqError', (err: Error) => samples.push({ at: Date.now(), latency: 0, error: err.message }));
  return {
    samples,
    async stop() {
      instance.stop();
      await instance;
    },
  };
}

const failed = (s: Sample) => s.error !== undefined || s.status === undefined || s.status < 200 || s.status >= 300;

function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

function describeFailures(samples: Sample[]): string {
  const counts = new Map<string, number>();
  for (const s of samples.filter(failed)) {
    const k = s.error ?? `HTTP ${s.status}`;
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return [...counts].map(([k, n]) => `${n}× ${k}`).join(', ') || 'none';
}

function perReplica(servers: ServerStats[]): string {
  return servers.map((s) => `${s.name}=${s.hrsp2xx}`).join(' ');
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let cluster: Cluster | undefined;
let store: string | undefined;
let body: Buffer;

test.before(async (t) => {
  if (why) return;
  // Three replicas start at once; on a loaded 2-core CI machine that can take a while.
  t.timeout(180_000);
  body = await readFile(DIGIT);
  store = await makeModelStore(['mnist']);
  cluster = await createCluster({
    replicas: 3,
    modelStore: store,
    models: 'mnist=mnist.mar',
    healthPath: '/v2/health/ready',
    port: 8080,
    env: { TS_DRAIN_DELAY: String(DRAIN_DELAY_S), TS_DEFAULT_WORKERS_PER_MODEL: '1', TS_INTRA_OP_THREADS: '1' },
  });
});

test.after.always(async () => {
  await cluster?.close();
  if (store) await rm(store, { recursive: true, force: true });
});

// Without namespaces the tests are registered as skipped with the reason in their titles (ava prints them).
const maybe = (title: string, fn: (t: ExecutionContext) => Promise<void>) =>
  why ? test.serial.skip(`${title} — skipped: ${why}`, fn) : test.serial(title, fn);
if (why) console.error(`rolling-restart: skipped: ${why}`);

maybe('rolling restart: each replica SIGTERMed and started again in turn → zero failed requests', async (t) => {
  t.timeout(300_000);
  const c = cluster!;
  const load = startLoad(c.url, body);
  let windowStart = 0;
  let windowEnd = 0;
  const downAfter: number[] = [];
  try {
    await sleep(2000);
    windowStart = Date.now();
    for (const r of c.replicas) {
      const torchd = r.torchd!;
      const signalledAt = Date.now();
      torchd.child.kill('SIGTERM');
      // Readiness goes false first: the balancer takes the replica out while it still serves.
      downAfter.push(await c.waitForStatus(r.name, /^DOWN/, 60_000).then(() => Date.now() - signalledAt));
      const { code, signal } = await torchd.exited;
      t.is(code, 0, `${r.name} exit after SIGTERM (signal ${signal}): ${torchd.stderr().slice(-1000)}`);
      await c.startReplica(r.index);
      await c.waitForStatus(r.name, /^UP/, 60_000);
    }
    windowEnd = Date.now();
    await sleep(2000);
  } finally {
    await load.stop();
  }
  const { backend, servers } = await c.stats();
  const samples = load.samples;
  const during = samples.filter((s) => s.at >= windowStart && s.at <= windowEnd && !failed(s)).map((s) => s.latency);
  const failures = samples.filter(failed).length;
  t.log(`rolling restart: ${samples.length} requests, ${failures} failed (${describeFailures(samples)})`);
  t.log(`  p99 during the restart (${((windowEnd - windowStart) / 1000).toFixed(1)} s): ${percentile(during, 99)} ms; p99 overall ${percentile(samples.filter((s) => !failed(s)).map((s) => s.latency), 99)} ms`);
  t.log(`  per replica (2xx, across restarts): ${perReplica(servers)}; out of rotation after SIGTERM in ${downAfter.join(' / ')} ms`);
  t.log(`  haproxy: retries ${backend.wretr}, redispatches ${backend.wredis}, connection errors ${backend.econ}, response errors ${backend.eresp}`);

  t.true(samples.length > 200, `enough load to mean something (${samples.length})`);
  t.is(failures, 0, `failed requests: ${describeFailures(samples)}`);
  // Nothing was papered over by the balancer either: it never had to retry or redispatch a request.
  t.is(backend.wretr + backend.wredis, 0, 'haproxy retries + redispatches');
  for (const s of servers) t.true(s.hrsp2xx > 0, `${s.name} served requests`);
});

maybe('SIGKILL: only the killed replica\'s in-flight requests may fail; traffic moves within the check interval', async (t) => {
  t.timeout(300_000);
  const c = cluster!;
  const victim = c.replicas[1];
  const load = startLoad(c.url, body);
  let detectMs = 0;
  let before: ServerStats | undefined;
  let atDown: ServerStats | undefined;
  let beforeRestart: ServerStats | undefined;
  let killedAt = 0;
  try {
    await sleep(2000);
    before = (await c.stats()).servers.find((s) => s.name === victim.name);
    killedAt = Date.now();
    victim.torchd!.child.kill('SIGKILL');
    detectMs = await c.waitForStatus(victim.name, /^DOWN/, 10_000);
    atDown = (await c.stats()).servers.find((s) => s.name === victim.name);
    await sleep(2000);
    beforeRestart = (await c.stats()).servers.find((s) => s.name === victim.name);
    await victim.torchd!.exited;
    await c.startReplica(victim.index);
    await c.waitForStatus(victim.name, /^UP/, 60_000);
    await sleep(1000);
  } finally {
    await load.stop();
  }
  const { backend, servers } = await c.stats();
  const samples = load.samples.filter((s) => s.at >= killedAt - 2000);
  const failures = load.samples.filter(failed);
  const others = servers.filter((s) => s.name !== victim.name);
  t.log(`SIGKILL ${victim.name}: ${load.samples.length} requests, ${failures.length} failed (${describeFailures(load.samples)}); out of rotation in ${detectMs} ms`);
  const vs = servers.find((s) => s.name === victim.name)!;
  t.log(`  in flight on ${victim.name} just before the kill: ${before?.current}; haproxy saw ${vs.srvAbrt} server aborts, ${vs.eresp} response errors on it (re-sent elsewhere unless counted as failed above)`);
  t.log(`  per replica (2xx, cumulative): ${perReplica(servers)}; haproxy retries ${backend.wretr}, redispatches ${backend.wredis}`);

  t.true(samples.length > 100, `enough load (${samples.length})`);
  // At most one request per client connection can be in flight anywhere, so at most that many on the victim.
  t.true(failures.length <= LOAD.connections, `failures ${failures.length} ≤ in-flight bound ${LOAD.connections}: ${describeFailures(load.samples)}`);
  for (const f of failures) t.true(f.at >= killedAt, 'nothing failed before the kill');
  // Every client-visible failure is one HAProxy saw die on the victim (aborted, no response, no connection).
  const v = servers.find((s) => s.name === victim.name)!;
  t.true(failures.length <= v.srvAbrt + v.eresp + v.econ, `failures ${failures.length} ≤ victim's aborted requests ${v.srvAbrt + v.eresp + v.econ}`);
  // Failures come from the victim only: the other replicas saw no connection, response or abort errors.
  for (const s of others) t.is(s.econ + s.eresp + s.srvAbrt, 0, `${s.name} errors`);
  // Out of rotation within the check interval (fall × inter), with slack for a loaded 2-core machine.
  t.true(detectMs <= CHECK.fall * CHECK.interMs + 1500, `detected in ${detectMs} ms`);
  // Once DOWN, nothing more was sent to it until it came back.
  t.is(beforeRestart!.total, atDown!.total, `${victim.name} got no new requests while DOWN`);
});

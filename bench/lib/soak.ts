// The soak (issue 9 item 4): a long stream of mixed requests — predictions and explanations over the
// TorchServe, KServe v1 and KServe v2 routes, health probes, and bad inputs whose 4xx is the intended
// answer — with register/unregister and scale cycles in between, against a real `torchd start` child
// process whose RSS is sampled from /proc. Used by `npm run soak` (bench/soak.ts, 100 000 requests)
// and by the CI-sized test (test/soak/soak.test.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { writeMar } from '../../src/store/index.js';
import { ROOT, rssBytes } from './servers.js';

const MODELS = path.join(ROOT, 'test', 'fixtures', 'models');
const digitPng = (d: number) => readFileSync(path.join(MODELS, 'images', `${d}.png`));

/** One kind of request in the mix: how to send it and the only status it may get. */
interface RequestKind {
  name: string;
  /** Relative weight in the mix. */
  weight: number;
  expect: number;
  send(s: SoakServer, i: number): Promise<Response>;
  /** Optional check of a 2xx body; returns a problem or undefined. */
  check?(body: string, i: number): string | undefined;
}

const json = (body: unknown): RequestInit => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
const DIGITS = Array.from({ length: 10 }, (_, d) => digitPng(d));
const DIGITS_B64 = DIGITS.map((b) => b.toString('base64'));
const digitOf = (i: number) => i % 10;

/** The request mix. Every kind names the status it must get; anything else is a soak failure. */
export const KINDS: RequestKind[] = [
  {
    name: 'predict PNG (PUT /predictions/mnist)', weight: 6, expect: 200,
    send: (s, i) => fetch(`${s.inference}/predictions/mnist`, { method: 'PUT', body: DIGITS[digitOf(i)] }),
    check: (b) => (/^\d$/.test(b) ? undefined : `not a digit: ${b.slice(0, 80)}`),
  },
  {
    name: 'predict tensors (POST /v2/models/add2/infer)', weight: 4, expect: 200,
    send: (s, i) => fetch(`${s.inference}/v2/models/add2/infer`, json({
      id: `soak-${i}`,
      inputs: [{ name: 'a', shape: [1, 3], datatype: 'FP32', data: [i % 7, 1, 2] }, { name: 'b', shape: [1, 3], datatype: 'FP32', data: [1, 1, 1] }],
    })),
    check: (b, i) => {
      const data = (JSON.parse(b) as { outputs?: { data?: number[] }[] }).outputs?.[0]?.data;
      return JSON.stringify(data) === JSON.stringify([(i % 7) + 1, 2, 3]) ? undefined : `wrong sum: ${b.slice(0, 120)}`;
    },
  },
  {
    name: 'predict KServe v1 (POST /v1/models/mnist:predict)', weight: 3, expect: 200,
    send: (s, i) => fetch(`${s.inference}/v1/models/mnist:predict`, json({ instances: [{ data: DIGITS_B64[digitOf(i)] }] })),
    check: (b) => (/^\{"predictions":\[\d\]\}$/.test(b) ? undefined : `unexpected body: ${b.slice(0, 80)}`),
  },
  {
    name: 'explain PNG (POST /explanations/mnist)', weight: 1, expect: 200,
    send: (s, i) => fetch(`${s.inference}/explanations/mnist`, { method: 'POST', body: DIGITS[digitOf(i)] }),
  },
  {
    name: 'explain KServe v1 (POST /v1/models/mnist:explain)', weight: 1, expect: 200,
    send: (s, i) => fetch(`${s.inference}/v1/models/mnist:explain`, json({ instances: [{ data: DIGITS_B64[digitOf(i)] }] })),
  },
  {
    name: 'explain KServe v2 (POST /v2/models/add2/explain)', weight: 1, expect: 200,
    send: (s) => fetch(`${s.inference}/v2/models/add2/explain`, json({
      inputs: [{ name: 'a', shape: [1, 3], datatype: 'FP32', data: [0.5, 2, -1] }, { name: 'b', shape: [1, 3], datatype: 'FP32', data: [0, 0, 3] }],
    })),
  },
  {
    name: 'health (GET /ping)', weight: 1, expect: 200,
    send: (s) => fetch(`${s.inference}/ping`),
  },
  {
    name: 'bad image (PUT /predictions/mnist, not an image)', weight: 1, expect: 400,
    send: (s, i) => fetch(`${s.inference}/predictions/mnist`, { method: 'PUT', body: Buffer.from(`not an image ${i}`) }),
  },
  {
    name: 'bad JSON (POST /v1/models/mnist:predict)', weight: 1, expect: 400,
    send: (s) => fetch(`${s.inference}/v1/models/mnist:predict`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"instances": [' }),
  },
  {
    name: 'bad tensor shape (POST /v2/models/add2/infer)', weight: 1, expect: 400,
    send: (s) => fetch(`${s.inference}/v2/models/add2/infer`, json({
      inputs: [{ name: 'a', shape: [1, 3], datatype: 'FP32', data: [1, 2] }, { name: 'b', shape: [1, 3], datatype: 'FP32', data: [1, 1, 1] }],
    })),
  },
  {
    name: 'unknown model (POST /predictions/nope)', weight: 1, expect: 404,
    send: (s) => fetch(`${s.inference}/predictions/nope`, { method: 'POST', body: DIGITS[0] }),
  },
];

export interface SoakServer {
  child: ChildProcess;
  pid: number;
  inference: string;
  management: string;
  metrics: string;
  /** stderr so far (for failure messages). */
  stderr(): string;
  /** SIGTERM, wait for exit; returns the exit code and signal. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** A model store with mnist (image_classifier, MNIST preset) and add2 (tensor handler). */
export async function makeSoakStore(): Promise<string> {
  const root = await mkdtemp(path.join(tmpdir(), 'torchd-soak-'));
  await writeMar({ modelName: 'mnist', version: '1.0', serializedFile: path.join(MODELS, 'mnist.pt'), handler: 'image_classifier', configFile: path.join(MODELS, 'mnist-config.yaml'), exportPath: root });
  await writeMar({ modelName: 'add2', version: '1.0', serializedFile: path.join(MODELS, 'add2.pt'), handler: 'tensor', exportPath: root });
  return root;
}

/** Starts `torchd start` on the store (mnist + add2) on free loopback ports; resolves when it is ready. */
export async function startSoakServer(store: string): Promise<SoakServer> {
  const props = path.join(store, 'soak.properties');
  // Logs at warn: one info line per request would make the soak measure the log pipe.
  // gRPC on free ports too: a soak next to tests or another server must not fight over 7070/7071.
  writeFileSync(props, 'job_queue_size=200\ngrpc_inference_port=0\ngrpc_management_port=0\n');
  const child = spawn(process.execPath, [
    path.join(ROOT, 'bin', 'torchd.js'), 'start', '--model-store', store, '--models', 'mnist=mnist.mar,add2=add2.mar',
    '--ts-config', props, '--inference-address', 'http://127.0.0.1:0', '--management-address', 'http://127.0.0.1:0',
    '--metrics-address', 'http://127.0.0.1:0',
  ], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr = (stderr + d).slice(-20_000)));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const addresses = await new Promise<{ inference: string; management: string; metrics: string }>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (text) => {
      try {
        const line = JSON.parse(text) as { msg?: string; addresses?: { inference: string; management: string; metrics: string } };
        // The ready line tells the ports; request lines are not needed (and not wanted in memory).
        if (line.msg === 'torchd ready' && line.addresses) resolve(line.addresses);
      } catch {
        // not JSON
      }
    });
    void exited.then(({ code, signal }) => reject(new Error(`torchd exited (${code ?? signal}) before it was ready:\n${stderr}`)));
  });
  // Keep the pipe drained (request log lines) without keeping them.
  child.stdout!.resume();
  return {
    child, pid: child.pid!, ...addresses, stderr: () => stderr,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

export interface RssSample {
  /** Requests completed when sampled. */
  done: number;
  /** Seconds since the soak started. */
  s: number;
  rssMiB: number;
  /** V8 heap in use and memory outside the heap owned by JS objects (Buffers, tensors), from /metrics. */
  heapUsedMiB?: number;
  externalMiB?: number;
  heapTotalMiB?: number;
}

export interface SoakResult {
  requests: number;
  concurrency: number;
  seconds: number;
  requestsPerSecond: number;
  /** Per kind: count and status histogram. */
  kinds: { name: string; expect: number; count: number; statuses: Record<string, number> }[];
  /** Requests whose status (or body) was not the intended one; the first 20 are in `unexpectedSamples`. */
  unexpected: number;
  unexpectedSamples: string[];
  cycles: { done: number; steps: string[]; problems: string[] };
  rss: {
    samples: RssSample[];
    /** The first `warmupFraction` of the requests are warm-up. */
    warmupFraction: number;
    /** Median RSS over the 10 % of requests right after warm-up (MiB). */
    afterWarmupMiB: number;
    /** Median RSS over the last 10 % of requests (MiB). */
    endMiB: number;
    /** (end − afterWarmup) ÷ afterWarmup, percent. */
    driftPct: number;
    /** (max after warm-up − afterWarmup) ÷ afterWarmup, percent. */
    peakPct: number;
    /**
     * RSS minus the V8 heap's committed size, medians as above (MiB): memory outside the main JS heap
     * (LibTorch, allocator arenas, image-worker isolates), where a native leak would show without the
     * noise of the heap settling its size.
     */
    restAfterWarmupMiB: number;
    restEndMiB: number;
  };
}

export interface SoakOptions {
  requests: number;
  concurrency: number;
  /** Register/unregister + scale cycles, spread evenly over the run. */
  cycles: number;
  /** RSS samples over the run (default 200). */
  samples?: number;
  warmupFraction?: number;
  /** Only the kinds whose name matches (to find which kind moves the RSS); default all. */
  kinds?: RegExp;
  onProgress?(done: number): void;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Runs the soak against a started server (see startSoakServer). */
export async function runSoak(server: SoakServer, options: SoakOptions): Promise<SoakResult> {
  const { requests, concurrency, cycles } = options;
  const warmupFraction = options.warmupFraction ?? 0.1;
  const sampleEvery = Math.max(1, Math.floor(requests / (options.samples ?? 200)));
  const kinds = KINDS.filter((k) => !options.kinds || options.kinds.test(k.name));
  if (kinds.length === 0) throw new Error(`no request kind matches ${options.kinds}`);
  // A fixed interleaving (not random): the same run every time, every kind spread over the whole run.
  const schedule: RequestKind[] = [];
  for (const k of kinds) for (let w = 0; w < k.weight; w++) schedule.push(k);
  const spread = schedule.map((k, i) => ({ k, key: (i * 7919) % schedule.length })).sort((a, b) => a.key - b.key).map((x) => x.k);
  const stats = new Map(kinds.map((k) => [k.name, { name: k.name, expect: k.expect, count: 0, statuses: {} as Record<string, number> }]));
  const unexpectedSamples: string[] = [];
  let unexpected = 0;
  const samples: RssSample[] = [];
  const t0 = performance.now();
  let next = 0;
  let done = 0;
  const scrapes: Promise<void>[] = [];
  const sample = () => {
    const point: RssSample = { done, s: (performance.now() - t0) / 1000, rssMiB: rssBytes(server.pid) / 2 ** 20 };
    samples.push(point);
    // Where the memory is, when it moves: the server's own gauges (prom-client's default metrics).
    scrapes.push(fetch(`${server.metrics}/metrics`).then((r) => r.text()).then((text) => {
      const gauge = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1]) / 2 ** 20;
      point.heapUsedMiB = gauge('nodejs_heap_size_used_bytes');
      point.externalMiB = gauge('nodejs_external_memory_bytes');
      point.heapTotalMiB = gauge('nodejs_heap_size_total_bytes');
    }, () => {}));
  };
  sample();

  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= requests) return;
      const kind = spread[i % spread.length];
      let status: string;
      let problem: string | undefined;
      try {
        const res = await kind.send(server, i);
        const body = await res.text();
        status = String(res.status);
        if (res.status !== kind.expect) problem = `${kind.name}: ${res.status} (expected ${kind.expect}) ${body.slice(0, 200)}`;
        else if (kind.check && res.status < 300) problem = kind.check(body, i);
        if (problem && !problem.startsWith(kind.name)) problem = `${kind.name}: ${problem}`;
      } catch (err) {
        status = 'error';
        problem = `${kind.name}: ${(err as Error).message} ${String((err as { cause?: unknown }).cause ?? '')}`;
      }
      const st = stats.get(kind.name)!;
      st.count++;
      st.statuses[status] = (st.statuses[status] ?? 0) + 1;
      if (problem) {
        unexpected++;
        if (unexpectedSamples.length < 20) unexpectedSamples.push(problem);
      }
      done++;
      if (done % sampleEvery === 0) sample();
      if (options.onProgress && done % 1000 === 0) options.onProgress(done);
    }
  };

  const cycle = runCycles(server, cycles, requests, () => done);
  await Promise.all(Array.from({ length: concurrency }, worker));
  const cycleResult = await cycle;
  sample();
  const seconds = (performance.now() - t0) / 1000;
  await Promise.all(scrapes);

  const after = samples.filter((x) => x.done >= requests * warmupFraction);
  const early = after.filter((x) => x.done <= requests * (warmupFraction + 0.1));
  const late = samples.filter((x) => x.done >= requests * 0.9);
  const afterWarmupMiB = median(early.map((x) => x.rssMiB));
  const endMiB = median(late.map((x) => x.rssMiB));
  const rest = (xs: RssSample[]) => median(xs.filter((x) => x.heapTotalMiB !== undefined).map((x) => x.rssMiB - x.heapTotalMiB!));
  const peak = Math.max(...after.map((x) => x.rssMiB));
  return {
    requests, concurrency, seconds, requestsPerSecond: requests / seconds,
    kinds: [...stats.values()], unexpected, unexpectedSamples, cycles: cycleResult,
    rss: {
      samples, warmupFraction, afterWarmupMiB, endMiB,
      driftPct: ((endMiB - afterWarmupMiB) / afterWarmupMiB) * 100,
      restAfterWarmupMiB: rest(early),
      restEndMiB: rest(late),
      peakPct: ((peak - afterWarmupMiB) / afterWarmupMiB) * 100,
    },
  };
}

/**
 * `cycles` times, spread over the run: register a second copy of the digit model under another name,
 * predict with it, scale mnist to 2 workers, unregister the copy, scale mnist back to 1. Every step
 * has one intended answer; traffic to mnist keeps flowing meanwhile and must not notice.
 */
async function runCycles(server: SoakServer, cycles: number, requests: number, progress: () => number) {
  const steps: string[] = [];
  const problems: string[] = [];
  const expect = async (what: string, status: number, p: Promise<Response>, body?: string) => {
    try {
      const r = await p;
      const text = await r.text();
      steps.push(`${what} → ${r.status}`);
      if (r.status !== status || (body !== undefined && text !== body)) problems.push(`${what}: ${r.status} ${text.slice(0, 200)} (expected ${status}${body ? ` ${body}` : ''})`);
    } catch (err) {
      problems.push(`${what}: ${(err as Error).message}`);
    }
  };
  let done = 0;
  for (let c = 1; c <= cycles; c++) {
    const at = Math.floor((requests * c) / (cycles + 1));
    while (progress() < at && progress() < requests) await new Promise((r) => setTimeout(r, 20));
    if (progress() >= requests) break;
    const m = server.management;
    await expect('register soak_digits', 200, fetch(`${m}/models?url=mnist.mar&model_name=soak_digits&initial_workers=1&synchronous=true`, { method: 'POST' }));
    for (let d = 0; d < 3; d++) {
      await expect(`predict soak_digits ${d}`, 200, fetch(`${server.inference}/predictions/soak_digits`, { method: 'PUT', body: DIGITS[d] }));
    }
    await expect('scale mnist to 2', 200, fetch(`${m}/models/mnist?min_worker=2&max_worker=2&synchronous=true`, { method: 'PUT' }));
    await expect('unregister soak_digits', 200, fetch(`${m}/models/soak_digits`, { method: 'DELETE' }));
    await expect('predict soak_digits after unregister', 404, fetch(`${server.inference}/predictions/soak_digits`, { method: 'PUT', body: DIGITS[0] }));
    await expect('scale mnist to 1', 200, fetch(`${m}/models/mnist?min_worker=1&max_worker=1&synchronous=true`, { method: 'PUT' }));
    done++;
  }
  return { done, steps, problems };
}

/** Removes a store made by makeSoakStore. */
export async function removeSoakStore(store: string): Promise<void> {
  await rm(store, { recursive: true, force: true });
}

// The servers under test: a model store for torchd (exploded model folders), torchd itself as a
// child process (`node bin/torchd.js start`), the FastAPI peer, and what we read from them (RSS,
// Prometheus metrics).
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';

export const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');

export interface ModelFolder {
  name: string;
  file: string;
  handler: 'image_classifier' | 'tensor';
  /** model-config.yaml keys */
  config: Record<string, unknown>;
}

/** Writes one exploded model folder (MAR-INF/MANIFEST.json, the .pt hard-linked, model-config.yaml). */
export function writeModelFolder(store: string, m: ModelFolder, extraFiles: string[] = []): void {
  const dir = path.join(store, m.name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(path.join(dir, 'MAR-INF'), { recursive: true });
  const manifest = {
    runtime: 'python',
    model: { modelName: m.name, modelVersion: '1.0', serializedFile: 'model.pt', handler: m.handler },
    archiverVersion: 'torchd-bench',
  };
  writeFileSync(path.join(dir, 'MAR-INF', 'MANIFEST.json'), JSON.stringify(manifest, null, 2));
  linkOrCopy(m.file, path.join(dir, 'model.pt'));
  for (const f of extraFiles) linkOrCopy(f, path.join(dir, path.basename(f)));
  writeFileSync(path.join(dir, 'model-config.yaml'), toYaml(m.config));
}

function linkOrCopy(from: string, to: string): void {
  try {
    linkSync(from, to);
  } catch {
    copyFileSync(from, to);
  }
}

function toYaml(obj: Record<string, unknown>, indent = ''): string {
  return Object.entries(obj)
    .map(([k, v]) => {
      if (v !== null && typeof v === 'object' && !Array.isArray(v)) return `${indent}${k}:\n${toYaml(v as Record<string, unknown>, indent + '  ')}`;
      return `${indent}${k}: ${JSON.stringify(v)}`;
    })
    .join('\n') + '\n';
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

export interface Running {
  child: ChildProcess;
  base: string;
  metricsBase?: string;
  /** torchd's gRPC inference listener, host:port. */
  grpc?: string;
  /** Milliseconds from spawn to the first healthy /ping. */
  startupMs: number;
  stop(): Promise<void>;
  log(): string;
}

async function waitHealthy(base: string, child: ChildProcess, timeoutMs: number, logs: () => string): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}:\n${logs()}`);
    try {
      const res = await fetch(`${base}/ping`);
      const body = (await res.json()) as { status?: string };
      if (res.status === 200 && body.status === 'Healthy') return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`server at ${base} not healthy after ${timeoutMs} ms:\n${logs()}`);
}

function track(child: ChildProcess): () => string {
  let out = '';
  const keep = (d: Buffer) => {
    out += d.toString();
    if (out.length > 200_000) out = out.slice(-100_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return () => out.slice(-4000);
}

function stopper(child: ChildProcess): () => Promise<void> {
  return () =>
    new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      child.kill('SIGTERM');
    });
}

/** A server variant of the probes' `--variant 'NAME:VAR=VALUE VAR2=VALUE2'`: its name and the environment it adds. */
export interface Variant {
  name: string;
  env: Record<string, string>;
}

/** The probes' --variant flags (none: one variant `base` with no variables). */
export function parseVariants(flags: string[]): Variant[] {
  return (flags.length ? flags : ['base:']).map((v) => {
    const i = v.indexOf(':');
    const env = (i < 0 ? '' : v.slice(i + 1)).split(' ').filter(Boolean).map((a) => [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)]);
    return { name: i < 0 ? v : v.slice(0, i), env: Object.fromEntries(env) as Record<string, string> };
  });
}

/** Starts torchd on free loopback ports with `models` (names of folders in `store`). */
/** `env`: variables added to this process's environment for the child (TS_<KEY> config keys, NODE_OPTIONS...). */
export async function startTorchd(store: string, models: string[], options: { threads?: number; env?: Record<string, string>; nodeArgs?: string[] } = {}): Promise<Running> {
  const [inf, mgmt, met, grpc] = [await freePort(), await freePort(), await freePort(), await freePort()];
  // config.properties carries what has no CLI flag (LibTorch intra-op threads per worker, gRPC ports).
  const configFile = path.join(store, '..', 'config.properties');
  writeFileSync(configFile, `intra_op_threads=${options.threads ?? 0}\ngrpc_inference_port=${grpc}\ngrpc_management_port=0\n`);
  const args = [
    ...(options.nodeArgs ?? []), path.join(ROOT, 'bin', 'torchd.js'), 'start', '--model-store', store, '--models', models.map((m) => `${m}=${m}`).join(','),
    '--inference-address', `http://127.0.0.1:${inf}`, '--management-address', `http://127.0.0.1:${mgmt}`,
    '--metrics-address', `http://127.0.0.1:${met}`, '--log-level', 'warn', '--ts-config', configFile,
  ];
  const t0 = performance.now();
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs = track(child);
  const base = `http://127.0.0.1:${inf}`;
  await waitHealthy(base, child, 120_000, logs);
  return { child, base, metricsBase: `http://127.0.0.1:${met}`, grpc: `127.0.0.1:${grpc}`, startupMs: performance.now() - t0, stop: stopper(child), log: logs };
}

/** Starts the FastAPI peer (bench/peers/fastapi_server.py) with NAME=FILE:PRESET models. */
/** The FastAPI peer; `optimize`: the tuned peer, serving torch.jit.optimize_for_inference(torch.jit.freeze(m)). */
export async function startPeer(models: string[], threads: number, optimize = false): Promise<Running> {
  const port = await freePort();
  const args = [path.join(ROOT, 'bench', 'peers', 'fastapi_server.py'), '--port', String(port), '--threads', String(threads), ...(optimize ? ['--optimize'] : [])];
  for (const m of models) args.push('--model', m);
  const t0 = performance.now();
  const child = spawn('/usr/bin/python3', args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs = track(child);
  const base = `http://127.0.0.1:${port}`;
  await waitHealthy(base, child, 120_000, logs);
  return { child, base, startupMs: performance.now() - t0, stop: stopper(child), log: logs };
}

/** Resident set size of a process, in bytes (Linux /proc). */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+)\s+kB/.exec(status)?.[1]);
  return kb * 1024;
}

export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export type Scrape = PromSample[];

/**
 * Sample lines of a /metrics page. The text is validated with parse-prometheus-text-format (it
 * throws on malformed exposition text) but read line by line, because that parser folds labelled
 * histograms into one unlabelled sample.
 */
export async function scrape(metricsBase: string): Promise<Scrape> {
  const text = await (await fetch(`${metricsBase}/metrics`)).text();
  parsePrometheusTextFormat(text);
  return sampleLines(text);
}

/** Every sample line of Prometheus exposition text, with its labels (also used by the metrics tests). */
export function sampleLines(text: string): Scrape {
  return text
    .split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(l);
      if (!m) throw new Error(`unparsable sample line: ${l}`);
      const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
      return { name: m[1], labels, value: Number(m[3]) };
    });
}

export function sample(s: Scrape, name: string, labels: Record<string, string> = {}): number {
  const m = s.find((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v));
  return m ? m.value : 0;
}

/** "server mean ms: queue 1.23, preprocess …" over the stages that ran (serverSplit's stagesMs). */
export function stagesText(stages: Record<string, number>, digits: number): string {
  return 'server mean ms: ' + Object.entries(stages).filter(([, v]) => Number.isFinite(v)).map(([k, v]) => `${k} ${v.toFixed(digits)}`).join(', ');
}

/** Server-side figures of a window between two scrapes: mean batch size and mean ms per stage. */
export function serverSplit(before: Scrape, after: Scrape, model: string): { meanBatch: number; nativeCalls: number; stagesMs: Record<string, number> } {
  const d = (name: string, labels: Record<string, string>) => sample(after, name, labels) - sample(before, name, labels);
  const l = { model_name: model };
  const calls = d('torchd_batch_size_count', l);
  const rows = d('torchd_batch_size_sum', l);
  const stagesMs: Record<string, number> = {};
  for (const stage of ['queue', 'preprocess', 'inference', 'postprocess']) {
    const n = d('torchd_stage_duration_seconds_count', { ...l, stage });
    stagesMs[stage] = n > 0 ? (d('torchd_stage_duration_seconds_sum', { ...l, stage }) / n) * 1000 : NaN;
  }
  return { meanBatch: calls > 0 ? rows / calls : NaN, nativeCalls: calls, stagesMs };
}

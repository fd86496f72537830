// The ceiling: the native harness (C++ over native/core, no Node) when it is built and speaks JSON;
// otherwise the addon called directly from Node without HTTP, handlers or batcher (a slightly lower
// ceiling: it includes the N-API crossing). The report names which one was used.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { THREADING_ENV_DEFAULTS } from '../../src/native.js';
import { ROOT } from './servers.js';

const run = promisify(execFile);
/**
 * The harness runs LibTorch with the server's threading variables (a value set in the bench's environment wins,
 * as in the server). Not settled in process.env itself: the FastAPI peers inherit that and run torch's defaults.
 */
const harnessEnv = { ...THREADING_ENV_DEFAULTS, ...process.env };

export interface CeilingPoint {
  batch: number;
  p50Ms: number;
  p99Ms: number;
  itemsPerSec: number;
}

export interface Ceiling {
  source: 'harness' | 'addon-direct';
  command?: string;
  points: CeilingPoint[];
  /** Integrated gradients, one example, `steps` steps: ms per call (p50). */
  igMs?: number;
  igSteps?: number;
}

export function harnessPath(): string | undefined {
  return ['build/Release/torchd-bench', 'build/torchd-bench'].map((p) => path.join(ROOT, p)).find((p) => existsSync(p));
}

function num(o: Record<string, unknown>, keys: string[]): number | undefined {
  for (const k of keys) if (typeof o[k] === 'number') return o[k] as number;
  return undefined;
}

/** The harness prints one JSON object per line: {batch, p50_ms, p99_ms, items_per_s, mode, ...}. */
function parseHarness(stdout: string): CeilingPoint[] {
  const points: CeilingPoint[] = [];
  for (const line of stdout.split('\n')) {
    if (!line.startsWith('{')) continue;
    const r = JSON.parse(line) as Record<string, unknown>;
    const batch = num(r, ['batch']);
    const p50 = num(r, ['p50_ms']);
    if (batch === undefined || p50 === undefined) continue;
    points.push({ batch, p50Ms: p50, p99Ms: num(r, ['p99_ms']) ?? p50, itemsPerSec: num(r, ['items_per_s']) ?? (batch * 1000) / p50 });
  }
  return points;
}

export interface CeilingOptions {
  model: string;
  shape: number[];
  batches: number[];
  threads: number;
  /** Concurrent forward loops on the one module (the server's workers); the harness's --workers. */
  workers?: number;
  device: string;
  precision: string;
  iters: number;
  igSteps?: number;
  /** Forward on the frozen + optimize_for_inference module (harness --optimize), as the server serves by default. */
  optimize?: boolean;
}

export async function measureCeiling(o: CeilingOptions): Promise<Ceiling> {
  const harness = harnessPath();
  if (harness) {
    const common = ['--model', o.model, '--dtype', 'float32', '--device', o.device, '--threads', String(o.threads)];
    const args = [...common, '--workers', String(o.workers ?? 1), '--shape', o.shape.join(','), '--batch', o.batches.join(','), '--warmup', '5', '--iters', String(o.iters), ...(o.optimize ? ['--optimize'] : [])];
    try {
      const { stdout } = await run(harness, args, { env: harnessEnv, maxBuffer: 16 << 20, timeout: 600_000 });
      const points = parseHarness(stdout);
      let igMs: number | undefined;
      const commands = [[path.relative(ROOT, harness), ...args].join(' ')];
      if (o.igSteps) {
        const igArgs = [...common, '--shape', [1, ...o.shape.slice(1)].join(','), '--batch', '1', '--warmup', '2', '--iters', String(Math.max(5, Math.min(20, o.iters))), '--ig', '--steps', String(o.igSteps)];
        const ig = parseHarness((await run(harness, igArgs, { env: harnessEnv, maxBuffer: 16 << 20, timeout: 600_000 })).stdout);
        igMs = ig[0]?.p50Ms;
        commands.push([path.relative(ROOT, harness), ...igArgs].join(' '));
      }
      if (points.length) return { source: 'harness', command: commands.join(' ; '), points, igMs, igSteps: o.igSteps };
      process.stderr.write(`[bench] harness output not understood, using the addon directly:\n${stdout.slice(0, 400)}\n`);
    } catch (err) {
      process.stderr.write(`[bench] harness failed (${(err as Error).message.split('\n')[0]}), using the addon directly\n`);
    }
  }
  return addonDirect(o);
}

async function addonDirect(o: CeilingOptions): Promise<Ceiling> {
  const native = (await import('../../src/native.js')) as unknown as {
    loadModel(p: string, opts: object): Promise<import('../../src/native.js').Model>;
  };
  const model = await native.loadModel(o.model, { device: o.device, threads: o.threads, workers: 1, precision: o.precision, optimize: o.optimize ?? false });
  const points: CeilingPoint[] = [];
  try {
    for (const batch of o.batches) {
      const shape = [batch, ...o.shape.slice(1)];
      const data = new Float32Array(shape.reduce((a, b) => a * b, 1)).map((_, i) => ((i * 2654435761) % 1000) / 1000 - 0.5);
      const input = { data, shape, dtype: 'float32' as const };
      for (let i = 0; i < 3; i++) await model.forward([input]);
      const times: number[] = [];
      for (let i = 0; i < o.iters; i++) {
        const t0 = performance.now();
        await model.forward([input]);
        times.push(performance.now() - t0);
      }
      times.sort((a, b) => a - b);
      const p50 = times[Math.floor(times.length / 2)];
      const mean = times.reduce((a, b) => a + b, 0) / times.length;
      points.push({ batch, p50Ms: p50, p99Ms: times[Math.min(times.length - 1, Math.floor(times.length * 0.99))], itemsPerSec: (batch * 1000) / mean });
    }
    let igMs: number | undefined;
    if (o.igSteps) {
      const shape = [1, ...o.shape.slice(1)];
      const input = { data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(0.25), shape, dtype: 'float32' as const };
      await model.integratedGradients([input], { target: [0], steps: o.igSteps });
      const times: number[] = [];
      for (let i = 0; i < 3; i++) {
        const t0 = performance.now();
        await model.integratedGradients([input], { target: [0], steps: o.igSteps });
        times.push(performance.now() - t0);
      }
      igMs = times.sort((a, b) => a - b)[1];
    }
    return { source: 'addon-direct', points, igMs, igSteps: o.igSteps };
  } finally {
    await model.dispose();
  }
}

/** Items/s of the ceiling at a (fractional) batch size: linear between the measured sizes. */
export function ceilingAt(c: Ceiling, batch: number): number {
  const pts = [...c.points].sort((a, b) => a.batch - b.batch);
  if (!(batch >= pts[0].batch)) return pts[0].itemsPerSec;
  for (let i = 1; i < pts.length; i++) {
    if (batch <= pts[i].batch) {
      const a = pts[i - 1];
      const b = pts[i];
      const f = (batch - a.batch) / (b.batch - a.batch);
      return a.itemsPerSec + f * (b.itemsPerSec - a.itemsPerSec);
    }
  }
  return pts[pts.length - 1].itemsPerSec;
}

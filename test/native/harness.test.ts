// torchd-bench runs on a tiny model and prints one well-formed JSON object per batch size
// (no timing is asserted: benchmarks are not tests).
import test from 'ava';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { fixture } from './helpers.js';

const run = promisify(execFile);
const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const bench = [resolve(root, 'build/Release/torchd-bench'), resolve(root, 'build/torchd-bench')].find((p) => existsSync(p));

interface BenchLine {
  batch: number;
  p50_ms: number;
  p99_ms: number;
  items_per_s: number;
  mean_ms: number;
  iters: number;
  threads: number;
  device: string;
  dtype: string;
  mode: string;
  steps: number;
}

function parseLines(stdout: string): BenchLine[] {
  return stdout.trim().split('\n').map((line) => JSON.parse(line) as BenchLine);
}

function checkLine(t: import('ava').ExecutionContext, line: BenchLine, batch: number, iters: number) {
  t.is(line.batch, batch);
  t.is(line.iters, iters);
  t.is(line.device, 'cpu');
  t.is(line.dtype, 'float32');
  t.true(Number.isInteger(line.threads) && line.threads >= 1);
  for (const key of ['p50_ms', 'p99_ms', 'items_per_s', 'mean_ms'] as const) {
    t.true(Number.isFinite(line[key]) && line[key] > 0, `${key} = ${line[key]}`);
  }
  t.true(line.p99_ms >= line.p50_ms);
}

test('forward sweep over batch sizes prints one JSON object per batch', async (t) => {
  t.truthy(bench, 'torchd-bench is built (npx cmake-js compile --out build)');
  const { stdout } = await run(bench!, [
    '--model', fixture('cnn.pt'), '--shape', '1,1,28,28', '--dtype', 'float32', '--device', 'cpu',
    '--batch', '1,2,4', '--warmup', '2', '--iters', '5', '--threads', '1',
  ]);
  const lines = parseLines(stdout);
  t.deepEqual(lines.map((l) => l.batch), [1, 2, 4]);
  for (const [i, line] of lines.entries()) {
    checkLine(t, line, [1, 2, 4][i], 5);
    t.is(line.mode, 'forward');
    t.is(line.threads, 1);
  }
});

test('--ig --steps times integrated gradients', async (t) => {
  t.truthy(bench);
  const { stdout } = await run(bench!, [
    '--model', fixture('cnn.pt'), '--shape', '1,1,28,28', '--batch', '2', '--warmup', '1', '--iters', '3',
    '--ig', '--steps', '4', '--target', '3',
  ]);
  const [line] = parseLines(stdout);
  checkLine(t, line, 2, 3);
  t.is(line.mode, 'ig');
  t.is(line.steps, 4);
});

test('bad invocations exit non-zero with a reason', async (t) => {
  t.truthy(bench);
  const missing = await t.throwsAsync(run(bench!, ['--model', fixture('missing.pt'), '--shape', '1,10']));
  t.is((missing as { code?: number }).code, 1);
  t.regex((missing as { stderr?: string }).stderr ?? '', /E_LOAD/);
  const usage = await t.throwsAsync(run(bench!, ['--model', fixture('linear.pt')]));
  t.is((usage as { code?: number }).code, 2);
  t.regex((usage as { stderr?: string }).stderr ?? '', /--shape is required/);
  const shape = await t.throwsAsync(run(bench!, ['--model', fixture('linear.pt'), '--shape', '1,7', '--iters', '1', '--warmup', '0']));
  t.is((shape as { code?: number }).code, 1);
  t.regex((shape as { stderr?: string }).stderr ?? '', /E_FORWARD/);
});

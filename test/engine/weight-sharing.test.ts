// Workers share one copy of the weights: loading a model of 64 MiB with 4 workers must not grow RSS
// by more than a quarter of the weight bytes over loading it with 1 worker (each in its own process,
// so allocator state of one run cannot hide the other). 64 MiB, not 16: each extra worker thread costs
// ≈ 0.7–1.3 MiB of its own (stack, malloc arena, oneDNN scratch), which reached the 4 MiB bound of a
// 16 MiB model once in 16 whole-suite runs; a copy of the weights per worker would add 192 MiB here.
import { execFile } from 'node:child_process';
import { mkdirSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test from 'ava';

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '..', '..');
const tmp = path.join(root, 'test', '.tmp');
const FEATURES = 4096; // Linear(4096, 4096): 64 MiB of float32 weights
const model = path.join(tmp, `linear-${FEATURES}.pt`);

test.before(async () => {
  mkdirSync(tmp, { recursive: true });
  // Made on demand by the committed recipe (too large to commit).
  if (!existsSync(model)) {
    await run('/usr/bin/python3', [path.join(root, 'test', 'fixtures', 'engine', 'make_models.py'), '--weights', model, '--features', String(FEATURES)]);
  }
});

async function growth(workers: number): Promise<{ workers: number; parameterBytes: number; growth: number }> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', path.join(here, 'rss-child.ts'), model, String(workers), String(FEATURES)], {
    cwd: root,
  });
  return JSON.parse(stdout.trim().split('\n').pop()!);
}

test('4 workers grow RSS by at most a quarter of the weight bytes over 1 worker', async (t) => {
  const one = await growth(1);
  const four = await growth(4);
  t.is(one.workers, 1);
  t.is(four.workers, 4);
  t.is(four.parameterBytes, FEATURES * FEATURES * 4 + FEATURES * 4);
  const extra = four.growth - one.growth;
  t.log(`RSS growth: 1 worker ${(one.growth / 2 ** 20).toFixed(1)} MiB, 4 workers ${(four.growth / 2 ** 20).toFixed(1)} MiB, weights ${(four.parameterBytes / 2 ** 20).toFixed(1)} MiB`);
  t.true(one.growth >= four.parameterBytes * 0.9, 'the load itself is visible in RSS (the measurement works)');
  t.true(extra <= four.parameterBytes / 4, `4 workers used ${(extra / 2 ** 20).toFixed(1)} MiB more than 1`);
  // The optimised module serves (optimize defaults to true) and the original was dropped after the first
  // forward: one copy of the weights, not two, until the first explanation.
  t.true(one.growth <= four.parameterBytes * 1.5, `1 worker grew RSS by ${(one.growth / 2 ** 20).toFixed(1)} MiB: more than one copy of the weights`);
});

// One figure of the bench's headline row in isolation: torchd serving ResNet-18 as `npm run bench` does
// (image_classifier, imagenet preset, batch 8, maxBatchDelay 5, one worker per core with one thread each, optimised
// module), sample.jpg at c=--c for --duration seconds, repeated --rounds times with the server restarted each round.
// Reports req/s, the mean batch, the server's CPU per request and its GC (count and time by kind, from prom-client's
// nodejs_gc_duration_seconds) so a change aimed at CPU or GC can be judged without the whole bench. With --variant
// 'NAME:VAR=VALUE VAR2=VALUE2' (repeatable) the rounds alternate between variants, each server started with those
// environment variables (TS_<KEY> config keys, NODE_OPTIONS, TORCHD_NATIVE_IMAGES...): A/B in one session. Not a test.
// With --model mnist: the bench's MNIST row instead (batch 16, one worker, 3.png; use --c 8 as the bench does).
// Run: npx tsx bench/load-probe.ts [--model resnet18|mnist] [--c 4] [--duration 8] [--rounds 3] [--variant base:] [--variant v8:TS_HEAP_GROWING_PERCENT=0]
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { load, send } from './lib/http-load.js';
import { ROOT, parseVariants, sample, scrape, serverSplit, startTorchd, writeModelFolder, type Scrape } from './lib/servers.js';

const { values: flags } = parseArgs({
  options: {
    model: { type: 'string', default: 'resnet18' },
    c: { type: 'string', default: '4' },
    duration: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '3' },
    variant: { type: 'string', multiple: true, default: [] },
    'max-batch-delay': { type: 'string', default: '5' },
    image: { type: 'string' },
  },
});
const mnist = flags.model === 'mnist';
if (!mnist && flags.model !== 'resnet18') throw new Error(`--model must be resnet18 or mnist, not ${flags.model}`);
const FIX = path.join(ROOT, 'test', 'fixtures', 'models');
const variants = parseVariants(flags.variant!);
const cores = os.availableParallelism();
const store = path.join(ROOT, 'bench', '.work', 'load-probe', 'store');
rmSync(store, { recursive: true, force: true });
mkdirSync(store, { recursive: true });
/** --max-batch-delay 5,20: one model per delay, each its own series of rounds. */
const delays = flags['max-batch-delay']!.split(',').map(Number);
const modelName = (delay: number) => `${flags.model}_d${delay}`;
for (const delay of delays) {
  writeModelFolder(store, {
    name: modelName(delay),
    file: path.join(FIX, mnist ? 'mnist.pt' : 'resnet18.pt'),
    handler: 'image_classifier',
    config: {
      batchSize: mnist ? 16 : 8, maxBatchDelay: delay, minWorkers: mnist ? 1 : cores, maxWorkers: mnist ? 1 : cores, device: 'cpu', precision: 'fp32',
      responseTimeout: 300, optimize: true, handler: { preset: mnist ? 'mnist' : 'imagenet' },
    },
  });
}
const imageFile = flags.image ?? path.join(FIX, mnist ? 'images/3.png' : 'sample.jpg');
const image = readFileSync(imageFile);
const contentType = imageFile.endsWith('.png') ? 'image/png' : 'image/jpeg';

function gc(s: Scrape): Record<string, { n: number; ms: number }> {
  const out: Record<string, { n: number; ms: number }> = {};
  for (const kind of ['minor', 'major', 'incremental', 'weakcb']) {
    out[kind] = { n: sample(s, 'nodejs_gc_duration_seconds_count', { kind }), ms: sample(s, 'nodejs_gc_duration_seconds_sum', { kind }) * 1000 };
  }
  return out;
}

for (let round = 0; round < Number(flags.rounds); round++) {
  for (const v of variants) for (const delay of delays) {
    const name = modelName(delay);
    const body = { path: `/predictions/${name}`, headers: { 'content-type': contentType }, body: image };
    const server = await startTorchd(store, [name], { threads: 1, env: v.env });
    try {
      for (let i = 0; i < 20; i++) if ((await send(server.base, body)) !== 200) throw new Error('warm-up request failed');
      const before = await scrape(server.metricsBase!);
      const r = await load(server.base, body, Number(flags.c), Number(flags.duration));
      const after = await scrape(server.metricsBase!);
      const split = serverSplit(before, after, name);
      const requests = r.reqPerSec * Number(flags.duration);
      const cpuMs = (sample(after, 'process_cpu_seconds_total', {}) - sample(before, 'process_cpu_seconds_total', {})) * 1000;
      const [g0, g1] = [gc(before), gc(after)];
      const gcText = Object.keys(g1).map((k) => `${k} ${g1[k].n - g0[k].n}/${(g1[k].ms - g0[k].ms).toFixed(0)}ms`).join(' ');
      console.log(`${v.name} delay ${delay} round ${round + 1}: ${r.reqPerSec.toFixed(1)} req/s p50 ${r.p50} ms batch ${split.meanBatch.toFixed(2)} cpu/req ${(cpuMs / requests).toFixed(1)} ms; gc ${gcText}; load ${os.loadavg()[0].toFixed(2)}`);
    } finally {
      await server.stop();
    }
  }
}

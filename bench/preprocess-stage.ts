// The bench's "preprocess stage" row alone (perf.md: ≤ 3 ms): torchd serving ResNet-18 as `npm run bench` does
// (image_classifier, imagenet preset, batch 8, one worker per core with one thread each, optimised module),
// sample.jpg (640×427) at c=1 for --duration seconds, and the server's own mean stage times from its metrics.
// For checking a preprocessing change without the whole bench (minutes of both cores). Not a test.
// Run (under the heavy lock): npx tsx bench/preprocess-stage.ts [--duration 8] [--fast-decode] [--image F]
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { load, send } from './lib/http-load.js';
import { ROOT, scrape, serverSplit, startTorchd, writeModelFolder } from './lib/servers.js';

const { values: flags } = parseArgs({
  options: {
    duration: { type: 'string', default: '8' },
    'fast-decode': { type: 'boolean', default: false },
    image: { type: 'string', default: path.join(ROOT, 'test', 'fixtures', 'models', 'sample.jpg') },
  },
});
const cores = os.availableParallelism();
const store = path.join(ROOT, 'bench', '.work', 'preprocess-stage', 'store');
rmSync(store, { recursive: true, force: true });
mkdirSync(store, { recursive: true });
const handler = { preset: 'imagenet', ...(flags['fast-decode'] ? { fast_decode: true } : {}) };
writeModelFolder(store, {
  name: 'resnet18',
  file: path.join(ROOT, 'test', 'fixtures', 'models', 'resnet18.pt'),
  handler: 'image_classifier',
  config: { batchSize: 8, maxBatchDelay: 5, minWorkers: cores, maxWorkers: cores, device: 'cpu', precision: 'fp32', responseTimeout: 300, optimize: true, handler },
});
const server = await startTorchd(store, ['resnet18'], { threads: 1 });
try {
  const body = { path: '/predictions/resnet18', headers: { 'content-type': 'image/jpeg' }, body: readFileSync(flags.image!) };
  for (let i = 0; i < 20; i++) if ((await send(server.base, body)) !== 200) throw new Error('warm-up request failed');
  const before = await scrape(server.metricsBase!);
  const r = await load(server.base, body, 1, Number(flags.duration));
  const split = serverSplit(before, await scrape(server.metricsBase!), 'resnet18');
  const stages = Object.entries(split.stagesMs).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ');
  console.log(JSON.stringify({ image: path.basename(flags.image!), fastDecode: flags['fast-decode'], nativeImages: process.env.TORCHD_NATIVE_IMAGES !== '0', reqPerSec: r.reqPerSec, p50: r.p50, stagesMs: split.stagesMs, load: os.loadavg()[0] }));
  console.error(`c=1 ${r.reqPerSec.toFixed(1)} req/s p50 ${r.p50} ms; server mean ms: ${stages}`);
} finally {
  await server.stop();
}

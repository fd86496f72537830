// The bench's overhead figure in isolation: torchd's p50 for one MNIST PNG at c=1 (the bench's `mnist` model:
// image_classifier, mnist preset, one worker, batch 16, optimised module) minus the native harness's p50 forward at
// batch 1, with a bare node:http server answering the same client as the floor of any Node server. Each round
// restarts the server; with --variant 'NAME:VAR=VALUE ...' (repeatable) the rounds alternate between variants, each
// server started with those environment variables (TS_<KEY> config keys, NODE_OPTIONS, ...). Not a test.
// With --route explanations: the bench's explanation figure instead (/explanations p50 ÷ the harness's IG time, 15 steps).
// Run: npx tsx bench/overhead-probe.ts [--route predictions|explanations] [--requests 2000] [--rounds 3] [--variant base:] [--variant x:VAR=1]
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { measureCeiling } from './lib/ceiling.js';
import { probe } from './lib/http-load.js';
import { ROOT, freePort, parseVariants, scrape, serverSplit, stagesText, startTorchd, writeModelFolder } from './lib/servers.js';

const { values: flags } = parseArgs({
  options: {
    requests: { type: 'string', default: '2000' },
    rounds: { type: 'string', default: '3' },
    route: { type: 'string', default: 'predictions' },
    variant: { type: 'string', multiple: true, default: [] },
  },
});
const variants = parseVariants(flags.variant!);
const FIX = path.join(ROOT, 'test', 'fixtures', 'models');
const store = path.join(ROOT, 'bench', '.work', 'overhead-probe', 'store');
rmSync(store, { recursive: true, force: true });
mkdirSync(store, { recursive: true });
const model = path.join(FIX, 'mnist.pt');
writeModelFolder(store, {
  name: 'mnist',
  file: model,
  handler: 'image_classifier',
  config: { batchSize: 16, maxBatchDelay: 5, minWorkers: 1, maxWorkers: 1, device: 'cpu', precision: 'fp32', responseTimeout: 300, optimize: true, handler: { preset: 'mnist' } },
});
const png = readFileSync(path.join(FIX, 'images', '3.png'));
const explain = flags.route === 'explanations';
if (!explain && flags.route !== 'predictions') throw new Error(`--route must be predictions or explanations, not ${flags.route}`);
const body = { path: `/${flags.route}/mnist`, headers: { 'content-type': 'image/png' }, body: png };
const count = Number(flags.requests);

/** A node:http server that reads the body and answers a fixed JSON: what any Node server pays at least. */
async function bareFloor(): Promise<number> {
  const port = await freePort();
  const server = http.createServer((req, res) => {
    req.on('data', () => {});
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{"3":0.99}'));
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  try {
    return (await probe(`http://127.0.0.1:${port}`, body, count)).p50;
  } finally {
    server.close();
  }
}

for (let round = 0; round < Number(flags.rounds); round++) {
  const ceiling = await measureCeiling({ model, shape: [1, 1, 28, 28], batches: [1], threads: 1, device: 'cpu', precision: 'fp32', iters: 500, optimize: true, igSteps: explain ? 15 : undefined });
  const harness = explain ? ceiling.igMs! : ceiling.points[0].p50Ms;
  const floor = await bareFloor();
  for (const v of variants) {
    const server = await startTorchd(store, ['mnist'], { threads: 1, env: v.env });
    try {
      const before = await scrape(server.metricsBase!);
      const p = await probe(server.base, body, count);
      const stages = serverSplit(before, await scrape(server.metricsBase!), 'mnist').stagesMs;
      const figure = explain ? `÷ harness IG ${harness.toFixed(3)} = ratio ${(p.p50 / harness).toFixed(2)}` : `− harness ${harness.toFixed(3)} = overhead ${(p.p50 - harness).toFixed(3)} ms`;
      console.log(
        `${v.name} round ${round + 1}: torchd p50 ${p.p50.toFixed(3)} ms (p90 ${p.p90.toFixed(3)}) ${figure}; bare node:http ${floor.toFixed(3)} ms; ` +
          `${stagesText(stages, 3)}; load ${os.loadavg()[0].toFixed(2)}`,
      );
    } finally {
      await server.stop();
    }
  }
}

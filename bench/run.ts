// `npm run bench [-- --quick] [-- --device cuda --precision fp32,fp16]`: the benchmark of
// ../shared/perf.md in one run — native ceiling, torchd over HTTP, the FastAPI peer — and the report
// bench/results/<date>-<host>.{json,md,svg} with every figure next to its target, and the charts (bench/lib/charts.ts).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { embedChart, renderChartSvg } from './lib/charts.js';
import { ceilingAt, measureCeiling, type Ceiling } from './lib/ceiling.js';
import { load, probe, send, type Body, type LoadResult } from './lib/http-load.js';
import { buildReport, type Figure, type Report } from './lib/report.js';
import { runGrpcBench } from './grpc.js';
import {
  ROOT, rssBytes, sample, scrape, serverSplit, stagesText, startPeer, startTorchd, writeModelFolder, type Running,
} from './lib/servers.js';

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    device: { type: 'string', default: 'cpu' },
    gpu: { type: 'boolean', default: false },
    precision: { type: 'string', default: 'fp32' },
    duration: { type: 'string' },
    workers: { type: 'string' },
    threads: { type: 'string' },
    out: { type: 'string', default: path.join(ROOT, 'bench', 'results') },
    'no-peer': { type: 'boolean', default: false },
    'no-grpc': { type: 'boolean', default: false },
    // Appended to the result files' name (2026-12-07-vm-TAG.*): a second run on one day keeps the first.
    tag: { type: 'string' },
    // Serve (and measure the ceiling of) the modules as saved instead of frozen + optimize_for_inference.
    'no-optimize': { type: 'boolean', default: false },
  },
});

const quick = flags.quick!;
const optimize = !flags['no-optimize'];
const device = flags.gpu ? 'cuda' : flags.device!;
const onGpu = device.startsWith('cuda');
const precisions = flags.precision!.split(',');
const cores = os.availableParallelism();
const seconds = Number(flags.duration ?? (quick ? 1 : 8));
const concurrencies = quick ? [1, 4] : [1, 4, 16, 64];
// One worker per core with one intra-op thread each (NOTES.md §9): no OpenMP team waits on a core
// that preprocessing holds, and the executor threads share the one module. `--workers 1` gives the
// other layout (one worker with every core as intra-op threads).
const workers = Number(flags.workers ?? cores);
const threads = Number(flags.threads ?? Math.max(1, Math.floor(cores / workers)));
const WORK = path.join(ROOT, 'bench', '.work');
const STORE = path.join(WORK, 'store');
const FIX = path.join(ROOT, 'test', 'fixtures', 'models');

function log(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`);
}

function ensureModels(): void {
  if (!quick && !existsSync(path.join(FIX, 'resnet18.pt'))) {
    log('making resnet18.pt (torchvision, random weights)');
    execFileSync('/usr/bin/python3', [path.join(FIX, 'make_models.py'), '--resnet'], { stdio: 'inherit' });
  }
}

/** The main image model of this run: ResNet-18, or the MNIST-sized CNN in --quick mode. */
const main = quick
  ? { name: 'mnist', file: path.join(FIX, 'mnist.pt'), shape: [1, 1, 28, 28], preset: 'mnist' as const, image: path.join(FIX, 'images', '3.png'), imageType: 'image/png' }
  : { name: 'resnet18', file: path.join(FIX, 'resnet18.pt'), shape: [1, 3, 224, 224], preset: 'imagenet' as const, image: path.join(FIX, 'sample.jpg'), imageType: 'image/jpeg' };
const small = { name: 'mnist', file: path.join(FIX, 'mnist.pt'), shape: [1, 1, 28, 28], image: path.join(FIX, 'images', '3.png') };
/** A real pretrained model (issue 11): MobileNetV2 converted by scripts/setup from ../shared/data/mobilenet_v2. */
const mobilenet = { name: 'mobilenet_v2', file: path.join(FIX, 'mobilenet_v2', 'model.pt') };
const mobilenetSkip = quick ? 'quick mode' : existsSync(mobilenet.file) ? undefined
  : `${path.relative(ROOT, mobilenet.file)} is absent (scripts/setup converts it from ../shared/data/mobilenet_v2 when that data is there)`;

function modelSettings(batchSize: number, w = workers, precision = 'fp32') {
  return { batchSize, maxBatchDelay: onGpu ? 2 : 5, minWorkers: w, maxWorkers: w, device, precision, responseTimeout: 300, optimize };
}

function prepareStore(precision: string): void {
  mkdirSync(STORE, { recursive: true });
  const batch = onGpu ? 256 : 8;
  writeModelFolder(STORE, { name: main.name, file: main.file, handler: 'image_classifier', config: { ...modelSettings(quick ? 16 : batch, workers, precision), handler: { preset: main.preset } } });
  writeModelFolder(STORE, { name: `${main.name}_tensor`, file: main.file, handler: 'tensor', config: modelSettings(quick ? 16 : batch, workers, precision) });
  if (!quick) {
    writeModelFolder(STORE, { name: 'mnist', file: small.file, handler: 'image_classifier', config: { ...modelSettings(16, 1, 'fp32'), handler: { preset: 'mnist' } } });
  }
  if (!mobilenetSkip) {
    writeModelFolder(STORE, { name: mobilenet.name, file: mobilenet.file, handler: 'image_classifier', config: { ...modelSettings(batch, workers, precision), handler: { preset: 'imagenet' } } });
  }
  // The same model at 1 and 4 workers for the weight-sharing figure.
  writeModelFolder(STORE, { name: 'w1', file: main.file, handler: 'tensor', config: modelSettings(1, 1, precision) });
  writeModelFolder(STORE, { name: 'w4', file: main.file, handler: 'tensor', config: modelSettings(1, 4, precision) });
}

/** Raw little-endian float32 input, the tensor handler's binary form. */
function tensorBody(name: string, shape: number[]): Body {
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1)).map((_, i) => ((i * 7919) % 255) / 255 - 0.5);
  return {
    path: `/predictions/${name}?shape=${shape.join(',')}&dtype=float32`,
    headers: { 'content-type': 'application/octet-stream' },
    body: Buffer.from(data.buffer),
  };
}

function imageBody(name: string, file: string, type: string, route = 'predictions'): Body {
  return { path: `/${route}/${name}`, headers: { 'content-type': type }, body: readFileSync(file) };
}

interface Series {
  label: string;
  model: string;
  points: (LoadResult & { meanBatch?: number; stagesMs?: Record<string, number> })[];
}

async function sweep(server: Running, label: string, model: string, body: Body, cs: number[]): Promise<Series> {
  const series: Series = { label, model, points: [] };
  const status = await send(server.base, body);
  if (status !== 200) throw new Error(`${label}: warm-up request got ${status}`);
  for (const c of cs) {
    const before = server.metricsBase ? await scrape(server.metricsBase) : undefined;
    const r = await load(server.base, body, c, seconds);
    const split = before && server.metricsBase ? serverSplit(before, await scrape(server.metricsBase), model) : undefined;
    series.points.push({ ...r, meanBatch: split?.meanBatch, stagesMs: split?.stagesMs });
    log(`${label} c=${c}: ${r.reqPerSec.toFixed(1)} req/s p50 ${r.p50} ms p99 ${r.p99} ms${split ? ` batch ${split.meanBatch.toFixed(2)}` : ''}${r.non2xx ? ` non2xx ${r.non2xx}` : ''}`);
  }
  return series;
}

function best(s: Series) {
  return s.points.reduce((a, b) => (b.reqPerSec > a.reqPerSec ? b : a));
}

async function measureRss(name: string): Promise<number> {
  const server = await startTorchd(STORE, [name], { threads });
  try {
    const body = tensorBody(name, main.shape);
    // Every worker has run forwards before RSS is read.
    await load(server.base, body, 8, quick ? 1 : 2);
    return rssBytes(server.child.pid!);
  } finally {
    await server.stop();
  }
}

/**
 * prom-client samples the loop with monitorEventLoopDelay at its default 10 ms resolution, and that histogram
 * records the whole interval between two timer callbacks: an idle loop reads ≈ 10.1 ms, a 30 ms block ≈ 33 ms
 * (checked, NOTES.md §14). The delay is what exceeds the timer's period.
 */
const MONITOR_RESOLUTION_MS = 10;

/** Pings /ping every 5 ms while `busy` runs; max event-loop interval (server's own monitor) and max /ping latency. */
async function loopWhile(server: Running, busy: () => Promise<void>): Promise<{ lagMaxMs: number; pingMaxMs: number; pings: number }> {
  await scrape(server.metricsBase!); // prom-client resets its event-loop histogram at each scrape
  let done = false;
  const work = busy().finally(() => { done = true; });
  let pingMaxMs = 0;
  let pings = 0;
  while (!done) {
    const p0 = performance.now();
    await fetch(`${server.base}/ping`).then((r) => r.arrayBuffer());
    pingMaxMs = Math.max(pingMaxMs, performance.now() - p0);
    pings++;
    await new Promise((r) => setTimeout(r, 5));
  }
  await work;
  const after = await scrape(server.metricsBase!);
  return { lagMaxMs: sample(after, 'nodejs_eventloop_lag_max_seconds') * 1000, pingMaxMs, pings };
}

/** Event-loop delay while one long explanation runs, and the same monitor on an idle server (pings only) as the reference. */
async function eventLoopDuringExplanation(server: Running, body: Body): Promise<{ explainMs: number; lagMaxMs: number; delayMaxMs: number; idleLagMaxMs: number; pingMaxMs: number; pings: number }> {
  let explainMs = 0;
  const during = await loopWhile(server, async () => {
    const t0 = performance.now();
    const status = await send(server.base, body);
    if (status !== 200) throw new Error(`explanation got ${status}`);
    explainMs = performance.now() - t0;
  });
  const idle = await loopWhile(server, () => new Promise((r) => setTimeout(r, Math.min(2000, explainMs))));
  return { explainMs, ...during, delayMaxMs: Math.max(0, during.lagMaxMs - MONITOR_RESOLUTION_MS), idleLagMaxMs: idle.lagMaxMs };
}

async function runOnce(precision: string): Promise<Report> {
  const started = new Date();
  const loadAtStart = os.loadavg();
  prepareStore(precision);
  const figures: Figure[] = [];
  const raw: Record<string, unknown> = {};

  // 1. Ceiling: the bare LibTorch loop, same file, threads, device, dtype.
  const batches = onGpu ? [1, 8, 32, 64, 128, 256] : quick ? [1, 2, 4, 8, 16] : [1, 2, 4, 8];
  log(`ceiling: ${main.name} batches ${batches.join(',')}`);
  // IG only where a figure uses it: the small model's (the main model's would take minutes on a CPU).
  // The server forwards on the optimised module by default, so the ceiling is the optimised module too (--optimize).
  const ceiling = await measureCeiling({ model: main.file, shape: main.shape, batches, threads, workers, device, precision, iters: quick ? 20 : onGpu ? 50 : 20, igSteps: quick ? 15 : undefined, optimize });
  const smallCeiling: Ceiling = quick ? ceiling : await measureCeiling({ model: small.file, shape: small.shape, batches: [1, 2, 4, 8, 16], threads, device, precision: 'fp32', iters: 200, igSteps: 15, optimize });
  raw.ceiling = ceiling;
  raw.smallCeiling = smallCeiling;

  // 2. Start-up: process start → /ping Healthy with the main model loaded and warmed.
  log('start-up');
  const startup = await startTorchd(STORE, [main.name], { threads });
  await startup.stop();
  figures.push({ id: 'startup', figure: 'start-up', definition: `process start → /ping Healthy with ${main.name} loaded`, value: startup.startupMs, unit: 'ms', target: '≤ 2000 ms', pass: startup.startupMs <= 2000 });

  // 3. Weight sharing.
  log('RSS 1 vs 4 workers');
  const rss1 = await measureRss('w1');
  const rss4 = await measureRss('w4');
  raw.rss = { oneWorker: rss1, fourWorkers: rss4 };
  figures.push({ id: 'rss', figure: 'weight sharing', definition: `RSS 4 workers ÷ RSS 1 worker (${main.name})`, value: rss4 / rss1, unit: 'ratio', target: '≤ 1.2', pass: rss4 / rss1 <= 1.2, note: `${(rss1 / 2 ** 20).toFixed(0)} MiB vs ${(rss4 / 2 ** 20).toFixed(0)} MiB` });

  // 4. torchd over HTTP.
  const models = quick ? [main.name, `${main.name}_tensor`] : [main.name, `${main.name}_tensor`, 'mnist'];
  if (!mobilenetSkip) models.push(mobilenet.name);
  else log(`MobileNetV2 row skipped: ${mobilenetSkip}`);
  raw.mobilenetSkipped = mobilenetSkip;
  let mobilenetC4: Series["points"][number] | undefined;
  log(`torchd: ${models.join(', ')}`);
  const torchd = await startTorchd(STORE, models, { threads });
  const series: Series[] = [];
  let tensorSeries: Series | undefined;
  let overheadProbe;
  let overheadStages: Record<string, number> | undefined;
  let smallC8: LoadResult | undefined;
  let explain;
  let loop;
  try {
    series.push(await sweep(torchd, `${main.name} ${quick ? 'PNG' : 'JPEG'}`, main.name, imageBody(main.name, main.image, main.imageType), concurrencies));
    if (!quick) series.push(await sweep(torchd, `${main.name} PNG`, main.name, imageBody(main.name, path.join(FIX, 'sample.png'), 'image/png'), concurrencies));
    tensorSeries = await sweep(torchd, `${main.name} tensor`, `${main.name}_tensor`, tensorBody(`${main.name}_tensor`, main.shape), concurrencies);
    series.push(tensorSeries);
    if (!mobilenetSkip) {
      const s = await sweep(torchd, `${mobilenet.name} JPEG`, mobilenet.name, imageBody(mobilenet.name, main.image, main.imageType), [4]);
      series.push(s);
      mobilenetC4 = s.points[0];
    }
    const smallPng = imageBody('mnist', small.image, 'image/png');
    const beforeProbe = await scrape(torchd.metricsBase!);
    overheadProbe = await probe(torchd.base, smallPng, quick ? 200 : 2000);
    // The server's own stages over the probe, so the report names where the overhead goes.
    overheadStages = serverSplit(beforeProbe, await scrape(torchd.metricsBase!), 'mnist').stagesMs;
    const smallSeries = await sweep(torchd, 'mnist PNG (peer comparison)', 'mnist', smallPng, [8]);
    series.push(smallSeries);
    smallC8 = smallSeries.points[0];
    log(`mnist c=1 probe p50 ${overheadProbe.p50.toFixed(3)} ms`);
    // 200 after 10 warm-ups: the first explanations load the original module (IG runs it) and let TorchScript's
    // profiling executor settle; 20 samples moved the p50 by ±0.3 ms between runs.
    const smallExplain = await probe(torchd.base, imageBody('mnist', small.image, 'image/png', 'explanations'), quick ? 5 : 200, 10);
    explain = smallExplain;
    // The long explanation for the event-loop figure: the main model's image (150k attributions on ResNet-18).
    loop = await eventLoopDuringExplanation(torchd, imageBody(main.name, main.image, main.imageType, 'explanations'));
    log(`explanation ${loop.explainMs.toFixed(0)} ms: event-loop max interval ${loop.lagMaxMs.toFixed(1)} ms (idle ${loop.idleLagMaxMs.toFixed(1)} ms), /ping max ${loop.pingMaxMs.toFixed(1)} ms`);
  } finally {
    await torchd.stop();
  }
  raw.torchd = series;

  // 5. The FastAPI peer on the same files and inputs: as saved (plain), then tuned (optimize_for_inference(freeze(m))).
  let peerMain: LoadResult | undefined;
  let peerSmall: LoadResult | undefined;
  let tunedMain: LoadResult | undefined;
  let tunedSmall: LoadResult | undefined;
  const peerMobilenet: Record<string, LoadResult> = {};
  if (!flags['no-peer'] && !onGpu) {
    for (const tuned of [false, true]) {
      const kind = tuned ? 'tuned peer' : 'peer';
      log(`FastAPI ${kind}`);
      const peerModels = [`${main.name}=${main.file}:${main.preset}`, `mnist=${small.file}:mnist`];
      if (!mobilenetSkip) peerModels.push(`${mobilenet.name}=${mobilenet.file}:imagenet`);
      // torch's default intra-op threads, as a hand-written server has them (NOTES.md §16).
      const peer = await startPeer(peerModels, 0, tuned);
      try {
        const m = (await sweep(peer, `${kind} ${main.name}`, main.name, imageBody(main.name, main.image, main.imageType), [4])).points[0];
        const s = (await sweep(peer, `${kind} mnist PNG`, 'mnist', imageBody('mnist', small.image, 'image/png'), [8])).points[0];
        if (!mobilenetSkip) peerMobilenet[kind] = (await sweep(peer, `${kind} ${mobilenet.name}`, mobilenet.name, imageBody(mobilenet.name, main.image, main.imageType), [4])).points[0];
        if (tuned) [tunedMain, tunedSmall] = [m, s];
        else [peerMain, peerSmall] = [m, s];
      } finally {
        await peer.stop();
      }
    }
    raw.peer = { main: peerMain, small: peerSmall, tunedMain, tunedSmall, mobilenet: peerMobilenet };
  }

  // 6. Figures of perf.md.
  const img = best(series[0]);
  const tensor = best(tensorSeries!);
  const ratio = (p: typeof img) => p.reqPerSec / ceilingAt(ceiling, p.meanBatch ?? 1);
  figures.push({
    id: 'ceiling', figure: 'ceiling ratio', definition: `torchd req/s (${series[0].label}, best c=${img.connections}) ÷ ceiling items/s at batch ${img.meanBatch?.toFixed(2)}`,
    value: ratio(img), unit: 'ratio', target: '≥ 0.90', pass: ratio(img) >= 0.9, note: stageNote(img),
  });
  figures.push({
    id: 'tensor_ceiling', figure: 'tensor ceiling ratio', definition: `torchd req/s (${tensorSeries!.label}, best c=${tensor.connections}) ÷ ceiling items/s at batch ${tensor.meanBatch?.toFixed(2)}`,
    value: ratio(tensor), unit: 'ratio', target: onGpu ? '≥ 0.85' : '≥ 0.95', pass: ratio(tensor) >= (onGpu ? 0.85 : 0.95), note: stageNote(tensor),
  });
  if (peerSmall && smallC8) {
    const v = smallC8.reqPerSec / peerSmall.reqPerSec;
    figures.push({ id: 'peer_small', figure: 'peer ratio, small model', definition: 'torchd ÷ FastAPI req/s, MNIST CNN, PNG, c=8', value: v, unit: 'ratio', target: '≥ 3', pass: v >= 3, note: `${smallC8.reqPerSec.toFixed(0)} vs ${peerSmall.reqPerSec.toFixed(0)} req/s` });
  }
  if (peerMain) {
    const t4 = series[0].points.find((p) => p.connections === 4)!;
    const v = t4.reqPerSec / peerMain.reqPerSec;
    figures.push({ id: 'peer_main', figure: `peer ratio, ${main.name}`, definition: `torchd ÷ FastAPI req/s, ${series[0].label}, c=4`, value: v, unit: 'ratio', target: '≥ 1.5', pass: v >= 1.5, note: `${t4.reqPerSec.toFixed(1)} vs ${peerMain.reqPerSec.toFixed(1)} req/s; torchd mean batch ${t4.meanBatch?.toFixed(2) ?? '?'}` });
  }
  if (tunedMain) {
    const t4 = series[0].points.find((p) => p.connections === 4)!;
    const v = t4.reqPerSec / tunedMain.reqPerSec;
    figures.push({ id: 'tuned_peer_main', figure: `tuned-peer ratio, ${main.name}`, definition: `torchd ÷ FastAPI serving optimize_for_inference(freeze(m)) req/s, ${series[0].label}, c=4`, value: v, unit: 'ratio', target: '≥ 1.1', pass: v >= 1.1, note: `${t4.reqPerSec.toFixed(1)} vs ${tunedMain.reqPerSec.toFixed(1)} req/s` });
  }
  if (tunedSmall && smallC8) {
    const v = smallC8.reqPerSec / tunedSmall.reqPerSec;
    figures.push({ id: 'tuned_peer_small', figure: 'tuned-peer ratio, small model', definition: 'torchd ÷ tuned FastAPI req/s, MNIST CNN, PNG, c=8', value: v, unit: 'ratio', target: 'reported', pass: true, note: `${smallC8.reqPerSec.toFixed(0)} vs ${tunedSmall.reqPerSec.toFixed(0)} req/s` });
  }
  if (mobilenetC4 && peerMobilenet.peer && peerMobilenet['tuned peer']) {
    const plain = peerMobilenet.peer.reqPerSec;
    const tuned = peerMobilenet['tuned peer'].reqPerSec;
    figures.push({ id: 'peer_mobilenet', figure: 'peer ratio, MobileNetV2 (real weights)', definition: 'torchd ÷ plain / tuned FastAPI req/s, sample.jpg, c=4', value: mobilenetC4.reqPerSec / plain, unit: 'ratio', target: 'reported', pass: true, note: `${mobilenetC4.reqPerSec.toFixed(1)} vs ${plain.toFixed(1)} (plain) / ${tuned.toFixed(1)} (tuned: ratio ${(mobilenetC4.reqPerSec / tuned).toFixed(2)}) req/s; torchd mean batch ${mobilenetC4.meanBatch?.toFixed(2) ?? '?'}` });
  }
  // The server's own preprocess stage for one JPEG (perf.md: ≤ 3 ms), from the c=1 point of the JPEG series.
  const jpegC1 = series[0].points.find((p) => p.connections === 1);
  if (!quick && jpegC1?.stagesMs?.preprocess !== undefined) {
    const v = jpegC1.stagesMs.preprocess;
    figures.push({ id: 'preprocess', figure: 'preprocess stage', definition: `server's mean preprocess stage, ${series[0].label} (640×427 → 224²), c=1`, value: v, unit: 'ms', target: '≤ 3 ms', pass: v <= 3 });
  }
  const smallB1 = smallCeiling.points.find((p) => p.batch === 1)!;
  const overhead = overheadProbe!.p50 - smallB1.p50Ms;
  figures.push({ id: 'overhead', figure: 'overhead', definition: 'torchd p50 (c=1, MNIST, PNG, keep-alive client) − ceiling p50 forward (batch 1)', value: overhead, unit: 'ms', target: '≤ 0.5 ms', pass: overhead <= 0.5, note: overheadNote(overheadProbe!.p50, smallB1.p50Ms, overheadStages) });
  if (smallCeiling.igMs) {
    const v = explain!.p50 / smallCeiling.igMs;
    figures.push({ id: 'explanation', figure: 'explanation', definition: 'torchd /explanations p50 (MNIST PNG, 15 steps) ÷ ceiling IG time (15 steps)', value: v, unit: 'ratio', target: '≤ 1.1', pass: v <= 1.1, note: `${explain!.p50.toFixed(2)} ms vs ${smallCeiling.igMs.toFixed(2)} ms` });
  }
  figures.push({
    id: 'event_loop', figure: 'event loop',
    definition: `max event-loop delay during a ${(loop!.explainMs / 1000).toFixed(2)} s ${main.name} explanation: server's monitorEventLoopDelay max interval − its ${MONITOR_RESOLUTION_MS} ms timer period`,
    value: loop!.delayMaxMs, unit: 'ms', target: '≤ 20 ms', pass: loop!.delayMaxMs <= 20,
    note: `monitor max interval ${loop!.lagMaxMs.toFixed(1)} ms (idle server, same pings: ${loop!.idleLagMaxMs.toFixed(1)} ms); max /ping latency ${loop!.pingMaxMs.toFixed(1)} ms over ${loop!.pings} pings`,
  });

  return buildReport({
    started, loadAtStart, quick, device, precision, cores, threads, workers, seconds, figures, ceiling, smallCeiling, series,
    peer: { main: peerMain, small: peerSmall }, overheadProbe: overheadProbe!, explain: explain!, loop: loop!, raw,
  });
}

/** The overhead's sum, and the server's mean stages over the probe with what is left outside them (HTTP, Express, the hops). */
function overheadNote(p50: number, harness: number, stages: Record<string, number> | undefined): string {
  const sum = `${p50.toFixed(3)} ms − ${harness.toFixed(3)} ms`;
  if (!stages) return sum;
  const inside = Object.values(stages).filter(Number.isFinite).reduce((a, v) => a + v, 0);
  return `${sum}; ${stagesText(stages, 3)}; outside the stages (HTTP, Express, response) ≈ ${(p50 - inside).toFixed(3)}`;
}

function stageNote(p: Series['points'][number]): string {
  return p.stagesMs ? stagesText(p.stagesMs, 2) : '';
}

ensureModels();
mkdirSync(flags.out!, { recursive: true });
for (const precision of precisions) {
  const report = await runOnce(precision);
  const stamp = report.started.slice(0, 10);
  const host = os.hostname().replace(/[^\w.-]/g, '_');
  const suffix = `${quick ? '-quick' : ''}${onGpu ? `-${device.replace(':', '')}-${precision}` : ''}${flags.tag ? `-${flags.tag.replace(/[^\w.-]/g, '_')}` : ''}`;
  const base = path.join(flags.out!, `${stamp}-${host}${suffix}`);
  // The charts (vega-lite → SVG) sit next to the report, and the Markdown embeds them.
  writeFileSync(`${base}.svg`, await renderChartSvg(report));
  report.markdown = embedChart(report.markdown, `${path.basename(base)}.svg`);
  writeFileSync(`${base}.json`, JSON.stringify(report, null, 1) + '\n');
  writeFileSync(`${base}.md`, report.markdown);
  log(`wrote ${path.relative(ROOT, base)}.json, .md and .svg`);
  for (const f of report.figures) log(`${f.pass ? 'PASS' : 'MISS'} ${f.figure}: ${f.value.toFixed(3)} ${f.unit} (target ${f.target})`);
}
// The transport rows (gRPC vs REST) in their own report, after the main one; not in --quick mode.
if (!quick && !onGpu && !flags['no-grpc']) {
  await runGrpcBench({ seconds: 2, rounds: 3, workers, threads, out: flags.out!, log });
}

// `npm run bench:grpc` (also the end of a full `npm run bench`): the same torchd answered over each
// transport, back to back in one run — KServe v2 `ModelInfer` with raw tensors over gRPC vs REST v2 with
// the binary tensor extension vs REST v2 JSON (digits model, c = 1, 8, 64; ResNet-18 tensors, c = 4), and
// TorchServe's `Predictions` with a JPEG over gRPC vs REST /predictions (c = 4). One closed-loop driver for
// every row (bench/lib/grpc-load.ts). Writes bench/results/<date>-<host>-grpc.{json,md}.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { closedLoop, grpcSender, restSender, type TransportPoint } from './lib/grpc-load.js';
import type { Body } from './lib/http-load.js';
import { ROOT, startTorchd, writeModelFolder } from './lib/servers.js';

const FIX = path.join(ROOT, 'test', 'fixtures', 'models');

export interface GrpcBenchOptions {
  seconds: number;
  /** Each comparison is repeated this many times, transports in rotated order. */
  rounds: number;
  workers: number;
  threads: number;
  out: string;
  log: (msg: string) => void;
}

export interface GrpcBenchReport {
  schema: 'torchd-bench-grpc/1';
  started: string;
  machine: { host: string; cores: number; loadAverageAtStart: number[]; loadAverageAtEnd: number[] };
  settings: { workers: number; intraOpThreads: number; secondsPerPoint: number; rounds: number };
  rows: (TransportPoint & { series: string; rounds: number[] })[];
  figure: { id: 'grpc'; definition: string; value: number; target: string; pass: boolean };
  markdown: string;
}

function tensor(shape: number[]): Buffer {
  const n = shape.reduce((a, b) => a * b, 1);
  return Buffer.from(new Float32Array(n).map((_, i) => ((i * 7919) % 255) / 255 - 0.5).buffer);
}

/** REST v2 with the binary tensor data extension: JSON header, then the raw input; binary output asked for. */
function v2Binary(model: string, shape: number[], raw: Buffer): Body {
  const header = Buffer.from(JSON.stringify({
    inputs: [{ name: 'x', shape, datatype: 'FP32', parameters: { binary_data_size: raw.length } }],
    parameters: { binary_data_output: true },
  }));
  return {
    path: `/v2/models/${model}/infer`,
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) },
    body: Buffer.concat([header, raw]),
  };
}

function v2Json(model: string, shape: number[], raw: Buffer): Body {
  const data = Array.from(new Float32Array(raw.buffer, raw.byteOffset, raw.length / 4));
  return { path: `/v2/models/${model}/infer`, headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape, datatype: 'FP32', data }] })) };
}

const modelInfer = (model: string, shape: number[], raw: Buffer) => ({ model_name: model, inputs: [{ name: 'x', datatype: 'FP32', shape }], raw_input_contents: [raw] });

export async function runGrpcBench(o: GrpcBenchOptions): Promise<GrpcBenchReport> {
  const started = new Date();
  const loadAtStart = os.loadavg();
  const work = path.join(ROOT, 'bench', '.work', 'grpc');
  const store = path.join(work, 'store');
  mkdirSync(store, { recursive: true });
  const settings = (batchSize: number) => ({ batchSize, maxBatchDelay: 5, minWorkers: o.workers, maxWorkers: o.workers, responseTimeout: 300 });
  writeModelFolder(store, { name: 'digits', file: path.join(FIX, 'mnist.pt'), handler: 'image_classifier', config: { ...settings(16), handler: { preset: 'mnist' } } });
  writeModelFolder(store, { name: 'resnet18', file: path.join(FIX, 'resnet18.pt'), handler: 'image_classifier', config: { ...settings(8), handler: { preset: 'imagenet' } } });
  writeModelFolder(store, { name: 'resnet18_tensor', file: path.join(FIX, 'resnet18.pt'), handler: 'tensor', config: settings(8) });

  const server = await startTorchd(store, ['digits', 'resnet18', 'resnet18_tensor'], { threads: o.threads });
  const rows: GrpcBenchReport['rows'] = [];
  /** Paired gRPC ÷ REST-binary ratios of the digits c=8 comparison, one per round. */
  const pairs: number[] = [];
  type Sender = { one: () => Promise<void>; close: () => void };
  /**
   * One comparison: every transport once per round, the order rotated each round, so that a burst of other
   * work on this shared machine lands on all of them alike; each row is the round with the median req/s.
   */
  const compare = async (series: string, c: number, transports: [string, () => Sender][]) => {
    const byTransport = new Map<string, TransportPoint[]>();
    for (let round = 0; round < o.rounds; round++) {
      const order = transports.map((_, i) => transports[(i + round) % transports.length]);
      const seen = new Map<string, number>();
      for (const [transport, make] of order) {
        const sender = make();
        try {
          const p = await closedLoop(transport, c, o.seconds, sender.one);
          byTransport.set(transport, [...(byTransport.get(transport) ?? []), p]);
          seen.set(transport, p.reqPerSec);
        } finally {
          sender.close();
        }
      }
      if (series.startsWith('digits') && c === 8) pairs.push(seen.get('gRPC ModelInfer raw')! / seen.get('REST v2 binary')!);
    }
    for (const [transport] of transports) {
      const points = [...byTransport.get(transport)!].sort((a, b) => a.reqPerSec - b.reqPerSec);
      const median = points[Math.floor(points.length / 2)];
      rows.push({ series, ...median, rounds: points.map((p) => Number(p.reqPerSec.toFixed(1))) });
      o.log(`${series} ${transport} c=${c}: ${median.reqPerSec.toFixed(1)} req/s p50 ${median.p50.toFixed(2)} ms p99 ${median.p99.toFixed(2)} ms (rounds ${points.map((p) => p.reqPerSec.toFixed(0)).join(', ')})`);
    }
  };
  try {
    const grpc = server.grpc!;
    const digitShape = [1, 1, 28, 28];
    const digit = tensor(digitShape);
    for (const c of [1, 8, 64]) {
      await compare('digits v2 [1,1,28,28] FP32', c, [
        ['gRPC ModelInfer raw', () => grpcSender(grpc, 'v2', 'ModelInfer', modelInfer('digits', digitShape, digit), c)],
        ['REST v2 binary', () => restSender(server.base, v2Binary('digits', digitShape, digit), c)],
        ['REST v2 JSON', () => restSender(server.base, v2Json('digits', digitShape, digit), c)],
      ]);
    }
    const rnShape = [1, 3, 224, 224];
    const rn = tensor(rnShape);
    await compare('ResNet-18 v2 [1,3,224,224] FP32', 4, [
      ['gRPC ModelInfer raw', () => grpcSender(grpc, 'v2', 'ModelInfer', modelInfer('resnet18_tensor', rnShape, rn), 4)],
      ['REST v2 binary', () => restSender(server.base, v2Binary('resnet18_tensor', rnShape, rn), 4)],
      ['REST v2 JSON', () => restSender(server.base, v2Json('resnet18_tensor', rnShape, rn), 4)],
    ]);
    const jpeg = readFileSync(path.join(FIX, 'sample.jpg'));
    await compare('ResNet-18 JPEG 640×427', 4, [
      ['gRPC Predictions', () => grpcSender(grpc, 'torchserve', 'Predictions', { model_name: 'resnet18', input: { data: jpeg } }, 4)],
      ['REST /predictions', () => restSender(server.base, { path: '/predictions/resnet18', headers: { 'content-type': 'image/jpeg' }, body: jpeg }, 4)],
    ]);
  } finally {
    await server.stop();
  }

  const sortedPairs = [...pairs].sort((a, b) => a - b);
  const value = sortedPairs[Math.floor(sortedPairs.length / 2)];
  const figure = {
    id: 'grpc' as const,
    definition: 'v2 ModelInfer raw ÷ REST v2 binary req/s, digits, c=8 (median of the rounds\' paired ratios)',
    value, target: 'reported (≥ 0.8)', pass: value >= 0.8,
  };
  const machine = { host: os.hostname(), cores: os.availableParallelism(), loadAverageAtStart: loadAtStart.map((x) => Number(x.toFixed(2))), loadAverageAtEnd: os.loadavg().map((x) => Number(x.toFixed(2))) };
  const md = [
    `# torchd transports — ${started.toISOString().slice(0, 10)} on ${machine.host}`, '',
    `${machine.cores} cores; load average ${machine.loadAverageAtStart.join('/')} at start, ${machine.loadAverageAtEnd.join('/')} at end; ${o.workers} worker(s) × ${o.threads} intra-op thread(s); ${o.rounds} rounds of ${o.seconds} s per point (after 0.5 s warm-up), transports in rotated order each round, each row the median round; one closed-loop Node client (bench/lib/grpc-load.ts) for every row, on the same machine.`, '',
    `**${figure.definition}: ${value.toFixed(2)}** (rounds: ${pairs.map((x) => x.toFixed(2)).join(', ')}; target ${figure.target}: ${figure.pass ? 'met' : '**not met**'}).`, '',
    '| series | transport | c | req/s (median round) | p50 ms | p99 ms | errors | req/s of each round |', '|---|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.series} | ${r.transport} | ${r.concurrency} | ${r.reqPerSec.toFixed(1)} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${r.errors} | ${r.rounds.join(', ')} |`),
    '', 'Command: `npm run bench:grpc` (tsx bench/grpc.ts)', '',
  ].join('\n');
  const report: GrpcBenchReport = {
    schema: 'torchd-bench-grpc/1', started: started.toISOString(), machine,
    settings: { workers: o.workers, intraOpThreads: o.threads, secondsPerPoint: o.seconds, rounds: o.rounds }, rows, figure, markdown: md,
  };
  mkdirSync(o.out, { recursive: true });
  const base = path.join(o.out, `${started.toISOString().slice(0, 10)}-${machine.host.replace(/[^\w.-]/g, '_')}-grpc`);
  writeFileSync(`${base}.json`, JSON.stringify(report, null, 1) + '\n');
  writeFileSync(`${base}.md`, md);
  o.log(`wrote ${path.relative(ROOT, base)}.json and .md; ${figure.definition}: ${value.toFixed(2)}`);
  return report;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const { values } = parseArgs({ options: { duration: { type: 'string', default: '2' }, rounds: { type: 'string', default: '3' }, workers: { type: 'string' }, threads: { type: 'string' }, out: { type: 'string', default: path.join(ROOT, 'bench', 'results') } } });
  const cores = os.availableParallelism();
  const workers = Number(values.workers ?? cores);
  await runGrpcBench({
    seconds: Number(values.duration),
    rounds: Number(values.rounds),
    workers,
    threads: Number(values.threads ?? Math.max(1, Math.floor(cores / workers))),
    out: values.out!,
    log: (m) => process.stderr.write(`[bench:grpc] ${m}\n`),
  });
}

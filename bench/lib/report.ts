// The report: machine, settings, commands, every figure of perf.md next to its target, and the
// raw series (JSON); the same as a Markdown page.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import type { Ceiling } from './ceiling.js';
import { loadGenerator, type LoadResult, type ProbeResult } from './http-load.js';

export interface Figure {
  id: string;
  figure: string;
  definition: string;
  value: number;
  unit: string;
  target: string;
  pass: boolean;
  note?: string;
}

interface SeriesLike {
  label: string;
  model: string;
  points: (LoadResult & { meanBatch?: number; stagesMs?: Record<string, number> })[];
}

export interface ReportInput {
  started: Date;
  loadAtStart: number[];
  quick: boolean;
  device: string;
  precision: string;
  cores: number;
  threads: number;
  workers: number;
  seconds: number;
  figures: Figure[];
  ceiling: Ceiling;
  smallCeiling: Ceiling;
  series: SeriesLike[];
  peer: { main?: LoadResult; small?: LoadResult };
  overheadProbe: ProbeResult;
  explain: ProbeResult;
  loop: { explainMs: number; lagMaxMs: number; delayMaxMs: number; idleLagMaxMs: number; pingMaxMs: number; pings: number };
  raw: Record<string, unknown>;
}

export interface Report {
  schema: 'torchd-bench/1';
  started: string;
  finished: string;
  mode: 'quick' | 'full';
  machine: { host: string; cores: number; cpu: string; memoryGiB: number; gpu: string | null; node: string; torch: string; loadAverageAtStart: number[]; loadAverageAtEnd: number[] };
  settings: { device: string; precision: string; workers: number; intraOpThreads: number; secondsPerPoint: number; loadGenerator: string };
  commands: string[];
  figures: Figure[];
  ceiling: Ceiling;
  smallCeiling: Ceiling;
  torchd: SeriesLike[];
  peer: { main?: LoadResult; small?: LoadResult };
  overheadProbe: ProbeResult;
  explanation: ProbeResult;
  eventLoop: ReportInput['loop'];
  markdown: string;
}

function cpuModel(): string {
  try {
    return /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? os.cpus()[0]?.model ?? 'unknown';
  } catch {
    return os.cpus()[0]?.model ?? 'unknown';
  }
}

function gpuName(): string | null {
  try {
    return execFileSync('nvidia-smi', ['--query-gpu=name,memory.total', '--format=csv,noheader'], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}

function torchVersion(): string {
  try {
    return execFileSync('/usr/bin/python3', ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

const f = (v: number | undefined, d = 2) => (v === undefined || !Number.isFinite(v) ? '—' : v.toFixed(d));

export function buildReport(i: ReportInput): Report {
  const machine = {
    host: os.hostname(), cores: i.cores, cpu: cpuModel(), memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    gpu: gpuName(), node: process.version, torch: torchVersion(),
    // Other work on the machine skews every figure; the report says how busy it was.
    loadAverageAtStart: i.loadAtStart.map((x) => Number(x.toFixed(2))), loadAverageAtEnd: os.loadavg().map((x) => Number(x.toFixed(2))),
  };
  const commands = [
    `npm run bench --${i.quick ? ' --quick' : ''}${i.device !== 'cpu' ? ` --device ${i.device} --precision ${i.precision}` : ''}`,
    ...(i.ceiling.command ? [i.ceiling.command] : []),
    'node bin/torchd.js start --model-store bench/.work/store --models ... (loopback, free ports)',
    '/usr/bin/python3 bench/peers/fastapi_server.py --port P --threads T --model NAME=FILE:PRESET',
    `load: ${loadGenerator}, every server alike (bench/lib/http-load.ts)`,
  ];
  const md: string[] = [];
  md.push(`# torchd benchmark — ${i.started.toISOString().slice(0, 10)} on ${machine.host}${i.quick ? ' (quick mode: MNIST-sized model only, short runs; not a measurement)' : ''}`, '');
  md.push(`Machine: ${machine.cores} cores, ${machine.cpu}, ${machine.memoryGiB} GiB RAM, GPU: ${machine.gpu ?? 'none'}; Node ${machine.node}, torch ${machine.torch}; load average ${machine.loadAverageAtStart.join('/')} at start, ${machine.loadAverageAtEnd.join('/')} at end.`);
  md.push(`Settings: device ${i.device}, precision ${i.precision}, ${i.workers} worker(s) × ${i.threads} intra-op thread(s), ${i.seconds} s per load point; ceiling source: ${i.ceiling.source}.`, '');
  md.push('## Figures (perf.md)', '', '| figure | definition | value | target | met | note |', '|---|---|---|---|---|---|');
  for (const x of i.figures) md.push(`| ${x.figure} | ${x.definition} | ${f(x.value, x.unit === 'ms' ? 3 : 2)} ${x.unit === 'ratio' ? '' : x.unit} | ${x.target} | ${x.pass ? 'yes' : '**no**'} | ${x.note ?? ''} |`);
  md.push('', `## Ceiling (${i.ceiling.source})`, '', '| model | batch | p50 ms | p99 ms | items/s |', '|---|---|---|---|---|');
  for (const [name, c] of [['main', i.ceiling], ['small', i.smallCeiling]] as const) {
    if (name === 'small' && c === i.ceiling) continue;
    for (const p of c.points) md.push(`| ${name} | ${p.batch} | ${f(p.p50Ms, 3)} | ${f(p.p99Ms, 3)} | ${f(p.itemsPerSec, 1)} |`);
    if (c.igMs) md.push(`| ${name} IG (${c.igSteps} steps) | 1 | ${f(c.igMs, 2)} | | |`);
  }
  md.push('', `## torchd over HTTP (${loadGenerator})`, '', '| series | c | req/s | p50 ms | p90 ms | p99 ms | mean batch | queue ms | preprocess ms | inference ms | postprocess ms | non-2xx |', '|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const s of i.series) {
    for (const p of s.points) {
      const st = p.stagesMs ?? {};
      md.push(`| ${s.label} | ${p.connections} | ${f(p.reqPerSec, 1)} | ${p.p50} | ${p.p90} | ${p.p99} | ${f(p.meanBatch)} | ${f(st.queue)} | ${f(st.preprocess)} | ${f(st.inference)} | ${f(st.postprocess)} | ${p.non2xx} |`);
    }
  }
  md.push('', '## FastAPI peer', '', '| series | c | req/s | p50 ms | p99 ms |', '|---|---|---|---|---|');
  for (const [label, p] of Object.entries(i.peer)) if (p) md.push(`| ${label} | ${p.connections} | ${f(p.reqPerSec, 1)} | ${p.p50} | ${p.p99} |`);
  md.push('', '## Latency probes (keep-alive, one request at a time, µs timer)', '');
  md.push(`- MNIST PNG prediction: p50 ${f(i.overheadProbe.p50, 3)} ms, p90 ${f(i.overheadProbe.p90, 3)} ms, p99 ${f(i.overheadProbe.p99, 3)} ms (${i.overheadProbe.requests} requests)`);
  md.push(`- MNIST PNG explanation: p50 ${f(i.explain.p50, 2)} ms (${i.explain.requests} requests)`);
  md.push(`- Long explanation ${f(i.loop.explainMs, 0)} ms: event-loop delay max ${f(i.loop.delayMaxMs, 1)} ms (monitor's max interval ${f(i.loop.lagMaxMs, 1)} ms − its 10 ms period; idle server ${f(i.loop.idleLagMaxMs, 1)} ms), /ping max ${f(i.loop.pingMaxMs, 1)} ms over ${i.loop.pings} pings`);
  md.push('', '## Commands', '', ...commands.map((c) => `    ${c}`), '');
  return {
    schema: 'torchd-bench/1',
    started: i.started.toISOString(),
    finished: new Date().toISOString(),
    mode: i.quick ? 'quick' : 'full',
    machine,
    settings: { device: i.device, precision: i.precision, workers: i.workers, intraOpThreads: i.threads, secondsPerPoint: i.seconds, loadGenerator },
    commands,
    figures: i.figures,
    ceiling: i.ceiling,
    smallCeiling: i.smallCeiling,
    torchd: i.series,
    peer: i.peer,
    overheadProbe: i.overheadProbe,
    explanation: i.explain,
    eventLoop: i.loop,
    markdown: md.join('\n'),
  };
}

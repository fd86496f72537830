// `npm run soak [-- --requests N --concurrency C --cycles K --out DIR]`: the long soak of issue 9
// (default 100 000 mixed requests, 10 register/unregister + scale cycles) against a `torchd start`
// child process; writes bench/results/<date>-<host>-soak.{json,md} with the status histogram per
// request kind and the server's RSS sampled over the run. Target: RSS drift < 5 % after warm-up.
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT } from './lib/servers.js';
import { makeSoakStore, removeSoakStore, runSoak, startSoakServer, type SoakResult } from './lib/soak.js';

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '100000' },
    concurrency: { type: 'string', default: '8' },
    cycles: { type: 'string', default: '10' },
    kinds: { type: 'string' },
    out: { type: 'string', default: path.join(ROOT, 'bench', 'results') },
  },
});
const requests = Number(values.requests);
const concurrency = Number(values.concurrency);
const cycles = Number(values.cycles);
const DRIFT_TARGET_PCT = 5;

function markdown(r: SoakResult, meta: Record<string, unknown>, exit: { code: number | null; signal: string | null }): string {
  const f = (v: number, d = 1) => v.toFixed(d);
  const lines = [
    `# torchd soak — ${meta.date}`,
    '',
    `Machine: ${meta.cpu}, ${meta.cores} cores, load average at start ${meta.loadStart}, at end ${meta.loadEnd}. Node ${process.version}.`,
    `Command: \`${meta.command}\``,
    '',
    '| figure | value | target |',
    '|---|---|---|',
    `| requests | ${r.requests} at concurrency ${r.concurrency}, ${f(r.seconds)} s (${f(r.requestsPerSecond)} req/s) | — |`,
    `| unintended answers | ${r.unexpected} | 0 |`,
    `| register/unregister + scale cycles | ${r.cycles.done}, ${r.cycles.problems.length} problems | 0 problems |`,
    `| RSS after warm-up (first ${r.rss.warmupFraction * 100} % of requests; median of the next 10 %) | ${f(r.rss.afterWarmupMiB)} MiB | — |`,
    `| RSS at the end (median of the last 10 %) | ${f(r.rss.endMiB)} MiB | — |`,
    `| **RSS drift after warm-up** | **${f(r.rss.driftPct, 2)} %** | < ${DRIFT_TARGET_PCT} % (${Math.abs(r.rss.driftPct) < DRIFT_TARGET_PCT ? 'met' : 'missed'}) |`,
    `| RSS peak after warm-up | +${f(r.rss.peakPct, 2)} % | — |`,
    `| RSS outside the V8 heap, after warm-up → end | ${f(r.rss.restAfterWarmupMiB)} → ${f(r.rss.restEndMiB)} MiB | — |`,
    `| exit on SIGTERM after the soak | code ${exit.code}, signal ${exit.signal} | 0, none |`,
    '',
    '## Requests by kind (status → count)',
    '',
    '| kind | intended | answers |',
    '|---|---|---|',
    ...r.kinds.map((k) => `| ${k.name} | ${k.expect} | ${Object.entries(k.statuses).map(([s, n]) => `${s}: ${n}`).join(', ')} |`),
    '',
    ...(r.unexpectedSamples.length ? ['## Unintended answers (first 20)', '', ...r.unexpectedSamples.map((u) => `- ${u}`), ''] : []),
    ...(r.cycles.problems.length ? ['## Cycle problems', '', ...r.cycles.problems.map((u) => `- ${u}`), ''] : []),
    '## RSS over the run (every 10th sample)',
    '',
    'V8 heap: the main isolate\'s committed heap (`nodejs_heap_size_total_bytes`) and its live part at that moment',
    '(`nodejs_heap_size_used_bytes`, a GC sawtooth); rest = RSS − committed heap (LibTorch, allocator arenas,',
    'image-worker isolates, code).',
    '',
    '| requests done | seconds | RSS MiB | V8 heap committed MiB | V8 heap used MiB | rest MiB |',
    '|---|---|---|---|---|---|',
    ...r.rss.samples
      .filter((_, i, a) => i % 10 === 0 || i === a.length - 1)
      .map((s) => `| ${s.done} | ${f(s.s)} | ${f(s.rssMiB)} | ${s.heapTotalMiB === undefined ? '—' : f(s.heapTotalMiB)} | ${s.heapUsedMiB === undefined ? '—' : f(s.heapUsedMiB)} | ${s.heapTotalMiB === undefined ? '—' : f(s.rssMiB - s.heapTotalMiB)} |`),
    '',
  ];
  return lines.join('\n');
}

const store = await makeSoakStore();
const server = await startSoakServer(store);
const loadStart = os.loadavg().map((x) => x.toFixed(1)).join(' ');
try {
  const result = await runSoak(server, {
    requests, concurrency, cycles, kinds: values.kinds ? new RegExp(values.kinds) : undefined,
    onProgress: (done) => {
      if (done % 10_000 === 0) process.stderr.write(`soak: ${done}/${requests}\n`);
    },
  });
  const exit = await server.stop();
  const date = new Date().toISOString().slice(0, 10);
  const meta = {
    date, host: os.hostname(), cores: os.availableParallelism(), cpu: os.cpus()[0]?.model ?? 'unknown',
    loadStart, loadEnd: os.loadavg().map((x) => x.toFixed(1)).join(' '),
    command: `${process.env.MALLOC_ARENA_MAX ? `MALLOC_ARENA_MAX=${process.env.MALLOC_ARENA_MAX} ` : ''}npm run soak -- --requests ${requests} --concurrency ${concurrency} --cycles ${cycles}${values.kinds ? ` --kinds '${values.kinds}'` : ''}`,
  };
  mkdirSync(values.out!, { recursive: true });
  const host = os.hostname().replace(/[^\w.-]/g, '_');
  const base = path.join(values.out!, `${date}-${host}-${requests === 100_000 ? 'soak' : `soak-${requests}`}`);
  writeFileSync(`${base}.json`, `${JSON.stringify({ schema: 'torchd-soak/1', meta, exit, ...result }, null, 1)}\n`);
  writeFileSync(`${base}.md`, markdown(result, meta, exit));
  process.stdout.write(`${base}.md: ${result.unexpected} unintended answers, RSS drift ${result.rss.driftPct.toFixed(2)} % (${result.rss.afterWarmupMiB.toFixed(1)} → ${result.rss.endMiB.toFixed(1)} MiB), ${result.requestsPerSecond.toFixed(0)} req/s\n`);
  process.exitCode = result.unexpected === 0 && result.cycles.problems.length === 0 && exit.code === 0 ? 0 : 1;
} finally {
  await server.stop();
  await removeSoakStore(store);
}

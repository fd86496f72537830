// `npm run bench -- --quick` runs end to end on the MNIST-sized model and writes a well-formed
// report with its charts. Structure only: benchmarks are not tests, so no figure is compared with its target here.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test from 'ava';

const run = promisify(execFile);
const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

test('npm run bench -- --quick writes the JSON and Markdown report with every perf.md figure', async (t) => {
  mkdirSync(path.join(root, 'test', '.tmp'), { recursive: true });
  const out = mkdtempSync(path.join(root, 'test', '.tmp', 'bench-'));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  await run('npm', ['run', 'bench', '--', '--quick', '--out', out], { cwd: root, timeout: 110_000, maxBuffer: 16 << 20 });
  const files = readdirSync(out).sort();
  t.is(files.length, 3, files.join(', '));
  t.regex(files[0], /^\d{4}-\d{2}-\d{2}-.+-quick\.json$/);
  t.is(files[1], files[0].replace(/\.json$/, '.md'));
  t.is(files[2], files[0].replace(/\.json$/, '.svg'));
  t.true(readFileSync(path.join(out, files[2]), 'utf8').startsWith('<svg'), 'the charts are an SVG document');
  const report = JSON.parse(readFileSync(path.join(out, files[0]), 'utf8'));
  t.is(report.schema, 'torchd-bench/1');
  t.is(report.mode, 'quick');
  t.true(Number.isInteger(report.machine.cores) && report.machine.cores >= 1);
  t.is(typeof report.machine.cpu, 'string');
  t.deepEqual(
    report.figures.map((f: { id: string }) => f.id).sort(),
    ['ceiling', 'event_loop', 'explanation', 'overhead', 'peer_main', 'peer_small', 'rss', 'startup', 'tensor_ceiling', 'tuned_peer_main', 'tuned_peer_small'],
  );
  for (const f of report.figures) {
    t.true(Number.isFinite(f.value), `${f.id} has a number`);
    t.is(typeof f.target, 'string');
    t.is(typeof f.pass, 'boolean');
  }
  t.true(['harness', 'addon-direct'].includes(report.ceiling.source));
  t.true(report.ceiling.points.length >= 2 && report.ceiling.points.every((p: { itemsPerSec: number }) => p.itemsPerSec > 0));
  t.deepEqual(report.torchd.map((s: { label: string }) => s.label), ['mnist PNG', 'mnist tensor', 'mnist PNG (peer comparison)']);
  for (const s of report.torchd) {
    for (const p of s.points) {
      t.true(p.requests > 0, `${s.label} c=${p.connections} answered requests`);
      t.is(p.non2xx, 0, `${s.label} c=${p.connections} had no errors`);
      t.true(p.meanBatch >= 1, 'mean batch size read from the server metrics');
    }
  }
  const md = readFileSync(path.join(out, files[1]), 'utf8');
  for (const heading of ['## Figures (perf.md)', '## Ceiling', '## torchd over HTTP', '## FastAPI peer', '## Commands']) t.true(md.includes(heading), heading);
  t.true(md.includes(`${report.machine.cores} cores`));
  t.true(md.includes(`](${files[2]})`), 'the Markdown embeds the charts');
});

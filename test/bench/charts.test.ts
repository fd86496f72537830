// The benchmark's charts (bench/lib/charts.ts) from the committed full report: a real SVG document that shows
// every series, the peers (plain and tuned) classified as such, and the Markdown report embedding it.
import test from 'ava';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { chartSpec, embedChart, loadRows, renderChartSvg, type ChartableReport } from '../../bench/lib/charts.js';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const report = JSON.parse(readFileSync(path.join(root, 'bench', 'results', '2026-11-26-vm.json'), 'utf8')) as ChartableReport & { markdown: string };

test('an SVG document with the three panels and every series by name, which an SVG renderer draws', async (t) => {
  const svg = await renderChartSvg(report);
  t.regex(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"[^>]* width="(\d+)" height="(\d+)"/);
  for (const text of ['Throughput vs concurrency', 'Latency percentiles', 'Native ceiling', 'torchd resnet18 JPEG', 'torchd resnet18 tensor', 'peer resnet18', 'peer mnist', 'concurrent connections', 'batch size', 'items / s']) {
    t.true(svg.includes(text), text);
  }
  const meta = await sharp(Buffer.from(svg)).metadata();
  t.is(meta.format, 'svg');
  t.true(meta.width! > 600 && meta.height! > 600, `${meta.width}×${meta.height}`);
});

test('rows: torchd series by model family, the peer by key, a tuned peer recognised from its key', (t) => {
  const point = { connections: 4, reqPerSec: 33, p50: 110, p99: 200 };
  const mobilenetSeries = { label: 'mobilenet_v2 JPEG', model: 'mobilenet_v2', points: [{ ...point, connections: 1 }] };
  const withTuned: ChartableReport = {
    ...report,
    torchd: [...report.torchd, mobilenetSeries],
    peer: { ...report.peer, tunedMain: point, tunedSmall: { ...point, connections: 8 }, mobilenet: point },
  };
  const rows = loadRows(withTuned);
  t.deepEqual([...new Set(rows.map((r) => r.model))].sort(), ['mnist', 'mobilenet_v2', 'resnet18']);
  t.is(rows.filter((r) => r.system === 'torchd').length, 14);
  t.deepEqual(rows.filter((r) => r.system !== 'torchd').map((r) => [r.system, r.model, r.c]),
    [['peer', 'resnet18', 4], ['peer', 'mnist', 8], ['tuned peer', 'resnet18', 4], ['tuned peer', 'mnist', 8], ['peer', 'mobilenet_v2', 4]]);
  const spec = JSON.stringify(chartSpec(withTuned));
  t.true(spec.includes('"tuned peer"'));
});

test('the Markdown report embeds the SVG after its opening lines, before the first section', (t) => {
  const md = embedChart(report.markdown, '2026-11-26-vm.svg');
  const image = md.indexOf('![throughput, latency and ceiling charts](2026-11-26-vm.svg)');
  t.true(image > 0);
  t.true(image < md.indexOf('## Figures (perf.md)'));
  t.true(md.startsWith('# torchd benchmark'));
});

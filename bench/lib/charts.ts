// The benchmark's pictures: one SVG next to each report (vega-lite → vega → SVG, rendered here without a
// browser or canvas), embedded by the Markdown report. Three panels, each faceted by model:
//   throughput vs concurrency   torchd's series and the FastAPI peer(s) (plain and tuned, when measured)
//   latency percentiles          p50 (solid) and p99 (dashed) vs concurrency, same series
//   native ceiling               the harness's items/s vs batch size (no HTTP, no Node)
// CLI: npx tsx bench/lib/charts.ts bench/results/X.json   → writes X.svg beside it (for an existing report).
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

/** The parts of a bench report (bench/lib/report.ts) the charts read; older and newer reports both fit. */
export interface ChartableReport {
  mode?: string;
  started?: string;
  machine?: { host?: string; cores?: number };
  torchd: { label: string; model: string; points: LoadPoint[] }[];
  /** Peer measurements by key (`main`, `small`, and e.g. `tunedMain`): one point or a sweep. */
  peer?: Record<string, LoadPoint | LoadPoint[] | undefined>;
  ceiling?: { source?: string; points: CeilingPoint[] };
  smallCeiling?: { source?: string; points: CeilingPoint[] };
}
interface LoadPoint { connections: number; reqPerSec: number; p50: number; p90?: number; p99: number; label?: string; model?: string }
interface CeilingPoint { batch: number; itemsPerSec: number }

export type System = 'torchd' | 'peer' | 'tuned peer';
export interface LoadRow { model: string; series: string; system: System; c: number; reqPerSec: number; p50: number; p90?: number; p99: number }

/** The model family a series belongs to: `resnet18_tensor` is still ResNet-18. */
const family = (model: string) => model.replace(/_tensor$/, '');

/** Every measured load point as one row: torchd's series, then the peers' (keys naming `tuned` are the tuned peer). */
export function loadRows(report: ChartableReport): LoadRow[] {
  const rows: LoadRow[] = [];
  for (const s of report.torchd) {
    for (const p of s.points) rows.push({ model: family(s.model), series: `torchd ${s.label}`, system: 'torchd', c: p.connections, reqPerSec: p.reqPerSec, p50: p.p50, p90: p.p90, p99: p.p99 });
  }
  const mainModel = family(report.torchd[0]?.model ?? 'main');
  const smallModel = report.torchd.find((s) => s.model === 'mnist') ? 'mnist' : mainModel;
  const families = [...new Set(report.torchd.map((s) => family(s.model)))];
  // Peer keys: `main`, `small`, a model's name (`mobilenet`), each maybe prefixed `tuned` (`tunedMain`).
  const modelOfKey = (key: string): string => {
    const k = key.replace(/^tuned/i, '').toLowerCase();
    if (k === 'main') return mainModel;
    if (k === 'small' || k === 'mnist') return smallModel;
    return families.find((f) => f.toLowerCase().includes(k) || k.includes(f.toLowerCase())) ?? k;
  };
  for (const [key, value] of Object.entries(report.peer ?? {})) {
    if (!value) continue;
    const system: System = /tuned/i.test(key) ? 'tuned peer' : 'peer';
    for (const p of Array.isArray(value) ? value : [value]) {
      const model = p.model ? family(p.model) : modelOfKey(key);
      rows.push({ model, series: p.label ?? `${system} ${model}`, system, c: p.connections, reqPerSec: p.reqPerSec, p50: p.p50, p90: p.p90, p99: p.p99 });
    }
  }
  return rows;
}

function ceilingRows(report: ChartableReport): { model: string; batch: number; itemsPerSec: number }[] {
  const main = family(report.torchd[0]?.model ?? 'main');
  const rows = (report.ceiling?.points ?? []).map((p) => ({ model: main, batch: p.batch, itemsPerSec: p.itemsPerSec }));
  // A quick run measures one model and reuses its ceiling as the small one.
  if (report.smallCeiling && report.smallCeiling.points !== report.ceiling?.points && main !== 'mnist') {
    rows.push(...report.smallCeiling.points.map((p) => ({ model: 'mnist', batch: p.batch, itemsPerSec: p.itemsPerSec })));
  }
  return rows;
}

const log2x = (title: string) => ({ field: 'c', type: 'quantitative' as const, title, scale: { type: 'log' as const, base: 2 }, axis: { values: [1, 2, 4, 8, 16, 32, 64, 128] } });

/** The vega-lite specification of the three panels. */
export function chartSpec(report: ChartableReport): TopLevelSpec {
  const load = loadRows(report);
  const latency = load.flatMap((r) => (
    [['p50', r.p50], ['p99', r.p99]] as const
  ).filter(([, ms]) => typeof ms === 'number' && ms > 0).map(([percentile, ms]) => ({ model: r.model, series: r.series, c: r.c, percentile, ms })));
  const title = `torchd benchmark${report.started ? ` — ${report.started.slice(0, 10)}` : ''}${report.machine?.host ? ` on ${report.machine.host}` : ''}`
    + `${report.machine?.cores ? ` (${report.machine.cores} cores)` : ''}${report.mode === 'quick' ? ' — quick mode, not a measurement' : ''}`;
  const series = { field: 'series', type: 'nominal' as const, title: 'series' };
  const panel = { width: 260, height: 170 };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: { text: title, anchor: 'start', fontSize: 15 },
    background: 'white',
    config: { font: 'sans-serif', view: { stroke: '#ddd' }, legend: { labelLimit: 340 } },
    vconcat: [
      {
        title: { text: 'Throughput vs concurrency (higher is better)', anchor: 'start' },
        data: { values: load },
        facet: { column: { field: 'model', type: 'nominal', title: null } },
        spec: {
          ...panel,
          layer: [{ mark: { type: 'line', point: { size: 50, filled: true } } }],
          encoding: {
            x: log2x('concurrent connections'),
            y: { field: 'reqPerSec', type: 'quantitative', title: 'requests / s' },
            color: series,
            shape: { field: 'system', type: 'nominal', title: 'server' },
            tooltip: [{ field: 'series' }, { field: 'c' }, { field: 'reqPerSec', format: '.1f' }],
          },
        },
        resolve: { scale: { y: 'independent' } },
      },
      {
        title: { text: 'Latency percentiles vs concurrency (lower is better; log scale)', anchor: 'start' },
        data: { values: latency },
        facet: { column: { field: 'model', type: 'nominal', title: null } },
        spec: {
          ...panel,
          mark: { type: 'line', point: { size: 30, filled: true } },
          encoding: {
            x: log2x('concurrent connections'),
            y: { field: 'ms', type: 'quantitative', title: 'latency (ms)', scale: { type: 'log' } },
            color: series,
            strokeDash: { field: 'percentile', type: 'nominal', title: 'percentile', sort: ['p50', 'p99'], legend: { symbolType: 'stroke', symbolStrokeColor: '#333', symbolStrokeWidth: 2 } },
            detail: { field: 'percentile' },
          },
        },
        resolve: { scale: { y: 'independent' } },
      },
      {
        title: { text: `Native ceiling: harness items/s vs batch size (${report.ceiling?.source ?? 'harness'}, no HTTP)`, anchor: 'start' },
        data: { values: ceilingRows(report) },
        facet: { column: { field: 'model', type: 'nominal', title: null } },
        spec: {
          ...panel,
          mark: { type: 'line', point: { size: 50, filled: true, color: '#444' }, color: '#444' },
          encoding: {
            x: { field: 'batch', type: 'quantitative', title: 'batch size', scale: { type: 'log', base: 2 }, axis: { values: [1, 2, 4, 8, 16, 32, 64] } },
            y: { field: 'itemsPerSec', type: 'quantitative', title: 'items / s' },
          },
        },
        resolve: { scale: { y: 'independent' } },
      },
    ],
  } as TopLevelSpec;
}

/** Renders the report's charts as one standalone SVG document (string). */
export async function renderChartSvg(report: ChartableReport): Promise<string> {
  const view = new vega.View(vega.parse(compile(chartSpec(report)).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** The Markdown report with the chart embedded after its opening paragraph (the machine and settings lines). */
export function embedChart(markdown: string, svgFile: string): string {
  const image = `![throughput, latency and ceiling charts](${svgFile})`;
  const at = markdown.indexOf('\n## ');
  return at < 0 ? `${markdown}\n\n${image}\n` : `${markdown.slice(0, at)}\n${image}\n${markdown.slice(at)}`;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const file = process.argv[2];
  if (!file?.endsWith('.json')) {
    console.error('usage: npx tsx bench/lib/charts.ts bench/results/REPORT.json');
    process.exit(2);
  }
  const out = file.replace(/\.json$/, '.svg');
  writeFileSync(out, await renderChartSvg(JSON.parse(readFileSync(file, 'utf8')) as ChartableReport));
  console.log(`wrote ${out}`);
}

// The metrics listener: Prometheus text parsed with a real parser, served over loopback HTTP, fed by
// the engine running a real model. Counters must move by exactly what was done.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import test from 'ava';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { createMetrics, createMetricsApp } from '../../src/metrics/index.js';
import { sampleLines, type PromSample } from '../../bench/lib/servers.js';
import { f32, makeRegistry, specFor } from '../engine/helpers.js';

interface Family {
  name: string;
  type: string;
  metrics: { labels?: Record<string, string>; value?: string; count?: string; sum?: string; buckets?: Record<string, string> }[];
}

async function serve(app: Parameters<typeof createServer>[1]): Promise<{ url: string; server: Server }> {
  const server = createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

interface Scrape {
  families: Map<string, Family>;
  /** Every sample line: the parser folds labelled histograms into one unlabelled sample, so their
   * `_count`/`_sum` series per label set are read from the lines themselves. */
  samples: PromSample[];
}

async function scrape(url: string): Promise<Scrape> {
  const res = await fetch(`${url}/metrics`);
  if (res.status !== 200) throw new Error(`status ${res.status}`);
  if (res.headers.get('content-type') !== 'text/plain; version=0.0.4; charset=utf-8') {
    throw new Error(`content-type ${res.headers.get('content-type')}`);
  }
  const text = await res.text();
  const families = parsePrometheusTextFormat(text) as Family[]; // throws on malformed exposition text
  const samples = sampleLines(text);
  return { families: new Map(families.map((f) => [f.name, f])), samples };
}

/** Value of the first sample `name` whose labels include `labels` (0 when absent: a counter not yet touched). */
function value(s: Scrape, name: string, labels: Record<string, string> = {}): number {
  const m = s.samples.find((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v));
  return m ? m.value : 0;
}

test('GET /metrics reports TorchServe counters, stage histograms, batch sizes and gauges that move exactly', async (t) => {
  const metrics = createMetrics({ hostname: 'testhost' });
  const registry = makeRegistry({}, metrics);
  metrics.attach(registry);
  const { url, server } = await serve(createMetricsApp(metrics));
  t.teardown(async () => {
    server.close();
    await registry.close();
  });
  const mv = await registry.register(specFor('rows.pt', 'rows', '1.0'), { batchSize: 8, minWorkers: 1, maxWorkers: 1 });
  const labels = { model_name: 'rows', model_version: '1.0' };

  const before = await scrape(url);
  t.is(before.families.get('ts_inference_requests_total')?.type, 'COUNTER');
  t.is(before.families.get('Requests2XX')?.type, 'COUNTER');
  t.is(before.families.get('torchd_stage_duration_seconds')?.type, 'HISTOGRAM');
  t.is(before.families.get('torchd_queue_depth')?.type, 'GAUGE');
  t.true(before.families.has('process_resident_memory_bytes'), 'process metrics');
  t.is(value(before, 'torchd_workers', labels), 1);
  t.is(value(before, 'torchd_queue_depth', labels), 0);

  // 10 single-row requests at once: 1 starts alone, 8 + 1 follow (batchSize 8) → 3 native calls.
  const n = 10;
  await Promise.all(Array.from({ length: n }, (_, i) => mv.batcher.infer([f32([[i, i, i, i]])])));
  // What the HTTP layer records per finished request.
  for (let i = 0; i < n; i++) metrics.request('rows', '1.0', 200, 1.5);
  metrics.request('rows', '1.0', 503, 2);
  metrics.request(undefined, undefined, 404, 0.1);
  metrics.stage('rows', '1.0', 'preprocess', 0.25);

  const after = await scrape(url);
  const delta = (name: string, l: Record<string, string> = labels) => value(after, name, l) - value(before, name, l);
  t.is(delta('ts_inference_requests_total'), n + 1, 'requests that reached the model (the 404 did not)');
  t.is(delta('Requests2XX', { Level: 'Host', Hostname: 'testhost' }), n);
  t.is(delta('Requests4XX', { Level: 'Host', Hostname: 'testhost' }), 1);
  t.is(delta('Requests5XX', { Level: 'Host', Hostname: 'testhost' }), 1);
  t.true(Math.abs(delta('ts_inference_latency_microseconds') - (n * 1500 + 2000)) < 1e-6);
  t.true(delta('ts_queue_latency_microseconds') > 0, 'queued requests waited');
  t.is(delta('torchd_stage_duration_seconds_count', { ...labels, stage: 'queue' }), n);
  t.is(delta('torchd_stage_duration_seconds_count', { ...labels, stage: 'inference' }), n);
  t.is(delta('torchd_stage_duration_seconds_count', { ...labels, stage: 'preprocess' }), 1);
  t.true(Math.abs(delta('torchd_stage_duration_seconds_sum', { ...labels, stage: 'preprocess' }) - 0.00025) < 1e-9);
  t.is(delta('torchd_batch_size_count'), 3, 'native calls');
  t.is(delta('torchd_batch_size_sum'), n, 'rows across native calls');
  t.is(delta('torchd_batch_size_bucket', { ...labels, le: '1' }), 2, 'the lone first request and the last single row');
  t.is(delta('torchd_batch_size_bucket', { ...labels, le: '8' }), 3);
  t.is(value(after, 'torchd_running_requests', labels), 0);
});

test('?name[]= filters metrics; unknown paths are JSON 404s', async (t) => {
  const metrics = createMetrics({ defaultMetrics: false });
  const { url, server } = await serve(createMetricsApp(metrics));
  t.teardown(() => server.close());
  metrics.request('m', '1', 200, 1);
  const res = await fetch(`${url}/metrics?name[]=ts_inference_requests_total&name[]=Requests2XX`);
  t.is(res.status, 200);
  const names = (parsePrometheusTextFormat(await res.text()) as Family[]).map((f) => f.name).sort();
  t.deepEqual(names, ['Requests2XX', 'ts_inference_requests_total']);
  const missing = await fetch(`${url}/nope`);
  t.is(missing.status, 404);
  t.deepEqual(await missing.json(), {
    code: 404,
    type: 'ResourceNotFoundException',
    message: 'Requested resource is not found, please refer to API document.',
  });
});

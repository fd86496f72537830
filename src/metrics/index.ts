// ServerMetrics over prom-client, exposed as Prometheus text 0.0.4 on the metrics listener.
// TorchServe's metric names are kept so existing dashboards work; torchd_* adds the stage split,
// batch sizes and queue/worker gauges.
import os from 'node:os';
import express from 'express';
import prom from 'prom-client';
import type { Registry as ModelRegistryContract } from '../engine/types.js';
import type { ServerMetrics, Stage } from './types.js';
import { errorMiddleware } from '../http/errors.js';

export type { Protocol, ServerMetrics, Stage } from './types.js';
export { noopMetrics } from './types.js';

export interface Metrics extends ServerMetrics {
  readonly registry: prom.Registry;
  /** Reports queue depth, running requests and workers of every loaded model version at scrape time. */
  attach(models: ModelRegistryContract): void;
  /** Prometheus text 0.0.4 of every metric (or only the named ones). */
  text(names?: string[]): Promise<string>;
}

const MODEL_LABELS = ['model_name', 'model_version'] as const;
// Request metrics are split by transport (http, grpc) under the same names, so one dashboard shows both.
const REQUEST_LABELS = [...MODEL_LABELS, 'protocol'] as const;

/** Builds a fresh prom-client registry (one per server, so tests can run several servers in a process). */
export function createMetrics(options: { defaultMetrics?: boolean; hostname?: string } = {}): Metrics {
  const registry = new prom.Registry();
  registry.setContentType(prom.Registry.PROMETHEUS_CONTENT_TYPE);
  if (options.defaultMetrics !== false) prom.collectDefaultMetrics({ register: registry });
  const hostname = options.hostname ?? os.hostname();
  let models: ModelRegistryContract | undefined;

  const inferenceRequests = new prom.Counter({
    name: 'ts_inference_requests_total',
    help: 'Total number of inference requests received by a model',
    labelNames: REQUEST_LABELS,
    registers: [registry],
  });
  const inferenceLatency = new prom.Counter({
    name: 'ts_inference_latency_microseconds',
    help: 'Cumulative request latency in microseconds (TorchServe semantics: a counter)',
    labelNames: REQUEST_LABELS,
    registers: [registry],
  });
  const queueLatency = new prom.Counter({
    name: 'ts_queue_latency_microseconds',
    help: 'Cumulative time requests spent in the model queue, in microseconds',
    labelNames: MODEL_LABELS,
    registers: [registry],
  });
  const statusCounters = {
    2: new prom.Counter({ name: 'Requests2XX', help: 'Requests answered with a 2xx status', labelNames: ['Level', 'Hostname'], registers: [registry] }),
    4: new prom.Counter({ name: 'Requests4XX', help: 'Requests answered with a 4xx status', labelNames: ['Level', 'Hostname'], registers: [registry] }),
    5: new prom.Counter({ name: 'Requests5XX', help: 'Requests answered with a 5xx status', labelNames: ['Level', 'Hostname'], registers: [registry] }),
  } as const;
  const requestDuration = new prom.Histogram({
    name: 'torchd_request_duration_seconds',
    help: 'Inference-listener request duration, by model, status code (HTTP; gRPC mapped back) and protocol',
    labelNames: [...REQUEST_LABELS, 'code'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const stageDuration = new prom.Histogram({
    name: 'torchd_stage_duration_seconds',
    help: 'Time one request spent in a stage (queue, preprocess, inference, postprocess)',
    labelNames: [...MODEL_LABELS, 'stage'],
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const batchSize = new prom.Histogram({
    name: 'torchd_batch_size',
    help: 'Examples per native call',
    labelNames: MODEL_LABELS,
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
    registers: [registry],
  });

  // Gauges read the engine at scrape time instead of being pushed on every change.
  const forEachVersion = (fn: (name: string, version: string, mv: ReturnType<ModelRegistryContract['resolve']>) => void) => {
    if (!models) return;
    for (const name of models.names()) for (const mv of models.versions(name)) fn(name, mv.spec.version, mv);
  };
  new prom.Gauge({
    name: 'torchd_queue_depth',
    help: 'Requests queued for a model version, not yet running',
    labelNames: MODEL_LABELS,
    registers: [registry],
    collect() {
      this.reset();
      forEachVersion((n, v, mv) => this.set({ model_name: n, model_version: v }, mv.pending));
    },
  });
  new prom.Gauge({
    name: 'torchd_running_requests',
    help: 'Requests in native calls now',
    labelNames: MODEL_LABELS,
    registers: [registry],
    collect() {
      this.reset();
      forEachVersion((n, v, mv) => this.set({ model_name: n, model_version: v }, mv.running));
    },
  });
  const stuckWorkers = new prom.Counter({
    name: 'torchd_stuck_workers_total',
    help: 'Native calls that stayed busy past their requests\' deadline plus a grace (the model was reported not ready meanwhile)',
    labelNames: MODEL_LABELS,
    registers: [registry],
  });
  new prom.Gauge({
    name: 'torchd_stuck_workers',
    help: 'Workers busy now past their requests\' deadline plus a grace',
    labelNames: MODEL_LABELS,
    registers: [registry],
    collect() {
      this.reset();
      forEachVersion((n, v, mv) => this.set({ model_name: n, model_version: v }, mv.stuck));
    },
  });
  new prom.Gauge({
    name: 'torchd_workers',
    help: 'Workers (executor threads or CUDA streams) of a model version',
    labelNames: MODEL_LABELS,
    registers: [registry],
    collect() {
      this.reset();
      forEachVersion((n, v, mv) => {
        this.set({ model_name: n, model_version: v }, mv.workers);
      });
    },
  });

  return {
    registry,
    attach(r) {
      models = r;
    },
    async text(names) {
      if (!names || names.length === 0) return registry.metrics();
      const parts: string[] = [];
      for (const n of names) if (registry.getSingleMetric(n)) parts.push(await registry.getSingleMetricAsString(n));
      return parts.length ? parts.join('\n') + '\n' : '';
    },
    request(model, version, status, ms, protocol = 'http') {
      const klass = Math.floor(status / 100);
      if (klass === 2 || klass === 4 || klass === 5) statusCounters[klass].inc({ Level: 'Host', Hostname: hostname });
      if (model === undefined) return;
      const labels = { model_name: model, model_version: version ?? '', protocol };
      inferenceRequests.inc(labels);
      inferenceLatency.inc(labels, ms * 1000);
      requestDuration.observe({ ...labels, code: String(status) }, ms / 1000);
    },
    stage(model, version, stage: Stage, ms) {
      const labels = { model_name: model, model_version: version };
      stageDuration.observe({ ...labels, stage }, ms / 1000);
      if (stage === 'queue') queueLatency.inc(labels, ms * 1000);
    },
    batch(model, version, size) {
      batchSize.observe({ model_name: model, model_version: version }, size);
    },
    stuck(model, version) {
      stuckWorkers.inc({ model_name: model, model_version: version });
    },
  };
}

/**
 * The metrics listener's app (it never listens; src/server.ts does): `GET /metrics`, optionally
 * filtered with TorchServe's `?name[]=metric` query.
 */
export function createMetricsApp(metrics: Metrics, options: { authenticate?: express.RequestHandler } = {}): express.Express {
  const app = express();
  app.disable('x-powered-by');
  // enable_metrics_auth: scrapers send `Authorization: Bearer <metrics key>`.
  if (options.authenticate) app.use(options.authenticate);
  app.get('/metrics', async (req, res, next) => {
    try {
      const q = req.query['name[]'] ?? req.query.name;
      const names = q === undefined ? undefined : (Array.isArray(q) ? q : [q]).map(String);
      const body = await metrics.text(names);
      res.status(200).type(metrics.registry.contentType).send(body);
    } catch (err) {
      next(err);
    }
  });
  app.use((_req, res) => {
    res.status(404).json({
      code: 404,
      type: 'ResourceNotFoundException',
      message: 'Requested resource is not found, please refer to API document.',
    });
  });
  // The same JSON error body as the other listeners (401 InvalidKeyException when the token is wrong).
  app.use(errorMiddleware(0));
  return app;
}

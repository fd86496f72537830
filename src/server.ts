// Owns ports and lifecycle: builds the engine, the three apps and the gRPC listeners, loads the startup
// models, listens, and shuts down through src/lifecycle.ts (readiness false → drain delay → drain every
// listener, HTTP and gRPC → dispose models).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type express from 'express';
import type { Logger } from 'pino';
import type { ServerConfig } from './config-types.js';
import { isLoopback, listenTarget, loggableConfig } from './config.js';
import { createRegistry } from './engine/registry.js';
import type { ModelSettings, Registry } from './engine/types.js';
import { createInferenceApp, requestClassesFor, type InferenceAppOptions } from './http/app.js';
import type { AppDeps } from './http/types.js';
import { createLogger } from './logger.js';
import { createMetrics, createMetricsApp } from './metrics/index.js';
import { createModelStore } from './store/index.js';
import type { ModelStore } from './store/types.js';
import { createManagementApp, type ManagementAppOptions } from './http/management/index.js';
import { v2Router } from './http/v2/index.js';
import { newKey, requireToken, setupTokenAuth, writeKeyFile } from './http/auth.js';
import { closeImageWorkers, closeResponseEncoders } from './handlers/index.js';
import { closeJsonWorkers } from './bounded-json.js';
import { createDrainableHttpServer } from './http/connections.js';
import { ServiceUnavailableError } from './errors.js';
import { Lifecycle, type ShutdownOptions, type ShutdownReport } from './lifecycle.js';
import { startGrpc } from './grpc/server.js';

/**
 * After a forced drain, how long running native calls get to finish before the models are left to
 * process exit (ms): disposing waits for them, exiting under them is what issue 9 item 1 is about.
 */
const FORCED_DISPOSE_WAIT_MS = 3000;
import { createInferenceService } from './service/index.js';

export interface ServerAddresses {
  inference: string;
  management: string;
  metrics: string;
  /** gRPC inference listener as host:port (absent when enable_grpc=false). */
  grpcInference?: string;
  /** gRPC management listener as host:port (absent when enable_grpc=false). */
  grpcManagement?: string;
}

export interface RunningServer {
  /** Bound addresses (the real ports when 0 was asked for), as http://host:port. */
  addresses: ServerAddresses;
  registry: Registry;
  /**
   * Readiness and drain shared by every listener: a gRPC server registers itself with
   * `lifecycle.addDrainable()`, follows `lifecycle.onDraining()`, and reports `lifecycle.isReady()`.
   */
  lifecycle: Lifecycle;
  /** Token keys when enable_token_auth is on. */
  keys?: { inferenceKey: string; managementKey: string };
  /** The bearer key GET /metrics needs when enable_metrics_auth is on. */
  metricsKey?: string;
  /**
   * The SIGTERM path: readiness false at once, serve on for drain_delay, drain every listener (no new
   * connections, accepted requests answered), dispose models. Past shutdown_timeout what remains gets
   * 503. Defaults from the config; idempotent (later calls share the first one's result).
   */
  shutdown(options?: ShutdownOptions): Promise<ShutdownReport>;
  /** shutdown() with no drain delay and a `graceMs` timeout (default 30 s). */
  close(graceMs?: number): Promise<void>;
}

export interface StartOptions {
  logger?: Logger;
}

/** ig_memory_budget's default: 512 MiB of extra memory per explanation. */
export const DEFAULT_IG_MEMORY_BUDGET = 512 * 1024 * 1024;

/** Server-wide ModelSettings from config; a model's own config and the `models` key override per key. */
export function defaultSettings(config: ServerConfig): ModelSettings {
  return {
    batchSize: 1,
    maxBatchDelay: 100,
    minWorkers: config.defaultWorkersPerModel,
    maxWorkers: config.defaultWorkersPerModel,
    responseTimeout: config.defaultResponseTimeout,
    device: 'cpu',
    precision: 'fp32',
    jobQueueSize: config.jobQueueSize,
    optimize: true,
    igMemoryBudget: config.igMemoryBudget ?? DEFAULT_IG_MEMORY_BUDGET,
  };
}

export async function startServer(config: ServerConfig, options: StartOptions = {}): Promise<RunningServer> {
  const logger = options.logger ?? createLogger();
  logger.info({ config: loggableConfig(config) }, 'settled configuration');
  if (config.ignoredKeys.length) {
    logger.warn({ keys: config.ignoredKeys }, 'config.properties keys torchd does not use were ignored');
  }
  if (Object.keys(config.informational ?? {}).length) {
    logger.info(
      { settings: config.informational },
      'accepted for compatibility and informational only: every envelope (TorchServe, KServe v1, KServe v2) is served on its own route whatever these say',
    );
  }
  const metrics = createMetrics();
  const registry = createRegistry({
    metrics, logger, defaults: defaultSettings(config), threads: config.intraOpThreads || undefined, maxWorkersPerModel: config.maxWorkersPerModel,
    spinMicros: config.workerSpinUs,
  });
  metrics.attach(registry);
  const store = createModelStore(config.modelStore);
  const lifecycle = new Lifecycle(logger);
  // healthy() is also false while a worker is stuck past its request's deadline (batcher.ts).
  lifecycle.addReadinessCheck('models', () => registry.healthy() || 'a model has no ready worker, or a worker is stuck');
  lifecycle.addDisposer(async ({ forced }) => {
    if (!forced) {
      await registry.close();
      return;
    }
    // Queued requests were answered 503 by the listeners; running native calls get a bounded wait.
    const closed = registry.close({ abortQueued: new ServiceUnavailableError('torchd is shutting down') });
    let timer: NodeJS.Timeout | undefined;
    const finished = await Promise.race([
      closed.then(() => true),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), FORCED_DISPOSE_WAIT_MS))),
    ]);
    clearTimeout(timer);
    if (!finished) logger.warn({ waitedMs: FORCED_DISPOSE_WAIT_MS }, 'native calls still running at exit');
  });
  lifecycle.addDisposer(() => closeImageWorkers());
  lifecycle.addDisposer(() => closeJsonWorkers());
  lifecycle.addDisposer(() => closeResponseEncoders());
  const service = createInferenceService({ registry, metrics, limits: config.limits });
  const deps: AppDeps = { registry, store, config, logger, metrics, lifecycle, service };

  const shutdown = async (options: ShutdownOptions = {}): Promise<ShutdownReport> => {
    const report = await lifecycle.shutdown({
      drainDelayMs: options.drainDelayMs ?? config.drainDelay * 1000,
      timeoutMs: options.timeoutMs ?? config.shutdownTimeout * 1000,
    });
    logger.info(report, 'stopped');
    return report;
  };
  const close = async (graceMs = 30_000): Promise<void> => {
    await shutdown({ drainDelayMs: 0, timeoutMs: graceMs });
  };

  try {
    await loadStartupModels(config, store, registry);

    let keys: RunningServer['keys'];
    const inferenceOptions: InferenceAppOptions = { mounts: { '/v2': v2Router(deps) } };
    const managementOptions: ManagementAppOptions = {};
    // A configured metrics token (e.g. from a Secret a Prometheus scrape config also reads) is used as is;
    // otherwise one is generated and written to the key file beside the API keys.
    const metricsKey = config.enableMetricsAuth ? (config.metricsAuthToken ?? newKey()) : undefined;
    const generated: Record<string, string> = metricsKey !== undefined && config.metricsAuthToken === undefined ? { metrics: metricsKey } : {};
    if (config.enableTokenAuth) {
      keys = await setupTokenAuth(config, logger, generated);
      inferenceOptions.authenticate = requireToken(keys.inferenceKey);
      managementOptions.authenticate = requireToken(keys.managementKey);
    } else if (generated.metrics) {
      logger.info({ keyFile: await writeKeyFile(config.keyFile, generated) }, 'metrics authorization enabled: key written to the key file');
    }
    const inferenceApp = createInferenceApp(deps, inferenceOptions);
    const managementApp = createManagementApp(deps, managementOptions);
    const metricsApp = createMetricsApp(metrics, metricsKey ? { authenticate: requireToken(metricsKey) } : {});

    // TorchServe serves inference and management on one port when both addresses are equal (KServe's
    // sample config.properties does that, on 8085): then one listener routes /models… to management.
    const shared = config.managementAddress === config.inferenceAddress && listenTarget(config.inferenceAddress).port !== 0;
    const inference = await listen(lifecycle, 'inference', shared ? sharePort(inferenceApp, managementApp) : inferenceApp, config.inferenceAddress, inferenceApp);
    const addresses: ServerAddresses = {
      inference,
      management: shared ? inference : await listen(lifecycle, 'management', managementApp, config.managementAddress, managementApp),
      metrics: await listen(lifecycle, 'metrics', metricsApp, config.metricsAddress, metricsApp),
    };
    const hosts: [string, string, string][] = Object.entries(addresses).map(([l, url]) => [l, url, listenTarget(url).host]);
    if (config.grpc?.enabled) {
      const grpc = await startGrpc(deps, config.grpc, keys);
      for (const d of grpc.drainables) lifecycle.addDrainable(d);
      // Health watchers hear NOT_SERVING the moment shutdown begins, not at their next poll.
      lifecycle.onDraining(() => grpc.readinessChanged());
      addresses.grpcInference = grpc.addresses.inference;
      addresses.grpcManagement = grpc.addresses.management;
      for (const [l, a] of [['grpcInference', grpc.addresses.inference], ['grpcManagement', grpc.addresses.management]]) {
        hosts.push([l, a, a.slice(0, a.lastIndexOf(':')).replace(/^\[|\]$/g, '')]);
      }
    }
    for (const [listener, url, host] of hosts) {
      if (!isLoopback(host) && !config.enableTokenAuth) {
        logger.warn({ listener, url }, 'listening beyond loopback without token auth: anyone who can reach this address can use it');
      }
    }
    lifecycle.markServing();
    logger.info({ addresses, models: registry.names() }, 'torchd ready');
    return { addresses, registry, lifecycle, keys, metricsKey, shutdown, close };
  } catch (err) {
    await close(0).catch(() => {});
    throw err;
  }
}

/** `load_models` / `--models`: `all`, `NAME=FILE` or bare `FILE` entries relative to the model store. */
async function loadStartupModels(config: ServerConfig, store: ModelStore, registry: Registry): Promise<void> {
  const entries: { url: string; modelName?: string }[] = [];
  for (const item of config.loadModels) {
    if (item === 'all') for (const url of await store.list()) entries.push({ url });
    else if (item === 'standalone' || item === '') continue;
    else {
      const eq = item.indexOf('=');
      entries.push(eq > 0 ? { modelName: item.slice(0, eq), url: item.slice(eq + 1) } : { url: item });
    }
  }
  // Sequential: versions register in the order given, so the first listed version is the default.
  for (const { url, modelName } of entries) {
    const spec = await store.load(url, { modelName });
    const perModel = config.models[spec.name] ?? {};
    // A model_snapshot / models entry that names this archive under another version would silently lose
    // its settings (they are keyed by version): refuse it instead.
    const claimed = Object.entries(perModel).find(([, s]) => (s as { marName?: string }).marName === url);
    if (claimed && claimed[0] !== spec.version && perModel[spec.version] === undefined) {
      throw new Error(`${url} holds ${spec.name} version ${spec.version}, but the configuration names it as version ${claimed[0]}`);
    }
    const { marName: _m, defaultVersion, ...settings } = (perModel[spec.version] ?? perModel['*'] ?? {}) as Partial<ModelSettings> & {
      marName?: string;
      defaultVersion?: boolean;
    };
    // The registry logs each load with its settled settings.
    await registry.register(spec, settings, { loadedAtStartup: true });
    if (defaultVersion) registry.setDefault(spec.name, spec.version);
  }
}

/** One listener for two apps: management's `/models…` routes go to management, the rest to inference. */
function sharePort(inferenceApp: (req: never, res: never) => void, managementApp: (req: never, res: never) => void) {
  return (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    const app = path === '/models' || path.startsWith('/models/') ? managementApp : inferenceApp;
    app(req as never, res as never);
  };
}

/** `prototypes`: the Express app whose request and response prototypes node:http builds with (on a shared port, inference's). */
function listen(lifecycle: Lifecycle, name: string, app: (req: never, res: never) => void, address: string, prototypes: express.Express): Promise<string> {
  const { host, port } = listenTarget(address);
  const listener = createDrainableHttpServer(app as Parameters<typeof createDrainableHttpServer>[0], { name, ...requestClassesFor(prototypes) });
  const server = listener.server;
  server.keepAliveTimeout = 5_000;
  // Drainable from the moment it exists: a failed start-up still closes what did listen.
  lifecycle.addDrainable(listener);
  return new Promise((resolve, reject) => {
    server.once('error', (err) => reject(new Error(`Cannot listen on ${address}: ${err.message}`)));
    server.listen(port, host, () => {
      const a = server.address() as AddressInfo;
      const shownHost = a.family === 'IPv6' ? `[${a.address}]` : a.address;
      resolve(`http://${shownHost}:${a.port}`);
    });
  });
}

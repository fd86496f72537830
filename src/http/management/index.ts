// The management listener (TorchServe's management API) as an Express app; src/server.ts listens.
// Routes are thin: validate names and query values, then call the model store and the registry.
import express, { type Request, type RequestHandler, type Response } from 'express';
import { readFileSync } from 'node:fs';
import { cp, stat } from 'node:fs/promises';
import { basename, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BadRequestError, ConflictError, MethodNotAllowedError, ModelNotFoundError } from '../../errors.js';
import type { ModelSettings, ModelVersion, Registry } from '../../engine/types.js';
import { errorMiddleware, notFound, requestId } from '../errors.js';
import { sendJson } from '../respond.js';
import type { AppDeps } from '../types.js';
import { checkName } from './names.js';
import { buildManagementApiDescription, type ManagementApiDocument } from './api-description.js';

/** torchd's version, from package.json (three levels up from src/http/management and its build output). */
const serverVersion: string = (
  JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

export interface ManagementAppOptions {
  /** Token check (src/http/auth.ts requireToken with the management key) for every route. */
  authenticate?: RequestHandler;
}

function one(req: Request, key: string): string | undefined {
  const v = req.query[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new BadRequestError(`Query parameter ${key} must be given once`);
  return v;
}

function intParam(req: Request, key: string, min = 0): number | undefined {
  const v = one(req, key);
  if (v === undefined || v === '') return undefined;
  if (!/^-?\d+$/.test(v) || Number(v) < min) throw new BadRequestError(`Query parameter ${key} must be an integer >= ${min}, got "${v}"`);
  return Number(v);
}

function boolParam(req: Request, key: string, fallback: boolean): boolean {
  const v = one(req, key);
  if (v === undefined || v === '') return fallback;
  if (v !== 'true' && v !== 'false') throw new BadRequestError(`Query parameter ${key} must be true or false, got "${v}"`);
  return v === 'true';
}




/** Executor threads serving the version now (the registry's scaling view when it has one). */
function workerCount(mv: ModelVersion): number {
  const w = (mv as ModelVersion & { workers?: unknown }).workers;
  return typeof w === 'number' ? w : mv.ready ? mv.model.workers : 0;
}

/**
 * `optimize` (the setting) and `forwardModule`: the module forward runs, 'optimized' (frozen +
 * optimize_for_inference), 'original' (as saved) or 'pending' (checked on the first request), with the
 * reason when the original serves although optimisation was asked for.
 */
function optimizationFields(mv: ModelVersion): Record<string, unknown> {
  const { serving, reason } = mv.model.optimization;
  const requested = mv.settings.optimize !== false;
  return { optimize: requested, forwardModule: serving, ...(requested && reason ? { forwardModuleReason: reason } : {}) };
}

function describe(registry: Registry, mv: ModelVersion): Record<string, unknown> {
  const s = mv.settings;
  const n = workerCount(mv);
  const pending = mv.batcher.pending;
  return {
    modelName: mv.spec.name,
    modelVersion: mv.spec.version,
    modelUrl: mv.spec.url,
    isDefault: registry.defaultVersion(mv.spec.name) === mv.spec.version,
    handler: mv.spec.handler.name,
    runtime: 'torchscript',
    device: mv.model.device,
    precision: s.precision,
    batchSize: s.batchSize,
    maxBatchDelay: s.maxBatchDelay,
    responseTimeout: s.responseTimeout,
    minWorkers: s.minWorkers,
    maxWorkers: s.maxWorkers,
    loadedAtStartup: mv.loadedAtStartup,
    parameterBytes: mv.model.parameterBytes,
    ...optimizationFields(mv),
    // Workers are threads (or CUDA streams) over one module in this process, so they share pid and weights.
    workers: Array.from({ length: n }, (_, i) => ({
      id: String(9000 + i),
      startTime: mv.loadedAt.toISOString(),
      status: mv.ready ? 'READY' : 'UNLOADING',
      pid: process.pid,
      gpu: mv.model.device.startsWith('cuda'),
    })),
    jobQueueStatus: {
      remainingCapacity: Math.max(0, s.jobQueueSize - pending),
      pendingRequests: pending,
      runningRequests: mv.batcher.running,
    },
  };
}

/** Where a registration `url` points, relative to the model store, copying it in when allowed_urls permits an outside file. */
async function storeRelativeUrl(deps: AppDeps, url: string): Promise<string> {
  const root = resolve(deps.store.root);
  const allowed = (deps.config.allowedUrls ?? []).some((re) => {
    try {
      return new RegExp(`^(?:${re})$`).test(url);
    } catch {
      return false;
    }
  });
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(url)?.[1]?.toLowerCase();
  if (scheme === 'http' || scheme === 'https') {
    throw new BadRequestError(
      allowed
        ? `Cannot register ${url}: downloading models over http(s) is not supported (torchd makes no network requests); copy the archive into the model store and register it by file name`
        : `URL not allowed: ${url} does not match allowed_urls, and torchd does not download models; copy the archive into the model store`,
    );
  }
  if (scheme !== undefined && scheme !== 'file') throw new BadRequestError(`Unsupported URL scheme "${scheme}://" in ${url}: give a file in the model store`);
  let path: string;
  if (scheme === 'file') {
    try {
      path = fileURLToPath(url);
    } catch (e) {
      throw new BadRequestError(`Invalid file URL ${url}: ${(e as Error).message}`);
    }
  } else {
    // TorchServe's rule: a relative path may not climb ('..') at all, even if it would land inside again.
    if (url.split(/[\\/]/).includes('..')) throw new BadRequestError(`Relative path is not allowed in url: ${url}`);
    path = url;
  }
  const abs = isAbsolute(path) ? resolve(path) : resolve(root, path);
  const rel = relative(root, abs);
  const inside = rel !== '' && !rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel);
  if (inside) return rel;
  if (!allowed || scheme !== 'file') {
    throw new BadRequestError(`Model url ${url} is outside the model store (${root}) and not permitted by allowed_urls`);
  }
  // Permitted outside file: copy it into the store first (as TorchServe does with downloads), so the
  // store stays the only place models are read from.
  const target = join(root, basename(abs));
  const exists = await stat(target).then(() => true, () => false);
  if (exists) throw new ConflictError(`Cannot copy ${url} into the model store: ${basename(abs)} already exists there`);
  await cp(abs, target, { recursive: true, errorOnExist: true, force: false }).catch((e: Error) => {
    throw new BadRequestError(`Cannot read ${url}: ${e.message}`);
  });
  return basename(abs);
}

/** The management API app (never listens). */
export function createManagementApp(deps: AppDeps, options: ManagementAppOptions = {}): express.Express {
  const { registry, store, config, logger } = deps;
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.set('query parser', 'simple');
  let description: ManagementApiDocument | undefined;

  app.use(requestId);
  if (options.authenticate) app.use(options.authenticate);
  const router = express.Router({ strict: false });

  router.options('/', (_req, res) => {
    description ??= buildManagementApiDescription(serverVersion);
    sendJson(res, 200, description);
  });

  router.post('/models', async (req, res) => {
    const url = one(req, 'url');
    if (!url) throw new BadRequestError('Parameter url is required.');
    const name = one(req, 'model_name');
    if (name !== undefined) checkName(name, 'model name');
    const synchronous = boolParam(req, 'synchronous', true);
    const overrides: Partial<ModelSettings> = {};
    const batchSize = intParam(req, 'batch_size', 1);
    const maxBatchDelay = intParam(req, 'max_batch_delay', 0);
    const initialWorkers = intParam(req, 'initial_workers', 0);
    const responseTimeout = intParam(req, 'response_timeout', 1);
    if (batchSize !== undefined) overrides.batchSize = batchSize;
    if (maxBatchDelay !== undefined) overrides.maxBatchDelay = maxBatchDelay;
    if (responseTimeout !== undefined) overrides.responseTimeout = responseTimeout;
    if (initialWorkers !== undefined) {
      // TorchServe's initial_workers fixes both bounds until a scale call changes them.
      overrides.minWorkers = initialWorkers;
      overrides.maxWorkers = initialWorkers;
    }

    const rel = await storeRelativeUrl(deps, url);
    const spec = await store.load(rel, name !== undefined ? { modelName: name } : undefined);
    checkName(spec.name, 'model name');
    checkName(spec.version, 'model version');
    if (registry.names().includes(spec.name) && registry.versions(spec.name).some((v) => v.spec.version === spec.version)) {
      throw new ConflictError(`Model version ${spec.version} for model ${spec.name} is already registered.`);
    }
    // Loading runs on a native thread; the inference listener keeps serving while it does.
    const registering = registry.register(spec, overrides, { loadedAtStartup: false });
    if (!synchronous) {
      registering.catch((err: unknown) =>
        logger.error({ model: spec.name, version: spec.version, err: (err as Error).message }, 'asynchronous registration failed'),
      );
      sendJson(res, 202, { status: `Model "${spec.name}" Version: ${spec.version} registration accepted; loading in the background` });
      return;
    }
    const mv = await registering;
    logger.info({ model: spec.name, version: spec.version, url }, 'model registered through the management API');
    sendJson(res, 200, { status: `Model "${spec.name}" Version: ${spec.version} registered with ${workerCount(mv)} initial workers` });
  });

  router.get('/models', (req, res) => {
    let limit = intParam(req, 'limit', 0) ?? 100;
    if (limit === 0 || limit > 100) limit = 100;
    const start = intParam(req, 'next_page_token', 0) ?? 0;
    const names = registry.names();
    const page = names.slice(start, start + limit).map((n) => ({ modelName: n, modelUrl: registry.resolve(n).spec.url }));
    const body: { models: typeof page; nextPageToken?: string } = { models: page };
    if (start + limit < names.length) body.nextPageToken = String(start + limit);
    sendJson(res, 200, body);
  });

  const versionParam = (req: Request): string | undefined => {
    const v = req.params.model_version as string | undefined;
    return v === undefined ? undefined : checkName(v, 'model version');
  };
  const resolveName = (req: Request): string => {
    const name = checkName(req.params.model_name as string, 'model name');
    // Both path names are validated before either is looked up, so a traversal attempt is always a 400.
    versionParam(req);
    if (!registry.names().includes(name)) throw new ModelNotFoundError(name);
    return name;
  };

  const describeRoute = (req: Request, res: Response) => {
    const name = resolveName(req);
    const v = versionParam(req);
    const versions = v === 'all' ? registry.versions(name) : [registry.resolve(name, v)];
    sendJson(res, 200, versions.map((mv) => describe(registry, mv)));
  };
  router.get('/models/:model_name', describeRoute);
  router.get('/models/:model_name/:model_version', describeRoute);

  const scaleRoute = async (req: Request, res: Response) => {
    const name = resolveName(req);
    const mv = registry.resolve(name, versionParam(req));
    const min = intParam(req, 'min_worker', 0) ?? 1;
    const max = intParam(req, 'max_worker', 0) ?? Math.max(min, 1);
    const synchronous = boolParam(req, 'synchronous', false);
    if (max < min) throw new BadRequestError(`max_worker (${max}) must be >= min_worker (${min})`);
    // Scaling resizes the executor over the one loaded module: quick, so it is awaited either way.
    await registry.scale(name, mv.spec.version, min, max);
    logger.info({ model: name, version: mv.spec.version, min, max }, 'model scaled through the management API');
    if (synchronous) sendJson(res, 200, { status: `Workers scaled to ${workerCount(mv)} for model: ${name}, version: ${mv.spec.version}` });
    else sendJson(res, 202, { status: 'Processing worker updates...' });
  };
  router.put('/models/:model_name', scaleRoute);
  router.put('/models/:model_name/:model_version', scaleRoute);

  router.put('/models/:model_name/:model_version/set-default', (req, res) => {
    const name = resolveName(req);
    const v = versionParam(req)!;
    registry.setDefault(name, v);
    sendJson(res, 200, { status: `Default version successfully updated for model "${name}" to "${v}"` });
  });

  const unregisterRoute = async (req: Request, res: Response) => {
    const name = resolveName(req);
    const v = versionParam(req) ?? registry.defaultVersion(name);
    registry.resolve(name, v);
    await registry.unregister(name, v);
    logger.info({ model: name, version: v }, 'model unregistered through the management API');
    sendJson(res, 200, { status: `Model "${name}" Version: ${v} unregistered` });
  };
  router.delete('/models/:model_name', unregisterRoute);
  router.delete('/models/:model_name/:model_version', unregisterRoute);

  // A known path with another method is 405, not 404.
  const methods: Record<string, string[]> = {
    '/': ['OPTIONS'],
    '/models': ['GET', 'POST'],
    '/models/:model_name': ['GET', 'PUT', 'DELETE'],
    '/models/:model_name/:model_version': ['GET', 'PUT', 'DELETE'],
    '/models/:model_name/:model_version/set-default': ['PUT'],
  };
  for (const [path, allowed] of Object.entries(methods)) {
    router.all(path, (req, res, next) => {
      res.setHeader('Allow', allowed.join(', '));
      next(new MethodNotAllowedError(`Method ${req.method} is not allowed on ${req.path}; allowed: ${allowed.join(', ')}`));
    });
  }

  app.use(router);
  app.use(notFound);
  app.use(errorMiddleware(config.maxRequestSize));
  return app;
}

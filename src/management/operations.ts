// The management operations behind both management transports (REST on 8081, gRPC on 7071): each takes
// already-typed parameters, validates names, acts on the model store and the registry, and returns the
// status and JSON body the REST API answers with (gRPC sends that body as ManagementResponse.msg).
import { cp, stat } from 'node:fs/promises';
import { basename, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BadRequestError, ConflictError, ModelNotFoundError } from '../errors.js';
import type { ModelSettings, ModelVersion, Registry } from '../engine/types.js';
import type { AppDeps } from '../http/types.js';
import { checkName } from '../store/names.js';

/** A management answer: the HTTP status and the JSON body. */
export interface ManagementResult {
  status: number;
  body: unknown;
}

/** Executor threads serving the version now. */
function workerCount(mv: ModelVersion): number {
  return mv.workers;
}

/**
 * `optimize` (the setting) and `forwardModule`: the module forward runs, 'optimized' (frozen +
 * optimize_for_inference), 'original' (as saved) or 'pending' (checked on the first request), with the
 * reason when the original serves although optimisation was asked for.
 */
function optimizationFields(mv: ModelVersion): Record<string, unknown> {
  const { serving, reason } = mv.optimization;
  const requested = mv.settings.optimize !== false;
  return { optimize: requested, forwardModule: serving, ...(requested && reason ? { forwardModuleReason: reason } : {}) };
}

export function describe(registry: Registry, mv: ModelVersion): Record<string, unknown> {
  const s = mv.settings;
  const n = workerCount(mv);
  const pending = mv.pending;
  const stuck = mv.stuck;
  return {
    modelName: mv.spec.name,
    modelVersion: mv.spec.version,
    modelUrl: mv.spec.url,
    isDefault: registry.defaultVersion(mv.spec.name) === mv.spec.version,
    handler: mv.spec.handler.name,
    runtime: 'torchscript',
    device: mv.info.device,
    precision: s.precision,
    batchSize: s.batchSize,
    maxBatchDelay: s.maxBatchDelay,
    responseTimeout: s.responseTimeout,
    minWorkers: s.minWorkers,
    maxWorkers: s.maxWorkers,
    loadedAtStartup: mv.loadedAtStartup,
    parameterBytes: mv.info.parameterBytes,
    ...optimizationFields(mv),
    // A non-resizing image model without declared inputs: the size its registration probe found (null: several).
    ...(mv.imageInput ? { probedImageSize: mv.imageInput.size } : {}),
    // Workers are threads (or CUDA streams) over one module in this process, so they share pid and weights.
    workers: Array.from({ length: n }, (_, i) => ({
      id: String(9000 + i),
      startTime: mv.loadedAt.toISOString(),
      // STUCK: busy past its request's deadline plus a grace (the version reports not ready meanwhile).
      status: !mv.ready ? 'UNLOADING' : i < stuck ? 'STUCK' : 'READY',
      pid: process.pid,
      gpu: mv.info.device.startsWith('cuda'),
    })),
    jobQueueStatus: {
      remainingCapacity: Math.max(0, s.jobQueueSize - pending),
      pendingRequests: pending,
      runningRequests: mv.running,
      stuckWorkers: stuck,
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

export interface RegisterParams {
  url: string | undefined;
  modelName?: string;
  /** Default true over REST (TorchServe's), false over gRPC (proto3's default, as TorchServe). */
  synchronous: boolean;
  batchSize?: number;
  maxBatchDelay?: number;
  initialWorkers?: number;
  responseTimeout?: number;
}

/** Register a model version from the model store; 200 once loaded, 202 when asynchronous. */
export async function registerModel(deps: AppDeps, p: RegisterParams): Promise<ManagementResult> {
  const { registry, store, logger } = deps;
  if (!p.url) throw new BadRequestError('Parameter url is required.');
  if (p.modelName !== undefined) checkName(p.modelName, 'model name');
  const overrides: Partial<ModelSettings> = {};
  if (p.batchSize !== undefined) overrides.batchSize = p.batchSize;
  if (p.maxBatchDelay !== undefined) overrides.maxBatchDelay = p.maxBatchDelay;
  if (p.responseTimeout !== undefined) overrides.responseTimeout = p.responseTimeout;
  if (p.initialWorkers !== undefined) {
    // TorchServe's initial_workers fixes both bounds until a scale call changes them.
    overrides.minWorkers = p.initialWorkers;
    overrides.maxWorkers = p.initialWorkers;
  }

  const rel = await storeRelativeUrl(deps, p.url);
  const spec = await store.load(rel, p.modelName !== undefined ? { modelName: p.modelName } : undefined);
  checkName(spec.name, 'model name');
  checkName(spec.version, 'model version');
  if (registry.names().includes(spec.name) && registry.versions(spec.name).some((v) => v.spec.version === spec.version)) {
    throw new ConflictError(`Model version ${spec.version} for model ${spec.name} is already registered.`);
  }
  // Loading runs on a native thread; the inference listener keeps serving while it does.
  const registering = registry.register(spec, overrides, { loadedAtStartup: false });
  if (!p.synchronous) {
    registering.catch((err: unknown) =>
      logger.error({ model: spec.name, version: spec.version, err: (err as Error).message }, 'asynchronous registration failed'),
    );
    return { status: 202, body: { status: `Model "${spec.name}" Version: ${spec.version} registration accepted; loading in the background` } };
  }
  const mv = await registering;
  logger.info({ model: spec.name, version: spec.version, url: p.url }, 'model registered through the management API');
  return { status: 200, body: { status: `Model "${spec.name}" Version: ${spec.version} registered with ${workerCount(mv)} initial workers` } };
}

/** One page of model names (limit 0 or over 100 means 100; the token is the next page's offset). */
export function listModels(deps: AppDeps, p: { limit?: number; nextPageToken?: number }): ManagementResult {
  const { registry } = deps;
  let limit = p.limit ?? 100;
  if (limit === 0 || limit > 100) limit = 100;
  const start = p.nextPageToken ?? 0;
  const names = registry.names();
  const page = names.slice(start, start + limit).map((n) => ({ modelName: n, modelUrl: registry.resolve(n).spec.url }));
  const body: { models: typeof page; nextPageToken?: string } = { models: page };
  if (start + limit < names.length) body.nextPageToken = String(start + limit);
  return { status: 200, body };
}

/**
 * Validates the model name and version (both, before either is looked up, so a traversal attempt is
 * always a 400), then 404s an unknown name. Returns the checked version (undefined = default).
 */
export function checkTarget(registry: Registry, name: string, version: string | undefined): string | undefined {
  checkName(name, 'model name');
  if (version !== undefined) checkName(version, 'model version');
  if (!registry.names().includes(name)) throw new ModelNotFoundError(name);
  return version;
}

/** Describe one version (undefined = default) or `all` versions of a model. */
export function describeModel(deps: AppDeps, p: { name: string; version?: string }): ManagementResult {
  const { registry } = deps;
  const v = checkTarget(registry, p.name, p.version);
  const versions = v === 'all' ? registry.versions(p.name) : [registry.resolve(p.name, v)];
  return { status: 200, body: versions.map((mv) => describe(registry, mv)) };
}

/** Set a version's worker bounds (min default 1, max default max(min, 1)); 202 unless synchronous. */
export async function scaleWorkers(
  deps: AppDeps,
  p: { name: string; version?: string; minWorker?: number; maxWorker?: number; synchronous: boolean },
): Promise<ManagementResult> {
  const { registry, logger } = deps;
  const mv = registry.resolve(p.name, checkTarget(registry, p.name, p.version));
  const min = p.minWorker ?? 1;
  const max = p.maxWorker ?? Math.max(min, 1);
  if (max < min) throw new BadRequestError(`max_worker (${max}) must be >= min_worker (${min})`);
  // Scaling resizes the executor over the one loaded module: quick, so it is awaited either way.
  await registry.scale(p.name, mv.spec.version, min, max);
  logger.info({ model: p.name, version: mv.spec.version, min, max }, 'model scaled through the management API');
  if (p.synchronous) return { status: 200, body: { status: `Workers scaled to ${workerCount(mv)} for model: ${p.name}, version: ${mv.spec.version}` } };
  return { status: 202, body: { status: 'Processing worker updates...' } };
}

/** Make `version` the model's default. */
export function setDefaultVersion(deps: AppDeps, p: { name: string; version: string }): ManagementResult {
  const { registry } = deps;
  checkName(p.name, 'model name');
  checkTarget(registry, p.name, checkName(p.version, 'model version'));
  registry.setDefault(p.name, p.version);
  return { status: 200, body: { status: `Default version successfully updated for model "${p.name}" to "${p.version}"` } };
}

/** Drain and unload one version (undefined = the default version). */
export async function unregisterModel(deps: AppDeps, p: { name: string; version?: string }): Promise<ManagementResult> {
  const { registry, logger } = deps;
  const v = checkTarget(registry, p.name, p.version) ?? registry.defaultVersion(p.name);
  registry.resolve(p.name, v);
  await registry.unregister(p.name, v);
  logger.info({ model: p.name, version: v }, 'model unregistered through the management API');
  return { status: 200, body: { status: `Model "${p.name}" Version: ${v} unregistered` } };
}

// The model registry: names → versions (first registered = default), one loaded module per
// version shared by all of its workers, and the lifecycle (register, scale, drain, dispose).
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import {
  BadRequestError,
  ConflictError,
  ForbiddenError,
  InternalServerError,
  ModelNotFoundError,
  ModelVersionNotFoundError,
  TorchdError,
} from '../errors.js';
import { loadModel, type Model, type OptimizationState, type Tensor } from '../native.js';
import type { ServerMetrics } from '../metrics/types.js';
import { HANDLER_TRAITS } from '../handlers/names.js';
import { DynamicBatcher } from './batcher.js';
import type { ImageInputProbe, ModelInfo, ModelSettings, ModelSpec, ModelVersion, Registry } from './types.js';
import { ARRAY_CTOR, elementCount } from './tensors.js';

export interface RegistryOptions {
  metrics: ServerMetrics;
  logger: Logger;
  /** Server-wide settings; a model's config and the register() call override them per key. */
  defaults: ModelSettings;
  /** Cores the workers may use (default os.availableParallelism()). */
  cores?: number;
  /** LibTorch intra-op threads per worker; 0/undefined derives cores ÷ workers (never oversubscribing). */
  threads?: number;
  /** `max_workers_per_model`: a register or scale asking for more workers is a 400 (default 64). */
  maxWorkersPerModel?: number;
  /** `worker_spin_us`: how long a worker thread polls for the next call after one (LoadOptions.spinMicros; default 0). */
  spinMicros?: number;
}

export const DEFAULT_MAX_WORKERS_PER_MODEL = 64;

/** What the registry adds to the Registry contract (scaling views used by metrics and tests). */
export interface ModelRegistry extends Registry {
  /** Every loaded version, for gauges. */
  all(): LoadedModelVersion[];
}

export class LoadedModelVersion implements ModelVersion {
  ready = false;
  readonly loadedAt = new Date();
  readonly info: ModelInfo;
  /** What registration's probe learnt of a non-resizing image model's input size (see probeImageInput). */
  imageInput?: ImageInputProbe;
  /** The native module: only the registry (dispose, scale) and the batcher reach it. */
  readonly #model: Model;
  constructor(
    readonly spec: ModelSpec,
    readonly settings: ModelSettings,
    model: Model,
    readonly batcher: DynamicBatcher,
    readonly loadedAtStartup: boolean,
    /** LibTorch intra-op threads each worker runs with. */
    readonly threads: number,
  ) {
    this.#model = model;
    this.info = { device: model.device, inputs: model.inputs.map((i) => i.name), parameterCount: model.parameterCount, parameterBytes: model.parameterBytes };
  }

  /** Current concurrent native-call slots. */
  get workers(): number {
    return this.batcher.concurrency;
  }

  get pending(): number {
    return this.batcher.pending;
  }

  get stuck(): number {
    return this.batcher.stuck;
  }

  get running(): number {
    return this.batcher.running;
  }

  /** Executor threads (or CUDA streams) the native module runs now (≥ 1 even when `workers` is 0). */
  get executorThreads(): number {
    return this.#model.workers;
  }

  /** Calls an executor thread took while still polling after its previous one (worker_spin_us; a test hook). */
  get spinPickups(): number {
    return this.#model.spinPickups;
  }

  get optimization(): OptimizationState {
    return this.#model.optimization;
  }

  /** Resolves once the first forward has decided which module serves. */
  optimizationSettled(): Promise<OptimizationState> {
    return this.#model.optimizationSettled();
  }

  /** Native forward calls so far (every batch is one). */
  get forwardCalls(): number {
    return this.#model.forwardCalls;
  }

  /** Resizes the executor (at least one thread) and the batcher's slots (0 = refuse requests). */
  setWorkers(workers: number): void {
    this.#model.setWorkers(Math.max(1, workers));
    this.batcher.setWorkers(workers);
  }

  /** Native forward outside the batcher, for the registration warm-up only. */
  warmUp(inputs: Tensor[]): Promise<unknown> {
    return this.#model.forward(inputs);
  }

  dispose(): Promise<void> {
    return this.#model.dispose();
  }
}

/** Seeded values in [-2, 2): unlike zeros, they exercise every weight when the two forward modules are compared. */
function fillSeeded(data: Float32Array | Float64Array): void {
  let state = 0x2545f491;
  for (let i = 0; i < data.length; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    data[i] = state / 2 ** 30 - 2;
  }
}

/**
 * The warm-up input: the declared shapes (dynamic dims → 1) when every input is fully declared, else an
 * image classifier's one preprocessed image when its size is fixed by the config (crop_size or image_size).
 * Float inputs get seeded values (the first forward also checks the optimised module against the original),
 * others zeros. Undefined when the shape is unknown: the first request then does the check.
 */
function warmupInputs(spec: ModelSpec): Tensor[] | undefined {
  if (!spec.inputs || spec.inputs.length === 0) {
    const h = spec.handler;
    const side = HANDLER_TRAITS[h.name].imageInput ? (h.crop_size ?? h.image_size) : null;
    if (!side) return undefined;
    const data = new Float32Array(h.channels * side * side);
    fillSeeded(data);
    return [{ data, shape: [1, h.channels, side, side], dtype: 'float32' }];
  }
  const tensors: Tensor[] = [];
  for (const meta of spec.inputs) {
    // BYTES inputs (images, strings) have no dtype: nothing to warm up with.
    const dtype = meta.dtype;
    if (!dtype) return undefined;
    const Ctor = ARRAY_CTOR[dtype];
    if (!Ctor || meta.shape.length === 0) return undefined;
    const shape = meta.shape.map((d) => (d > 0 ? d : 1));
    const data = new Ctor(elementCount(shape));
    if (data instanceof Float32Array || data instanceof Float64Array) fillSeeded(data);
    tensors.push({ data, shape, dtype });
  }
  return tensors;
}

/**
 * Square sides the probe tries, smallest first: the usual input sizes (MNIST 28, CIFAR 32, …, ImageNet 224/256,
 * Inception 299, …). TorchScript does not record an input shape, so a size can only be found by trying; a short
 * ladder of likely sizes finds the common ones in a few cheap forwards (a failing one stops at the first layer that
 * disagrees), where a search over every side would cost hundreds.
 */
const PROBE_SIDES = [28, 32, 64, 96, 112, 128, 160, 192, 224, 256, 299, 320, 384, 448, 512];

/** A probe stops trying further sides past this (ms): registration must stay quick; the pixel budget applies then. */
const PROBE_BUDGET_MS = 10_000;

/** Whether a probe applies: an image classifier that does not resize and whose config declares no input shape. */
function needsImageProbe(spec: ModelSpec): boolean {
  const h = spec.handler;
  return HANDLER_TRAITS[h.name].imageInput && h.image_size === null && h.crop_size === null && !(spec.inputs && spec.inputs.length > 0);
}

/**
 * Finds the input size of a non-resizing image model before its first request, so that an image of another size is
 * refused from its header instead of being decoded (a 100 KB PNG can declare 9999×9999 pixels). Seeded-value
 * forwards of [1, channels, S, S] over PROBE_SIDES, on the native thread as any forward: the first side S that
 * succeeds is the candidate (its forward is also the one that settles the optimised-vs-original module check, as a
 * warm-up does; failing forwards do not settle it). S is only fixed if a clearly larger side fails too: a model with
 * adaptive pooling takes many sizes, and pinning the first one would refuse every other valid image. Not S + 1: the
 * floor of a strided pooling maps S..S+k to one feature size (the digit model takes 28 to 31), so S + 1 succeeds on
 * fixed-size models too; the next ladder side (32 after 28, 256 after 224) is past that band.
 * Undefined when no side was accepted within the budget (the model then gets the pixel budget).
 */
async function probeImageInput(mv: LoadedModelVersion, logger: Logger): Promise<ImageInputProbe | undefined> {
  const { spec } = mv;
  const channels = spec.handler.channels;
  const t0 = performance.now();
  const accepts = async (side: number): Promise<boolean> => {
    const data = new Float32Array(channels * side * side);
    fillSeeded(data);
    try {
      await mv.warmUp([{ data, shape: [1, channels, side, side], dtype: 'float32' }]);
      return true;
    } catch {
      return false;
    }
  };
  let result: ImageInputProbe | undefined;
  const tried: number[] = [];
  for (let i = 0; i < PROBE_SIDES.length && performance.now() - t0 < PROBE_BUDGET_MS; i++) {
    const side = PROBE_SIDES[i];
    tried.push(side);
    if (!(await accepts(side))) continue;
    const larger = PROBE_SIDES[i + 1] ?? side + Math.ceil(side / 4);
    tried.push(larger);
    result = { size: (await accepts(larger)) ? null : [side, side] };
    break;
  }
  const ms = Math.round(performance.now() - t0);
  logger.info(
    { model: spec.name, version: spec.version, tried, inputSize: result ? (result.size ? result.size.join('x') : 'any') : 'unknown', probeMs: ms },
    result?.size ? 'image input size found by probing: other sizes are refused from the header'
      : result ? 'the model takes several image sizes: no size check, the pixel budget applies'
        : 'no probed image size was accepted: the pixel budget applies',
  );
  return result;
}

/**
 * Logs a warning when optimisation was asked for but the original module serves (the optimised copy's
 * outputs differed or a pass failed). While the check is pending (no warm-up input), it reports once the
 * first request has settled it.
 */
function reportOptimization(mv: LoadedModelVersion, logger: Logger): void {
  if (mv.settings.optimize === false) return;
  const { serving, reason } = mv.optimization;
  if (serving === 'original') {
    logger.warn({ model: mv.spec.name, version: mv.spec.version, reason }, 'serving the original module: the optimised one was not used');
  } else if (serving === 'pending') {
    void mv.optimizationSettled().then(() => reportOptimization(mv, logger));
  }
}

function positiveInt(value: number, key: string, min: number): number {
  if (!Number.isInteger(value) || value < min) throw new BadRequestError(`${key} must be an integer >= ${min} (got ${value})`);
  return value;
}

/** Workers are threads (or CUDA streams): thousands of them would exhaust the process, so the count is bounded. */
function workerCount(value: number, key: string, cap: number): number {
  positiveInt(value, key, 0);
  if (value > cap) throw new BadRequestError(`${key} ${value} exceeds max_workers_per_model (${cap})`);
  return value;
}

export function createRegistry(options: RegistryOptions): ModelRegistry {
  const { metrics, logger } = options;
  const cores = Math.max(1, options.cores ?? os.availableParallelism());
  const maxWorkersPerModel = options.maxWorkersPerModel ?? DEFAULT_MAX_WORKERS_PER_MODEL;
  const models = new Map<string, Map<string, LoadedModelVersion>>();
  const defaults = new Map<string, string>();
  /** name@version of loads in progress, so a concurrent duplicate is a 409 too. */
  const loading = new Set<string>();
  const loadedListeners: ((mv: ModelVersion) => void)[] = [];

  /** Workers start at minWorkers (at least 1 when maxWorkers allows) and stay within [min, max]. */
  function startWorkers(s: ModelSettings): number {
    return Math.min(Math.max(s.minWorkers, 1), Math.max(s.maxWorkers, s.minWorkers, 1));
  }

  /** Intra-op threads per worker so that workers × threads ≤ cores, unless configured explicitly. */
  function threadsFor(workers: number): number {
    if (options.threads && options.threads > 0) return options.threads;
    return Math.max(1, Math.floor(cores / Math.max(1, workers)));
  }

  function settle(spec: ModelSpec, overrides: Partial<ModelSettings>): ModelSettings {
    const s: ModelSettings = { ...options.defaults, ...dropUndefined(spec.settings), ...dropUndefined(overrides) };
    positiveInt(s.batchSize, 'batchSize', 1);
    workerCount(s.minWorkers, 'minWorkers', maxWorkersPerModel);
    workerCount(s.maxWorkers, 'maxWorkers', maxWorkersPerModel);
    positiveInt(s.jobQueueSize, 'jobQueueSize', 1);
    if (!(s.maxBatchDelay >= 0)) throw new BadRequestError(`maxBatchDelay must be >= 0 ms (got ${s.maxBatchDelay})`);
    if (!(s.responseTimeout > 0)) throw new BadRequestError(`responseTimeout must be > 0 s (got ${s.responseTimeout})`);
    if (s.maxWorkers < s.minWorkers) s.maxWorkers = s.minWorkers;
    return s;
  }

  function versionsOf(name: string): Map<string, LoadedModelVersion> {
    const versions = models.get(name);
    if (!versions || versions.size === 0) throw new ModelNotFoundError(name);
    return versions;
  }

  const registry: ModelRegistry = {
    async register(spec, overrides, opts = {}) {
      const id = `${spec.name}@${spec.version}`;
      if (models.get(spec.name)?.has(spec.version) || loading.has(id)) {
        throw new ConflictError(`Model version ${spec.version} for model ${spec.name} is already registered.`);
      }
      const settings = settle(spec, overrides);
      const workers = startWorkers(settings);
      const threads = threadsFor(workers);
      if (workers * threads > cores) {
        logger.warn({ model: spec.name, version: spec.version, workers, threads, cores }, 'workers × intra-op threads exceeds the cores: expect oversubscription');
      }
      loading.add(id);
      let model: Model;
      const t0 = Date.now();
      try {
        // Loading runs on a native thread (a Promise), so the event loop keeps serving meanwhile.
        model = await loadModel(spec.serializedFile, {
          device: settings.device,
          workers: Math.max(1, workers),
          threads,
          spinMicros: options.spinMicros ?? 0,
          precision: settings.precision,
          optimize: settings.optimize ?? true,
        });
      } catch (err) {
        loading.delete(id);
        if (err instanceof TorchdError) throw err;
        throw new InternalServerError(`Failed to load model ${spec.name} version ${spec.version}: ${(err as Error).message}`);
      }
      const batcher = new DynamicBatcher({ model, name: spec.name, version: spec.version, settings, workers, metrics, logger });
      const mv = new LoadedModelVersion(spec, settings, model, batcher, opts.loadedAtStartup ?? false, threads);
      const warm = warmupInputs(spec);
      if (warm) {
        try {
          await mv.warmUp(warm);
        } catch (err) {
          logger.warn({ model: spec.name, version: spec.version, err: (err as Error).message }, 'warm-up forward failed');
        }
      } else if (needsImageProbe(spec)) {
        // Before the version can be resolved: its handler knows the size from the first request on.
        mv.imageInput = await probeImageInput(mv, logger);
      }
      try {
        for (const listener of loadedListeners) listener(mv);
      } catch (err) {
        loading.delete(id);
        await mv.dispose();
        if (err instanceof TorchdError) throw err;
        throw new InternalServerError(`Failed to load model ${spec.name} version ${spec.version}: ${(err as Error).message}`);
      }
      // The warm-up forward decided which module serves; without one the first request decides.
      reportOptimization(mv, logger);
      mv.ready = workers >= 1;
      loading.delete(id);
      let versions = models.get(spec.name);
      if (!versions) models.set(spec.name, (versions = new Map()));
      versions.set(spec.version, mv);
      if (!defaults.has(spec.name)) defaults.set(spec.name, spec.version);
      logger.info(
        {
          model: spec.name, version: spec.version, file: spec.serializedFile, modelDevice: model.device,
          parameters: model.parameterCount, parameterBytes: model.parameterBytes, inputs: model.inputs.map((i) => i.name),
          handler: spec.handler.name, ...settings, workers, threads, cores, warmedUp: Boolean(warm) || Boolean(mv.imageInput), loadMs: Date.now() - t0,
          forwardModule: model.optimization.serving,
          default: defaults.get(spec.name) === spec.version,
        },
        'model loaded',
      );
      return mv;
    },

    onLoaded(listener) {
      loadedListeners.push(listener);
    },

    resolve(name, version) {
      const versions = versionsOf(name);
      const v = version ?? defaults.get(name)!;
      const mv = versions.get(v);
      if (!mv) throw new ModelVersionNotFoundError(name, v);
      return mv;
    },

    names() {
      return [...models.keys()].filter((n) => models.get(n)!.size > 0).sort();
    },

    versions(name) {
      return [...versionsOf(name).values()];
    },

    defaultVersion(name) {
      versionsOf(name);
      return defaults.get(name)!;
    },

    setDefault(name, version) {
      const versions = versionsOf(name);
      if (!versions.has(version)) throw new ModelVersionNotFoundError(name, version);
      defaults.set(name, version);
      logger.info({ model: name, version }, 'default version set');
    },

    async unregister(name, version) {
      const versions = versionsOf(name);
      const v = version ?? defaults.get(name)!;
      const mv = versions.get(v);
      if (!mv) throw new ModelVersionNotFoundError(name, v);
      if (defaults.get(name) === v && versions.size > 1) {
        throw new ForbiddenError(`Cannot remove default version ${v} for model ${name}`);
      }
      // Unreachable for new requests first, then let queued and running requests finish.
      versions.delete(v);
      if (versions.size === 0) {
        models.delete(name);
        defaults.delete(name);
      }
      mv.ready = false;
      await mv.batcher.close();
      await mv.dispose();
      logger.info({ model: name, version: v }, 'model unregistered');
    },

    async scale(name, version, minWorkers, maxWorkers) {
      const mv = registry.resolve(name, version) as LoadedModelVersion;
      workerCount(minWorkers, 'min_worker', maxWorkersPerModel);
      workerCount(maxWorkers, 'max_worker', maxWorkersPerModel);
      if (maxWorkers < minWorkers) throw new BadRequestError(`max_worker (${maxWorkers}) must be >= min_worker (${minWorkers})`);
      const s = mv.settings;
      s.minWorkers = minWorkers;
      s.maxWorkers = maxWorkers;
      const workers = minWorkers;
      // The executor keeps at least one thread; zero workers means the batcher refuses requests.
      mv.setWorkers(workers);
      mv.ready = workers >= 1;
      if (workers * mv.threads > cores) {
        logger.warn({ model: name, version: mv.spec.version, workers, threads: mv.threads, cores }, 'workers × intra-op threads exceeds the cores');
      }
      logger.info({ model: name, version: mv.spec.version, minWorkers, maxWorkers, workers }, 'model scaled');
    },

    healthy() {
      for (const [name, versions] of models) {
        const mv = versions.get(defaults.get(name)!);
        // A worker busy past its request's deadline + grace is wedged: stop taking traffic until it returns.
        if (!mv || !mv.ready || mv.batcher.stuck > 0) return false;
      }
      return true;
    },

    async close(closeOptions = {}) {
      const all = registry.all();
      models.clear();
      defaults.clear();
      await Promise.all(
        all.map(async (mv) => {
          mv.ready = false;
          await mv.batcher.close(closeOptions.abortQueued);
          await mv.dispose();
        }),
      );
    },

    all() {
      return [...models.values()].flatMap((versions) => [...versions.values()]);
    },
  };
  return registry;
}

function dropUndefined<T extends object>(obj: T | undefined): Partial<T> {
  if (!obj) return {};
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined)) as Partial<T>;
}

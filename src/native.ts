// The ONLY module that loads the torchd.node addon. Everything else imports types and functions
// from here. (Contract shared by all layers; the loader body is owned by the native work.)

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inspect } from 'node:util';
import { isMainThread, Worker } from 'node:worker_threads';

/** Element types the engine accepts and returns. fp16/bf16 travel as raw 16-bit words. */
export type DType =
  | 'float32' | 'float16' | 'bfloat16' | 'float64'
  | 'int64' | 'int32' | 'int16' | 'int8' | 'uint8' | 'bool';

/** JS view for each dtype: float16/bfloat16 → Uint16Array (bit patterns), bool → Uint8Array, int64 → BigInt64Array. */
export type TypedArray =
  | Float32Array | Float64Array | BigInt64Array | Int32Array | Int16Array | Int8Array | Uint8Array | Uint16Array;

/** A dense, row-major (C-contiguous), little-endian tensor. */
export interface Tensor {
  data: TypedArray;
  shape: number[];
  dtype: DType;
}

/** What a TorchScript forward may return: tensors, tuples/lists, Dict[str, ...], Python scalars, nested. */
export type OutputTree =
  | Tensor
  | number
  | boolean
  | string
  | null
  | OutputTree[]
  | { [key: string]: OutputTree };

export interface BuildInfo {
  torchVersion: string;
  cudaCompiled: boolean;
  cudaAvailable: boolean;
  deviceCount: number;
  /** OpenBLAS's own thread count (torchd sets 1 unless OPENBLAS_NUM_THREADS says otherwise); -1: the BLAS is not OpenBLAS. */
  blasThreads: number;
  /** Whether the event loop's poll after short calls was built in (libuv's header was found at build time). */
  loopPoll: boolean;
}

export interface LoadOptions {
  /** 'cpu' | 'cuda' | 'cuda:N' (default 'cpu') */
  device?: string;
  /** LibTorch intra-op threads for this model's calls (per model; default LibTorch's). */
  threads?: number;
  /** Executor threads (CPU) or CUDA streams (GPU) sharing this one module (default 1). */
  workers?: number;
  /**
   * Microseconds an executor thread keeps polling for the next call after finishing one, yielding to
   * anything runnable, before it sleeps (default 0; the server passes `worker_spin_us`). After a forward
   * (or an integrated-gradients call) shorter than this, the next call of that kind also keeps the event loop
   * polling (zero poll timeout) for as long.
   */
  spinMicros?: number;
  /** Autocast precision on CUDA (default 'fp32'). */
  precision?: 'fp32' | 'fp16' | 'bf16';
  /**
   * Forward runs a frozen, inference-optimised copy (default true); the first forward call runs both
   * and keeps the copy only if its outputs are within 1e-3 (relative) of the original's. IG always
   * runs the original, which is reloaded from `path` on the first explanation.
   */
  optimize?: boolean;
}

/** Which module forward runs: 'pending' until the first forward has compared the two. */
export interface OptimizationState {
  serving: 'optimized' | 'original' | 'pending';
  /** Why the original serves ('' when the optimised copy does or the check is pending). */
  reason: string;
}

export interface IgOptions {
  /**
   * Target class index per example (length = batch size of inputs[0]). Omitted: each example's
   * predicted class (argmax of F(x), from the forward IG runs anyway).
   */
  target?: number[];
  /** Number of integration steps (default 15). */
  steps?: number;
  method?: 'gausslegendre' | 'riemann_trapezoid';
  /** Baseline with the input's shape (default zeros). */
  baseline?: Tensor;
  /** Most integration steps per forward/backward pass (default: as many as memoryBudget allows). */
  chunk?: number;
  /**
   * Bytes one explanation may hold beyond its inputs (default 0 = unbounded). The first pass runs one
   * step and measures its peak allocation; later passes run budget / that many steps.
   */
  memoryBudget?: number;
}

/** How a call may be stopped early: at its next safe point (before it starts; between IG passes). */
export interface CallOptions {
  /** Aborting it cancels the call (rejects with E_CANCELLED if it had not finished). */
  signal?: AbortSignal;
  /** Absolute deadline (Date.now() ms); checked natively, so it holds even if the event loop is busy. */
  deadline?: number;
  /**
   * false: a rejection carries no caller frames. For callers that map errors by `.code` and drop the stack (the
   * batcher): capturing the call site cost ≈ 25 µs of every forward on the bench's c=1 path (bench/NOTES.md §28).
   */
  captureStack?: boolean;
}

export interface IgResult {
  /** Attributions w.r.t. inputs[0], same shape as inputs[0]. */
  attributions: Tensor;
  /** Completeness delta per example: sum(attr) − (F(x)_t − F(baseline)_t). */
  delta: number[];
  /** Steps in the largest forward/backward pass, and how many passes ran. */
  chunk: number;
  passes: number;
  /** Measured peak bytes of one step (0 when no memory budget was given). */
  stepBytes: number;
}

export type NativeErrorCode =
  | 'E_LOAD' | 'E_DEVICE' | 'E_DTYPE' | 'E_SHAPE' | 'E_FORWARD'
  | 'E_OOM' | 'E_DISPOSED' | 'E_ARGUMENT' | 'E_CANCELLED';

/** A loaded TorchScript module: one copy of the weights, `workers` executor threads over it. */
export interface Model {
  readonly path: string;
  readonly device: string;
  /** forward's argument names, without `self`. */
  readonly inputs: { name: string }[];
  readonly parameterCount: number;
  readonly parameterBytes: number;
  readonly workers: number;
  /** Number of native forward calls made so far (test/metrics hook). */
  readonly forwardCalls: number;
  readonly optimization: OptimizationState;
  /** Resolves once the first forward has decided which module serves (at once if already decided). */
  optimizationSettled(): Promise<OptimizationState>;
  /** Intra-op threads this model's calls run with. */
  readonly threads: number;
  /** Executor threads started and not yet joined (retired threads are joined on the next resize or call). */
  readonly executorThreads: number;
  /** Calls an executor thread took while still polling after its previous one (test hook for `spinMicros`). */
  readonly spinPickups: number;
  /** Resize the executor (threads/streams) over the same module; never copies weights. */
  setWorkers(n: number): void;
  forward(inputs: Tensor[], options?: CallOptions): Promise<OutputTree>;
  integratedGradients(inputs: Tensor[], options: IgOptions & CallOptions): Promise<IgResult>;
  /** Test hook: the intra-op thread count LibTorch reports on one of this model's executor threads. */
  probeThreads(): Promise<number>;
  /** Waits for running calls, then frees the module; later calls reject with E_DISPOSED. */
  dispose(): Promise<void>;
}

const NATIVE_ERROR_CODES: ReadonlySet<string> = new Set<NativeErrorCode>([
  'E_LOAD', 'E_DEVICE', 'E_DTYPE', 'E_SHAPE', 'E_FORWARD', 'E_OOM', 'E_DISPOSED', 'E_ARGUMENT', 'E_CANCELLED',
]);

/**
 * An error from the native engine, with a stable `.code`. Bad arguments are thrown as TypeError or
 * RangeError carrying the same `.code`; `err instanceof NativeError` is true for all of them.
 */
export class NativeError extends Error {
  readonly code: NativeErrorCode;

  constructor(code: NativeErrorCode, message: string) {
    super(message);
    this.name = 'NativeError';
    this.code = code;
  }

  static [Symbol.hasInstance](value: unknown): boolean {
    return value instanceof Error && NATIVE_ERROR_CODES.has((value as { code?: unknown }).code as string);
  }
}

/** The `.code` of a native error, or undefined for anything else. */
export function nativeErrorCode(error: unknown): NativeErrorCode | undefined {
  return error instanceof NativeError ? (error as NativeError).code : undefined;
}

/** A call site with no frames (CallOptions.captureStack false). */
const NO_SITE: { stack?: string } = {};

/** Where a call entered this module; V8 formats the stack lazily, but collecting the frames still costs µs. */
function callSite(entry: Function): { stack?: string } {
  const site: { stack?: string } = {};
  Error.captureStackTrace(site, entry);
  return site;
}

/**
 * Re-creates a native rejection with the caller's stack (native errors are born in a completion
 * callback and carry none), keeping its kind (Error/TypeError/RangeError) and `.code`.
 */
function rethrow(error: unknown, site: { stack?: string }): never {
  if (!(error instanceof Error) || !NATIVE_ERROR_CODES.has((error as { code?: unknown }).code as string)) throw error;
  const code = (error as unknown as { code: NativeErrorCode }).code;
  let out: Error;
  if (error instanceof TypeError) out = new TypeError(error.message);
  else if (error instanceof RangeError) out = new RangeError(error.message);
  else out = new NativeError(code, error.message);
  (out as { code?: NativeErrorCode }).code = code;
  const frames = site.stack?.split('\n').slice(1).join('\n');
  if (frames) out.stack = `${out.name}: ${out.message}\n${frames}`;
  throw out;
}

/** The addon's cancel handle: checked by the executor at safe points. */
interface RawCancelToken {
  cancel(reason?: 'deadline' | 'aborted'): void;
  /** Stops the call once `ms` more milliseconds have passed (steady clock). */
  setTimeout(ms: number): void;
}

/** Native call options: a CancelToken made by the same addon. */
interface RawCallOptions {
  cancel?: RawCancelToken;
}

/** The addon's own model object: rejects with untraced native errors and takes raw call options. */
interface RawModel extends Omit<Model, 'forward' | 'integratedGradients'> {
  forward(inputs: Tensor[], options?: RawCallOptions): Promise<OutputTree>;
  integratedGradients(inputs: Tensor[], options: IgOptions & RawCallOptions): Promise<IgResult>;
}

/** What native image preprocessing does: torchvision's Resize(imageSize) + CenterCrop(cropSize) + Normalize. */
export interface ImageSpec {
  channels: 1 | 3;
  /** The shorter side becomes this (Pillow-exact bilinear); absent = no resize. */
  imageSize?: number;
  /** Centre crop; absent = none. */
  cropSize?: number;
  mean: number[];
  std: number[];
  /** Header limits: larger images are declined (the general path refuses them with its message). */
  maxSide?: number;
  maxPixels?: number;
  /** Sources with a shorter side above preshrink × imageSize are declined (the general path pre-shrinks them). */
  preshrink?: number;
  /** JPEG: decode at the smallest 1/2, 1/4 or 1/8 DCT scale still ≥ imageSize (not bit-identical). */
  fastDecode?: boolean;
}

/** A float32 [1, C, H, W] tensor, or why the image was left to the general (sharp) path. */
export type NativeImage = { data: Float32Array; shape: number[] } | { declined: string };

interface Addon {
  buildInfo(): BuildInfo;
  loadModel(path: string, options?: LoadOptions): Promise<RawModel>;
  CancelToken: new () => RawCancelToken;
  /**
   * The exit hook (see native/addon/addon.cpp): cancels running calls, drops queued ones and waits
   * (≤ 1 s) for running ones to return, then joins the executor threads. False when a call is still
   * inside a LibTorch operator: exit() must not run its static destructors under it.
   */
  prepareForExit(code: number, isMainThread: boolean): boolean;
  /** _exit(code): ends the process without atexit handlers or static destructors. */
  exitNow(code: number): never;
  loopPollTurns(): number;
  preprocessImage(bytes: Uint8Array, spec: ImageSpec): Promise<NativeImage>;
  preprocessImageSync(bytes: Uint8Array, spec: ImageSpec): NativeImage;
}

const here = dirname(fileURLToPath(import.meta.url));
/** Where `npx cmake-js compile --out build` puts the addon, from src/ and from dist/src/. */
const BUILD_CANDIDATES = [
  resolve(here, '../build/Release/torchd.node'),
  resolve(here, '../../build/Release/torchd.node'),
];

let addon: Addon | undefined;

/**
 * process.exit(), an uncaught exception and the end of the event loop all emit 'exit' before C
 * exit() tears down LibTorch's statics, and no native call may still run then (addon.cpp says why).
 * When one cannot be stopped in time, the process ends with _exit and the same code; Node prints an
 * uncaught exception's report only after 'exit', so in that case it is printed here first.
 */
function registerExitHook(native: Addon): void {
  let uncaught: { error: unknown } | undefined;
  process.on('uncaughtExceptionMonitor', (error) => {
    uncaught = { error };
  });
  process.on('exit', (exitCode) => {
    const code = typeof exitCode === 'number' ? exitCode : Number(process.exitCode ?? 0);
    if (native.prepareForExit(code, isMainThread) || !isMainThread) return;
    if (uncaught && code !== 0) process.stderr.write(`Uncaught ${inspect(uncaught.error)}\n`);
    native.exitNow(code);
  });
}

/** The addon file loadAddon() tries first: $TORCHD_ADDON if set, else the first cmake-js build output present. */
function addonPath(): string | undefined {
  const override = process.env.TORCHD_ADDON;
  return override ? resolve(override) : BUILD_CANDIDATES.find((c) => existsSync(c));
}

/**
 * Starts loading torchd.node and LibTorch's shared libraries (≈ 0.35 s of dynamic linking and static
 * initialisers on the bench machine, bench/NOTES.md §27) on a worker thread, so that `torchd start` links them
 * while its main thread evaluates the server's JavaScript (≈ 0.4 s) instead of after it. The libraries are
 * process-wide: the main thread's later require() of the same file finds them loaded (the dynamic linker
 * serialises the two) and only runs the addon's per-environment init. The worker registers no exit hook and
 * never runs a native call; it ends at once. The threading variables are settled first (settleThreadingEnv).
 * Resolves true once the worker has loaded the addon, false when it could not (loadAddon() then reports the
 * real error on the main thread). Never rejects.
 */
export function preloadAddonInBackground(): Promise<boolean> {
  settleThreadingEnv();
  const file = addon ? undefined : addonPath();
  if (!file) return Promise.resolve(Boolean(addon));
  return new Promise((done) => {
    let loaded = false;
    try {
      const worker = new Worker(
        "const { parentPort, workerData } = require('node:worker_threads'); require(workerData); parentPort.postMessage('loaded');",
        // No inherited flags (--input-type=module, loaders): the one-line script is CommonJS and needs nothing else.
        { eval: true, workerData: file, execArgv: [] },
      );
      worker.unref();
      worker.on('message', () => (loaded = true));
      worker.on('error', () => done(false));
      worker.on('exit', () => done(loaded));
    } catch {
      done(false);
    }
  });
}

/**
 * The environment LibTorch's thread pools read once, when their libraries are loaded (the addon's first
 * load, here or in the preload worker); a value the user set is kept.
 * - OMP_WAIT_POLICY=PASSIVE: libgomp's teams spin after each parallel region by default, and on cores
 *   shared with the event loop and the image workers a spinning team waits for a thread the scheduler
 *   gave to someone else: a ResNet-18 forward took 5× longer next to preprocessing (bench/NOTES.md §7, §8).
 * - OPENBLAS_NUM_THREADS=1: Debian's LibTorch runs its GEMMs through OpenBLAS, whose own pool (one thread
 *   per core, spin-waiting between calls) competes with the executors and the intra-op threads that
 *   already own the cores: one spinning BLAS thread cost 4.8 ms of CPU per ResNet-18 request, and the
 *   harness ran 1.7× faster at 1 worker × 2 threads without it (NOTES.md §32).
 */
export const THREADING_ENV_DEFAULTS: Readonly<Record<string, string>> = { OMP_WAIT_POLICY: 'PASSIVE', OPENBLAS_NUM_THREADS: '1' };

export function settleThreadingEnv(): void {
  for (const [name, value] of Object.entries(THREADING_ENV_DEFAULTS)) process.env[name] ??= value;
}

/** Loads torchd.node once: $TORCHD_ADDON if set, else the cmake-js build output. */
function loadAddon(): Addon {
  if (addon) return addon;
  settleThreadingEnv();
  const require = createRequire(import.meta.url);
  const override = process.env.TORCHD_ADDON;
  const candidates = override ? [resolve(override)] : BUILD_CANDIDATES;
  const failures: string[] = [];
  for (const candidate of candidates) {
    if (!existsSync(candidate)) {
      failures.push(`${candidate}: not found`);
      continue;
    }
    try {
      const loaded = require(candidate) as Addon;
      addon = loaded;
      registerExitHook(loaded);
      return addon;
    } catch (error) {
      failures.push(`${candidate}: ${(error as Error).message}`);
    }
  }
  const libtorch = process.env.LIBTORCH ?? process.env.Torch_DIR ?? 'the system LibTorch (libtorch-dev, libtorch.so)';
  throw new NativeError(
    'E_LOAD',
    `cannot load the torchd native addon (linked against ${libtorch}). Tried:\n  ` +
      failures.join('\n  ') +
      '\nBuild it with `npx cmake-js compile --out build` (needs LibTorch: `apt-get install libtorch-dev` ' +
      'or LIBTORCH=/path/to/libtorch), or set TORCHD_ADDON to a built torchd.node.',
  );
}

/** Torch version and CUDA availability of the loaded addon. Throws NativeError E_LOAD when it cannot load. */
export function buildInfo(): BuildInfo {
  return loadAddon().buildInfo();
}

/** Event-loop turns taken so far while polling after short calls (a test hook; 0 when not built in). */
export function loopPollTurns(): number {
  return loadAddon().loopPollTurns();
}

/**
 * A native CancelToken following `signal` and `deadline`, or no token when neither is given. The
 * deadline is handed to native code as a relative timeout on its steady clock; `done` detaches the
 * abort listener once the call settled.
 */
function cancelControl(options: CallOptions): { raw: RawCallOptions; done(): void } {
  const { signal, deadline } = options;
  if (!signal && deadline === undefined) return { raw: {}, done() {} };
  const token = new (loadAddon().CancelToken)();
  if (deadline !== undefined) token.setTimeout(Math.max(0, deadline - Date.now()));
  if (!signal) return { raw: { cancel: token }, done() {} };
  const onAbort = () => token.cancel('aborted');
  if (signal.aborted) onAbort();
  else signal.addEventListener('abort', onAbort, { once: true });
  return { raw: { cancel: token }, done: () => signal.removeEventListener('abort', onAbort) };
}

class LoadedModel implements Model {
  /** Waiting for the first forward's optimisation check; undefined once it is settled. */
  private settleWaiters: ((state: OptimizationState) => void)[] | undefined = [];

  constructor(private readonly raw: RawModel) {}

  get path(): string { return this.raw.path; }
  get device(): string { return this.raw.device; }
  get inputs(): { name: string }[] { return this.raw.inputs; }
  get parameterCount(): number { return this.raw.parameterCount; }
  get parameterBytes(): number { return this.raw.parameterBytes; }
  get workers(): number { return this.raw.workers; }
  get forwardCalls(): number { return this.raw.forwardCalls; }
  get optimization(): OptimizationState { return this.raw.optimization; }

  optimizationSettled(): Promise<OptimizationState> {
    const state = this.raw.optimization;
    if (state.serving !== 'pending' || !this.settleWaiters) return Promise.resolve(state);
    return new Promise((resolve) => this.settleWaiters!.push(resolve));
  }

  /** After a forward: wakes optimizationSettled() waiters once the check is done (a getter call until then). */
  private noteSettled(): void {
    if (!this.settleWaiters) return;
    const state = this.raw.optimization;
    if (state.serving === 'pending') return;
    const waiters = this.settleWaiters;
    this.settleWaiters = undefined;
    for (const wake of waiters) wake(state);
  }
  get threads(): number { return this.raw.threads; }
  get executorThreads(): number { return this.raw.executorThreads; }
  get spinPickups(): number { return this.raw.spinPickups; }

  setWorkers(n: number): void {
    try {
      this.raw.setWorkers(n);
    } catch (error) {
      rethrow(error, callSite(this.setWorkers));
    }
  }

  async forward(inputs: Tensor[], options: CallOptions = {}): Promise<OutputTree> {
    const site = options?.captureStack === false ? NO_SITE : callSite(this.forward);
    const control = cancelControl(options ?? {});
    try {
      return await this.raw.forward(inputs, control.raw);
    } catch (error) {
      rethrow(error, site);
    } finally {
      this.noteSettled();
      control.done();
    }
  }

  async integratedGradients(inputs: Tensor[], options: IgOptions & CallOptions): Promise<IgResult> {
    const site = (options as CallOptions | undefined)?.captureStack === false ? NO_SITE : callSite(this.integratedGradients);
    // A non-object reaches the addon as it is, which rejects it with E_ARGUMENT.
    const isObject = typeof options === 'object' && options !== null;
    const control = cancelControl(isObject ? options : {});
    try {
      if (!isObject) return await this.raw.integratedGradients(inputs, options);
      const { signal: _signal, deadline: _deadline, captureStack: _captureStack, ...ig } = options;
      return await this.raw.integratedGradients(inputs, { ...ig, ...control.raw });
    } catch (error) {
      rethrow(error, site);
    } finally {
      control.done();
    }
  }

  probeThreads(): Promise<number> {
    return this.raw.probeThreads();
  }

  async dispose(): Promise<void> {
    await this.raw.dispose();
  }
}

/**
 * preprocessImage on the calling thread, without the thread hop: only for images the caller has bounded to a few µs
 * of work (src/handlers/image.ts sends PNGs of at most 128 × 128 pixels and 64 KB). Throws what preprocessImage
 * rejects with.
 */
export function preprocessImageSync(bytes: Uint8Array, spec: ImageSpec): NativeImage {
  try {
    return loadAddon().preprocessImageSync(bytes, spec);
  } catch (error) {
    // A synchronous throw already carries the caller's frames.
    rethrow(error, error as Error);
  }
}

/**
 * JPEG/PNG bytes → float32 [1, C, H, W] on the addon's image threads (libjpeg-turbo / libspng, EXIF orientation,
 * Pillow-exact resize, crop, normalisation), bit-identical to src/handlers/image-preprocess.ts. Resolves with
 * `{ declined }` for what that path handles differently (other formats, CMYK, gamma chunks, warnings, corrupt or
 * oversized data); rejects only on bad arguments (E_ARGUMENT) or memory exhaustion.
 */
export async function preprocessImage(bytes: Uint8Array, spec: ImageSpec): Promise<NativeImage> {
  const site = callSite(preprocessImage);
  try {
    return await loadAddon().preprocessImage(bytes, spec);
  } catch (error) {
    rethrow(error, site);
  }
}

/**
 * Loads a TorchScript file onto `options.device` (default 'cpu') with `options.workers` executor
 * threads. Rejects with E_LOAD (missing / not a TorchScript model), E_DEVICE, or E_ARGUMENT.
 */
export async function loadModel(path: string, options: LoadOptions = {}): Promise<Model> {
  const site = callSite(loadModel);
  const native = loadAddon();
  try {
    return new LoadedModel(await native.loadModel(path, options));
  } catch (error) {
    rethrow(error, site);
  }
}

// Contracts between the model store (archives), the engine (registry, batcher) and the handlers.
import type { DType } from '../native.js';
import type { HandlerName, Preset } from '../handlers/names.js';

export type HandlerOutput = 'topk' | 'argmax' | 'probabilities' | 'logits';

/** Handler options after presets and defaults are applied (model-config `handler:` block). */
export interface HandlerConfig {
  /** Built-in handler name. */
  name: HandlerName;
  preset?: Preset;
  image_size: number | null;
  crop_size: number | null;
  channels: 1 | 3;
  mean: number[];
  std: number[];
  topk: number;
  output: HandlerOutput;
  /**
   * JPEG inputs decode at a reduced DCT scale (1/2, 1/4 or 1/8, never below image_size) before the resize:
   * faster for large photos, not bit-identical to torchvision (README, model config). Absent means false.
   */
  fast_decode?: boolean;
}

/** Per model-version serving settings (TorchServe's names; times in ms except responseTimeout in s). */
export interface ModelSettings {
  batchSize: number;
  maxBatchDelay: number;
  minWorkers: number;
  maxWorkers: number;
  /** seconds */
  responseTimeout: number;
  device: string;
  precision: 'fp32' | 'fp16' | 'bf16';
  jobQueueSize: number;
  /**
   * Forward runs a frozen, inference-optimised copy of the module, checked against the original on the
   * first forward (the warm-up when there is one); undefined means true. false serves the file as saved.
   */
  optimize?: boolean;
  /** NaN/±Infinity allowed in tensor inputs (model config `allowNonFinite`; default false: a 400). */
  allowNonFinite?: boolean;
  /**
   * Bytes one explanation may hold beyond its inputs (model config `igMemoryBudget`, server key
   * `ig_memory_budget`, default 512 MiB): IG runs its steps in passes sized from a measured step.
   */
  igMemoryBudget?: number;
}

/** Declared tensor metadata (KServe v2 model metadata), from a model config or inferred. */
export interface TensorMetadata {
  name: string;
  datatype: string;
  shape: number[];
  dtype?: DType;
}

/** One model version as read from the model store (a .mar or an exploded directory). */
export interface ModelSpec {
  name: string;
  version: string;
  /** What the user named: the archive file or directory, relative to the model store. */
  url: string;
  /** Folder holding the extracted archive contents. */
  dir: string;
  /** Absolute path of the TorchScript file. */
  serializedFile: string;
  handler: HandlerConfig;
  /** Settings the archive's model config sets; the rest come from server defaults. */
  settings: Partial<ModelSettings>;
  /** index_to_name.json mapped to label strings, when present. */
  labels?: Record<string, string>;
  inputs?: TensorMetadata[];
  outputs?: TensorMetadata[];
}

import type { IgOptions, IgResult, OptimizationState, OutputTree, Tensor } from '../native.js';

export interface InferOptions {
  /** Aborted when the client disconnects: a queued job is dropped. */
  signal?: AbortSignal;
  /** Absolute deadline (Date.now() ms); past it the job rejects with RequestTimeoutError (504). */
  deadline?: number;
  /** The time limit the deadline stands for, in ms, named by the 504 (default: responseTimeout). */
  timeoutMs?: number;
  /** The announcement this request made with Batcher.expect() while it was decoded: it arrives now. */
  arrival?: Arrival;
}

/**
 * A request on its way to a batcher: admitted and being decoded. A partial batch may wait for it (at most
 * maxBatchDelay) instead of starting without it; nothing ever waits for requests the server has not received.
 */
export interface Arrival {
  /** Withdraws the announcement (decoding failed, the request ended): a batch waiting for it starts. Idempotent. */
  cancel(): void;
}

/**
 * Per model-version dynamic batcher. `args` are forward's arguments for ONE request, each with a
 * leading batch dimension (usually 1); the batcher concatenates compatible requests along dim 0,
 * makes one native call, and splits the output tree back per request.
 * Rejects with TorchdError subclasses (503 queue full, 504 timeout, 503 prediction failed, 507 OOM).
 */
export interface Batcher {
  infer(args: Tensor[], options?: InferOptions): Promise<OutputTree>;
  explain(args: Tensor[], ig: IgOptions, options?: InferOptions): Promise<IgResult>;
  /** Announces an infer request that is being decoded; pass it as `arrival` to infer(), or cancel() it. */
  expect(): Arrival;
  /** Requests queued, not yet running. */
  readonly pending: number;
  /** Requests running in native calls now. */
  readonly running: number;
  /** Native calls still running past their requests' deadline plus a grace (a wedged worker). */
  readonly stuck: number;
}

/** What the loaded TorchScript module says of itself (the native model stays inside the engine). */
export interface ModelInfo {
  /** Device the module lives on (`cpu`, `cuda:0`). */
  readonly device: string;
  /** forward's argument names (after self). */
  readonly inputs: string[];
  readonly parameterCount: number;
  readonly parameterBytes: number;
}

/** What registration learnt by probing a non-resizing image model's forward (engine/registry.ts probeImageInput). */
export interface ImageInputProbe {
  /** [height, width] when the model takes exactly one image size; null when it takes several (adaptive pooling). */
  size: [number, number] | null;
}

export interface ModelVersion {
  readonly spec: ModelSpec;
  /** Set at registration for an image model that does not resize and declares no input shape. */
  readonly imageInput?: ImageInputProbe;
  readonly settings: ModelSettings;
  readonly info: ModelInfo;
  /** Which module forward runs (optimised copy, original, or pending until the first forward compared them). */
  readonly optimization: OptimizationState;
  /** Workers (concurrent native calls: executor threads or CUDA streams) serving the version now; 0 refuses requests. */
  readonly workers: number;
  /** Requests queued for a native call, not yet running. */
  readonly pending: number;
  /** Requests in native calls now. */
  readonly running: number;
  /** Workers busy past their request's deadline plus a grace: the version is not ready while any is. */
  readonly stuck: number;
  /** The version's queue and native calls: called by the inference service only. */
  readonly batcher: Batcher;
  /** true once loaded and warmed with at least one worker. */
  readonly ready: boolean;
  readonly loadedAtStartup: boolean;
  readonly loadedAt: Date;
}

/** Model name → versions; the first registered version of a name is its default. */
export interface Registry {
  /** Loads the TorchScript file, starts workers; rejects with ConflictError if name+version exists. */
  register(spec: ModelSpec, settings: Partial<ModelSettings>, options?: { loadedAtStartup?: boolean }): Promise<ModelVersion>;
  /** Throws ModelNotFoundError / ModelVersionNotFoundError. */
  resolve(name: string, version?: string): ModelVersion;
  /**
   * `listener` is called with every version once it is loaded, probed and warmed, before it can be resolved (the
   * inference service builds the version's handler then, so a handler is chosen at registration). A listener that
   * throws fails the registration.
   */
  onLoaded(listener: (mv: ModelVersion) => void): void;
  names(): string[];
  versions(name: string): ModelVersion[];
  defaultVersion(name: string): string;
  setDefault(name: string, version: string): void;
  /** Drains in-flight requests, then disposes. Throws ForbiddenError for the default while others exist. */
  unregister(name: string, version?: string): Promise<void>;
  scale(name: string, version: string | undefined, minWorkers: number, maxWorkers: number): Promise<void>;
  /** Every model's default version has a ready worker (no models → true). */
  healthy(): boolean;
  /**
   * Disposes every model once its queued and running requests are done; with `abortQueued` the
   * queued ones are rejected with it instead (forced shutdown). Running native calls always finish.
   */
  close(options?: { abortQueued?: Error }): Promise<void>;
}

// The ONLY module that loads the torchd.node addon. Everything else imports types and functions
// from here. (Contract shared by all layers; the loader body is owned by the native work.)

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
}

export interface LoadOptions {
  /** 'cpu' | 'cuda' | 'cuda:N' (default 'cpu') */
  device?: string;
  /** LibTorch intra-op threads (process-wide; set once). */
  threads?: number;
  /** Executor threads (CPU) or CUDA streams (GPU) sharing this one module (default 1). */
  workers?: number;
  /** Autocast precision on CUDA (default 'fp32'). */
  precision?: 'fp32' | 'fp16' | 'bf16';
}

export interface IgOptions {
  /** Target class index per example (length = batch size of inputs[0]). */
  target: number[];
  /** Number of integration steps (default 15). */
  steps?: number;
  method?: 'gausslegendre' | 'riemann_trapezoid';
  /** Baseline with the input's shape (default zeros). */
  baseline?: Tensor;
  /** Scaled copies per forward/backward pass (default: all steps at once, bounded by memory). */
  chunk?: number;
}

export interface IgResult {
  /** Attributions w.r.t. inputs[0], same shape as inputs[0]. */
  attributions: Tensor;
  /** Completeness delta per example: sum(attr) − (F(x)_t − F(baseline)_t). */
  delta: number[];
}

export type NativeErrorCode =
  | 'E_LOAD' | 'E_DEVICE' | 'E_DTYPE' | 'E_SHAPE' | 'E_FORWARD'
  | 'E_OOM' | 'E_DISPOSED' | 'E_ARGUMENT';

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
  /** Resize the executor (threads/streams) over the same module; never copies weights. */
  setWorkers(n: number): void;
  forward(inputs: Tensor[]): Promise<OutputTree>;
  integratedGradients(inputs: Tensor[], options: IgOptions): Promise<IgResult>;
  /** Waits for running calls, then frees the module; later calls reject with E_DISPOSED. */
  dispose(): Promise<void>;
}

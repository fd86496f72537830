// The ModelHandler contract: what a built-in handler (image_classifier, tensor) does for the inference service.
// A handler turns each protocol's decoded request (TorchServe parts, KServe v1 instances, KServe v2 named tensors)
// into examples — forward arguments decoded lazily, so that the service decides when and how many at a time — and
// turns each example's output back into a result. It never calls the batcher: the service does.
import type { NumericDatatype } from '../engine/tensors.js';
import type { HandlerConfig, ImageInputProbe, TensorMetadata } from '../engine/types.js';
import type { OutputTree, Tensor } from '../native.js';
import type { HeatmapOptions } from './heatmap.js';
import type { HandlerName } from './names.js';

/** One input of a TorchServe-style request: a body, a multipart part or a form field (bytes), or parsed JSON. */
export type InputPart = { name: string; contentType?: string; data: Buffer } | { name: string; json: unknown };

/** A KServe v2-style named input (REST or gRPC): a numeric tensor, or BYTES elements. */
export interface NamedInput {
  name: string;
  /** KServe v2 datatype name (FP32, INT64, BYTES, …). */
  datatype: string;
  /** Shape with any -1 resolved. */
  shape: number[];
  tensor?: Tensor;
  bytes?: Buffer[];
}

/** A named output as KServe v2 sends it: a tensor, or BYTES strings. */
export interface NamedOutput {
  name: string;
  datatype: NumericDatatype | 'BYTES';
  shape: number[];
  tensor?: Tensor;
  strings?: string[];
}

/** Per-model bounds a handler applies while decoding (settled by the service from config and model settings). */
export interface DecodeLimits {
  /** Largest image (width × height) a resizing handler decodes; checked on the header. */
  maxImagePixels: number;
  /** Deepest JSON nesting accepted in a JSON part (`max_json_depth`). */
  maxJsonDepth: number;
  /** Most arrays/objects/strings one JSON array of a part may hold (`max_request_elements`). */
  maxElements: number;
  /** A tensor input may hold NaN/±Infinity (model config `allowNonFinite`). */
  allowNonFinite: boolean;
  /** A JSON part of this many bytes or more is parsed on a worker thread (the service's offLoopJsonBytes; default never). */
  offLoopJsonBytes?: number;
}

/** What a handler needs to decode one request. */
export interface DecodeContext {
  /** `?dtype=` (tensor handler: JSON dtype, raw bytes dtype). */
  dtype?: string;
  /** `?shape=` (tensor handler: raw bytes shape). */
  shape?: string;
  limits: DecodeLimits;
}

/** One example of a request: its forward arguments (each with a leading batch dimension), decoded on demand. */
export interface Example {
  decode(): Promise<Tensor[]>;
  /** Set when the handler added a batch dimension of 1 that the result must drop again (a v1 tensor instance). */
  addedBatch?: boolean;
}

export interface ModelHandler {
  readonly name: HandlerName;
  /**
   * TorchServe parts (parameter fields already removed): one example per part for a one-input model, or one example
   * whose arguments are the parts (matched by name, else in order) for a k-input model. Throws BadRequestError.
   */
  partExamples(parts: InputPart[], ctx: DecodeContext): Example[];
  /** KServe v1 instances: one example each. */
  instanceExamples(instances: unknown[], ctx: DecodeContext): Example[];
  /** KServe v2 named inputs: the examples they hold. Throws BadRequestError for inputs the model cannot take. */
  tensorExamples(inputs: NamedInput[], ctx: DecodeContext): Example[];
  /** One example's output as a JSON-ready result (TorchServe body, a v1 prediction). */
  row(out: OutputTree, example: Example): unknown;
  /** Every example's output as KServe v2 named outputs. */
  namedOutputs(outs: OutputTree[], inputs: NamedInput[]): NamedOutput[];
  /**
   * One example's attributions as a PNG heatmap over its forward arguments (src/handlers/heatmap.ts); only handlers
   * whose input is an image have it.
   */
  heatmap?(args: Tensor[], attributions: Tensor, options: HeatmapOptions): Promise<Buffer>;
  /** KServe v2 model metadata: inputs and outputs with name, datatype and shape (-1 where unknown). */
  metadata(): { inputs: TensorMetadata[]; outputs: TensorMetadata[] };
}

/** What a handler is built from at registration: the model's spec and its forward's argument names. */
export interface HandlerModel {
  name: string;
  handler: HandlerConfig;
  labels?: Record<string, string>;
  inputs?: TensorMetadata[];
  outputs?: TensorMetadata[];
  /** forward's argument names (after self), from TorchScript. */
  argumentNames: string[];
  /** A non-resizing image model's input size as the registry's probe found it (undefined: not probed). */
  imageInput?: ImageInputProbe;
}

// The inference service's protocol-neutral contract. Every protocol codec (TorchServe REST, KServe v1, KServe v2,
// and the gRPC APIs) decodes its envelope into a ServiceRequest, asks for admission first, and encodes the
// ServiceResult; limits, deadlines, cancellation and stage metrics are the service's, applied once for all.
import type { ModelVersion, TensorMetadata } from '../engine/types.js';
import type { HeatmapOptions } from '../handlers/heatmap.js';
import type { InputPart, NamedInput, NamedOutput } from '../handlers/model-handler.js';

export type { InputPart, NamedInput, NamedOutput };

/** Which model a request is for, and how long it may live. */
export interface ServiceTarget {
  model: string;
  /** Omitted: the model's default version. */
  version?: string;
  /** The codec's label (`torchserve`, `kserve-v1`, `kserve-v2`, `grpc-…`), for logs. */
  protocol: string;
  /** Aborted when the client goes away: undecoded examples are skipped and queued jobs dropped. */
  signal?: AbortSignal;
  /** The client's deadline (Date.now() ms); the service ends the request at the sooner of it and admission + responseTimeout. */
  deadline?: number;
}

/** A request's inputs, in the form its protocol carries them. */
export type RequestInput =
  /** TorchServe: the body, multipart parts or form fields (call parameters such as `target` already removed). */
  | { kind: 'parts'; parts: InputPart[] }
  /** KServe v1 `instances`. */
  | { kind: 'instances'; instances: unknown[] }
  /** KServe v2 named tensors / BYTES. */
  | { kind: 'tensors'; inputs: NamedInput[] };

/** Integrated-gradients parameters as the client gave them (strings from a query or form, numbers from JSON). */
export interface ExplainParams {
  /** Integration steps; undefined → 15. Bounded by `max_ig_steps`. */
  steps?: unknown;
  /**
   * Target class: one value for every example, or a list with one entry per example row (a list as long as one
   * example's rows applies to each example whole). Undefined → each example's predicted class.
   */
  target?: unknown;
  /**
   * Present: each example's result is a PNG heatmap (Buffer) of its attributions over its preprocessed input,
   * rendered by the model's handler (image handlers only: 400 otherwise), instead of JSON numbers.
   */
  heatmap?: HeatmapOptions;
}

export interface ServiceRequest {
  input: RequestInput;
  /** Tensor handler options (`?dtype=`, `?shape=` for raw bytes). */
  dtype?: string;
  shape?: string;
  /** Present: an explanation (integrated gradients) instead of a prediction. */
  explain?: ExplainParams;
}

export type ServiceResult =
  /** `parts` and `instances`: one JSON-ready result per example, in order (OrderedJson keeps top-k label order). */
  | { kind: 'rows'; rows: unknown[] }
  /** `tensors`: named outputs (explanations: `attributions` and `delta`). */
  | { kind: 'tensors'; outputs: NamedOutput[] };

/** A request that holds a slot of its model version's queue; created by InferenceService.admit. */
export interface Admission {
  readonly modelVersion: ModelVersion;
  /** Runs the request through bounds → preprocess → batcher → postprocess. Releases the slot when done. */
  run(request: ServiceRequest): Promise<ServiceResult>;
  /** Gives the slot back (idempotent); while run() is working, the slot is released when it finishes instead. */
  release(): void;
}

/** Server-wide bounds (each a config key, see the README's configuration table). */
export interface ServiceLimits {
  /** `max_request_elements`: examples per request (v1 instances, v2 BYTES elements, parts, numeric rows of v2). */
  maxRequestElements: number;
  /** `max_json_depth`: nesting of a JSON body or part. */
  maxJsonDepth: number;
  /** `max_image_pixels`: width × height a resizing image handler decodes. */
  maxImagePixels: number;
  /** `max_ig_steps`: integrated-gradients steps, every protocol. */
  maxIgSteps: number;
  /** JSON of this many bytes or more is parsed on a worker thread (default OFF_LOOP_JSON_BYTES, not a config key). */
  offLoopJsonBytes?: number;
}

export interface InferenceService {
  readonly limits: ServiceLimits;
  /** The version a target names (default version when omitted). Throws 404 ModelNotFound / ModelVersionNotFound. */
  resolve(model: string, version?: string): ModelVersion;
  /**
   * Takes a queue slot of the target's model version at once, before any body is read or decoded. Throws
   * ModelNotFoundError / ModelVersionNotFoundError (404) and ServiceUnavailableError (503 + Retry-After) when the
   * version's queue is full or it has no worker.
   */
  admit(target: ServiceTarget): Admission;
  /** admit + run, for codecs whose message is already decoded (gRPC). */
  infer(target: ServiceTarget, request: ServiceRequest): Promise<ServiceResult>;
  /** KServe v2 metadata of a version's inputs and outputs, from its handler. */
  metadata(modelVersion: ModelVersion): { inputs: TensorMetadata[]; outputs: TensorMetadata[] };
  /** Requests holding a slot of the version now (admitted, not yet finished). */
  admitted(modelVersion: ModelVersion): number;
}

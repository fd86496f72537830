// Contract for recording metrics; src/metrics implements it with prom-client. Every layer that
// records takes a ServerMetrics (tests may pass a no-op).

export type Stage = 'queue' | 'preprocess' | 'inference' | 'postprocess';

/** The transport a request came over: the `protocol` label of the request metrics. */
export type Protocol = 'http' | 'grpc';

export interface ServerMetrics {
  /**
   * One finished request on the inference listener (model undefined when unresolved). `status` is the
   * HTTP status, or for gRPC the HTTP status its code was mapped from; `protocol` defaults to http.
   */
  request(model: string | undefined, version: string | undefined, status: number, ms: number, protocol?: Protocol): void;
  /** Time one request spent in a stage, in milliseconds. */
  stage(model: string, version: string, stage: Stage, ms: number): void;
  /** One native call with `size` examples. */
  batch(model: string, version: string, size: number): void;
  /** A worker stayed busy past its requests' deadline plus the grace (counted once per native call). */
  stuck?(model: string, version: string): void;
}

export const noopMetrics: ServerMetrics = {
  request() {},
  stage() {},
  batch() {},
};

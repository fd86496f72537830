// The settled server configuration (config.properties + TS_* environment + CLI flags, validated by src/config.ts).
import type { ModelSettings } from './engine/types.js';
import type { ServiceLimits } from './service/types.js';

export interface ServerConfig {
  inferenceAddress: string;
  managementAddress: string;
  metricsAddress: string;
  modelStore: string;
  /** 'all', or NAME=FILE entries / bare FILE names from load_models / --models */
  loadModels: string[];
  /** bytes */
  maxRequestSize: number;
  /** seconds */
  defaultResponseTimeout: number;
  defaultWorkersPerModel: number;
  jobQueueSize: number;
  /** per model name → per version (or "*" / default) settings from the `models` key */
  models: Record<string, Record<string, Partial<ModelSettings>>>;
  /** regexes a registration URL outside the model store must match */
  allowedUrls: string[];
  enableTokenAuth: boolean;
  /** where the token key file is written when token auth is on */
  keyFile: string;
  /** LibTorch intra-op threads per worker (0 = derive from cores) */
  intraOpThreads: number;
  /** worker_spin_us: µs a worker thread polls for the next call after one before it sleeps (0 = sleep at once) */
  workerSpinUs: number;
  /** heap_growing_percent: V8's heap growing factor after a full GC, as 1 + this/100 (0 = V8's dynamic factor) */
  heapGrowingPercent: number;
  /** seconds to keep serving after readiness goes false on SIGTERM (a Kubernetes preStop sleep) */
  drainDelay: number;
  /** seconds from SIGTERM to the forced end of the drain (drain_delay included); then 503 and exit 0 */
  shutdownTimeout: number;
  /** Request bounds of the inference service (max_request_elements, max_json_depth, max_image_pixels, max_ig_steps). */
  limits: ServiceLimits;
  /** max_workers_per_model: a register/scale above it is a 400. */
  maxWorkersPerModel: number;
  /** ig_memory_budget: bytes one explanation may hold beyond its inputs (per-model `igMemoryBudget` overrides). */
  igMemoryBudget?: number;
  /** enable_metrics_auth: GET /metrics needs `Authorization: Bearer <metrics key>` */
  enableMetricsAuth?: boolean;
  /** metrics_auth_token: the metrics key (e.g. from a Secret); otherwise one is generated into keyFile */
  metricsAuthToken?: string;
  /**
   * The gRPC listeners (src/grpc). Absent means gRPC is off: resolveConfig always sets it, so only
   * configurations built by hand (tests of single apps) leave it out.
   */
  grpc?: GrpcConfig;
  /**
   * Keys present in config.properties (and TS_* variables) that torchd does not use, logged once at
   * start; unused per-version model_snapshot keys appear as model_snapshot.models.NAME.VERSION.KEY.
   */
  ignoredKeys: string[];
  /** PROTOCOL_VERSION, TS_SERVICE_ENVELOPE, service_envelope: accepted, logged, change nothing. */
  informational?: Record<string, string>;
}

/** gRPC listener settings (`enable_grpc`, `grpc_*` keys). Times in ms; 0 leaves grpc-js's default. */
export interface GrpcConfig {
  enabled: boolean;
  /** host:port of the inference services (TorchServe inference, KServe v2, health, reflection). */
  inferenceAddress: string;
  /** host:port of the management service (and health). */
  managementAddress: string;
  /** Largest inbound message, bytes (grpc_max_request_size, default max_request_size). */
  maxRequestSize: number;
  /** Largest outbound message, bytes; -1 = unlimited (large explanations). */
  maxResponseSize: number;
  keepaliveTimeMs: number;
  keepaliveTimeoutMs: number;
  maxConnectionAgeMs: number;
  maxConnectionAgeGraceMs: number;
  maxConnectionIdleMs: number;
}

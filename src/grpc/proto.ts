// The .proto files under proto/ (TorchServe's inference and management services, KServe v2) and the
// standard health service, loaded at run time with @grpc/proto-loader: no protoc and no generated code.
import { loadSync, type Options, type PackageDefinition, type ServiceDefinition } from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** proto/ at the package root (two levels up from both src/grpc and dist/grpc). */
export const PROTO_DIR = fileURLToPath(new URL('../../proto/', import.meta.url));

/** grpc-health-check's own proto folder (holds health/v1/health.proto). */
const HEALTH_INCLUDE = resolve(dirname(healthProtoPath), '..', '..');

/**
 * Field names as in the .proto (snake_case); 64-bit integers as decimal strings (exact for INT64
 * tensors; shapes are converted with Number); enums by name; unset scalars as their zero value;
 * `oneofs` names the InferParameter member that is set.
 */
export const LOADER_OPTIONS: Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR, HEALTH_INCLUDE],
};

export const FILES = {
  torchserveInference: 'inference.proto',
  torchserveManagement: 'management.proto',
  kserveV2: 'kserve/grpc_predict_v2.proto',
  health: 'health/v1/health.proto',
} as const;

export const SERVICES = {
  torchserveInference: 'org.pytorch.serve.grpc.inference.InferenceAPIsService',
  torchserveManagement: 'org.pytorch.serve.grpc.management.ManagementAPIsService',
  kserveV2: 'inference.GRPCInferenceService',
  health: 'grpc.health.v1.Health',
} as const;

export interface Definitions {
  /** Everything served on the inference port (for reflection). */
  inference: PackageDefinition;
  /** Everything served on the management port (for reflection). */
  management: PackageDefinition;
  torchserveInference: ServiceDefinition;
  torchserveManagement: ServiceDefinition;
  kserveV2: ServiceDefinition;
}

let loaded: Definitions | undefined;

/** Parses the .proto files once per process. */
export function loadDefinitions(): Definitions {
  if (loaded) return loaded;
  const inference = loadSync([FILES.torchserveInference, FILES.kserveV2, FILES.health], LOADER_OPTIONS);
  const management = loadSync([FILES.torchserveManagement, FILES.health], LOADER_OPTIONS);
  loaded = {
    inference,
    management,
    torchserveInference: inference[SERVICES.torchserveInference] as ServiceDefinition,
    torchserveManagement: management[SERVICES.torchserveManagement] as ServiceDefinition,
    kserveV2: inference[SERVICES.kserveV2] as ServiceDefinition,
  };
  return loaded;
}

// What every Express app of torchd is built from (apps never listen; src/server.ts does).
import type { Logger } from 'pino';
import type { ServerConfig } from '../config-types.js';
import type { Registry } from '../engine/types.js';
import type { Lifecycle } from '../lifecycle.js';
import type { ServerMetrics } from '../metrics/types.js';
import type { ModelStore } from '../store/types.js';
import type { InferenceService } from '../service/types.js';

export interface AppDeps {
  registry: Registry;
  store: ModelStore;
  config: ServerConfig;
  logger: Logger;
  metrics: ServerMetrics;
  /** Readiness (models, drain, other conditions); without it readiness is registry.healthy(). */
  lifecycle?: Lifecycle;
  /** The one inference service: the protocols' only way to a model. */
  service: InferenceService;
}


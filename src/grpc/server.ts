// The two gRPC listeners (inference 7070: TorchServe inference + KServe v2 + health + reflection;
// management 7071: TorchServe management + health + reflection). src/server.ts starts them with the HTTP
// listeners and the lifecycle drains them the same way: readiness false first (health NOT_SERVING,
// ServerReady false), then no new calls, in-flight calls finish, open streams end UNAVAILABLE.
import { type ChannelOptions, Server, ServerCredentials } from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import type { GrpcConfig } from '../config-types.js';
import type { AppDeps } from '../http/types.js';
import type { Drainable } from '../lifecycle.js';
import { ListenerState, type ServiceOptions } from './calls.js';
import { addHealthService } from './health.js';
import { kserveV2Service } from './kserve-v2.js';
import { torchserveManagementService } from './management.js';
import { loadDefinitions, SERVICES } from './proto.js';
import { torchserveInferenceService } from './torchserve.js';

export interface GrpcListeners {
  /** Bound host:port of each listener (the real port when 0 was asked for). */
  addresses: { inference: string; management: string };
  /** The shutdown drains these with the HTTP listeners (src/lifecycle.ts). */
  drainables: Drainable[];
  /** Shutdown began: readiness is false now (health watchers are told at once). */
  readinessChanged(): void;
}

/** grpc-js channel options from the grpc_* keys (0 leaves grpc-js's own default). */
export function serverOptions(g: GrpcConfig): ChannelOptions {
  const options: ChannelOptions = {
    'grpc.max_receive_message_length': g.maxRequestSize,
    'grpc.max_send_message_length': g.maxResponseSize,
  };
  if (g.keepaliveTimeMs > 0) options['grpc.keepalive_time_ms'] = g.keepaliveTimeMs;
  if (g.keepaliveTimeoutMs > 0) options['grpc.keepalive_timeout_ms'] = g.keepaliveTimeoutMs;
  if (g.maxConnectionAgeMs > 0) options['grpc.max_connection_age_ms'] = g.maxConnectionAgeMs;
  if (g.maxConnectionAgeGraceMs > 0) options['grpc.max_connection_age_grace_ms'] = g.maxConnectionAgeGraceMs;
  if (g.maxConnectionIdleMs > 0) options['grpc.max_connection_idle_ms'] = g.maxConnectionIdleMs;
  return options;
}

// Health, liveness and readiness answer without a token, like /ping.
const OPEN_INFERENCE = new Set(['Ping', 'ServerLive', 'ServerReady']);

function bind(server: Server, address: string): Promise<string> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, ServerCredentials.createInsecure(), (err, port) => {
      if (err) reject(new Error(`Cannot listen for gRPC on ${address}: ${err.message}`));
      else resolve(`${address.slice(0, address.lastIndexOf(':'))}:${port}`);
    });
  });
}

/**
 * A gRPC listener as the lifecycle drains it: drain() refuses new calls, lets every open stream answer
 * what it received and end UNAVAILABLE, stops listening and resolves when the last call is done;
 * forceClose() (shutdown_timeout passed) ends what remains UNAVAILABLE and drops the connections.
 */
function drainable(name: string, server: Server, state: ListenerState): Drainable {
  let drained: Promise<void> | undefined;
  return {
    name,
    drain() {
      drained ??= new Promise<void>((resolve) => {
        state.close();
        server.tryShutdown(() => resolve());
      });
      return drained;
    },
    async forceClose(reason) {
      state.close(reason);
      // Streams that were answering get a moment to send their UNAVAILABLE before the connections go.
      await new Promise((r) => setTimeout(r, 50));
      server.forceShutdown();
    },
  };
}

/** Binds both listeners; throws (after closing what it opened) if either address cannot be bound. */
export async function startGrpc(deps: AppDeps, g: GrpcConfig, keys?: { inferenceKey: string; managementKey: string }): Promise<GrpcListeners> {
  const defs = loadDefinitions();
  const options = serverOptions(g);

  const inferenceState = new ListenerState(deps);
  const inference = new Server(options);
  const base = { deps, state: inferenceState, key: keys?.inferenceKey, open: OPEN_INFERENCE, metered: true };
  const tsOptions: ServiceOptions = { ...base, service: SERVICES.torchserveInference };
  inference.addService(defs.torchserveInference, torchserveInferenceService(tsOptions));
  inference.addService(defs.kserveV2, kserveV2Service({ ...base, service: SERVICES.kserveV2 }));
  addHealthService(inference, {
    registry: deps.registry,
    state: inferenceState,
    serverNames: [SERVICES.torchserveInference, SERVICES.kserveV2],
    serverFollowsModels: true,
  });
  new ReflectionService(defs.inference).addToServer(inference);

  const managementState = new ListenerState(deps);
  const management = new Server(options);
  management.addService(
    defs.torchserveManagement,
    torchserveManagementService({ deps, state: managementState, key: keys?.managementKey, metered: false, service: SERVICES.torchserveManagement }),
  );
  addHealthService(management, { registry: deps.registry, state: managementState, serverNames: [SERVICES.torchserveManagement], serverFollowsModels: false });
  new ReflectionService(defs.management).addToServer(management);

  try {
    const addresses = { inference: await bind(inference, g.inferenceAddress), management: await bind(management, g.managementAddress) };
    return {
      addresses,
      drainables: [
        drainable(`grpc inference ${addresses.inference}`, inference, inferenceState),
        drainable(`grpc management ${addresses.management}`, management, managementState),
      ],
      readinessChanged() {
        inferenceState.notifyChange();
        managementState.notifyChange();
      },
    };
  } catch (err) {
    inference.forceShutdown();
    management.forceShutdown();
    throw err;
  }
}

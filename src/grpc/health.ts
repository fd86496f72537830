// grpc.health.v1.Health (grpc-health-check's service definition) answered live from the registry:
// service "" (and each served gRPC service's name) is the server, SERVING while every model's default
// version has a ready worker; a model name is that model's default version. Unknown names are NOT_FOUND
// (Check) or SERVICE_UNKNOWN (Watch), so a model reads unknown again once unregistered. Draining turns
// everything NOT_SERVING first, then Watch streams end with UNAVAILABLE.
import type { sendUnaryData, Server, ServerUnaryCall, ServerWritableStream } from '@grpc/grpc-js';
import { status as Code } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import type { Registry } from '../engine/types.js';
import { endStream, type ListenerState, shuttingDown } from './calls.js';

type ServingStatus = 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

/** How often an open Watch re-reads the registry (it has no change events). */
const WATCH_POLL_MS = 250;

export interface HealthOptions {
  registry: Registry;
  state: ListenerState;
  /** Names that stand for the whole server besides "" (the gRPC services of this port). */
  serverNames: string[];
  /** Whether the server status follows the models (inference port) or only the listener (management). */
  serverFollowsModels: boolean;
}

export function addHealthService(server: Server, o: HealthOptions): void {
  const serverNames = new Set(['', ...o.serverNames]);
  const statusOf = (name: string): ServingStatus => {
    if (serverNames.has(name)) {
      if (o.state.draining) return 'NOT_SERVING';
      return !o.serverFollowsModels || o.state.ready() ? 'SERVING' : 'NOT_SERVING';
    }
    if (!o.registry.names().includes(name)) return 'SERVICE_UNKNOWN';
    if (o.state.draining) return 'NOT_SERVING';
    return o.registry.resolve(name).ready ? 'SERVING' : 'NOT_SERVING';
  };

  server.addService(healthService, {
    check(call: ServerUnaryCall<{ service: string }, unknown>, callback: sendUnaryData<unknown>) {
      const status = statusOf(call.request.service);
      if (status === 'SERVICE_UNKNOWN') callback({ code: Code.NOT_FOUND, details: `Health status unknown for service ${call.request.service}` });
      else callback(null, { status });
    },
    watch(call: ServerWritableStream<{ service: string }, unknown>) {
      let last: ServingStatus | undefined;
      const send = () => {
        const status = statusOf(call.request.service);
        if (status !== last) call.write({ status });
        last = status;
      };
      send();
      const timer = setInterval(send, WATCH_POLL_MS);
      timer.unref();
      const stop = () => {
        clearInterval(timer);
        unlisten();
        untrack();
      };
      const unlisten = o.state.onChange(send);
      const untrack = o.state.trackStream((reason) => {
        send();
        stop();
        endStream(call, shuttingDown(reason));
      });
      call.on('cancelled', stop);
    },
    list(_call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) {
      const statuses: Record<string, { status: ServingStatus }> = {};
      for (const name of [...serverNames, ...o.registry.names()]) statuses[name] = { status: statusOf(name) };
      callback(null, { statuses });
    },
  });
}

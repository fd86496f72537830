// Transport comparison load: one closed-loop driver (c requests always in flight, hrtime per request)
// for REST and gRPC alike, so the rows differ only in the transport. autocannon cannot speak gRPC, and
// mixing two load generators would compare the clients as much as the server.
import { credentials, loadPackageDefinition, type Client, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import http from 'node:http';
import { FILES, LOADER_OPTIONS } from '../../src/grpc/proto.js';
import { percentile, send, type Body } from './http-load.js';

export interface TransportPoint {
  transport: string;
  concurrency: number;
  requests: number;
  reqPerSec: number;
  p50: number;
  p99: number;
  errors: number;
}

/**
 * Runs `one` with `c` calls in flight until `seconds` after a 0.5 s warm-up; a call counts (throughput and
 * latency, ms) when it completes inside that window, so slow calls on a loaded machine still count.
 */
export async function closedLoop(transport: string, c: number, seconds: number, one: () => Promise<void>): Promise<TransportPoint> {
  const warmUntil = performance.now() + 500;
  const end = warmUntil + seconds * 1000;
  const times: number[] = [];
  let errors = 0;
  const worker = async () => {
    while (performance.now() < end) {
      const t0 = performance.now();
      try {
        await one();
        const t1 = performance.now();
        if (t1 >= warmUntil && t1 <= end) times.push(t1 - t0);
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: c }, worker));
  const sorted = times.sort((a, b) => a - b);
  return { transport, concurrency: c, requests: times.length, reqPerSec: times.length / seconds, p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), errors };
}

/** A keep-alive REST sender with up to `c` sockets; rejects on a non-2xx status. */
export function restSender(base: string, body: Body, c: number): { one: () => Promise<void>; close: () => void } {
  const agent = new http.Agent({ keepAlive: true, maxSockets: c });
  return {
    one: async () => {
      const status = await send(base, body, agent);
      if (status < 200 || status >= 300) throw new Error(`status ${status}`);
    },
    close: () => agent.destroy(),
  };
}

const definition = loadSync([FILES.torchserveInference, FILES.kserveV2], LOADER_OPTIONS);
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const pkg = loadPackageDefinition(definition) as any;

/**
 * A gRPC sender over up to 4 channels, each with its own HTTP/2 connection (a local subchannel pool),
 * calls spread round-robin: one connection would serialise every frame through one socket.
 */
export function grpcSender(address: string, service: 'v2' | 'torchserve', method: string, request: object, c: number): { one: () => Promise<void>; close: () => void } {
  const Ctor = service === 'v2' ? pkg.inference.GRPCInferenceService : pkg.org.pytorch.serve.grpc.inference.InferenceAPIsService;
  const clients: Client[] = Array.from({ length: Math.min(c, 4) }, () =>
    new Ctor(address, credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1, 'grpc.max_receive_message_length': -1, 'grpc.max_send_message_length': -1 }),
  );
  let next = 0;
  return {
    one: () =>
      new Promise<void>((resolve, reject) => {
        const client = clients[next++ % clients.length] as unknown as Record<string, (r: object, cb: (e: ServiceError | null) => void) => void>;
        client[method](request, (err) => (err ? reject(err) : resolve()));
      }),
    close: () => clients.forEach((cl) => cl.close()),
  };
}

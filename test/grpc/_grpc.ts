// Shared by the gRPC tests: a real torchd (startOnStore: every listener, gRPC included, on a free
// loopback port) over a store with the digit model, the v2 echo and adder models and busy.pt, and
// grpc-js clients built from the committed .proto files. Not a test file (no .test. in its name).
import { credentials, loadPackageDefinition, Metadata, type Client, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runArchive } from '../../src/archiver/index.js';
import { FILES, LOADER_OPTIONS } from '../../src/grpc/proto.js';
import { writeMar } from '../../src/store/index.js';
import { fixture, startOnStore, type TestServer } from '../http/_server.js';

const V2 = fileURLToPath(new URL('../fixtures/v2/', import.meta.url));
const BUSY = fileURLToPath(new URL('../fixtures/engine/busy.pt', import.meta.url));
const REFLECTION_PROTO = fileURLToPath(new URL('../../node_modules/@grpc/reflection/build/proto/', import.meta.url));

/** A store with mnist (digits, argmax), echo and adder (v2 fixtures), busy (one worker, queue of 2). */
export async function startGrpcServer(properties: Record<string, string> = {}): Promise<TestServer> {
  const store = await mkdtemp(join(tmpdir(), 'torchd-grpc-'));
  await writeMar({ modelName: 'mnist', version: '1.0', serializedFile: fixture('mnist.pt'), handler: 'image_classifier', configFile: fixture('mnist-config.yaml'), exportPath: store });
  await runArchive({ modelName: 'echo', version: '1.0', serializedFile: join(V2, 'echo.pt'), handler: 'tensor', exportPath: store });
  await runArchive({ modelName: 'adder', version: '1.0', serializedFile: join(V2, 'two_inputs.pt'), handler: 'tensor', exportPath: store });
  await writeMar({ modelName: 'busy', version: '1.0', serializedFile: BUSY, handler: 'tensor', exportPath: store });
  return startOnStore(store, 'mnist=mnist.mar,echo=echo.mar,adder=adder.mar,busy=busy.mar', {
    models: '{"busy": {"1.0": {"batchSize": 1, "jobQueueSize": 2}}}',
    // With token auth on, the keys go inside the store (removed by close), never into the working folder.
    key_file: join(store, 'key_file.json'),
    ...properties,
  });
}

const definition = loadSync(
  [FILES.torchserveInference, FILES.kserveV2, FILES.torchserveManagement, FILES.health, 'grpc/reflection/v1alpha/reflection.proto'],
  { ...LOADER_OPTIONS, includeDirs: [...(LOADER_OPTIONS.includeDirs ?? []), REFLECTION_PROTO] },
);
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const pkg = loadPackageDefinition(definition) as any;

export interface Clients {
  ts: Client;
  v2: Client;
  health: Client;
  reflection: Client;
  close(): void;
}

/** Clients of every service on one gRPC address (both ports serve health and reflection). */
export function clients(address: string, options: Record<string, number> = {}): Clients {
  const make = (Ctor: new (a: string, c: ReturnType<typeof credentials.createInsecure>, o: object) => Client) =>
    new Ctor(address, credentials.createInsecure(), options);
  const c = {
    ts: make(pkg.org.pytorch.serve.grpc.inference.InferenceAPIsService),
    v2: make(pkg.inference.GRPCInferenceService),
    health: make(pkg.grpc.health.v1.Health),
    reflection: make(pkg.grpc.reflection.v1alpha.ServerReflection),
  };
  return { ...c, close: () => Object.values(c).forEach((x) => x.close()) };
}

export function managementClient(address: string): Client {
  return new pkg.org.pytorch.serve.grpc.management.ManagementAPIsService(address, credentials.createInsecure());
}

/** Bearer-token metadata (and anything else given). */
export function metadata(entries: Record<string, string> = {}): Metadata {
  const md = new Metadata();
  for (const [k, v] of Object.entries(entries)) md.set(k, v);
  return md;
}

/** A unary call as a promise; rejects with the grpc-js ServiceError. */
export function rpc<T = any>(client: Client, method: string, request: object, md: Metadata = new Metadata(), deadlineMs?: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const options = deadlineMs === undefined ? {} : { deadline: Date.now() + deadlineMs };
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    (client as any)[method](request, md, options, (err: ServiceError | null, res: T) => (err ? reject(err) : resolve(res)));
  });
}

/** The code and parsed JSON details of a failed call. */
export async function failure(p: Promise<unknown>): Promise<{ code: number; details: any; metadata: Metadata }> {
  try {
    await p;
  } catch (e) {
    const err = e as ServiceError;
    let details: unknown = err.details;
    try {
      details = JSON.parse(err.details);
    } catch {
      // grpc-js's own messages (e.g. message too large) are plain text.
    }
    return { code: err.code, details, metadata: err.metadata };
  }
  throw new Error('the call succeeded but a failure was expected');
}

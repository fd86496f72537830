// Shared by the HTTP tests: builds a real model store (.mar archives from test/fixtures/models via
// writeMar) and starts the real server on loopback port 0. Not a test file (no .test. in its name).
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { resolveConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { startServer, type RunningServer } from '../../src/server.js';
import { writeMar } from '../../src/store/index.js';

export const FIXTURES = fileURLToPath(new URL('../fixtures/models/', import.meta.url));
export const fixture = (name: string) => join(FIXTURES, name);

export type StoreModel = 'mnist' | 'mnist-v2' | 'resnet-18' | 'add2' | 'multi_out';

/** Writes the named archives into a fresh temporary model store; returns its folder. */
export async function makeModelStore(models: StoreModel[]): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'torchd-store-'));
  const scratch = join(root, '.scratch');
  for (const m of models) {
    switch (m) {
      case 'mnist':
        await writeMar({ modelName: 'mnist', version: '1.0', serializedFile: fixture('mnist.pt'), handler: 'image_classifier', configFile: fixture('mnist-config.yaml'), exportPath: root });
        break;
      case 'mnist-v2': {
        // Same name, second version: written aside and renamed so both archives sit in the store.
        const mar = await writeMar({ modelName: 'mnist', version: '2.0', serializedFile: fixture('mnist_v2.pt'), handler: 'image_classifier', configFile: fixture('mnist-config.yaml'), exportPath: scratch });
        await copyFile(mar, join(root, 'mnist-v2.mar'));
        break;
      }
      case 'resnet-18':
        if (!existsSync(fixture('resnet18.pt'))) {
          throw new Error('test/fixtures/models/resnet18.pt is missing: run /usr/bin/python3 test/fixtures/models/make_models.py --resnet');
        }
        await writeMar({ modelName: 'resnet-18', version: '1.0', serializedFile: fixture('resnet18.pt'), handler: 'image_classifier', extraFiles: [fixture('index_to_name.json')], exportPath: root });
        break;
      case 'add2':
        await writeMar({ modelName: 'add2', version: '1.0', serializedFile: fixture('add2.pt'), handler: 'tensor', exportPath: root });
        break;
      case 'multi_out':
        await writeMar({ modelName: 'multi_out', version: '1.0', serializedFile: fixture('multi_out.pt'), handler: 'tensor', exportPath: root });
        break;
    }
  }
  await rm(scratch, { recursive: true, force: true });
  return root;
}

const MAR: Record<StoreModel, string> = {
  mnist: 'mnist=mnist.mar',
  'mnist-v2': 'mnist=mnist-v2.mar',
  'resnet-18': 'resnet-18=resnet-18.mar',
  add2: 'add2=add2.mar',
  multi_out: 'multi_out=multi_out.mar',
};

export interface TestServer {
  /** http://127.0.0.1:PORT of the inference listener */
  url: string;
  server: RunningServer;
  store: string;
  close(): Promise<void>;
}

/** Starts torchd with `models` loaded (in that order: the first version of a name is the default). */
export async function startTestServer(
  models: StoreModel[],
  properties: Record<string, string> = {},
): Promise<TestServer> {
  return startOnStore(await makeModelStore(models), models.map((m) => MAR[m]).join(','), properties);
}

/**
 * Starts torchd over an existing model store folder (`models`: the --models list), every listener on a free
 * loopback port; close() stops it and removes the store.
 */
export async function startOnStore(store: string, models: string, properties: Record<string, string> = {}): Promise<TestServer> {
  const config = resolveConfig({
    // gRPC listeners on free ports too, so parallel test servers never fight over 7070/7071.
    properties: new Map(Object.entries({ grpc_inference_address: '127.0.0.1:0', grpc_management_address: '127.0.0.1:0', ...properties })),
    flags: {
      modelStore: store,
      models,
      inferenceAddress: 'http://127.0.0.1:0',
      managementAddress: 'http://127.0.0.1:0',
      metricsAddress: 'http://127.0.0.1:0',
    },
  });
  const server = await startServer(config, { logger: createLogger({ level: 'silent' }) });
  return {
    url: server.addresses.inference,
    server,
    store,
    async close() {
      await server.close(1000);
      await rm(store, { recursive: true, force: true });
    },
  };
}

/** fetch + body as text, JSON parsed when the response says it is JSON. */
export async function call(
  url: string,
  init: RequestInit = {},
): Promise<{ status: number; headers: Headers; text: string; json: unknown }> {
  const res = await fetch(url, init);
  const text = await res.text();
  const isJson = (res.headers.get('content-type') ?? '').startsWith('application/json');
  return { status: res.status, headers: res.headers, text, json: isJson ? JSON.parse(text) : undefined };
}


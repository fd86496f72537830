// enable_token_auth on the inference listener: every route but the health probes' (/ping, /v2/health/live,
// /v2/health/ready) needs the inference key; the
// management listener needs the management key; a non-loopback bind without tokens is warned about.
import test from 'ava';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { resolveConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { startServer } from '../../src/server.js';
import { call, fixture, makeModelStore, startTestServer, type TestServer } from './_server.js';

let srv: TestServer;
let keyDir: string;
test.before(async () => {
  keyDir = await mkdtemp(join(tmpdir(), 'torchd-keys-'));
  srv = await startTestServer(['mnist'], { enable_token_auth: 'true', key_file: join(keyDir, 'key_file.json') });
});
test.after.always(async () => {
  await srv?.close();
  await rm(keyDir, { recursive: true, force: true });
});

test('keys are written to key_file in TorchServe layout', async (t) => {
  const file = JSON.parse(await readFile(join(keyDir, 'key_file.json'), 'utf8'));
  t.is(file.inference.key, srv.server.keys?.inferenceKey);
  t.is(file.management.key, srv.server.keys?.managementKey);
});

test('health probes need no token: /ping, /v2/health/live, /v2/health/ready', async (t) => {
  for (const path of ['/ping', '/v2/health/live', '/v2/health/ready', '/ping/']) {
    const r = await call(`${srv.url}${path}`);
    t.is(r.status, 200, path);
  }
});

test('predictions without or with the wrong key → 401 InvalidKeyException; with the inference key → 200', async (t) => {
  const body = await readFile(fixture('images/6.png'));
  const none = await call(`${srv.url}/predictions/mnist`, { method: 'PUT', body });
  t.is(none.status, 401);
  t.is((none.json as { type: string }).type, 'InvalidKeyException');
  t.truthy(none.headers.get('x-request-id'));
  const wrong = await call(`${srv.url}/predictions/mnist`, { method: 'PUT', body, headers: { authorization: `Bearer ${srv.server.keys!.managementKey}` } });
  t.is(wrong.status, 401);
  const ok = await call(`${srv.url}/predictions/mnist`, { method: 'PUT', body, headers: { authorization: `Bearer ${srv.server.keys!.inferenceKey}` } });
  t.is(ok.status, 200, ok.text);
  t.is(ok.json, 6);
});

test('the API description and KServe routes are protected too', async (t) => {
  t.is((await call(`${srv.url}/`, { method: 'OPTIONS' })).status, 401);
  t.is((await call(`${srv.url}/v1/models`)).status, 401);
  t.is((await call(`${srv.url}/v2`)).status, 401);
  t.is((await call(`${srv.url}/v2/models/mnist/ready`)).status, 401);
  t.is((await call(`${srv.url}/v2/health/other`)).status, 401, 'only the health routes themselves are open');
});

test('the management listener takes the management key only', async (t) => {
  const mgmt = srv.server.addresses.management;
  t.is((await call(`${mgmt}/models`, { headers: { authorization: `Bearer ${srv.server.keys!.inferenceKey}` } })).status, 401);
  const ok = await call(`${mgmt}/models`, { headers: { authorization: `Bearer ${srv.server.keys!.managementKey}` } });
  t.is(ok.status, 200, ok.text);
});

test('binding beyond loopback without token auth logs a warning', async (t) => {
  const store = await makeModelStore([]);
  const lines: Record<string, unknown>[] = [];
  const sink = new PassThrough();
  sink.on('data', (chunk: Buffer) => {
    for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l));
  });
  const config = resolveConfig({
    properties: new Map([['grpc_inference_address', '127.0.0.1:0'], ['grpc_management_address', '127.0.0.1:0']]),
    flags: { modelStore: store, inferenceAddress: 'http://0.0.0.0:0', managementAddress: 'http://127.0.0.1:0', metricsAddress: 'http://127.0.0.1:0' },
  });
  const server = await startServer(config, { logger: createLogger({ level: 'info', destination: sink }) });
  try {
    const warning = lines.find((l) => l.msg === 'listening beyond loopback without token auth: anyone who can reach this address can use it');
    t.truthy(warning);
    t.is(warning?.listener, 'inference');
    t.false(lines.some((l) => l.listener === 'management'));
  } finally {
    await server.close(1000);
    await rm(store, { recursive: true, force: true });
  }
});

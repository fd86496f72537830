// torchd as a drop-in for KServe's torchserve runtime: the runtime's own command line
// (`--start --model-store=… --ts-config=…`), KServe's sample config.properties unchanged, its environment
// (PROTOCOL_VERSION, TS_SERVICE_ENVELOPE, TS_<KEY> overrides), model_snapshot honoured, health routes open
// under token auth, /metrics behind its own token.
import test from 'ava';
import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { resolveConfig } from '../../src/config.js';
import { torchserveArgs } from '../../src/cli.js';
import { createLogger } from '../../src/logger.js';
import { startServer } from '../../src/server.js';
import { makeModelStore } from '../http/_server.js';
import { spawnTorchd } from '../_torchd-child.js';
import { clients, failure, rpc } from '../grpc/_grpc.js';

const KSERVE_CONFIG = fileURLToPath(new URL('./fixtures/kserve-config.properties', import.meta.url));
const DIGIT_4 = fileURLToPath(new URL('../fixtures/models/images/4.png', import.meta.url));
const METRICS_TOKEN = 'metrics-token-for-tests-0123456789';

test('TorchServe\'s command line becomes `torchd start`; --stop is refused with the reason', (t) => {
  t.deepEqual(torchserveArgs(['--start', '--model-store=/mnt/models/model-store', '--ts-config=/c']), ['start', '--model-store=/mnt/models/model-store', '--ts-config=/c']);
  t.deepEqual(torchserveArgs(['--foreground', '--start', '--ncs', '--models', 'all']), ['start', '--foreground', '--ncs', '--models', 'all']);
  t.deepEqual(torchserveArgs(['start', '--start', '--model-store', '/m']), ['start', '--start', '--model-store', '/m'], 'a subcommand is left alone');
  t.deepEqual(torchserveArgs(['--version']), ['--version']);
  t.throws(() => torchserveArgs(['--stop']), { message: /^--stop: torchd has no daemon to stop; it runs in the foreground and stops gracefully on SIGTERM/ });
});

test('`torchd --start` with KServe\'s sample config.properties and the runtime\'s environment', async (t) => {
  // The layout KServe's storage initializer leaves under /mnt/models: config/ and model-store/.
  const root = await mkdtemp(join(tmpdir(), 'torchd-kserve-'));
  const store = await makeModelStore(['mnist']);
  t.teardown(() => Promise.all([rm(root, { recursive: true, force: true }), rm(store, { recursive: true, force: true })]));
  await copyFile(KSERVE_CONFIG, join(root, 'config.properties'));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PROTOCOL_VERSION: 'v2',
    TS_SERVICE_ENVELOPE: 'kservev2',
    // The sample binds 0.0.0.0:8085 for inference and management; a test stays on loopback ports of its own.
    TS_INFERENCE_ADDRESS: 'http://127.0.0.1:0',
    TS_MANAGEMENT_ADDRESS: 'http://127.0.0.1:0',
    TS_METRICS_ADDRESS: 'http://127.0.0.1:0',
    // The file's grpc_*_port=7070/7071, moved to free ports so parallel test runs never collide.
    TS_GRPC_INFERENCE_PORT: '0',
    TS_GRPC_MANAGEMENT_PORT: '0',
    TS_ENABLE_TOKEN_AUTH: 'true',
    TS_ENABLE_METRICS_AUTH: 'true',
    TS_METRICS_AUTH_TOKEN: METRICS_TOKEN,
  };
  const torchd = spawnTorchd(['--start', `--model-store=${store}`, `--ts-config=${join(root, 'config.properties')}`, '--ncs'], { env, cwd: root });
  t.teardown(() => {
    if (torchd.child.exitCode === null) torchd.child.kill('SIGKILL');
  });
  const ready = await torchd.waitFor('torchd ready');
  const addresses = ready.addresses as { inference: string; management: string; metrics: string; grpcInference: string };
  t.deepEqual(ready.models, ['mnist'], 'model_snapshot named the models to load');

  const ignored = await torchd.waitFor('config.properties keys torchd does not use were ignored');
  for (const k of ['number_of_netty_threads', 'install_py_dep_per_model']) t.true((ignored.keys as string[]).includes(k), k);
  t.is(torchd.lines.filter((l) => l.msg === 'config.properties keys torchd does not use were ignored').length, 1, 'logged once');
  const info = torchd.lines.find((l) => String(l.msg).startsWith('accepted for compatibility and informational only'));
  t.deepEqual(info?.settings, { PROTOCOL_VERSION: 'v2', TS_SERVICE_ENVELOPE: 'kservev2', service_envelope: 'kservev2' });
  const settled = torchd.lines.find((l) => l.msg === 'settled configuration')?.config as Record<string, unknown>;
  t.is(settled.metricsAuthToken, '<redacted>');
  t.false(JSON.stringify(torchd.lines).includes(METRICS_TOKEN), 'the metrics token is never logged');

  // Probes carry no token: the three health routes answer; everything else needs the key.
  for (const path of ['/ping', '/v2/health/live', '/v2/health/ready', '/v2/health/ready/']) {
    const r = await fetch(`${addresses.inference}${path}`);
    t.is(r.status, 200, path);
  }
  for (const path of ['/v2', '/v2/models/mnist/ready', '/v1/models/mnist']) {
    const r = await fetch(`${addresses.inference}${path}`);
    t.is(r.status, 401, path);
    t.is((await r.json()).type, 'InvalidKeyException', path);
  }
  // gRPC health too: a kubelet gRPC probe (grpc.health.v1) and KServe v2 ServerReady carry no token.
  const grpc = clients(addresses.grpcInference);
  t.teardown(() => grpc.close());
  t.deepEqual(await rpc(grpc.health, 'Check', { service: '' }), { status: 'SERVING' });
  t.deepEqual(await rpc(grpc.v2, 'ServerReady', {}), { ready: true });
  t.is((await failure(rpc(grpc.v2, 'ServerMetadata', {}))).code, 16, 'other gRPC methods want the key (UNAUTHENTICATED)');
  const keys = JSON.parse(await readFile(join(root, 'key_file.json'), 'utf8')) as Record<string, { key: string }>;
  t.false('metrics' in keys, 'a configured metrics token is not written to the key file');
  const auth = { Authorization: `Bearer ${keys.inference.key}` };
  const digit = await fetch(`${addresses.inference}/predictions/mnist`, { method: 'PUT', body: await readFile(DIGIT_4), headers: auth });
  t.is(digit.status, 200);
  t.is(await digit.json(), 4);

  // model_snapshot's per-version settings were applied (they override the archive's model-config.yaml).
  const described = await fetch(`${addresses.management}/models/mnist`, { headers: { Authorization: `Bearer ${keys.management.key}` } });
  t.like(((await described.json()) as unknown[])[0], { modelVersion: '1.0', isDefault: true, batchSize: 1, maxBatchDelay: 10, minWorkers: 1, maxWorkers: 5, responseTimeout: 120 });

  // /metrics: 401 without the metrics token (or with the inference key), 200 with it.
  const noToken = await fetch(`${addresses.metrics}/metrics`);
  t.is(noToken.status, 401);
  t.like(await noToken.json(), { code: 401, type: 'InvalidKeyException' });
  t.is((await fetch(`${addresses.metrics}/metrics`, { headers: auth })).status, 401);
  const scraped = await fetch(`${addresses.metrics}/metrics`, { headers: { Authorization: `Bearer ${METRICS_TOKEN}` } });
  t.is(scraped.status, 200);
  t.regex(await scraped.text(), /^# HELP /m);

  torchd.child.kill('SIGTERM');
  const { code } = await torchd.exited;
  t.is(code, 0, torchd.stderr());
});

test('a generated metrics key goes to the key file when no token is configured, with token auth off', async (t) => {
  const store = await makeModelStore([]);
  t.teardown(() => rm(store, { recursive: true, force: true }));
  const keyFile = join(store, 'keys.json');
  const config = resolveConfig({
    flags: { modelStore: store, inferenceAddress: 'http://127.0.0.1:0', managementAddress: 'http://127.0.0.1:0', metricsAddress: 'http://127.0.0.1:0' },
    env: { TS_ENABLE_METRICS_AUTH: 'true', TS_KEY_FILE: keyFile, TS_ENABLE_GRPC: 'false' },
  });
  const server = await startServer(config, { logger: createLogger({ level: 'silent' }) });
  t.teardown(() => server.close(1000));
  const keys = JSON.parse(await readFile(keyFile, 'utf8')) as Record<string, { key: string }>;
  t.deepEqual(Object.keys(keys), ['metrics']);
  t.is(keys.metrics.key, server.metricsKey!);
  t.is((await fetch(`${server.addresses.metrics}/metrics`)).status, 401);
  t.is((await fetch(`${server.addresses.metrics}/metrics`, { headers: { Authorization: `Bearer ${keys.metrics.key}` } })).status, 200);
  t.is((await fetch(`${server.addresses.inference}/ping`)).status, 200, 'token auth stays off for the API');
});

/** A loopback port that was free a moment ago (the shared-port case needs a fixed port, not 0). */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

test('inference and management on one address (KServe\'s sample: both 8085) share one listener', async (t) => {
  const store = await makeModelStore(['mnist']);
  t.teardown(() => rm(store, { recursive: true, force: true }));
  const port = await freePort();
  const config = resolveConfig({
    // gRPC on free ports: parallel test runs must never fight over 7070/7071.
    properties: new Map([['inference_address', `http://127.0.0.1:${port}`], ['management_address', `http://127.0.0.1:${port}`], ['grpc_inference_port', '0'], ['grpc_management_port', '0']]),
    flags: { modelStore: store, models: 'mnist=mnist.mar', metricsAddress: 'http://127.0.0.1:0' },
  });
  const server = await startServer(config, { logger: createLogger({ level: 'silent' }) });
  t.teardown(() => server.close(1000));
  t.is(server.addresses.inference, `http://127.0.0.1:${port}`);
  t.is(server.addresses.management, server.addresses.inference);
  const list = await fetch(`http://127.0.0.1:${port}/models`);
  t.is(list.status, 200);
  t.deepEqual(await list.json(), { models: [{ modelName: 'mnist', modelUrl: 'mnist.mar' }] });
  t.is((await fetch(`http://127.0.0.1:${port}/models/mnist`)).status, 200);
  t.is((await fetch(`http://127.0.0.1:${port}/ping`)).status, 200);
  t.is((await fetch(`http://127.0.0.1:${port}/v2/health/ready`)).status, 200);
});

test('a model_snapshot version that does not match the archive is refused at start', async (t) => {
  const store = await makeModelStore(['mnist']);
  t.teardown(() => rm(store, { recursive: true, force: true }));
  const config = resolveConfig({
    properties: new Map([['model_snapshot', JSON.stringify({ models: { mnist: { '3.0': { marName: 'mnist.mar', batchSize: 2 } } } })]]),
    flags: { modelStore: store, inferenceAddress: 'http://127.0.0.1:0', managementAddress: 'http://127.0.0.1:0', metricsAddress: 'http://127.0.0.1:0' },
  });
  await t.throwsAsync(startServer(config, { logger: createLogger({ level: 'silent' }) }), {
    message: 'mnist.mar holds mnist version 1.0, but the configuration names it as version 3.0',
  });
});

// config.properties + CLI flags → ServerConfig: defaults, TorchServe keys, overrides, and the exact
// message for each bad key.
import test, { type ExecutionContext } from 'ava';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig, parseProperties, resolveConfig } from '../../src/config.js';

const props = (text: string) => parseProperties(text);

test('parses Java properties: separators, comments, continuations, escapes', (t) => {
  const p = props(
    [
      '# a comment',
      '! another comment',
      'inference_address=http://0.0.0.0:8080',
      'management_address : http://127.0.0.1:9081',
      'model_store   /tmp/store',
      'models={\\',
      '  "mnist": {"1.0": {"batchSize": 4}}\\',
      '}',
      'tab=a\\tb',
      'uni=\\u0041',
      'empty=',
      '   indented=yes',
    ].join('\n'),
  );
  t.is(p.get('inference_address'), 'http://0.0.0.0:8080');
  t.is(p.get('management_address'), 'http://127.0.0.1:9081');
  t.is(p.get('model_store'), '/tmp/store');
  t.is(p.get('models'), '{"mnist": {"1.0": {"batchSize": 4}}}');
  t.is(p.get('tab'), 'a\tb');
  t.is(p.get('uni'), 'A');
  t.is(p.get('empty'), '');
  t.is(p.get('indented'), 'yes');
  t.false(p.has('# a comment'));
});

test('defaults follow the spec', (t) => {
  const c = resolveConfig({ flags: { modelStore: 'store' }, cwd: '/srv' });
  t.is(c.inferenceAddress, 'http://127.0.0.1:8080');
  t.is(c.managementAddress, 'http://127.0.0.1:8081');
  t.is(c.metricsAddress, 'http://127.0.0.1:8082');
  t.is(c.modelStore, '/srv/store');
  t.is(c.maxRequestSize, 6553500);
  t.is(c.defaultResponseTimeout, 120);
  t.is(c.jobQueueSize, 100);
  t.is(c.defaultWorkersPerModel, 1);
  t.false(c.enableTokenAuth);
  // Only the model store is registrable by default (TorchServe allows any file:// or http(s) URL).
  t.deepEqual(c.allowedUrls, []);
  t.deepEqual(c.loadModels, []);
  t.deepEqual(c.ignoredKeys, []);
  t.is(c.keyFile, '/srv/key_file.json');
  t.is(c.drainDelay, 0);
  t.is(c.shutdownTimeout, 30);
  t.is(c.heapGrowingPercent, 300);
  t.is(c.workerSpinUs, 2000);
});

/** A bounded whole-number key: 0 from the file, `envValue` from TS_<KEY>, and the messages of two bad values. */
function boundedKey(
  t: ExecutionContext, key: string, field: 'workerSpinUs' | 'heapGrowingPercent', envValue: number,
  bad: [string, RegExp][],
): void {
  t.is(resolveConfig({ properties: props(`model_store=/m\n${key}=0`) })[field], 0);
  t.is(resolveConfig({ properties: props('model_store=/m'), env: { [`TS_${key.toUpperCase()}`]: String(envValue) } })[field], envValue);
  for (const [value, message] of bad) {
    const err = t.throws(() => resolveConfig({ properties: props(`model_store=/m\n${key}=${value}`) }), { instanceOf: ConfigError });
    t.regex(err!.message, message);
  }
}

test('worker_spin_us: 0 (sleep at once) to 1000000, from the file or TS_WORKER_SPIN_US', (t) => {
  boundedKey(t, 'worker_spin_us', 'workerSpinUs', 500, [
    ['2000000', /worker_spin_us="2000000" is invalid: expected a whole number of microseconds from 0 to 1000000/],
    ['1.5', /worker_spin_us="1.5" is invalid: expected a whole number of microseconds >= 0/],
  ]);
});

test('heap_growing_percent: 0 (V8\'s dynamic factor) to 1000, from the file or TS_HEAP_GROWING_PERCENT', (t) => {
  boundedKey(t, 'heap_growing_percent', 'heapGrowingPercent', 150, [
    ['2000', /heap_growing_percent="2000" is invalid: expected a whole number of percent from 0 to 1000/],
    ['-5', /heap_growing_percent="-5" is invalid: expected a whole number of percent >= 0/],
  ]);
});

test('drain_delay and shutdown_timeout take seconds, fractions included', (t) => {
  const c = resolveConfig({ properties: props('model_store=/m\ndrain_delay=5\nshutdown_timeout=12.5') });
  t.is(c.drainDelay, 5);
  t.is(c.shutdownTimeout, 12.5);
});

test('drain_delay must be shorter than shutdown_timeout (the timeout counts from the signal)', (t) => {
  t.throws(() => resolveConfig({ properties: props('model_store=/m\ndrain_delay=30') }), {
    instanceOf: ConfigError,
    message:
      'Invalid configuration:\n  drain_delay=30 must be shorter than shutdown_timeout=30: the timeout counts from the signal, drain delay included',
  });
});

test('TorchServe keys are read; unused ones are ignored, not errors', (t) => {
  const c = resolveConfig({
    properties: props(
      [
        'inference_address=http://0.0.0.0:18080',
        'model_store=/models',
        'load_models=mnist.mar, resnet-18=resnet18.mar',
        'max_request_size=1000',
        'default_response_timeout=7',
        'default_workers_per_model=2',
        'job_queue_size=5',
        'enable_token_auth=TRUE',
        'allowed_urls=https://s3.amazonaws.com/.*,file:///models/.*',
        'models={"mnist": {"1.0": {"batchSize": 8, "maxBatchDelay": 50, "minWorkers": 1, "maxWorkers": 2, "responseTimeout": 30, "marName": "mnist.mar", "defaultVersion": true}}}',
        'number_of_netty_threads=4',
        'netty_client_threads=4',
        'vmargs=-Xmx4g',
        'install_py_dep_per_model=true',
      ].join('\n'),
    ),
  });
  t.is(c.inferenceAddress, 'http://0.0.0.0:18080');
  t.is(c.modelStore, '/models');
  t.deepEqual(c.loadModels, ['mnist.mar', 'resnet-18=resnet18.mar']);
  t.is(c.maxRequestSize, 1000);
  t.is(c.defaultResponseTimeout, 7);
  t.is(c.defaultWorkersPerModel, 2);
  t.is(c.jobQueueSize, 5);
  t.true(c.enableTokenAuth);
  t.deepEqual(c.allowedUrls, ['https://s3.amazonaws.com/.*', 'file:///models/.*']);
  t.like(c.models.mnist['1.0'], { batchSize: 8, maxBatchDelay: 50, minWorkers: 1, maxWorkers: 2, responseTimeout: 30 });
  t.deepEqual(c.ignoredKeys, ['number_of_netty_threads', 'netty_client_threads', 'vmargs', 'install_py_dep_per_model']);
});

test('CLI flags override config.properties', (t) => {
  const c = resolveConfig({
    properties: props('model_store=/a\nload_models=all\ninference_address=http://127.0.0.1:1\nenable_token_auth=true'),
    flags: { modelStore: '/b', models: 'x=x.mar,y.mar', inferenceAddress: 'http://127.0.0.1:0', enableTokenAuth: false },
  });
  t.is(c.modelStore, '/b');
  t.deepEqual(c.loadModels, ['x=x.mar', 'y.mar']);
  t.is(c.inferenceAddress, 'http://127.0.0.1:0');
  t.false(c.enableTokenAuth);
});

test('disable_token_authorization (TorchServe >= 0.12) turns token auth off', (t) => {
  const c = resolveConfig({ properties: props('model_store=/m\nenable_token_auth=true\ndisable_token_authorization=true') });
  t.false(c.enableTokenAuth);
});

const bad: [string, string, RegExp][] = [
  ['max_request_size=abc', 'max_request_size', /config\.properties: max_request_size="abc" is invalid: expected a whole number of bytes >= 1/],
  ['max_request_size=0', 'max_request_size', /max_request_size="0" is invalid: expected a whole number of bytes >= 1/],
  ['default_response_timeout=-5', 'default_response_timeout', /default_response_timeout="-5" is invalid: expected a whole number of seconds >= 1/],
  ['job_queue_size=1.5', 'job_queue_size', /job_queue_size="1.5" is invalid: expected a whole number of requests >= 1/],
  ['default_workers_per_model=0', 'default_workers_per_model', /default_workers_per_model="0" is invalid/],
  ['inference_address=localhost8080', 'inference_address', /inference_address="localhost8080" is invalid: expected a URL like http:\/\/127\.0\.0\.1:8080/],
  ['inference_address=https://127.0.0.1:8443', 'inference_address', /inference_address="https:\/\/127\.0\.0\.1:8443" is invalid: only http:\/\/ is served/],
  ['management_address=http://127.0.0.1:8081/api', 'management_address', /management_address=.* is invalid: expected scheme, host and port only/],
  ['enable_token_auth=yes', 'enable_token_auth', /enable_token_auth="yes" is invalid: expected true or false/],
  ['allowed_urls=file://(', 'allowed_urls', /allowed_urls="file:\/\/\(" is invalid at 0: expected comma-separated regular expressions/],
  ['models={"mnist": ', 'models', /models="\{\\"mnist\\": " is invalid: expected JSON/],
  ['models={"mnist": {"1.0": {"batchSize": 0}}}', 'models', /models=.* is invalid at mnist\.1\.0\.batchSize: Too small/],
  ['models={"mnist": {"1.0": {"batchsize": 4}}}', 'models', /models=.* is invalid at mnist\.1\.0: Unrecognized key: "batchsize"/],
  ['models={"mnist": {"1.0": {"device": "tpu"}}}', 'models', /models=.* is invalid at mnist\.1\.0\.device: expected cpu, cuda or cuda:N/],
  ['drain_delay=-1', 'drain_delay', /drain_delay="-1" is invalid: expected a number of seconds >= 0/],
  ['shutdown_timeout=soon', 'shutdown_timeout', /shutdown_timeout="soon" is invalid: expected a number of seconds >= 0.1/],
  ['shutdown_timeout=0', 'shutdown_timeout', /shutdown_timeout="0" is invalid: expected a number of seconds >= 0.1/],
];
for (const [line, key, message] of bad) {
  test(`bad value is named: ${line}`, (t) => {
    const err = t.throws(() => resolveConfig({ properties: props(`model_store=/m\n${line}`) }), { instanceOf: ConfigError });
    t.regex(err!.message, message);
    t.true(err!.message.includes(key));
  });
}

test('a bad CLI flag is named by its flag', (t) => {
  const err = t.throws(() => resolveConfig({ flags: { modelStore: '/m', inferenceAddress: 'nope' } }), { instanceOf: ConfigError });
  t.regex(err!.message, /--inference-address="nope" is invalid: expected a URL/);
});

test('every bad key is reported at once', (t) => {
  const err = t.throws(() => resolveConfig({ properties: props('model_store=/m\nmax_request_size=x\njob_queue_size=y') }), {
    instanceOf: ConfigError,
  });
  t.regex(err!.message, /max_request_size="x"/);
  t.regex(err!.message, /job_queue_size="y"/);
});

test('missing model store says how to give one', (t) => {
  t.throws(() => resolveConfig({}), {
    instanceOf: ConfigError,
    message: 'No model store: pass --model-store DIR, set TS_MODEL_STORE or set model_store in config.properties',
  });
});

test('loadConfig reads --ts-config from disk and names an unreadable file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'torchd-config-'));
  const file = join(dir, 'config.properties');
  writeFileSync(file, 'model_store=store\njob_queue_size=7\nworkflow_store=wf\n');
  const c = await loadConfig(file, {}, dir);
  t.is(c.modelStore, join(dir, 'store'));
  t.is(c.jobQueueSize, 7);
  t.deepEqual(c.ignoredKeys, ['workflow_store']);
  await t.throwsAsync(loadConfig(join(dir, 'missing.properties'), {}), {
    instanceOf: ConfigError,
    message: /^Cannot read --ts-config .*missing\.properties: ENOENT/,
  });
});

// --- environment (TorchServe's enable_envvars_config convention: TS_<KEY>, CLI > env > file) ---

test('TS_<KEY> environment variables override the file; CLI flags override both', (t) => {
  const c = resolveConfig({
    properties: props('model_store=/file\njob_queue_size=5\ninference_address=http://127.0.0.1:1\nmax_request_size=10'),
    env: { TS_MODEL_STORE: '/env', TS_JOB_QUEUE_SIZE: '7', TS_INFERENCE_ADDRESS: 'http://127.0.0.1:2', HOME: '/root' },
    flags: { inferenceAddress: 'http://127.0.0.1:3' },
  });
  t.is(c.modelStore, '/env');
  t.is(c.jobQueueSize, 7);
  t.is(c.inferenceAddress, 'http://127.0.0.1:3');
  t.is(c.maxRequestSize, 10, 'a key the environment does not set keeps the file value');
  t.deepEqual(c.ignoredKeys, []);
});

test('an environment variable is validated like the file and named in the error', (t) => {
  const err = t.throws(() => resolveConfig({ env: { TS_MODEL_STORE: '/m', TS_JOB_QUEUE_SIZE: 'many', TS_ENABLE_TOKEN_AUTH: 'yes' } }), {
    instanceOf: ConfigError,
  });
  t.regex(err!.message, /TS_JOB_QUEUE_SIZE="many" is invalid: expected a whole number of requests >= 1/);
  t.regex(err!.message, /TS_ENABLE_TOKEN_AUTH="yes" is invalid: expected true or false/);
});

test('the environment alone can configure torchd (no file); TS_MODEL_STORE is named when missing', (t) => {
  const c = resolveConfig({ env: { TS_MODEL_STORE: 'store', TS_LOAD_MODELS: 'all', TS_ENABLE_TOKEN_AUTH: 'true' }, cwd: '/srv' });
  t.is(c.modelStore, '/srv/store');
  t.deepEqual(c.loadModels, ['all']);
  t.true(c.enableTokenAuth);
  t.throws(() => resolveConfig({ env: {} }), {
    instanceOf: ConfigError,
    message: 'No model store: pass --model-store DIR, set TS_MODEL_STORE or set model_store in config.properties',
  });
});

test('enable_envvars_config=false in the file turns the environment off (TorchServe\'s switch)', (t) => {
  const c = resolveConfig({ properties: props('model_store=/file\nenable_envvars_config=false'), env: { TS_MODEL_STORE: '/env', TS_JOB_QUEUE_SIZE: 'bad' } });
  t.is(c.modelStore, '/file');
  t.is(c.jobQueueSize, 100);
  // The switch itself is the file's: the environment cannot turn itself on.
  const d = resolveConfig({ properties: props('model_store=/file\nenable_envvars_config=false'), env: { TS_ENABLE_ENVVARS_CONFIG: 'true', TS_MODEL_STORE: '/env' } });
  t.is(d.modelStore, '/file');
});

test('PROTOCOL_VERSION, TS_SERVICE_ENVELOPE and service_envelope are accepted as informational; unknown TS_ variables are ignored', (t) => {
  const c = resolveConfig({
    properties: props('model_store=/m\nservice_envelope=kserve'),
    env: { PROTOCOL_VERSION: 'v2', TS_SERVICE_ENVELOPE: 'kservev2', TS_NOT_A_KEY: '1', TS_NUMBER_OF_NETTY_THREADS: '4' },
  });
  t.deepEqual(c.informational, { PROTOCOL_VERSION: 'v2', TS_SERVICE_ENVELOPE: 'kservev2', service_envelope: 'kservev2' });
  t.deepEqual(c.ignoredKeys, ['TS_NOT_A_KEY', 'TS_NUMBER_OF_NETTY_THREADS']);
});

// --- KServe's torchserve sample config.properties and model_snapshot ---

test('KServe\'s sample config.properties: model_snapshot loads its models with their settings', async (t) => {
  const c = await loadConfig(join(import.meta.dirname, '..', 'deploy', 'fixtures', 'kserve-config.properties'), {});
  t.is(c.inferenceAddress, 'http://0.0.0.0:8085');
  t.is(c.managementAddress, 'http://0.0.0.0:8085');
  t.is(c.modelStore, '/mnt/models/model-store');
  t.is(c.jobQueueSize, 10);
  t.deepEqual(c.loadModels, ['mnist=mnist.mar']);
  t.deepEqual(c.models.mnist['1.0'], { defaultVersion: true, marName: 'mnist.mar', minWorkers: 1, maxWorkers: 5, batchSize: 1, maxBatchDelay: 10, responseTimeout: 120 });
  // Keys torchd has no use for are accepted and listed once; everything it reads is not in the list.
  for (const k of ['number_of_netty_threads', 'install_py_dep_per_model', 'enable_metrics_api']) t.true(c.ignoredKeys.includes(k), k);
  for (const k of ['model_snapshot', 'metrics_format', 'enable_envvars_config', 'job_queue_size', 'model_store']) t.false(c.ignoredKeys.includes(k), k);
});

test('model_snapshot: several versions, the default, explicit load_models wins, models overrides per field', (t) => {
  const snapshot = JSON.stringify({
    name: 'startup.cfg',
    modelCount: 2,
    models: {
      mnist: {
        '1.0': { marName: 'mnist.mar', batchSize: 2, startupTimeout: 120 },
        '2.0': { marName: 'mnist-v2.mar', defaultVersion: true, maxWorkers: 3 },
      },
    },
  });
  const c = resolveConfig({ properties: new Map([['model_store', '/m'], ['model_snapshot', snapshot], ['models', '{"mnist": {"2.0": {"maxWorkers": 4}}}']]) });
  t.deepEqual(c.loadModels, ['mnist=mnist.mar', 'mnist=mnist-v2.mar']);
  t.deepEqual(c.models.mnist['1.0'], { marName: 'mnist.mar', batchSize: 2 });
  t.deepEqual(c.models.mnist['2.0'], { marName: 'mnist-v2.mar', defaultVersion: true, maxWorkers: 4 });
  t.deepEqual(c.ignoredKeys, ['model_snapshot.models.mnist.1.0.startupTimeout']);
  const explicit = resolveConfig({ properties: new Map([['model_store', '/m'], ['model_snapshot', snapshot]]), flags: { models: 'mnist=mnist.mar' } });
  t.deepEqual(explicit.loadModels, ['mnist=mnist.mar']);
  t.is(explicit.models.mnist['1.0'].batchSize, 2, 'the snapshot still gives the settings');
});

const badSnapshots: [string, RegExp][] = [
  ['{"models": {"mnist": {"1.0": {"batchSize": 4}}}}', /model_snapshot=.* is invalid at models\.mnist\.1\.0: expected marName/],
  ['{"models": {"mnist": {"1.0": {"marName": "m.mar", "batchSize": 0}}}}', /model_snapshot=.* is invalid at models\.mnist\.1\.0\.batchSize: Too small/],
  ['{"name": "startup.cfg"}', /model_snapshot=.* is invalid at models: /],
  ['{"models": ', /model_snapshot=.* is invalid: expected JSON/],
];
for (const [value, message] of badSnapshots) {
  test(`a bad model_snapshot is named: ${value}`, (t) => {
    const err = t.throws(() => resolveConfig({ properties: new Map([['model_store', '/m'], ['model_snapshot', value]]) }), { instanceOf: ConfigError });
    t.regex(err!.message, message);
  });
}

test('metrics auth: enable_metrics_auth, a token that is validated but never echoed, metrics_format', (t) => {
  const c = resolveConfig({ env: { TS_MODEL_STORE: '/m', TS_ENABLE_METRICS_AUTH: 'true', TS_METRICS_AUTH_TOKEN: 'a-secret-token-0123456789' } });
  t.true(c.enableMetricsAuth);
  t.is(c.metricsAuthToken, 'a-secret-token-0123456789');
  const err = t.throws(() => resolveConfig({ env: { TS_MODEL_STORE: '/m', TS_METRICS_AUTH_TOKEN: 'short secret' } }), { instanceOf: ConfigError });
  t.regex(err!.message, /TS_METRICS_AUTH_TOKEN="<redacted>" is invalid: expected at least 16 printable characters without spaces/);
  t.false(err!.message.includes('short secret'));
  t.throws(() => resolveConfig({ properties: props('model_store=/m\nmetrics_format=json') }), {
    instanceOf: ConfigError,
    message: /metrics_format="json" is invalid: only 'prometheus' is served/,
  });
});

test('gRPC keys: defaults, TorchServe\'s host-only address + port, host:port, limits and keepalive', (t) => {
  const d = resolveConfig({ flags: { modelStore: '/m' } }).grpc!;
  t.deepEqual(d, {
    enabled: true,
    inferenceAddress: '127.0.0.1:7070',
    managementAddress: '127.0.0.1:7071',
    maxRequestSize: 6553500,
    maxResponseSize: -1,
    keepaliveTimeMs: 0,
    keepaliveTimeoutMs: 0,
    maxConnectionAgeMs: 0,
    maxConnectionAgeGraceMs: 0,
    maxConnectionIdleMs: 0,
  });
  const c = resolveConfig({
    properties: props(
      [
        'model_store=/m',
        // TorchServe: the address holds the host, the port key the port.
        'grpc_inference_address=0.0.0.0',
        'grpc_inference_port=9070',
        'grpc_management_address=http://[::1]:9071',
        'max_request_size=1000',
        'grpc_keepalive_time_ms=30000',
        'grpc_keepalive_timeout_ms=5000',
        'grpc_max_connection_age_ms=600000',
        'grpc_max_connection_age_grace_ms=10000',
        'grpc_max_connection_idle_ms=60000',
        'grpc_max_response_size=50000000',
      ].join('\n'),
    ),
  }).grpc!;
  t.is(c.inferenceAddress, '0.0.0.0:9070');
  t.is(c.managementAddress, '[::1]:9071');
  t.is(c.maxRequestSize, 1000, 'follows max_request_size unless grpc_max_request_size is set');
  t.is(c.maxResponseSize, 50_000_000);
  t.deepEqual([c.keepaliveTimeMs, c.keepaliveTimeoutMs, c.maxConnectionAgeMs, c.maxConnectionAgeGraceMs, c.maxConnectionIdleMs], [30000, 5000, 600000, 10000, 60000]);
  const own = resolveConfig({ properties: props('model_store=/m\ngrpc_max_request_size=99\ngrpc_management_port=0\nenable_grpc=false') }).grpc!;
  t.is(own.maxRequestSize, 99);
  t.is(own.managementAddress, '127.0.0.1:0', 'the port key wins over the default address\'s port');
  t.false(own.enabled);
  const env = resolveConfig({ properties: props('model_store=/m\ngrpc_inference_port=7070'), env: { TS_GRPC_INFERENCE_PORT: '0' } }).grpc!;
  t.is(env.inferenceAddress, '127.0.0.1:0');
});

test('bad gRPC keys are named with their values', (t) => {
  const err = t.throws(
    () => resolveConfig({ properties: props('model_store=/m\ngrpc_inference_port=70000\ngrpc_management_address=https://x:1\nenable_grpc=yes') }),
    { instanceOf: ConfigError },
  );
  t.regex(err!.message, /grpc_inference_port="70000" is invalid: expected a port number from 0 to 65535/);
  t.regex(err!.message, /grpc_management_address="https:\/\/x:1" is invalid: expected host:port, e\.g\. 127\.0\.0\.1:7070 \(plaintext gRPC; terminate TLS in a proxy\)/);
  t.regex(err!.message, /enable_grpc="yes" is invalid: expected true or false/);
});

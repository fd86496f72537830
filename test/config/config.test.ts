// config.properties + CLI flags → ServerConfig: defaults, TorchServe keys, overrides, and the exact
// message for each bad key.
import test from 'ava';
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
    message: 'No model store: pass --model-store DIR or set model_store in config.properties',
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

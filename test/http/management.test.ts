// The management API over real HTTP: every route and its errors, the register → predict → scale →
// set-default → unregister flow on two versions, path traversal refused, and loading that never stalls
// the inference listener.
import SwaggerParser from '@apidevtools/swagger-parser';
import test from 'ava';
import { copyFile, mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import yazl from 'yazl';
import { runArchive } from '../../src/archiver/index.js';
import { createManagementApp } from '../../src/http/management/index.js';
import { v2Router } from '../../src/http/v2/index.js';
import { existsSync } from 'node:fs';
import { request } from 'node:http';
import { HERE, MODELS, bareApp, json, listen, makeEnv, type Env } from '../fixtures/v2/servers.js';

interface Servers {
  env: Env;
  mgmt: string;
  infer: string;
}

/** A store holding adder 1.0 and 2.0 (two_inputs.pt), echo, and the MNIST digit model; both listeners up. */
async function start(t: { teardown(fn: () => Promise<void>): void }, extra = {}): Promise<Servers> {
  const env = await makeEnv(extra);
  t.teardown(env.cleanup);
  await runArchive({ modelName: 'adder', version: '1.0', serializedFile: join(HERE, 'two_inputs.pt'), handler: 'tensor', exportPath: join(env.store, 'v1') });
  await runArchive({ modelName: 'adder', version: '2.0', serializedFile: join(HERE, 'two_inputs.pt'), handler: 'tensor', exportPath: join(env.store, 'v2') });
  await runArchive({ modelName: 'echo', version: '1.0', serializedFile: join(HERE, 'echo.pt'), handler: 'tensor', exportPath: env.store });
  await runArchive({
    modelName: 'digits', version: '1.0', serializedFile: join(MODELS, 'mnist.pt'), handler: 'image_classifier',
    config: join(MODELS, 'mnist-config.yaml'), exportPath: env.store,
  });
  const mgmt = await listen(createManagementApp(env.deps));
  const infer = await listen(bareApp({ '/v2': v2Router(env.deps) }));
  t.teardown(mgmt.close);
  t.teardown(infer.close);
  return { env, mgmt: mgmt.url, infer: infer.url };
}

async function call(method: string, url: string): Promise<{ status: number; body: any; headers: Headers }> {
  const r = await fetch(url, { method });
  return { status: r.status, body: await json(r), headers: r.headers };
}

/** v2 infer on the adder: x + 2y and sum(x*y) over rows. */
async function add(base: string, model: string, x: number[], y: number[], version?: string) {
  const path = version ? `/v2/models/${model}/versions/${version}/infer` : `/v2/models/${model}/infer`;
  const r = await fetch(base + path, {
    method: 'POST',
    body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, x.length], datatype: 'FP32', data: x }, { name: 'y', shape: [1, y.length], datatype: 'FP32', data: y }] }),
  });
  return { status: r.status, body: await json(r) };
}

test('OPTIONS / is a valid OpenAPI 3.0.1 document of every management route; other methods on / are 405', async (t) => {
  const s = await start(t);
  const r = await call('OPTIONS', `${s.mgmt}/`);
  t.is(r.status, 200);
  t.is(r.headers.get('content-type'), 'application/json; charset=utf-8');
  t.is(r.body.openapi, '3.0.1');
  await t.notThrowsAsync(SwaggerParser.validate(structuredClone(r.body)));
  t.deepEqual(Object.keys(r.body.paths).sort(), [
    '/', '/models', '/models/{model_name}', '/models/{model_name}/{model_version}', '/models/{model_name}/{model_version}/set-default',
  ]);
  t.deepEqual(Object.keys(r.body.paths['/models/{model_name}/{model_version}']).sort(), ['delete', 'get', 'put']);
  const get = await call('GET', `${s.mgmt}/`);
  t.is(get.status, 405);
  t.is(get.body.type, 'MethodNotAllowedException');
  const post = await call('POST', `${s.mgmt}/models/adder/1.0/set-default`);
  t.is(post.status, 405);
  t.is(post.headers.get('allow'), 'PUT');
  const unknown = await call('GET', `${s.mgmt}/nothing/here`);
  t.deepEqual(unknown.body, { code: 404, type: 'ResourceNotFoundException', message: 'Requested resource is not found, please refer to API document.' });
});

test('register → predict → scale → set-default → unregister, on two versions', async (t) => {
  const s = await start(t);
  const reg1 = await call('POST', `${s.mgmt}/models?url=v1/adder.mar&batch_size=4&max_batch_delay=2&initial_workers=1`);
  t.is(reg1.status, 200);
  t.deepEqual(reg1.body, { status: 'Model "adder" Version: 1.0 registered with 1 initial workers' });
  const reg2 = await call('POST', `${s.mgmt}/models?url=${encodeURIComponent(join(s.env.store, 'v2', 'adder.mar'))}&synchronous=true`);
  t.is(reg2.status, 200);
  t.deepEqual(reg2.body, { status: 'Model "adder" Version: 2.0 registered with 1 initial workers' });

  // Predict: the first registered version is the default.
  const p1 = await add(s.infer, 'adder', [1, 2], [3, 4]);
  t.is(p1.status, 200);
  t.is(p1.body.model_version, '1.0');
  t.deepEqual(p1.body.outputs[0], { name: 'output0', datatype: 'FP32', shape: [1, 2], data: [7, 10] });
  t.deepEqual(p1.body.outputs[1], { name: 'output1', datatype: 'FP32', shape: [1], data: [11] });
  t.is((await add(s.infer, 'adder', [1], [1], '2.0')).body.model_version, '2.0');

  // Describe.
  const d = await call('GET', `${s.mgmt}/models/adder`);
  t.is(d.status, 200);
  t.is(d.body.length, 1);
  const v1 = d.body[0];
  t.like(v1, {
    modelName: 'adder', modelVersion: '1.0', modelUrl: 'v1/adder.mar', isDefault: true, handler: 'tensor', device: 'cpu',
    batchSize: 4, maxBatchDelay: 2, minWorkers: 1, maxWorkers: 1, loadedAtStartup: false,
    jobQueueStatus: { remainingCapacity: 100, pendingRequests: 0, runningRequests: 0 },
    // The frozen, inference-optimised module serves (settled by the requests above).
    optimize: true, forwardModule: 'optimized',
  });
  t.false('forwardModuleReason' in v1);
  t.is(v1.workers.length, 1);
  t.like(v1.workers[0], { status: 'READY', pid: process.pid, gpu: false });
  const all = await call('GET', `${s.mgmt}/models/adder/all`);
  t.deepEqual(all.body.map((x: any) => [x.modelVersion, x.isDefault]), [['1.0', true], ['2.0', false]]);
  t.is((await call('GET', `${s.mgmt}/models/adder/2.0`)).body[0].modelUrl, 'v2/adder.mar');

  // Scale: asynchronous form answers 202, synchronous 200; weights are not copied.
  const bytes = s.env.registry.resolve('adder', '1.0').info.parameterBytes;
  const scaled = await call('PUT', `${s.mgmt}/models/adder/1.0?min_worker=2&max_worker=3&synchronous=true`);
  t.deepEqual(scaled, { status: 200, body: { status: 'Workers scaled to 2 for model: adder, version: 1.0' }, headers: scaled.headers });
  const after = (await call('GET', `${s.mgmt}/models/adder/1.0`)).body[0];
  t.like(after, { minWorkers: 2, maxWorkers: 3, parameterBytes: bytes });
  t.is(after.workers.length, 2);
  const async = await call('PUT', `${s.mgmt}/models/adder?min_worker=1`);
  t.is(async.status, 202);
  t.deepEqual(async.body, { status: 'Processing worker updates...' });
  t.like((await call('GET', `${s.mgmt}/models/adder`)).body[0], { minWorkers: 1, maxWorkers: 1 });
  t.deepEqual((await add(s.infer, 'adder', [0.5], [0.25])).body.outputs[0].data, [1]);

  // Set-default, then the unversioned route serves 2.0.
  const sd = await call('PUT', `${s.mgmt}/models/adder/2.0/set-default`);
  t.deepEqual(sd.body, { status: 'Default version successfully updated for model "adder" to "2.0"' });
  t.is((await add(s.infer, 'adder', [1], [1])).body.model_version, '2.0');

  // Unregister: the default cannot go while 1.0 remains; 1.0 can; then the last one.
  const forbidden = await call('DELETE', `${s.mgmt}/models/adder/2.0`);
  t.is(forbidden.status, 403);
  t.is(forbidden.body.type, 'InvalidModelException');
  t.regex(forbidden.body.message, /Cannot remove default version 2\.0 for model adder/);
  t.deepEqual((await call('DELETE', `${s.mgmt}/models/adder/1.0`)).body, { status: 'Model "adder" Version: 1.0 unregistered' });
  const gone = await add(s.infer, 'adder', [1], [1], '1.0');
  t.is(gone.status, 404);
  t.is(gone.body.type, 'ModelVersionNotFoundException');
  t.is((await call('DELETE', `${s.mgmt}/models/adder`)).status, 200);
  const none = await call('GET', `${s.mgmt}/models/adder`);
  t.deepEqual(none.body, { code: 404, type: 'ModelNotFoundException', message: 'Model not found: adder' });
  t.deepEqual((await call('GET', `${s.mgmt}/models`)).body, { models: [] });
});

test('list models with pagination', async (t) => {
  const s = await start(t);
  for (const url of ['v1/adder.mar', 'echo.mar', 'digits.mar']) t.is((await call('POST', `${s.mgmt}/models?url=${url}`)).status, 200);
  t.deepEqual((await call('GET', `${s.mgmt}/models`)).body, {
    models: [
      { modelName: 'adder', modelUrl: 'v1/adder.mar' },
      { modelName: 'digits', modelUrl: 'digits.mar' },
      { modelName: 'echo', modelUrl: 'echo.mar' },
    ],
  });
  const page1 = (await call('GET', `${s.mgmt}/models?limit=2`)).body;
  t.deepEqual(page1.models.map((m: any) => m.modelName), ['adder', 'digits']);
  t.is(page1.nextPageToken, '2');
  const page2 = (await call('GET', `${s.mgmt}/models?limit=2&next_page_token=${page1.nextPageToken}`)).body;
  t.deepEqual(page2, { models: [{ modelName: 'echo', modelUrl: 'echo.mar' }] });
  const bad = await call('GET', `${s.mgmt}/models?limit=ten`);
  t.deepEqual(bad.body, { code: 400, type: 'BadRequestException', message: 'Query parameter limit must be an integer >= 0, got "ten"' });
  // model_name overrides the MANIFEST's name.
  t.deepEqual((await call('POST', `${s.mgmt}/models?url=echo.mar&model_name=echo2`)).body, { status: 'Model "echo2" Version: 1.0 registered with 1 initial workers' });
});

test('registration errors: missing url, downloads, duplicates, bad values, unknown models and versions', async (t) => {
  const s = await start(t, { allowedUrls: ['https://models\\.example\\.com/.*'] });
  t.is((await call('POST', `${s.mgmt}/models?url=echo.mar`)).status, 200);
  const cases: Array<[string, string, string, number, string, RegExp]> = [
    ['no url', 'POST', '/models', 400, 'BadRequestException', /^Parameter url is required\.$/],
    ['http not allowed', 'POST', `/models?url=${encodeURIComponent('http://elsewhere.test/m.mar')}`, 400, 'BadRequestException', /does not match allowed_urls, and torchd does not download models/],
    ['https allowed but offline', 'POST', `/models?url=${encodeURIComponent('https://models.example.com/m.mar')}`, 400, 'BadRequestException', /downloading models over http\(s\) is not supported \(torchd makes no network requests\)/],
    ['s3 scheme', 'POST', '/models?url=s3://bucket/m.mar', 400, 'BadRequestException', /Unsupported URL scheme "s3:\/\/"/],
    ['not in store', 'POST', '/models?url=missing.mar', 400, 'BadRequestException', /Model archive missing\.mar not found in the model store/],
    ['duplicate', 'POST', '/models?url=echo.mar', 409, 'ConflictStatusException', /Model version 1\.0 for model echo is already registered/],
    ['bad batch size', 'POST', '/models?url=digits.mar&batch_size=0', 400, 'BadRequestException', /batch_size must be an integer >= 1, got "0"/],
    ['bad synchronous', 'POST', '/models?url=digits.mar&synchronous=yes', 400, 'BadRequestException', /synchronous must be true or false/],
    ['describe unknown model', 'GET', '/models/nope', 404, 'ModelNotFoundException', /^Model not found: nope$/],
    ['describe unknown version', 'GET', '/models/echo/9.9', 404, 'ModelVersionNotFoundException', /^Model version: 9\.9 does not exist for model: echo$/],
    ['scale unknown model', 'PUT', '/models/nope?min_worker=1', 404, 'ModelNotFoundException', /nope/],
    ['scale max < min', 'PUT', '/models/echo?min_worker=3&max_worker=1', 400, 'BadRequestException', /max_worker \(1\) must be >= min_worker \(3\)/],
    ['scale negative', 'PUT', '/models/echo?min_worker=-1', 400, 'BadRequestException', /min_worker must be an integer >= 0/],
    ['set-default unknown version', 'PUT', '/models/echo/2.0/set-default', 404, 'ModelVersionNotFoundException', /2\.0/],
    ['unregister unknown version', 'DELETE', '/models/echo/2.0', 404, 'ModelVersionNotFoundException', /2\.0/],
  ];
  for (const [what, method, path, status, type, message] of cases) {
    const r = await call(method, s.mgmt + path);
    t.is(r.status, status, what);
    t.is(r.body.code, status, what);
    t.is(r.body.type, type, what);
    t.regex(r.body.message, message, what);
  }
  // Asynchronous registration answers 202 at once and the model appears when loaded.
  const a = await call('POST', `${s.mgmt}/models?url=digits.mar&synchronous=false`);
  t.is(a.status, 202);
  t.regex(a.body.status, /Model "digits" Version: 1\.0 registration accepted/);
  for (let i = 0; i < 200 && !s.env.registry.names().includes('digits'); i++) await new Promise((r) => setTimeout(r, 25));
  t.true(s.env.registry.resolve('digits').ready);
});

test('path traversal: urls, names and archive entries that escape the store are refused with 400', async (t) => {
  const s = await start(t);
  // A .mar outside the store, a symlink in the store pointing out of it, and an archive with a ../ entry.
  const outside = join(s.env.root, 'outside');
  await mkdir(outside);
  await copyFile(join(s.env.store, 'echo.mar'), join(outside, 'echo.mar'));
  await symlink(join(outside, 'echo.mar'), join(s.env.store, 'link.mar'));
  const evil = new yazl.ZipFile();
  evil.addBuffer(Buffer.from(JSON.stringify({ model: { modelName: 'evil', modelVersion: '1', serializedFile: 'm.pt', handler: 'tensor' } })), 'MAR-INF/MANIFEST.json');
  evil.addBuffer(Buffer.from('x'), 'm.pt');
  // yazl refuses to write '../' names, so write a same-length placeholder and patch it in both headers.
  evil.addBuffer(Buffer.from('owned'), 'a/zz/zz/zz/escaped.txt', { compress: false });
  evil.end();
  const chunks: Buffer[] = [];
  for await (const c of evil.outputStream) chunks.push(c as Buffer);
  let zip = Buffer.concat(chunks).toString('latin1');
  t.is(zip.split('a/zz/zz/zz/').length - 1, 2);
  zip = zip.replaceAll('a/zz/zz/zz/', 'a/../../../');
  await writeFile(join(s.env.store, 'evil.mar'), Buffer.from(zip, 'latin1'));

  const cases: Array<[string, string, string, RegExp]> = [
    ['relative ..', 'POST', `/models?url=${encodeURIComponent('../outside/echo.mar')}`, /Relative path is not allowed in url: \.\.\/outside\/echo\.mar/],
    ['nested ..', 'POST', `/models?url=${encodeURIComponent('v1/../../outside/echo.mar')}`, /Relative path is not allowed/],
    ['absolute outside', 'POST', `/models?url=${encodeURIComponent(join(outside, 'echo.mar'))}`, /is outside the model store .* and not permitted by allowed_urls/],
    ['file url outside', 'POST', `/models?url=${encodeURIComponent(pathToFileURL(join(outside, 'echo.mar')).href)}`, /is outside the model store/],
    ['/etc/passwd', 'POST', `/models?url=${encodeURIComponent('/etc/passwd')}`, /is outside the model store/],
    ['symlink out of the store', 'POST', '/models?url=link.mar', /Model URL link\.mar is outside the model store/],
    ['archive entry escaping', 'POST', '/models?url=evil.mar', /has an entry that escapes the extraction folder|invalid relative path/],
    ['model_name with ..', 'POST', `/models?url=echo.mar&model_name=${encodeURIComponent('../x')}`, /Invalid model name "\.\.\/x"/],
    ['model_name with /', 'POST', `/models?url=echo.mar&model_name=${encodeURIComponent('a/b')}`, /Invalid model name "a\/b"/],
    ['encoded / in a path name', 'GET', `/models/${encodeURIComponent('a/../b')}`, /Invalid model name "a\/\.\.\/b"/],
    ['.. inside a version', 'DELETE', '/models/echo/1..2', /Invalid model version "1\.\.2"/],
  ];
  for (const [what, method, path, message] of cases) {
    const r = await call(method, s.mgmt + path);
    t.is(r.status, 400, what);
    t.is(r.body.type, 'BadRequestException', what);
    t.regex(r.body.message, message, what);
  }
  // fetch() normalises dot segments away; a raw request sends them as they are.
  const raw = await new Promise<{ status: number; body: any }>((resolve, reject) => {
    const { hostname, port } = new URL(s.mgmt);
    const req = request({ hostname, port, path: '/models/echo/..', method: 'DELETE' }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end();
  });
  t.is(raw.status, 400);
  t.regex(raw.body.message, /Invalid model version "\.\."/);
  t.false(existsSync(join(s.env.root, 'escaped.txt')));
  t.deepEqual(s.env.registry.names(), []);
});

test('allowed_urls permits a file outside the store: it is copied in, then registered', async (t) => {
  const s = await start(t, { allowedUrls: ['file:///.*/outside/.*\\.mar'] });
  const outside = join(s.env.root, 'outside');
  await mkdir(outside);
  await runArchive({ modelName: 'far', version: '3', serializedFile: join(HERE, 'echo.pt'), handler: 'tensor', exportPath: outside });
  const url = pathToFileURL(join(outside, 'far.mar')).href;
  const r = await call('POST', `${s.mgmt}/models?url=${encodeURIComponent(url)}`);
  t.deepEqual(r.body, { status: 'Model "far" Version: 3 registered with 1 initial workers' });
  t.true(existsSync(join(s.env.store, 'far.mar')));
  t.is(s.env.registry.resolve('far').spec.url, 'far.mar');
  // Not matching the pattern (a .pt, not a .mar) stays refused.
  await writeFile(join(outside, 'x.pt'), 'x');
  t.is((await call('POST', `${s.mgmt}/models?url=${encodeURIComponent(pathToFileURL(join(outside, 'x.pt')).href)}`)).status, 400);
});

test('predictions on one model keep succeeding while another, larger model registers and unregisters', async (t) => {
  const s = await start(t);
  t.is((await call('POST', `${s.mgmt}/models?url=v1/adder.mar`)).status, 200);
  // ResNet-18 (≈45 MB of weights) as an exploded model directory; scripts/setup generates the file.
  let big = join(MODELS, 'resnet18.pt');
  if (!existsSync(big)) {
    t.log('resnet18.pt missing (run scripts/setup to generate it): loading the MNIST model instead');
    big = join(MODELS, 'mnist.pt');
  }
  const dir = join(s.env.store, 'big');
  await mkdir(join(dir, 'MAR-INF'), { recursive: true });
  await copyFile(big, join(dir, 'big.pt'));
  await writeFile(join(dir, 'MAR-INF', 'MANIFEST.json'), JSON.stringify({ model: { modelName: 'big', modelVersion: '1', serializedFile: 'big.pt', handler: 'image_classifier' } }));

  let stop = false;
  const latencies: number[] = [];
  const failures: string[] = [];
  const loop = async () => {
    while (!stop) {
      const t0 = performance.now();
      const r = await add(s.infer, 'adder', [1, 2], [3, 4]);
      latencies.push(performance.now() - t0);
      if (r.status !== 200 || r.body.outputs[0].data.join() !== '7,10') failures.push(JSON.stringify(r));
    }
  };
  // Baseline with nothing loading.
  const clients = [loop(), loop()];
  while (latencies.length < 40) await new Promise((r) => setTimeout(r, 5));
  const baseline = latencies.splice(0);

  const before = latencies.length;
  const reg = await call('POST', `${s.mgmt}/models?url=big`);
  const during = latencies.length - before;
  t.is(reg.status, 200);
  const unreg = await call('DELETE', `${s.mgmt}/models/big`);
  t.is(unreg.status, 200);
  const loading = latencies.splice(0);
  stop = true;
  await Promise.all(clients);

  t.deepEqual(failures, []);
  // Requests completed while the model was loading: the event loop was never held by the load.
  t.true(during > 0, `no request completed while the model loaded (${during})`);
  const p50 = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  t.log(`adder p50 ${p50(baseline).toFixed(2)} ms alone vs ${p50(loading).toFixed(2)} ms during load/unload of ${big.split('/').pop()}; ${during} requests completed during registration`);
});

// OPTIONS / and GET /api-description: an OpenAPI 3.0.1 document that an OpenAPI 3.0 validator accepts
// and that lists every route (explanations and KServe included); OPTIONS /predictions/{m} per model.
import test from 'ava';
import SwaggerParser from '@apidevtools/swagger-parser';
import { call, startTestServer, type TestServer } from './_server.js';

let srv: TestServer;
test.before(async () => {
  srv = await startTestServer(['mnist', 'mnist-v2']);
});
test.after.always(async () => {
  await srv?.close();
});

test('OPTIONS / is a valid OpenAPI 3.0.1 document listing every route', async (t) => {
  const r = await call(`${srv.url}/`, { method: 'OPTIONS' });
  t.is(r.status, 200);
  t.is(r.headers.get('content-type'), 'application/json; charset=utf-8');
  const doc = r.json as { openapi: string; paths: Record<string, Record<string, unknown>> };
  t.is(doc.openapi, '3.0.1');
  await t.notThrowsAsync(SwaggerParser.validate(structuredClone(doc) as never));
  const expected: [string, string[]][] = [
    ['/', ['options']],
    ['/api-description', ['get']],
    ['/ping', ['get']],
    ['/predictions/{model_name}', ['post', 'put', 'options']],
    ['/predictions/{model_name}/{model_version}', ['post', 'put']],
    ['/explanations/{model_name}', ['post', 'put']],
    ['/explanations/{model_name}/{model_version}', ['post', 'put']],
    ['/v1/models/{model_name}:predict', ['post']],
    ['/v1/models/{model_name}:explain', ['post']],
    ['/v1/models', ['get']],
    ['/v1/models/{model_name}', ['get']],
    ['/v2', ['get']],
    ['/v2/health/live', ['get']],
    ['/v2/health/ready', ['get']],
    ['/v2/models/{model_name}', ['get']],
    ['/v2/models/{model_name}/ready', ['get']],
    ['/v2/models/{model_name}/infer', ['post']],
    ['/v2/models/{model_name}/explain', ['post']],
    ['/v2/models/{model_name}/versions/{model_version}', ['get']],
    ['/v2/models/{model_name}/versions/{model_version}/ready', ['get']],
    ['/v2/models/{model_name}/versions/{model_version}/infer', ['post']],
    ['/v2/models/{model_name}/versions/{model_version}/explain', ['post']],
  ];
  t.deepEqual(Object.keys(doc.paths).sort(), expected.map(([p]) => p).sort());
  for (const [path, methods] of expected) t.deepEqual(Object.keys(doc.paths[path]).sort(), methods.sort(), path);
});

test('GET /api-description serves the same document', async (t) => {
  const [a, b] = await Promise.all([call(`${srv.url}/`, { method: 'OPTIONS' }), call(`${srv.url}/api-description`)]);
  t.is(b.status, 200);
  t.deepEqual(b.json, a.json);
});

test('OPTIONS /predictions/{m} is a valid per-model document naming its versions', async (t) => {
  const r = await call(`${srv.url}/predictions/mnist`, { method: 'OPTIONS' });
  t.is(r.status, 200);
  const doc = r.json as { info: { title: string; description: string }; paths: Record<string, unknown> };
  await t.notThrowsAsync(SwaggerParser.validate(structuredClone(doc) as never));
  t.is(doc.info.title, 'torchd model mnist');
  t.regex(doc.info.description, /versions 1\.0, 2\.0; default version 1\.0/);
  t.deepEqual(Object.keys(doc.paths).sort(), ['/explanations/mnist', '/explanations/mnist/{model_version}', '/predictions/mnist', '/predictions/mnist/{model_version}']);
});

test('OPTIONS /predictions/{unknown} → 404 ModelNotFoundException', async (t) => {
  const r = await call(`${srv.url}/predictions/nope`, { method: 'OPTIONS' });
  t.is(r.status, 404);
  t.deepEqual(r.json, { code: 404, type: 'ModelNotFoundException', message: 'Model not found: nope' });
});

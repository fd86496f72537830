// The spec's error table on the inference listener: exact status, type and message, JSON body,
// x-request-id on every error.
import test from 'ava';
import { call, startTestServer, type TestServer } from './_server.js';

let srv: TestServer;
test.before(async () => {
  srv = await startTestServer(['mnist']);
});
test.after.always(async () => {
  await srv?.close();
});

const cases: [string, string, RequestInit, number, string, string | RegExp][] = [
  ['unknown route', '/nothing/here', {}, 404, 'ResourceNotFoundException', 'Requested resource is not found, please refer to API document.'],
  ['unknown route under /predictions', '/predictions/mnist/1.0/extra', { method: 'POST', body: 'x' }, 404, 'ResourceNotFoundException', 'Requested resource is not found, please refer to API document.'],
  ['unknown model', '/predictions/nope', { method: 'POST', body: 'x' }, 404, 'ModelNotFoundException', 'Model not found: nope'],
  ['unknown version', '/predictions/mnist/9.9', { method: 'PUT', body: 'x' }, 404, 'ModelVersionNotFoundException', 'Model version: 9.9 does not exist for model: mnist'],
  ['GET /', '/', {}, 405, 'MethodNotAllowedException', 'Method GET is not allowed on /; allowed: OPTIONS'],
  ['POST /', '/', { method: 'POST', body: 'x' }, 405, 'MethodNotAllowedException', 'Method POST is not allowed on /; allowed: OPTIONS'],
  ['DELETE /ping', '/ping', { method: 'DELETE' }, 405, 'MethodNotAllowedException', 'Method DELETE is not allowed on /ping; allowed: GET'],
  ['GET /predictions/m', '/predictions/mnist', {}, 405, 'MethodNotAllowedException', /^Method GET is not allowed on \/predictions\/mnist; allowed: POST, PUT, OPTIONS$/],
  ['GET /v1/models/m:predict', '/v1/models/mnist:predict', {}, 405, 'MethodNotAllowedException', /allowed: POST$/],
];

for (const [name, path, init, status, type, message] of cases) {
  test(`${name} → ${status} ${type}`, async (t) => {
    const r = await call(`${srv.url}${path}`, init);
    t.is(r.status, status);
    t.is(r.headers.get('content-type'), 'application/json; charset=utf-8');
    t.truthy(r.headers.get('x-request-id'));
    const body = r.json as { code: number; type: string; message: string };
    t.is(body.code, status);
    t.is(body.type, type);
    if (typeof message === 'string') t.is(body.message, message);
    else t.regex(body.message, message);
  });
}

test('405 carries an Allow header', async (t) => {
  const r = await call(`${srv.url}/`);
  t.is(r.headers.get('allow'), 'OPTIONS');
});

test('the server still serves after every error above', async (t) => {
  const r = await call(`${srv.url}/ping`);
  t.deepEqual(r.json, { status: 'Healthy' });
});

test('unknown model names never become metrics labels', async (t) => {
  await call(`${srv.url}/predictions/no-such-model-xyz`, { method: 'PUT', body: 'x' });
  await call(`${srv.url}/predictions/mnist/7.7`, { method: 'PUT', body: 'x' });
  const text = await (await fetch(`${srv.server.addresses.metrics}/metrics`)).text();
  t.false(text.includes('no-such-model-xyz'));
  t.false(/model_version="7\.7"/.test(text));
});

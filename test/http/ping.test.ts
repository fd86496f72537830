// GET /ping: Healthy while every model's default version has a ready worker, Unhealthy otherwise;
// every response carries x-request-id and a JSON Content-Type.
import test from 'ava';
import { call, startTestServer, type TestServer } from './_server.js';

let srv: TestServer;
let empty: TestServer;
test.before(async () => {
  [srv, empty] = await Promise.all([startTestServer(['mnist']), startTestServer([])]);
});
test.after.always(async () => {
  await Promise.all([srv?.close(), empty?.close()]);
});

test.serial('GET /ping is Healthy with a loaded model', async (t) => {
  const r = await call(`${srv.url}/ping`);
  t.is(r.status, 200);
  t.deepEqual(r.json, { status: 'Healthy' });
  t.is(r.headers.get('content-type'), 'application/json; charset=utf-8');
  t.regex(r.headers.get('x-request-id') ?? '', /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
});

test.serial('the client x-request-id is echoed; a trailing slash is ignored', async (t) => {
  const r = await call(`${srv.url}/ping/`, { headers: { 'x-request-id': 'my-trace-42' } });
  t.is(r.status, 200);
  t.is(r.headers.get('x-request-id'), 'my-trace-42');
});

test.serial('no models → Healthy', async (t) => {
  const r = await call(`${empty.url}/ping`);
  t.is(r.status, 200);
  t.deepEqual(r.json, { status: 'Healthy' });
});

test.serial('a default version without a ready worker → 500 Unhealthy, then Healthy again', async (t) => {
  await srv.server.registry.scale('mnist', undefined, 0, 0);
  const down = await call(`${srv.url}/ping`);
  t.is(down.status, 500);
  t.deepEqual(down.json, { status: 'Unhealthy' });
  await srv.server.registry.scale('mnist', undefined, 1, 1);
  const up = await call(`${srv.url}/ping`);
  t.is(up.status, 200);
  t.deepEqual(up.json, { status: 'Healthy' });
});

// KServe v1 on the inference listener: :predict / :explain envelopes, model list and readiness.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { call, fixture, startTestServer, type TestServer } from './_server.js';

const refs = JSON.parse(readFileSync(fixture('references.json'), 'utf8'));
const b64 = (d: number) => readFileSync(fixture(`images/${d}.png`)).toString('base64');
const jsonInit = (body: unknown): RequestInit => ({
  method: 'POST',
  body: JSON.stringify(body),
  headers: { 'content-type': 'application/json' },
});

let srv: TestServer;
test.before(async () => {
  srv = await startTestServer(['mnist', 'multi_out']);
});
test.after.always(async () => {
  await srv?.close();
});

test(':predict with one base64 instance → {"predictions": [2]}', async (t) => {
  const r = await call(`${srv.url}/v1/models/mnist:predict`, jsonInit({ instances: [{ data: b64(2) }] }));
  t.is(r.status, 200, r.text);
  t.is(r.headers.get('content-type'), 'application/json; charset=utf-8');
  t.deepEqual(r.json, { predictions: [2] });
});

test(':predict with several instances answers in order', async (t) => {
  const r = await call(`${srv.url}/v1/models/mnist:predict`, jsonInit({ instances: [1, 9, 4].map((d) => ({ data: b64(d) })) }));
  t.is(r.status, 200, r.text);
  t.deepEqual(r.json, { predictions: [1, 9, 4] });
});

test(':predict parses the JSON envelope whatever the Content-Type (curl --data sends form-urlencoded)', async (t) => {
  const r = await call(`${srv.url}/v1/models/mnist:predict`, {
    method: 'POST',
    body: JSON.stringify({ instances: [{ data: b64(6) }] }),
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
  });
  t.is(r.status, 200, r.text);
  t.deepEqual(r.json, { predictions: [6] });
});

test(':predict with nested-array instances for a tensor model', async (t) => {
  const r = await call(`${srv.url}/v1/models/multi_out:predict`, jsonInit({ instances: [[1, 2, 3]] }));
  t.is(r.status, 200, r.text);
  const p = (r.json as { predictions: unknown[] }).predictions;
  t.is(p.length, 1);
});

test(':explain → {"explanations": [[1][28][28]]} equal to the IG reference', async (t) => {
  const ig = refs.mnist_ig;
  const r = await call(`${srv.url}/v1/models/mnist:explain`, jsonInit({ instances: [{ data: readFileSync(fixture(`images/${ig.image}`)).toString('base64') }] }));
  t.is(r.status, 200, r.text);
  const e = (r.json as { explanations: number[][][][] }).explanations;
  t.is(e.length, 1);
  t.is(e[0].length, 1);
  t.is(e[0][0].length, 28);
  t.is(e[0][0][0].length, 28);
  for (let i = 0; i < 28; i++) {
    for (let j = 0; j < 28; j++) {
      const want = ig.attributions[0][i][j];
      t.true(Math.abs(e[0][0][i][j] - want) <= 1e-4 + 1e-3 * Math.abs(want));
    }
  }
});

test(':explain honours a per-instance target', async (t) => {
  const ig = refs.mnist_ig;
  const r = await call(`${srv.url}/v1/models/mnist:explain`, jsonInit({
    instances: [{ data: readFileSync(fixture(`images/${ig.image}`)).toString('base64'), target: ig.target7_steps8.target }],
  }));
  t.is(r.status, 200, r.text);
  const sum = (r.json as { explanations: number[][][][] }).explanations[0].flat(2).reduce((a, b) => a + b, 0);
  // Completeness: the sum tracks F(x)_target − F(0)_target, so target 7's sum is far from target 3's (22.9).
  t.true(Math.abs(sum - ig.sum) > 1, `sum ${sum} should differ from target ${ig.target}'s ${ig.sum}`);
});

test('GET /v1/models lists names; GET /v1/models/{m} gives readiness', async (t) => {
  const list = await call(`${srv.url}/v1/models`);
  t.is(list.status, 200);
  t.deepEqual((list.json as { models: string[] }).models.sort(), ['mnist', 'multi_out']);
  const one = await call(`${srv.url}/v1/models/mnist`);
  t.is(one.status, 200);
  t.deepEqual(one.json, { name: 'mnist', ready: true });
});

test('KServe v1 errors: unknown model, malformed JSON, missing instances, empty body, unknown verb', async (t) => {
  const unknown = await call(`${srv.url}/v1/models/nope:predict`, jsonInit({ instances: [] }));
  t.is(unknown.status, 404);
  t.deepEqual(unknown.json, { code: 404, type: 'ModelNotFoundException', message: 'Model not found: nope' });
  const ready = await call(`${srv.url}/v1/models/nope`);
  t.is(ready.status, 404);
  t.is((ready.json as { type: string }).type, 'ModelNotFoundException');
  const malformed = await call(`${srv.url}/v1/models/mnist:predict`, { method: 'POST', body: '{"instances": [', headers: { 'content-type': 'application/json' } });
  t.is(malformed.status, 400);
  t.is((malformed.json as { type: string }).type, 'BadRequestException');
  t.regex((malformed.json as { message: string }).message, /^Malformed JSON body/);
  const noInstances = await call(`${srv.url}/v1/models/mnist:predict`, jsonInit({ inputs: [] }));
  t.is(noInstances.status, 400);
  t.is((noInstances.json as { type: string }).type, 'BadRequestException');
  const empty = await call(`${srv.url}/v1/models/mnist:predict`, { method: 'POST', headers: { 'content-type': 'application/json' } });
  t.is(empty.status, 400);
  t.is((empty.json as { type: string }).type, 'BadRequestException');
  const verb = await call(`${srv.url}/v1/models/mnist:train`, jsonInit({ instances: [] }));
  t.is(verb.status, 405);
  t.is((verb.json as { type: string }).type, 'MethodNotAllowedException');
});

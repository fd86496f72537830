// /predictions/{model}[/{version}] with every body form, over real HTTP against real TorchScript
// models: the digit CNN (two versions that answer differently), ResNet-18 vs torchvision, tensor models.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { call, fixture, startTestServer, type TestServer } from './_server.js';

const refs = JSON.parse(readFileSync(fixture('references.json'), 'utf8'));
const digit = (d: number) => readFileSync(fixture(`images/${d}.png`));
const v1 = (d: number): number => refs.mnist.predictions_v1[`${d}.png`];
const v2 = (d: number): number => refs.mnist.predictions_v2[`${d}.png`];

let srv: TestServer;
test.before(async () => {
  srv = await startTestServer(['mnist', 'mnist-v2', 'resnet-18', 'add2', 'multi_out']);
});
test.after.always(async () => {
  await srv?.close();
});

function form(...parts: [string, Buffer, string, string?][]): FormData {
  const f = new FormData();
  for (const [name, data, type, filename] of parts) f.append(name, new Blob([new Uint8Array(data)], { type }), filename ?? `${name}.bin`);
  return f;
}

test('every digit PNG predicts its digit (PUT without Content-Type, as curl -T)', async (t) => {
  for (let d = 0; d < 10; d++) {
    const r = await call(`${srv.url}/predictions/mnist`, { method: 'PUT', body: digit(d) });
    t.is(r.status, 200, r.text);
    t.is(r.headers.get('content-type'), 'application/json; charset=utf-8');
    t.is(r.json, d, `${d}.png`);
    t.is(r.json, v1(d));
  }
});

test('POST raw bytes with image/png and application/octet-stream', async (t) => {
  for (const type of ['image/png', 'application/octet-stream']) {
    const r = await call(`${srv.url}/predictions/mnist`, { method: 'POST', body: digit(4), headers: { 'content-type': type } });
    t.is(r.status, 200, r.text);
    t.is(r.json, 4);
  }
});

test('multipart -F data=@file', async (t) => {
  const r = await call(`${srv.url}/predictions/mnist`, { method: 'POST', body: form(['data', digit(7), 'image/png', '7.png']) });
  t.is(r.status, 200, r.text);
  t.is(r.json, 7);
});

test("a multipart file part without Content-Type (Python requests' files=) is read as the image it is", async (t) => {
  // RFC 7578 makes such a part text/plain; requests.post(files={'data': open(f, 'rb')}) sends image files so.
  const boundary = 'b9ed0b6b285123e850b4e1223fd0b68f';
  const body = Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="data"; filename="6.png"\r\n\r\n`),
    digit(6),
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  const r = await call(`${srv.url}/predictions/mnist`, { method: 'POST', body, headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } });
  t.is(r.status, 200, r.text);
  t.is(r.json, 6);
  // Base64 text in such a part still decodes as before.
  const b64 = Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="data"\r\n\r\n`),
    Buffer.from(digit(2).toString('base64')),
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  const r2 = await call(`${srv.url}/predictions/mnist`, { method: 'POST', body: b64, headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } });
  t.is(r2.json, 2, r2.text);
});

test('two -F parts to a one-input model → one result per part, in order', async (t) => {
  const r = await call(`${srv.url}/predictions/mnist`, {
    method: 'POST',
    body: form(['data', digit(3), 'image/png', '3.png'], ['data', digit(8), 'image/png', '8.png']),
  });
  t.is(r.status, 200, r.text);
  t.deepEqual(r.json, [3, 8]);
});

test('JSON {"data": "<base64>"}, text/plain base64 and a urlencoded field', async (t) => {
  const b64 = digit(5).toString('base64');
  const json = await call(`${srv.url}/predictions/mnist`, {
    method: 'POST',
    body: JSON.stringify({ data: b64 }),
    headers: { 'content-type': 'application/json' },
  });
  t.is(json.status, 200, json.text);
  t.is(json.json, 5);
  const text = await call(`${srv.url}/predictions/mnist`, { method: 'POST', body: b64, headers: { 'content-type': 'text/plain' } });
  t.is(text.status, 200, text.text);
  t.is(text.json, 5);
  const urlencoded = await call(`${srv.url}/predictions/mnist`, { method: 'POST', body: new URLSearchParams({ data: b64 }) });
  t.is(urlencoded.status, 200, urlencoded.text);
  t.is(urlencoded.json, 5);
});

test('versions 1.0 and 2.0 answer differently; the first loaded is the default', async (t) => {
  for (const d of [0, 6, 9]) {
    const [dflt, one, two] = await Promise.all(
      ['', '/1.0', '/2.0'].map((v) => call(`${srv.url}/predictions/mnist${v}`, { method: 'PUT', body: digit(d) })),
    );
    t.is(one.json, v1(d));
    t.is(two.json, v2(d));
    t.not(one.json, two.json);
    t.is(dflt.json, one.json);
  }
});

test('a trailing slash is ignored, with and without a version', async (t) => {
  t.is((await call(`${srv.url}/predictions/mnist/`, { method: 'PUT', body: digit(2) })).json, 2);
  t.is((await call(`${srv.url}/predictions/mnist/2.0/`, { method: 'PUT', body: digit(2) })).json, v2(2));
});

for (const image of ['sample.jpg', 'sample.png', 'sample.webp', 'sample.gif', 'sample.tiff', 'sample_exif6.jpg']) {
  test(`resnet-18 top-5 of ${image} equals torchvision within 5% relative`, async (t) => {
    const r = await call(`${srv.url}/predictions/resnet-18`, { method: 'PUT', body: readFileSync(fixture(image)) });
    t.is(r.status, 200, r.text);
    const got = Object.entries(r.json as Record<string, number>);
    const want = refs.resnet18.top5[image] as { label: string; probability: number }[];
    t.is(got.length, 5);
    t.is(got[0][0], want[0].label, 'same top-1 label');
    for (let i = 1; i < got.length; i++) t.true(got[i - 1][1] >= got[i][1], 'descending order');
    const byLabel = new Map(got);
    for (const w of want) {
      const p = byLabel.get(w.label);
      t.not(p, undefined, `${w.label} in the top-5`);
      t.true(Math.abs(p! - w.probability) <= 0.05 * w.probability, `${w.label}: ${p} vs ${w.probability}`);
    }
  });
}

test('tensor handler: JSON nested arrays through a tuple+dict output', async (t) => {
  const r = await call(`${srv.url}/predictions/multi_out`, {
    method: 'POST',
    body: JSON.stringify([[1, 2, 3], [4, -5, 6]]),
    headers: { 'content-type': 'application/json' },
  });
  t.is(r.status, 200, r.text);
  t.deepEqual(r.json, [[[2, 4, 6], [8, -10, 12]], { sum: [6, 5], max: [3, 6] }]);
});

test('tensor handler: raw little-endian bytes with ?shape=&dtype=', async (t) => {
  const x = new Float32Array([0.5, 1.5, -2]);
  const r = await call(`${srv.url}/predictions/multi_out?shape=1,3&dtype=float32`, {
    method: 'PUT',
    body: Buffer.from(x.buffer),
  });
  t.is(r.status, 200, r.text);
  t.deepEqual(r.json, [[[1, 3, -4]], { sum: [0], max: [1.5] }]);
});

test('two parts to a two-argument model are its arguments, matched by name', async (t) => {
  const a = JSON.stringify([[1, 2]]);
  const b = JSON.stringify([[10, 20]]);
  // Given in the reverse order: names decide, not position.
  const r = await call(`${srv.url}/predictions/add2`, {
    method: 'POST',
    body: form(['b', Buffer.from(b), 'application/json'], ['a', Buffer.from(a), 'application/json']),
  });
  t.is(r.status, 200, r.text);
  t.deepEqual(r.json, [[11, 22]]);
});

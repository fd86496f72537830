// Explanations as pictures: /explanations and /v1/models/{m}:explain answer PNG heatmaps when asked
// (`Accept: image/png` or `?format=png`; `?overlay=false`), one PNG for one input, a JSON list of PNG data URLs
// for several; the JSON answers are unchanged. Real server, real models (digit CNN; the image classifier).
import test from 'ava';
import { readFileSync } from 'node:fs';
import sharp from 'sharp';
import { call, fixture, startTestServer, type TestServer } from './_server.js';

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const refs = JSON.parse(readFileSync(fixture('references.json'), 'utf8'));
const digit = (d: number) => readFileSync(fixture(`images/${d}.png`));

let srv: TestServer;
test.before(async () => {
  srv = await startTestServer(['mnist', 'resnet-18', 'add2']);
});
test.after.always(async () => {
  await srv?.close();
});

async function fetchBytes(url: string, init: RequestInit = {}): Promise<{ status: number; type: string | null; body: Buffer }> {
  const res = await fetch(url, init);
  return { status: res.status, type: res.headers.get('content-type'), body: Buffer.from(await res.arrayBuffer()) };
}

async function rgbAt(png: Buffer, x: number, y: number): Promise<number[]> {
  const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  const at = (y * info.width + x) * info.channels;
  return [...data.subarray(at, at + 3)];
}

test('Accept: image/png → one PNG of the model input size (28×28), pixels changed where |attribution| is largest', async (t) => {
  const r = await fetchBytes(`${srv.url}/explanations/mnist`, { method: 'PUT', body: digit(3), headers: { accept: 'image/png' } });
  t.is(r.status, 200, r.body.toString());
  t.is(r.type, 'image/png');
  t.deepEqual(r.body.subarray(0, 8), PNG_SIGNATURE);
  const meta = await sharp(r.body).metadata();
  t.deepEqual([meta.format, meta.width, meta.height], ['png', 28, 28]);
  // The reference attributions of 3.png (same model, target, steps): where |attribution| peaks, the picture is not
  // the plain grey input any more; where the attribution is 0 (the black border), it is.
  const attr: number[][] = refs.mnist_ig.attributions[0];
  let best = [0, 0];
  attr.forEach((row, y) => row.forEach((v, x) => { if (Math.abs(v) > Math.abs(attr[best[1]][best[0]])) best = [x, y]; }));
  const plain = (x: number, y: number) => { const v = readFileSync(fixture('images/3.png')); return sharp(v).raw().toBuffer().then((d) => d[y * 28 + x]); };
  const [bx, by] = best;
  const hot = await rgbAt(r.body, bx, by);
  const grey = await plain(bx, by);
  t.true(hot.some((c) => Math.abs(c - grey) > 40), `(${bx}, ${by}): ${hot} vs plain ${grey}`);
  t.true(attr[best[1]][best[0]] > 0 ? hot[0] > hot[2] : hot[2] > hot[0], 'red for, blue against');
  // The corner's attribution is ≈ 0.4 % of the 99th percentile: its colour is all but transparent, the black shows.
  t.true((await rgbAt(r.body, 0, 0)).every((c) => c <= 3), 'near-zero attribution on a black pixel: the input shows');
});

test('?format=png on a 224×224 image model; ?overlay=false gives the colour map alone', async (t) => {
  const photo = readFileSync(fixture('sample.jpg'));
  const over = await fetchBytes(`${srv.url}/explanations/resnet-18?format=png&n_steps=4`, { method: 'PUT', body: photo });
  t.is(over.status, 200, over.body.toString());
  t.is(over.type, 'image/png');
  const meta = await sharp(over.body).metadata();
  t.deepEqual([meta.width, meta.height], [224, 224]);
  const bare = await fetchBytes(`${srv.url}/explanations/resnet-18?format=png&overlay=false&n_steps=4`, { method: 'PUT', body: photo });
  t.is(bare.status, 200);
  t.notDeepEqual(bare.body, over.body);
  // Without the photo, weak attributions are the map's near-white (247) rather than the photo's colours.
  const { data } = await sharp(bare.body).raw().toBuffer({ resolveWithObject: true });
  let light = 0;
  for (let i = 0; i < data.length; i += 3) if (data[i] > 200 && data[i + 1] > 200 && data[i + 2] > 200) light++;
  t.true(light > 0.1 * 224 * 224, `${light} near-white pixels`);
});

test('several inputs → a JSON list of PNG data URLs, one per input, in order', async (t) => {
  const f = new FormData();
  for (const d of [1, 7]) f.append('data', new Blob([new Uint8Array(digit(d))], { type: 'image/png' }), `${d}.png`);
  const r = await call(`${srv.url}/explanations/mnist?format=png`, { method: 'POST', body: f });
  t.is(r.status, 200, r.text);
  t.is(r.headers.get('content-type'), 'application/json; charset=utf-8');
  const urls = r.json as string[];
  t.is(urls.length, 2);
  for (const url of urls) {
    t.regex(url, /^data:image\/png;base64,/);
    const png = Buffer.from(url.slice('data:image/png;base64,'.length), 'base64');
    t.deepEqual(png.subarray(0, 8), PNG_SIGNATURE);
    t.deepEqual([(await sharp(png).metadata()).width, (await sharp(png).metadata()).height], [28, 28]);
  }
  t.notDeepEqual(urls[0], urls[1]);
});

test('KServe v1 :explain: one instance → PNG when asked; several → {"explanations": [data URLs]}', async (t) => {
  const one = JSON.stringify({ instances: [{ data: digit(2).toString('base64') }] });
  const r = await fetchBytes(`${srv.url}/v1/models/mnist:explain`, { method: 'POST', body: one, headers: { 'content-type': 'application/json', accept: 'image/png' } });
  t.is(r.status, 200, r.body.toString());
  t.is(r.type, 'image/png');
  t.deepEqual(r.body.subarray(0, 8), PNG_SIGNATURE);
  const two = JSON.stringify({ instances: [{ data: digit(2).toString('base64') }, { data: digit(5).toString('base64') }] });
  const r2 = await call(`${srv.url}/v1/models/mnist:explain?format=png`, { method: 'POST', body: two, headers: { 'content-type': 'application/json' } });
  t.is(r2.status, 200, r2.text);
  const body = r2.json as { explanations: string[] };
  t.is(body.explanations.length, 2);
  t.true(body.explanations.every((u) => u.startsWith('data:image/png;base64,')));
});

test('the JSON path is unchanged: no Accept, Accept: application/json, or */* answer the attributions as before', async (t) => {
  const plain = await call(`${srv.url}/explanations/mnist`, { method: 'PUT', body: digit(3) });
  t.is(plain.status, 200);
  t.is(plain.headers.get('content-type'), 'application/json; charset=utf-8');
  const attr = plain.json as number[][][];
  t.deepEqual([attr.length, attr[0].length, attr[0][0].length], [1, 28, 28]);
  for (const accept of ['application/json', '*/*', 'application/json, image/png;q=0.5']) {
    const r = await call(`${srv.url}/explanations/mnist`, { method: 'PUT', body: digit(3), headers: { accept } });
    t.is(r.headers.get('content-type'), 'application/json; charset=utf-8', accept);
    t.deepEqual(r.json, plain.json, accept);
  }
  const json = await call(`${srv.url}/explanations/mnist?format=json`, { method: 'PUT', body: digit(3), headers: { accept: 'image/png' } });
  t.deepEqual(json.json, plain.json, '?format=json wins over Accept');
});

test('bad format / overlay values, and heatmaps of a model without image input, are 400s', async (t) => {
  const bad = await call(`${srv.url}/explanations/mnist?format=gif`, { method: 'PUT', body: digit(3) });
  t.is(bad.status, 400);
  t.is((bad.json as { message: string }).message, 'format must be json or png, got "gif"');
  const overlay = await call(`${srv.url}/explanations/mnist?format=png&overlay=maybe`, { method: 'PUT', body: digit(3) });
  t.is(overlay.status, 400);
  t.is((overlay.json as { message: string }).message, 'overlay must be true or false, got "maybe"');
  const f = new FormData();
  f.append('a', new Blob(['[[1, 2]]'], { type: 'application/json' }), 'a.json');
  f.append('b', new Blob(['[[10, 20]]'], { type: 'application/json' }), 'b.json');
  const tensors = await call(`${srv.url}/explanations/add2?format=png`, { method: 'POST', body: f });
  t.is(tensors.status, 400, tensors.text);
  t.is((tensors.json as { message: string }).message,
    "A heatmap needs an image model's explanation: model add2 uses the tensor handler; ask for JSON attributions (no ?format=png, no Accept: image/png)");
});

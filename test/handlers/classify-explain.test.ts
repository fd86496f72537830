// image_classifier end to end over real TorchScript (mnist.pt, mnist_v2.pt, ResNet-18): predictions against the
// fixture references, several parts, output modes, explanations against the Python IG reference, KServe v1.
import test from 'ava';
import { BadRequestError } from '../../src/errors.js';
import * as handlers from '../../src/handlers/index.js';
import { ImageClassifierHandler } from '../../src/handlers/index.js';
import type { InputPart } from '../../src/handlers/index.js';
import type { Stage } from '../../src/metrics/types.js';
import { IMAGENET, MNIST, ensureResnet, explain, fx, kserveV1Explain, kserveV1Predict, modelVersion, predict, readFx, references, type TestModelVersion } from './helpers.js';

const png = (d: number, name = 'data'): InputPart => ({ name, contentType: 'image/png', data: readFx(`images/${d}.png`) });
let mnist: TestModelVersion;
let mnist2: TestModelVersion;
let resnet: TestModelVersion;

test.before(async () => {
  mnist = await modelVersion(fx('mnist.pt'), MNIST);
  mnist2 = await modelVersion(fx('mnist_v2.pt'), MNIST, undefined, '2.0');
  const labels = Object.fromEntries(Object.entries(JSON.parse(readFx('index_to_name.json').toString()) as Record<string, string[]>).map(([k, v]) => [k, v[1]]));
  resnet = await modelVersion(ensureResnet(), IMAGENET, labels);
});
test.after.always(async () => {
  await Promise.all([mnist, mnist2, resnet].filter(Boolean).map((m) => m.model.dispose()));
});

test('every digit PNG predicts its digit (bare integer); version 2.0 answers (d + 1) % 10', async (t) => {
  for (let d = 0; d < 10; d++) {
    t.is(await predict(mnist, [png(d)], { query: {} }), references.mnist.predictions_v1[`${d}.png`]);
    t.is(await predict(mnist2, [png(d)], { query: {} }), references.mnist.predictions_v2[`${d}.png`]);
  }
});

test('several parts to a one-input model → one result per part, in order, all sent concurrently', async (t) => {
  const own = await modelVersion(fx('mnist.pt'), MNIST); // its own call counter: tests in a file run concurrently
  t.teardown(() => own.model.dispose());
  t.deepEqual(await predict(own, [png(7, 'a'), png(2, 'b'), png(9, 'c')], { query: {} }), [7, 2, 9]);
  t.is(own.calls.infer, 3);
});

test('base64 text, JSON {"data": base64}, and a data: URL are images too', async (t) => {
  const b64 = readFx('images/4.png').toString('base64');
  t.is(await predict(mnist, [{ name: 'data', contentType: 'text/plain', data: Buffer.from(b64) }], { query: {} }), 4);
  t.is(await predict(mnist, [{ name: 'body', json: { data: b64 } }], { query: {} }), 4);
  t.is(await predict(mnist, [{ name: 'body', json: `data:image/png;base64,${b64}` }], { query: {} }), 4);
  await t.throwsAsync(predict(mnist, [{ name: 'data', contentType: 'text/plain', data: Buffer.from('not base64 !!') }], { query: {} }), {
    instanceOf: BadRequestError, message: 'Image text is not valid base64: expected JPEG, PNG, WebP, GIF or TIFF bytes, base64-encoded',
  });
  await t.throwsAsync(predict(mnist, [{ name: 'body', json: { instances: [] } }], { query: {} }), {
    instanceOf: BadRequestError, message: 'Expected an image: raw bytes, base64 text, or JSON {"data": "<base64 image>"}',
  });
});

test('output modes: logits equal the reference, probabilities sum to 1, top-k ordered', async (t) => {
  const modes = (output: 'logits' | 'probabilities' | 'topk') => ({ ...mnist, spec: { ...mnist.spec, handler: { ...MNIST, output, topk: 3 } } });
  const logits = (await predict(modes('logits'), [png(5)], { query: {} })) as number[];
  references.mnist.logits_v1['5.png'].forEach((v: number, i: number) => t.true(Math.abs(logits[i] - v) < 1e-4));
  const probs = (await predict(modes('probabilities'), [png(5)], { query: {} })) as number[];
  t.true(Math.abs(probs.reduce((a, b) => a + b, 0) - 1) < 1e-9);
  const top = (await predict(modes('topk'), [png(5)], { query: {} })) as handlers.OrderedJson;
  t.is(top.entries.length, 3);
  t.is(top.entries[0][0], '5');
  // Integer-like keys keep descending order in the serialized body (a plain object would sort them).
  const text = await handlers.serializeJson(top);
  t.deepEqual(Object.keys(JSON.parse(text)).length, 3);
  t.true(text.startsWith('{"5":'), text);
  t.true((top.entries[0][1] as number) >= (top.entries[1][1] as number));
});

test('ResNet-18 top-5 for sample.jpg equals the PyTorch reference within 5% relative, same order and labels', async (t) => {
  const metrics: [Stage, number][] = [];
  const body = (await predict(resnet, [{ name: 'body', data: readFx('sample.jpg') }], {
    query: {}, metrics: { request() {}, batch() {}, stage: (_m, _v, stage, ms) => metrics.push([stage, ms]) },
  })) as handlers.OrderedJson;
  const ref = references.resnet18.top5['sample.jpg'] as { label: string; probability: number }[];
  t.deepEqual(body.entries.map(([k]) => k), ref.map((r) => r.label));
  body.entries.forEach(([, p], i) => t.true(Math.abs((p as number) / ref[i].probability - 1) < 0.05, `${ref[i].label}`));
  t.deepEqual(metrics.map(([s]) => s).sort(), ['postprocess', 'preprocess']);
  t.true(metrics.every(([, ms]) => ms >= 0));
});

test('ResNet-18 top-1 for every decoded format equals the reference', async (t) => {
  for (const name of ['sample.png', 'sample.webp', 'sample.gif', 'sample.tiff', 'sample_exif6.jpg']) {
    const body = (await predict(resnet, [{ name: 'body', data: readFx(name) }], { query: {} })) as handlers.OrderedJson;
    t.is(body.entries[0][0], references.resnet18.top5[name][0].label, name);
  }
});

function maxAbsDiff(a: unknown, b: unknown): number {
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) return Infinity;
    return a.reduce((m: number, x, i) => Math.max(m, maxAbsDiff(x, b[i])), 0);
  }
  return Math.abs((a as number) - (b as number));
}

test('explanations: [1][28][28] attributions equal the Python IG reference (15 Gauss–Legendre steps, target = argmax)', async (t) => {
  const ref = references.mnist_ig;
  const attr = (await explain(mnist, [png(3)], { query: {} })) as number[][][];
  t.is(attr.length, 1);
  t.is(attr[0].length, 28);
  t.is(attr[0][0].length, 28);
  t.true(maxAbsDiff(attr, ref.attributions) < 1e-4, `max diff ${maxAbsDiff(attr, ref.attributions)}`);
  // target / n_steps from form fields (parameters, not inputs) and from the query string.
  const r7 = ref.target7_steps8;
  const field = (name: string, v: string): InputPart => ({ name, contentType: 'text/plain', data: Buffer.from(v) });
  const a7 = await explain(mnist, [png(3), field('target', '7'), field('n_steps', '8')], { query: {} });
  t.true(maxAbsDiff(a7, r7.attributions) < 1e-4);
  const q7 = await explain(mnist, [png(3)], { query: { target: '7', n_steps: '8' } });
  t.true(maxAbsDiff(q7, r7.attributions) < 1e-4);
  const text = await handlers.serializeJson(attr);
  t.deepEqual(JSON.parse(text), attr);
});

const badParams: [Record<string, string>, string][] = [
  [{ n_steps: '0' }, 'n_steps must be an integer from 1 to 1024 (max_ig_steps), got "0"'],
  [{ n_steps: 'many' }, 'n_steps must be an integer from 1 to 1024 (max_ig_steps), got "many"'],
  [{ target: '-1' }, 'target must be a non-negative integer class index, got "-1"'],
  [{ target: '10' }, 'target 10 is out of range: the model has 10 classes (0..9)'],
];
for (const [query, message] of badParams) {
  test(`explain refuses ${JSON.stringify(query)}`, async (t) => {
    await t.throwsAsync(explain(mnist, [png(3)], { query }), { instanceOf: BadRequestError, message });
  });
}

test('KServe v1: predictions per instance; explanations with per-instance target', async (t) => {
  const b64 = (d: number) => readFx(`images/${d}.png`).toString('base64');
  t.deepEqual(await kserveV1Predict(mnist, { instances: [{ data: b64(2) }, { data: b64(8) }] }, { query: {} }), { predictions: [2, 8] });
  const { explanations } = await kserveV1Explain(mnist, { instances: [{ data: b64(3) }, { data: b64(3), target: 7 }] }, { query: {} });
  t.is(explanations.length, 2);
  t.true(maxAbsDiff(explanations[0], references.mnist_ig.attributions) < 1e-4);
  t.is((explanations[1] as number[][][])[0].length, 28);
  await t.throwsAsync(kserveV1Predict(mnist, { inputs: [] }, { query: {} }), {
    instanceOf: BadRequestError, message: 'Expected a KServe v1 body {"instances": [...]} with at least one instance',
  });
});

test('the image_classifier handler object decodes a part and post-processes a forward (as the service does)', async (t) => {
  const handler = new ImageClassifierHandler({ name: 'mnist', handler: MNIST, argumentNames: mnist.info.inputs });
  const limits = { maxImagePixels: 1e6, maxJsonDepth: 64, maxElements: 10_000, allowNonFinite: false };
  const [example] = handler.partExamples([png(6)], { limits });
  const args = await example.decode();
  t.deepEqual(args[0].shape, [1, 1, 28, 28]);
  t.is(handler.row(await mnist.model.forward(args)), 6);
});

// KServe v2 / Open Inference Protocol over real HTTP with real TorchScript models: every route, JSON and
// binary tensors giving the same outputs, the 400s, and the MNIST-style request predicting its digit.
import test from 'ava';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { v2Router } from '../../src/http/v2/index.js';
import { viewOf } from '../../src/http/v2/codec.js';
import { imageToTensor } from '../../src/handlers/image.js';
import { createModelStore } from '../../src/store/index.js';
import { runArchive } from '../../src/archiver/index.js';
import { HERE, MODELS, bareApp, json, listen, makeEnv, type Env } from '../fixtures/v2/servers.js';

const reference = JSON.parse(await readFile(join(HERE, 'reference.json'), 'utf8')).two_inputs;
const references = JSON.parse(await readFile(join(MODELS, 'references.json'), 'utf8'));

interface Ctx {
  env: Env;
  url: string;
}

/** Registers adder (two_inputs.pt, tensor), echo (echo.pt, tensor) and digits (MNIST, argmax) in a fresh store. */
async function start(t: { teardown(fn: () => Promise<void>): void }, extra = {}): Promise<Ctx> {
  const env = await makeEnv({ maxRequestSize: 64 * 1024 * 1024, ...extra });
  t.teardown(env.cleanup);
  const store = createModelStore(env.store);
  await runArchive({ modelName: 'adder', version: '1.0', serializedFile: join(HERE, 'two_inputs.pt'), handler: 'tensor', exportPath: env.store });
  await runArchive({ modelName: 'echo', version: '1.0', serializedFile: join(HERE, 'echo.pt'), handler: 'tensor', exportPath: env.store });
  await runArchive({
    modelName: 'digits', version: '1.0', serializedFile: join(MODELS, 'mnist.pt'), handler: 'image_classifier',
    config: join(MODELS, 'mnist-config.yaml'), exportPath: env.store,
  });
  for (const m of ['adder', 'echo', 'digits']) await env.registry.register(await store.load(`${m}.mar`), {});
  const server = await listen(bareApp({ '/v2': v2Router(env.deps) }, env.deps.config.maxRequestSize));
  t.teardown(server.close);
  return { env, url: server.url };
}

async function post(url: string, body: Buffer | object, headers: Record<string, string> = {}) {
  const r = await fetch(url, { method: 'POST', body: Buffer.isBuffer(body) ? new Uint8Array(body) : JSON.stringify(body), headers });
  const raw = Buffer.from(await r.arrayBuffer());
  return { status: r.status, headers: r.headers, raw };
}

/** Decode a (possibly binary) v2 response into outputs with plain number arrays. */
function decodeResponse(raw: Buffer, headerLength: string | null) {
  const n = headerLength === null ? raw.length : Number(headerLength);
  const head = JSON.parse(raw.subarray(0, n).toString());
  let off = n;
  for (const o of head.outputs ?? []) {
    const size = o.parameters?.binary_data_size;
    if (size === undefined) continue;
    const dtype = ({ FP32: 'float32', FP64: 'float64', INT64: 'int64', INT32: 'int32', UINT8: 'uint8', BOOL: 'bool', FP16: 'float16' } as const)[o.datatype as 'FP32'];
    const bytes = Buffer.from(raw.subarray(off, off + size)); // copy: aligned for the view
    off += size;
    o.raw = bytes;
    o.data = Array.from(viewOf(dtype, bytes) as ArrayLike<number | bigint>, (v) => (typeof v === 'bigint' ? Number(v) : v));
  }
  t_assertConsumed(off, raw.length);
  return head;
}

function t_assertConsumed(off: number, length: number): void {
  if (off !== length) throw new Error(`binary response has ${length - off} unread bytes`);
}

function binaryRequest(header: object, tails: Buffer[]): { body: Buffer; headers: Record<string, string> } {
  const h = Buffer.from(JSON.stringify(header));
  return { body: Buffer.concat([h, ...tails]), headers: { 'Inference-Header-Content-Length': String(h.length), 'Content-Type': 'application/octet-stream' } };
}

const close = (a: number[], b: number[], tol = 1e-5) => a.length === b.length && a.every((v, i) => Math.abs(v - b[i]) <= tol);

test('server metadata, liveness and readiness', async (t) => {
  const c = await start(t);
  const meta = await fetch(`${c.url}/v2`);
  t.is(meta.status, 200);
  t.is(meta.headers.get('content-type'), 'application/json; charset=utf-8');
  const body = await json(meta);
  t.is(body.name, 'torchd');
  t.regex(body.version, /^\d+\.\d+\.\d+/);
  t.deepEqual(body.extensions, ['binary_tensor_data']);
  t.deepEqual(await json(await fetch(`${c.url}/v2/health/live`)), { live: true });
  const ready = await fetch(`${c.url}/v2/health/ready`);
  t.is(ready.status, 200);
  t.deepEqual(await json(ready), { ready: true });
  // A default version with no workers makes the server not ready.
  await c.env.registry.scale('echo', undefined, 0, 0);
  const notReady = await fetch(`${c.url}/v2/health/ready`);
  t.is(notReady.status, 503);
  t.deepEqual(await json(notReady), { ready: false });
  const modelReady = await fetch(`${c.url}/v2/models/echo/ready`);
  t.is(modelReady.status, 503);
  t.deepEqual(await json(modelReady), { name: 'echo', ready: false });
  await c.env.registry.scale('echo', undefined, 1, 1);
  t.deepEqual(await json(await fetch(`${c.url}/v2/models/echo/versions/1.0/ready`)), { name: 'echo', ready: true });
  const wrong = await fetch(`${c.url}/v2/health/live`, { method: 'POST' });
  t.is(wrong.status, 405);
  t.is((await json(wrong)).type, 'MethodNotAllowedException');
});

test('model metadata: forward argument names, image models as BYTES → INT64, outputs once seen; 404s', async (t) => {
  const c = await start(t);
  const adder = await json(await fetch(`${c.url}/v2/models/adder`));
  t.deepEqual(adder, {
    name: 'adder', versions: ['1.0'], platform: 'pytorch_torchscript',
    inputs: [{ name: 'x', datatype: 'FP32', shape: [-1] }, { name: 'y', datatype: 'FP32', shape: [-1] }],
    outputs: [],
    // Which module forward runs: checked on the first request, as the model declares no inputs to warm up with.
    parameters: { forward_module: 'pending' },
  });
  const digits = await json(await fetch(`${c.url}/v2/models/digits/versions/1.0`));
  t.deepEqual(digits.outputs, [{ name: 'output0', datatype: 'INT64', shape: [-1] }]);
  t.is(digits.inputs[0].datatype, 'BYTES');
  // After one request the real datatypes and shapes (batch dimension open) are reported.
  await post(`${c.url}/v2/models/adder/infer`, { inputs: [{ name: 'x', shape: [2, 3], datatype: 'FP32', data: reference.x }, { name: 'y', shape: [2, 3], datatype: 'FP32', data: reference.y }] });
  const seen = await json(await fetch(`${c.url}/v2/models/adder`));
  t.deepEqual(seen.outputs, [{ name: 'output0', datatype: 'FP32', shape: [-1, 3] }, { name: 'output1', datatype: 'FP32', shape: [-1] }]);
  t.deepEqual(seen.inputs[1], { name: 'y', datatype: 'FP32', shape: [-1, 3] });
  t.deepEqual(seen.parameters, { forward_module: 'optimized' });

  const nf = await fetch(`${c.url}/v2/models/nope`);
  t.is(nf.status, 404);
  t.deepEqual(await json(nf), { code: 404, type: 'ModelNotFoundException', message: 'Model not found: nope' });
  const nv = await fetch(`${c.url}/v2/models/adder/versions/9/ready`);
  t.deepEqual(await json(nv), { code: 404, type: 'ModelVersionNotFoundException', message: 'Model version: 9 does not exist for model: adder' });
  const ni = await post(`${c.url}/v2/models/nope/infer`, { inputs: [] });
  t.is(ni.status, 404);
});

test('JSON and binary requests give the same outputs, matching PyTorch; id is echoed', async (t) => {
  const c = await start(t);
  const expected0 = reference.output0;
  const expected1 = reference.output1;
  const jsonReq = await post(`${c.url}/v2/models/adder/infer`, {
    id: 'req-42',
    inputs: [
      { name: 'x', shape: [2, 3], datatype: 'FP32', data: [reference.x.slice(0, 3), reference.x.slice(3)] },
      { name: 'y', shape: [2, 3], datatype: 'FP32', data: reference.y },
    ],
  });
  t.is(jsonReq.status, 200);
  t.is(jsonReq.headers.get('content-type'), 'application/json; charset=utf-8');
  const a = JSON.parse(jsonReq.raw.toString());
  t.is(a.id, 'req-42');
  t.is(a.model_name, 'adder');
  t.is(a.model_version, '1.0');
  t.deepEqual(a.outputs.map((o: any) => [o.name, o.datatype, o.shape]), [['output0', 'FP32', reference.output0_shape], ['output1', 'FP32', reference.output1_shape]]);
  t.true(close(a.outputs[0].data, expected0));
  t.true(close(a.outputs[1].data, expected1));

  // Binary inputs, y first in the body (matched by name), every output binary.
  const x = Buffer.from(Float32Array.from(reference.x).buffer);
  const y = Buffer.from(Float32Array.from(reference.y).buffer);
  const bin = binaryRequest({
    id: 'req-43',
    inputs: [
      { name: 'y', shape: [2, 3], datatype: 'FP32', parameters: { binary_data_size: y.length } },
      { name: 'x', shape: [2, 3], datatype: 'FP32', parameters: { binary_data_size: x.length } },
    ],
    parameters: { binary_data_output: true },
  }, [y, x]);
  const binRes = await post(`${c.url}/v2/models/adder/infer`, bin.body, bin.headers);
  t.is(binRes.status, 200);
  t.is(binRes.headers.get('content-type'), 'application/octet-stream');
  const b = decodeResponse(binRes.raw, binRes.headers.get('inference-header-content-length'));
  t.is(b.id, 'req-43');
  t.deepEqual(b.outputs.map((o: any) => [o.name, o.shape, o.parameters]), [
    ['output0', [2, 3], { binary_data_size: 24 }],
    ['output1', [2], { binary_data_size: 8 }],
  ]);
  t.deepEqual(b.outputs[0].data, a.outputs[0].data);
  t.deepEqual(b.outputs[1].data, a.outputs[1].data);

  // Only the requested output, binary for one and JSON when not asked.
  const one = await post(`${c.url}/v2/models/adder/infer`, {
    inputs: [{ name: 'x', shape: [2, 3], datatype: 'FP32', data: reference.x }, { name: 'y', shape: [2, 3], datatype: 'FP32', data: reference.y }],
    outputs: [{ name: 'output1', parameters: { binary_data: true } }],
  });
  const o = decodeResponse(one.raw, one.headers.get('inference-header-content-length'));
  t.deepEqual(o.outputs.map((x: any) => x.name), ['output1']);
  t.deepEqual(o.outputs[0].data, a.outputs[1].data);
  const onlyJson = JSON.parse((await post(`${c.url}/v2/models/adder/infer`, {
    inputs: [{ name: 'x', shape: [2, 3], datatype: 'FP32', data: reference.x }, { name: 'y', shape: [2, 3], datatype: 'FP32', data: reference.y }],
    outputs: [{ name: 'output0' }],
  })).raw.toString());
  t.deepEqual(onlyJson.outputs, [a.outputs[0]]);
});

test('every datatype round-trips through the model (JSON in/out and binary in/out agree)', async (t) => {
  const c = await start(t);
  const cases: Array<[string, unknown[], string]> = [
    ['BOOL', [true, false, true, true], 'bool'],
    ['UINT8', [0, 1, 200, 255], 'uint8'],
    ['INT8', [-128, -1, 0, 127], 'int8'],
    ['INT16', [-32768, -2, 3, 32767], 'int16'],
    ['INT32', [-2147483648, 0, 5, 2147483647], 'int32'],
    ['INT64', [-(2 ** 40), -1, 7, 2 ** 40], 'int64'],
    ['FP16', [0.5, -2, 1024, 0.333251953125], 'float16'],
    ['FP32', [0.1, -2.5, 3e10, 0], 'float32'],
    ['FP64', [0.1, -2.5, 1e300, 0], 'float64'],
  ];
  for (const [datatype, data] of cases) {
    const r = await post(`${c.url}/v2/models/echo/infer`, { inputs: [{ name: 'x', shape: [2, 2], datatype, data }] });
    t.is(r.status, 200, datatype);
    const out = JSON.parse(r.raw.toString()).outputs;
    const echo = out.find((o: any) => o.name === 'echo');
    t.is(echo.datatype, datatype);
    t.deepEqual(echo.shape, [2, 2]);
    const want = datatype === 'FP32' ? (data as number[]).map(Math.fround) : data;
    t.deepEqual(echo.data, want, datatype);
    t.deepEqual(out.find((o: any) => o.name === 'numel'), { name: 'numel', datatype: 'INT64', shape: [1], data: [4] });

    // The binary output is the exact bytes the JSON values encode to.
    const rb = await post(`${c.url}/v2/models/echo/infer`, {
      inputs: [{ name: 'x', shape: [2, 2], datatype, data }], outputs: [{ name: 'echo', parameters: { binary_data: true } }],
    });
    const hl = Number(rb.headers.get('inference-header-content-length'));
    const head = JSON.parse(rb.raw.subarray(0, hl).toString());
    const tail = rb.raw.subarray(hl);
    t.is(head.outputs[0].parameters.binary_data_size, tail.length, datatype);
    const back = await post(`${c.url}/v2/models/echo/infer`, binaryRequest({ inputs: [{ name: 'x', shape: [2, 2], datatype, parameters: { binary_data_size: tail.length } }] }, [tail]).body, {
      'Inference-Header-Content-Length': String(Buffer.byteLength(JSON.stringify({ inputs: [{ name: 'x', shape: [2, 2], datatype, parameters: { binary_data_size: tail.length } }] }))),
    });
    t.is(back.status, 200, datatype);
    t.deepEqual(JSON.parse(back.raw.toString()).outputs.find((o: any) => o.name === 'echo').data, want, `${datatype} via binary`);
  }
});

test('a [64,3,224,224] float32 batch travels as binary both ways, byte for byte', async (t) => {
  const c = await start(t);
  const n = 64 * 3 * 224 * 224;
  const input = new Float32Array(n);
  for (let i = 0; i < n; i++) input[i] = ((i * 2654435761) % 1000) / 997 - 0.5;
  const bytes = Buffer.from(input.buffer);
  const req = binaryRequest({
    inputs: [{ name: 'x', shape: [64, 3, 224, 224], datatype: 'FP32', parameters: { binary_data_size: bytes.length } }],
    outputs: [{ name: 'echo', parameters: { binary_data: true } }],
  }, [bytes]);
  const r = await post(`${c.url}/v2/models/echo/infer`, req.body, req.headers);
  t.is(r.status, 200);
  const hl = Number(r.headers.get('inference-header-content-length'));
  const head = JSON.parse(r.raw.subarray(0, hl).toString());
  t.deepEqual(head.outputs, [{ name: 'echo', datatype: 'FP32', shape: [64, 3, 224, 224], parameters: { binary_data_size: bytes.length } }]);
  t.true(r.raw.subarray(hl).equals(bytes));
});

test('bad requests are 400 BadRequestException with a message', async (t) => {
  const c = await start(t);
  const good = (extra: object = {}) => ({ inputs: [{ name: 'x', shape: [1, 2], datatype: 'FP32', data: [1, 2] }, { name: 'y', shape: [1, 2], datatype: 'FP32', data: [3, 4] }], ...extra });
  const body = Buffer.from(JSON.stringify(good()));
  const cases: Array<[string, string, Buffer | object, Record<string, string>, RegExp]> = [
    ['wrong element count', 'adder', { inputs: [{ name: 'x', shape: [1, 3], datatype: 'FP32', data: [1, 2] }, good().inputs[1]] }, {}, /input "x": shape \[1, 3\] needs 3 elements but "data" has 2/],
    ['unknown datatype', 'adder', { inputs: [{ ...good().inputs[0], datatype: 'FLOAT' }, good().inputs[1]] }, {}, /input "x": unknown datatype "FLOAT"; expected one of BOOL/],
    ['header length past the body', 'adder', body, { 'Inference-Header-Content-Length': String(body.length + 10) }, new RegExp(`Inference-Header-Content-Length ${body.length + 10} is past the end of the body \\(${body.length} bytes\\)`)],
    ['missing input', 'adder', { inputs: [good().inputs[0]] }, {}, /Missing input "y": model adder forward takes \(x, y\)/],
    ['missing input, unnamed', 'adder', { inputs: [{ ...good().inputs[0], name: 'a' }] }, {}, /Missing input: model adder forward takes 2 inputs \(x, y\), the request has 1 \(a\)/],
    ['too many inputs', 'echo', { inputs: [{ ...good().inputs[0], name: 'a' }, { ...good().inputs[1], name: 'b' }] }, {}, /Too many inputs: model echo forward takes 1 \(x\), the request has 2/],
    ['no inputs', 'adder', { inputs: [] }, {}, /"inputs" must be a non-empty array/],
    ['malformed JSON', 'adder', Buffer.from('{"inputs": [}'), {}, /Malformed JSON inference header/],
    ['empty body', 'adder', Buffer.alloc(0), {}, /Empty request body/],
    ['BYTES to a tensor model', 'echo', { inputs: [{ name: 'x', shape: [1], datatype: 'BYTES', data: ['aGVsbG8='] }] }, {}, /BYTES inputs are for image models; model echo takes numeric tensors/],
    ['unknown requested output', 'adder', good({ outputs: [{ name: 'nope' }] }), {}, /Requested output "nope" is not an output of the model; outputs: output0, output1/],
    ['undecodable image', 'digits', { inputs: [{ name: 'img', shape: [1], datatype: 'BYTES', data: [Buffer.from('not an image').toString('base64')] }] }, {}, /Unsupported or undecodable image \(12 bytes\)/],
    ['image model with a 1-d tensor', 'digits', { inputs: [{ name: 'img', shape: [4], datatype: 'FP32', data: [1, 2, 3, 4] }] }, {}, /an image model takes \[C,H,W\] or \[N,C,H,W\] tensors \(or BYTES images\), got \[4\]/],
    ['explain with a bad target', 'adder', good({ parameters: { target: -1 } }), {}, /parameters\.target must be a non-negative integer/],
  ];
  for (const [what, model, b, headers, message] of cases) {
    const route = what.startsWith('explain') ? 'explain' : 'infer';
    const r = await post(`${c.url}/v2/models/${model}/${route}`, b, headers);
    t.is(r.status, 400, what);
    t.is(r.headers.get('content-type'), 'application/json; charset=utf-8', what);
    const e = JSON.parse(r.raw.toString());
    t.is(e.code, 400, what);
    t.is(e.type, 'BadRequestException', what);
    t.regex(e.message, message, what);
  }
});

test('a body over max_request_size is 413 PayloadTooLargeException', async (t) => {
  const c = await start(t, { maxRequestSize: 1000 });
  const r = await post(`${c.url}/v2/models/echo/infer`, { inputs: [{ name: 'x', shape: [500], datatype: 'FP32', data: Array(500).fill(1.5) }] });
  t.is(r.status, 413);
  t.deepEqual(JSON.parse(r.raw.toString()), { code: 413, type: 'PayloadTooLargeException', message: 'Request body exceeds max_request_size (1000 bytes)' });
});

test('the MNIST-style v2 request (BYTES, shape [-1]) predicts each digit; JSON, binary and tensor forms agree', async (t) => {
  const c = await start(t);
  const expected = references.mnist.predictions_v1 as Record<string, number>;
  const files = Object.keys(expected).sort();
  const images = await Promise.all(files.map((f) => readFile(join(MODELS, 'images', f))));
  // The request TorchServe's KServe v2 MNIST example sends, one image.
  const one = await post(`${c.url}/v2/models/digits/infer`, {
    id: 'd3',
    inputs: [{ name: '312a4eb0-0ca7-4803-a101-a6d2c18486fe', shape: [-1], datatype: 'BYTES', data: [images[3].toString('base64')] }],
  });
  t.is(one.status, 200);
  t.deepEqual(JSON.parse(one.raw.toString()), {
    id: 'd3', model_name: 'digits', model_version: '1.0',
    outputs: [{ name: 'output0', datatype: 'INT64', shape: [1], data: [expected[files[3]]] }],
  });
  // All ten in one request (batched together), as JSON.
  const all = await post(`${c.url}/v2/models/digits/infer`, { inputs: [{ name: 'img', shape: [10], datatype: 'BYTES', data: images.map((b) => b.toString('base64')) }] });
  const allOut = JSON.parse(all.raw.toString()).outputs[0];
  t.deepEqual(allOut.shape, [10]);
  t.deepEqual(allOut.data, files.map((f) => expected[f]));
  // The same images as binary BYTES (4-byte length prefixes), output binary.
  const tail = Buffer.concat(images.flatMap((b) => { const len = Buffer.alloc(4); len.writeUInt32LE(b.length); return [len, b]; }));
  const req = binaryRequest({ inputs: [{ name: 'img', shape: [10], datatype: 'BYTES', parameters: { binary_data_size: tail.length } }], parameters: { binary_data_output: true } }, [tail]);
  const bin = await post(`${c.url}/v2/models/digits/infer`, req.body, req.headers);
  t.is(bin.status, 200);
  t.deepEqual(decodeResponse(bin.raw, bin.headers.get('inference-header-content-length')).outputs[0].data, allOut.data);
  // TorchServe's tensor form: the preprocessed [1,28,28] image as FP32.
  const mv = c.env.registry.resolve('digits');
  const pre = await imageToTensor(images[7], mv.spec.handler);
  const tensor = await post(`${c.url}/v2/models/digits/infer`, { inputs: [{ name: 'x', shape: [1, 28, 28], datatype: 'FP32', data: Array.from(pre.data as Float32Array) }] });
  t.deepEqual(JSON.parse(tensor.raw.toString()).outputs[0].data, [expected[files[7]]]);
});

test('explain: integrated gradients in the v2 envelope for tensor and image models, with and without a version', async (t) => {
  const c = await start(t);
  // adder output0 = x + 2y is linear in x: attributions w.r.t. x are x at the target column, 0 elsewhere.
  const r = await post(`${c.url}/v2/models/adder/versions/1.0/explain`, {
    id: 'e1',
    inputs: [{ name: 'x', shape: [1, 3], datatype: 'FP32', data: [0.5, 2, -1] }, { name: 'y', shape: [1, 3], datatype: 'FP32', data: [0, 0, 3] }],
  });
  t.is(r.status, 200);
  const e = JSON.parse(r.raw.toString());
  t.is(e.id, 'e1');
  t.deepEqual(e.outputs.map((o: any) => [o.name, o.datatype, o.shape]), [['attributions', 'FP32', [1, 3]], ['delta', 'FP64', [1]]]);
  // Default target = argmax of x + 2y = [0.5, 2, 5] → column 2.
  t.true(close(e.outputs[0].data, [0, 0, -1]), JSON.stringify(e.outputs[0].data));
  const t0 = JSON.parse((await post(`${c.url}/v2/models/adder/explain`, {
    inputs: [{ name: 'x', shape: [1, 3], datatype: 'FP32', data: [0.5, 2, -1] }, { name: 'y', shape: [1, 3], datatype: 'FP32', data: [0, 0, 3] }],
    parameters: { target: 1, n_steps: 4 },
  })).raw.toString());
  t.true(close(t0.outputs[0].data, [0, 2, 0]));

  // MNIST image 3.png against the reference IG (15 Gauss–Legendre steps, target 3).
  const ig = references.mnist_ig;
  const img = await readFile(join(MODELS, 'images', ig.image));
  const d = JSON.parse((await post(`${c.url}/v2/models/digits/explain`, { inputs: [{ name: 'img', shape: [1], datatype: 'BYTES', data: [img.toString('base64')] }] })).raw.toString());
  t.deepEqual(d.outputs[0].shape, [1, 1, 28, 28]);
  const sum = (d.outputs[0].data as number[]).reduce((a, b) => a + b, 0);
  t.true(Math.abs(sum - ig.sum) < 1e-2 * Math.abs(ig.sum), `sum ${sum} vs ${ig.sum}`);
  t.true(Math.abs(d.outputs[1].data[0] - ig.delta) < 1e-2, `delta ${d.outputs[1].data[0]} vs ${ig.delta}`);
});

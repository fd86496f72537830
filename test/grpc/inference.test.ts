// The inference gRPC port over real loopback with a grpc-js client: TorchServe's InferenceAPIsService
// (Ping, Predictions, StreamPredictions, StreamPredictions2), KServe's GRPCInferenceService (liveness,
// readiness, metadata, ModelInfer typed and raw), health, reflection, the status mapping with the JSON
// details, limits and the protocol label of the request metrics.
import test from 'ava';
import { status as Code, type ClientDuplexStream, type ClientReadableStream } from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { toHalf } from '../../src/float16.js';
import { call, fixture, type TestServer } from '../http/_server.js';
import { clients, type Clients, failure, metadata, rpc, startGrpcServer } from './_grpc.js';

const refs = JSON.parse(readFileSync(fixture('references.json'), 'utf8')) as { mnist: { predictions_v1: Record<string, number> } };
const digit = (d: number) => readFileSync(fixture(`images/${d}.png`));
const expected = (d: number) => refs.mnist.predictions_v1[`${d}.png`];

let srv: TestServer;
let c: Clients;
test.before(async () => {
  srv = await startGrpcServer();
  c = clients(srv.server.addresses.grpcInference!);
});
test.after.always(async () => {
  c?.close();
  await srv?.close();
});

const f32 = (values: number[]) => Buffer.from(new Float32Array(values).buffer);

test('Ping answers the /ping body', async (t) => {
  t.deepEqual(await rpc(c.ts, 'Ping', {}), { health: '{"status":"Healthy"}' });
});

test('Predictions: each digit PNG in input["data"] → its class, the same bytes as REST /predictions', async (t) => {
  for (let d = 0; d < 10; d++) {
    const res = await rpc(c.ts, 'Predictions', { model_name: 'mnist', input: { data: digit(d) } }, metadata({ protocol: 'gRPC', session_id: 's1' }));
    const rest = await call(`${srv.url}/predictions/mnist`, { method: 'POST', body: digit(d) });
    t.is(res.prediction.toString('utf8'), String(expected(d)), `${d}.png`);
    t.is(res.prediction.toString('utf8'), rest.text);
  }
  // An explicit version and any part name work too; a JSON part takes the vision handler's {"data": base64}.
  const v = await rpc(c.ts, 'Predictions', { model_name: 'mnist', model_version: '1.0', input: { image: digit(4) } });
  t.is(v.prediction.toString(), String(expected(4)));
  const j = await rpc(c.ts, 'Predictions', { model_name: 'mnist', input: { data: Buffer.from(JSON.stringify({ data: digit(5).toString('base64') })) } });
  t.is(j.prediction.toString(), String(expected(5)));
});

test('Predictions: a JSON tensor part for a tensor model answers as REST does', async (t) => {
  const res = await rpc(c.ts, 'Predictions', { model_name: 'adder', input: { x: Buffer.from('[[1, 2]]'), y: Buffer.from('[[10, 20]]') } });
  const rest = await call(`${srv.url}/predictions/adder`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"x": [[1, 2]], "y": [[10, 20]]}' });
  // forward(x, y) = (x + 2y, sum(x*y, dim=1))
  t.deepEqual(JSON.parse(res.prediction.toString()), [[[21, 42]], [50]]);
  t.is(res.prediction.toString(), rest.text);
});

test('StreamPredictions answers one request with one response, then ends OK', async (t) => {
  const stream: ClientReadableStream<any> = (c.ts as any).StreamPredictions({ model_name: 'mnist', input: { data: digit(7) } });
  const got: string[] = [];
  stream.on('data', (r) => got.push(r.prediction.toString()));
  const status = await new Promise<{ code: number }>((resolve) => stream.on('status', resolve));
  t.deepEqual(got, [String(expected(7))]);
  t.is(status.code, Code.OK);
});

test('StreamPredictions2: a bad image and an unknown model in the middle get a status, the others succeed, order kept', async (t) => {
  const stream: ClientDuplexStream<any, any> = (c.ts as any).StreamPredictions2();
  const got: any[] = [];
  stream.on('data', (r) => got.push(r));
  const ended = new Promise<{ code: number }>((resolve) => stream.on('status', resolve));
  const requests = [
    { model_name: 'mnist', input: { data: digit(1) }, sequence_id: 'a' },
    { model_name: 'mnist', input: { data: Buffer.from('not an image') }, sequence_id: 'b' },
    { model_name: 'mnist', input: { data: digit(2) }, sequence_id: 'c' },
    { model_name: 'nope', input: { data: digit(3) }, sequence_id: 'd' },
    { model_name: 'mnist', input: { data: digit(9) }, sequence_id: 'e' },
  ];
  for (const r of requests) stream.write(r);
  // The stream stays open after failures: one more request after the first answers arrive.
  while (got.length < 5) await new Promise((r) => setTimeout(r, 10));
  stream.write({ model_name: 'mnist', input: { data: digit(6) }, sequence_id: 'f' });
  stream.end();
  t.is((await ended).code, Code.OK);
  t.deepEqual(got.map((r) => r.sequence_id), ['a', 'b', 'c', 'd', 'e', 'f']);
  for (const [i, d] of [[0, 1], [2, 2], [4, 9], [5, 6]]) {
    t.is(got[i].prediction.toString(), String(expected(d)));
    t.falsy(got[i].status);
  }
  t.is(got[1].status.code, Code.INVALID_ARGUMENT);
  t.deepEqual(JSON.parse(got[1].status.message), {
    code: 400,
    type: 'BadRequestException',
    message: 'Unsupported or undecodable image (12 bytes): expected JPEG, PNG, WebP, GIF or TIFF',
  });
  t.is(got[1].prediction.length, 0);
  t.is(got[3].status.code, Code.NOT_FOUND);
  t.deepEqual(JSON.parse(got[3].status.message), { code: 404, type: 'ModelNotFoundException', message: 'Model not found: nope' });
});

test('ModelStreamInfer (Triton\'s streaming rpc): answers in order, a failed request carries error_message, the stream stays open', async (t) => {
  const stream: ClientDuplexStream<any, any> = (c.v2 as any).ModelStreamInfer();
  const got: any[] = [];
  stream.on('data', (r) => got.push(r));
  const ended = new Promise<{ code: number }>((resolve) => stream.on('status', resolve));
  const add = (id: string, model: string, x: number) => ({
    model_name: model,
    id,
    inputs: [
      { name: 'x', datatype: 'FP32', shape: [1, 1] },
      { name: 'y', datatype: 'FP32', shape: [1, 1] },
    ],
    raw_input_contents: [f32([x]), f32([1])],
  });
  stream.write(add('a', 'adder', 1));
  stream.write(add('b', 'nope', 2));
  stream.write(add('c', 'adder', 3));
  stream.end();
  t.is((await ended).code, Code.OK);
  t.is(got.length, 3);
  t.deepEqual(got.map((r) => r.error_message), ['', JSON.stringify({ code: 404, type: 'ModelNotFoundException', message: 'Model not found: nope' }), '']);
  t.deepEqual(got.map((r) => r.infer_response?.id ?? null), ['a', null, 'c']);
  const first = (r: any) => Array.from(new Float32Array(new Uint8Array(r.infer_response.raw_output_contents[0]).buffer));
  t.deepEqual([first(got[0]), first(got[2])], [[3], [5]], 'x + 2y');
});

test('errors map to gRPC codes with the {code, type, message} JSON as details', async (t) => {
  const cases: [object, number, object][] = [
    [{ model_name: 'nope', input: { data: digit(1) } }, Code.NOT_FOUND, { code: 404, type: 'ModelNotFoundException', message: 'Model not found: nope' }],
    [
      { model_name: 'mnist', model_version: '9.9', input: { data: digit(1) } },
      Code.NOT_FOUND,
      { code: 404, type: 'ModelVersionNotFoundException', message: 'Model version: 9.9 does not exist for model: mnist' },
    ],
    [{ model_name: '', input: { data: digit(1) } }, Code.INVALID_ARGUMENT, { code: 400, type: 'BadRequestException', message: 'Missing model_name' }],
    [
      { model_name: 'mnist', input: {} },
      Code.INVALID_ARGUMENT,
      { code: 400, type: 'BadRequestException', message: 'Missing input: send the input as the request body (curl -T FILE), a multipart part (curl -F data=@FILE) or JSON' },
    ],
    [
      { model_name: 'mnist', input: { data: Buffer.from('GIF89a garbage') } },
      Code.INVALID_ARGUMENT,
      { code: 400, type: 'BadRequestException', message: 'Unsupported or undecodable image (14 bytes): expected JPEG, PNG, WebP, GIF or TIFF' },
    ],
  ];
  for (const [request, code, details] of cases) {
    const f = await failure(rpc(c.ts, 'Predictions', request));
    t.is(f.code, code, JSON.stringify(details));
    t.deepEqual(f.details, details);
  }
});

test('a message over max_request_size is RESOURCE_EXHAUSTED before any work', async (t) => {
  const f = await failure(rpc(c.ts, 'Predictions', { model_name: 'mnist', input: { data: Buffer.alloc(6_600_000) } }));
  t.is(f.code, Code.RESOURCE_EXHAUSTED);
  t.regex(String(f.details), /Received message larger than max \(\d+ vs 6553500\)/);
});

// Serial, and the running job long (2000 matmuls), so the third call reaches a still-full queue on a loaded machine.
test.serial('a full queue is UNAVAILABLE with the 503 JSON and retry-after, and drains', async (t) => {
  const batcher = srv.server.registry.resolve('busy').batcher;
  const infer = (n: number) =>
    rpc(c.v2, 'ModelInfer', { model_name: 'busy', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1], contents: { fp32_contents: [n] } }] });
  const until = async (cond: () => boolean) => {
    while (!cond()) await new Promise((r) => setTimeout(r, 5));
  };
  const running = infer(2000);
  await until(() => batcher.running === 1);
  const queued = [infer(1), infer(2)];
  await until(() => batcher.pending === 2);
  const f = await failure(infer(3));
  t.is(f.code, Code.UNAVAILABLE);
  t.deepEqual(f.details, { code: 503, type: 'ServiceUnavailableException', message: 'Model busy version 1.0 has too many pending requests (job_queue_size 2)' });
  t.deepEqual(f.metadata.get('retry-after'), ['1']);
  const answers = await Promise.all([running, ...queued]);
  t.deepEqual(answers.map((a) => a.outputs[0].contents.fp32_contents), [[4000], [2], [4]]);
});

// Serial, like the queue test: the busy model's only worker is held by one long call.
test.serial('a client deadline drops the queued call: DEADLINE_EXCEEDED, nothing left in the queue', async (t) => {
  const batcher = srv.server.registry.resolve('busy').batcher;
  const infer = (n: number, deadlineMs?: number) =>
    rpc(c.v2, 'ModelInfer', { model_name: 'busy', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1], contents: { fp32_contents: [n] } }] }, undefined, deadlineMs);
  const running = infer(2000);
  while (batcher.running === 0) await new Promise((r) => setTimeout(r, 5));
  const late = await failure(infer(1, 150));
  t.is(late.code, Code.DEADLINE_EXCEEDED);
  while (batcher.pending !== 0) await new Promise((r) => setTimeout(r, 5));
  t.is(batcher.running, 1, 'dropped while the long call still runs');
  t.deepEqual((await running).outputs[0].contents.fp32_contents, [4000]);
});

test('ModelInfer typed and raw give identical outputs, equal to REST v2; raw answers raw', async (t) => {
  const x = [1, 2, 3, 4, 5, 6];
  const y = [0.5, -1, 2, 8, 0, 3];
  const typed = await rpc(c.v2, 'ModelInfer', {
    model_name: 'adder',
    id: 'req-1',
    inputs: [
      { name: 'x', datatype: 'FP32', shape: [2, 3], contents: { fp32_contents: x } },
      { name: 'y', datatype: 'FP32', shape: [2, 3], contents: { fp32_contents: y } },
    ],
  });
  const raw = await rpc(c.v2, 'ModelInfer', {
    model_name: 'adder',
    inputs: [
      { name: 'x', datatype: 'FP32', shape: [2, 3] },
      { name: 'y', datatype: 'FP32', shape: [2, 3] },
    ],
    raw_input_contents: [f32(x), f32(y)],
  });
  const rest = (await call(`${srv.url}/v2/models/adder/infer`, {
    method: 'POST',
    body: JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 3], data: x }, { name: 'y', datatype: 'FP32', shape: [2, 3], data: y }] }),
  })).json as { outputs: { name: string; datatype: string; shape: number[]; data: number[] }[] };

  t.is(typed.id, 'req-1');
  t.is(typed.model_name, 'adder');
  t.is(typed.model_version, '1.0');
  t.deepEqual(typed.raw_output_contents, []);
  t.is(raw.outputs.length, rest.outputs.length);
  rest.outputs.forEach((r, i) => {
    const ty = typed.outputs[i];
    const rw = raw.outputs[i];
    t.is(ty.name, r.name);
    t.is(rw.name, r.name);
    t.is(ty.datatype, r.datatype);
    t.deepEqual(ty.shape.map(Number), r.shape);
    t.deepEqual(rw.shape.map(Number), r.shape);
    t.deepEqual(ty.contents.fp32_contents, r.data);
    t.is(rw.contents, null, 'raw outputs carry no typed contents');
    const b: Buffer = raw.raw_output_contents[i];
    t.deepEqual(Array.from(new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length))), r.data);
  });
  t.deepEqual(rest.outputs[0].data, [2, 0, 7, 20, 5, 12]);
});

test('ModelInfer: INT64 typed is exact; FP16 travels raw both ways; typed FP16 is refused', async (t) => {
  const ints = ['9007199254740993', '-5', '0', '7'];
  const i64 = await rpc(c.v2, 'ModelInfer', { model_name: 'echo', inputs: [{ name: 'x', datatype: 'INT64', shape: [2, 2], contents: { int64_contents: ints } }] });
  const echo = i64.outputs.find((o: any) => o.name === 'echo');
  t.is(echo.datatype, 'INT64');
  t.deepEqual(echo.contents.int64_contents, ints);

  const halves = [0.5, -2, 1024, 0.333251953125];
  const bits = Buffer.from(new Uint16Array(halves.map(toHalf)).buffer);
  const fp16 = await rpc(c.v2, 'ModelInfer', { model_name: 'echo', inputs: [{ name: 'x', datatype: 'FP16', shape: [2, 2] }], raw_input_contents: [bits] });
  const i = fp16.outputs.findIndex((o: any) => o.name === 'echo');
  t.is(fp16.outputs[i].datatype, 'FP16');
  t.deepEqual(fp16.outputs[i].shape.map(Number), [2, 2]);
  t.deepEqual(fp16.raw_output_contents[i], bits);

  const f = await failure(rpc(c.v2, 'ModelInfer', { model_name: 'echo', inputs: [{ name: 'x', datatype: 'FP16', shape: [1], contents: { fp32_contents: [1] } }] }));
  t.is(f.code, Code.INVALID_ARGUMENT);
  t.deepEqual(f.details, { code: 400, type: 'BadRequestException', message: 'input "x": FP16 has no typed contents field; send it in raw_input_contents' });
  const mismatch = await failure(rpc(c.v2, 'ModelInfer', { model_name: 'echo', inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 2], contents: { fp32_contents: [1, 2, 3] } }] }));
  t.is(mismatch.code, Code.INVALID_ARGUMENT);
  t.deepEqual(mismatch.details, { code: 400, type: 'BadRequestException', message: 'input "x": shape [2, 2] needs 4 elements but "data" has 3' });
});

test('ModelInfer: BYTES images for the digit model, typed and raw (length-prefixed)', async (t) => {
  const typed = await rpc(c.v2, 'ModelInfer', {
    model_name: 'mnist',
    inputs: [{ name: 'images', datatype: 'BYTES', shape: [2], contents: { bytes_contents: [digit(3), digit(8)] } }],
  });
  t.is(typed.outputs[0].datatype, 'INT64');
  t.deepEqual(typed.outputs[0].contents.int64_contents, [String(expected(3)), String(expected(8))]);
  const prefixed = Buffer.concat([digit(3), digit(8)].flatMap((b) => {
    const len = Buffer.alloc(4);
    len.writeUInt32LE(b.length);
    return [len, b];
  }));
  const raw = await rpc(c.v2, 'ModelInfer', { model_name: 'mnist', inputs: [{ name: 'images', datatype: 'BYTES', shape: [2] }], raw_input_contents: [prefixed] });
  const out: Buffer = raw.raw_output_contents[0];
  t.deepEqual([out.readBigInt64LE(0), out.readBigInt64LE(8)], [BigInt(expected(3)), BigInt(expected(8))]);
});

test('server and model metadata, liveness and readiness', async (t) => {
  t.deepEqual(await rpc(c.v2, 'ServerLive', {}), { live: true });
  t.deepEqual(await rpc(c.v2, 'ServerReady', {}), { ready: true });
  t.deepEqual(await rpc(c.v2, 'ModelReady', { name: 'mnist' }), { ready: true });
  t.deepEqual(await rpc(c.v2, 'ModelReady', { name: 'mnist', version: '1.0' }), { ready: true });
  t.is((await failure(rpc(c.v2, 'ModelReady', { name: 'nope' }))).code, Code.NOT_FOUND);
  const server = await rpc(c.v2, 'ServerMetadata', {});
  t.is(server.name, 'torchd');
  t.regex(server.version, /^\d+\.\d+\.\d+/);
  const meta = await rpc(c.v2, 'ModelMetadata', { name: 'mnist' });
  const rest = (await call(`${srv.url}/v2/models/mnist`)).json as Record<string, any>;
  t.is(meta.name, 'mnist');
  t.deepEqual(meta.versions, ['1.0']);
  t.is(meta.platform, 'pytorch_torchscript');
  t.deepEqual(meta.inputs.map((i: any) => ({ ...i, shape: i.shape.map(Number) })), rest.inputs);
  t.deepEqual(meta.outputs.map((i: any) => ({ ...i, shape: i.shape.map(Number) })), rest.outputs);
});

test('health: the server, each gRPC service and each model by name; unknown names NOT_FOUND', async (t) => {
  for (const service of ['', 'inference.GRPCInferenceService', 'org.pytorch.serve.grpc.inference.InferenceAPIsService', 'mnist', 'adder']) {
    t.deepEqual(await rpc(c.health, 'Check', { service }), { status: 'SERVING' }, service);
  }
  const f = await failure(rpc(c.health, 'Check', { service: 'nope' }));
  t.is(f.code, Code.NOT_FOUND);
});

test('reflection lists every service on the inference port', async (t) => {
  const stream: ClientDuplexStream<any, any> = (c.reflection as any).ServerReflectionInfo();
  const answer = new Promise<any>((resolve) => stream.once('data', resolve));
  stream.write({ list_services: '' });
  const res = await answer;
  stream.end();
  const names = res.list_services_response.service.map((s: { name: string }) => s.name).sort();
  t.deepEqual(names, [
    'grpc.health.v1.Health',
    'inference.GRPCInferenceService',
    'org.pytorch.serve.grpc.inference.InferenceAPIsService',
  ]);
});

// Serial (ava runs serial tests first): no other test's adder calls land between the two scrapes.
test.serial('gRPC requests are counted under the same metric names with protocol="grpc"', async (t) => {
  const scrape = async () => (await call(`${srv.server.addresses.metrics}/metrics?name[]=ts_inference_requests_total`)).text;
  const count = (text: string, protocol: string) => {
    const line = text.split('\n').find((l) => l.startsWith('ts_inference_requests_total{') && l.includes('model_name="adder"') && l.includes(`protocol="${protocol}"`));
    return line ? Number(line.split(' ').pop()) : 0;
  };
  const before = await scrape();
  const x = { name: 'x', datatype: 'FP32', shape: [1, 1], contents: { fp32_contents: [1] } };
  for (let i = 0; i < 3; i++) await rpc(c.v2, 'ModelInfer', { model_name: 'adder', inputs: [x, { ...x, name: 'y' }] });
  const after = await scrape();
  t.is(count(after, 'grpc') - count(before, 'grpc'), 3);
  t.is(count(after, 'http'), count(before, 'http'), 'the http series is not touched by gRPC calls');
});

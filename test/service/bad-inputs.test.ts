// The bad-input table of issue 8, over every protocol against a real server (HTTP TorchServe, KServe v1, KServe
// v2, gRPC, management): each row names the exact status, type and message. The bounds are the inference
// service's, so the same request answers the same whatever envelope carried it.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeMar } from '../../src/store/index.js';
import { call, fixture, type TestServer } from '../http/_server.js';
import { clients, type Clients, failure, rpc, startGrpcServer } from '../grpc/_grpc.js';
import { pngHeaderOnly } from '../handlers/helpers.js';

let srv: TestServer;
let c: Clients;
test.before(async () => {
  srv = await startGrpcServer();
  c = clients(srv.server.addresses.grpcInference!);
  // The digit model's handler does not resize: its 28×28 input was probed at registration, so no priming request is
  // needed before other sizes are refused.
});
test.after.always(async () => {
  c?.close();
  await srv?.close();
});

const digit = (d: number) => readFileSync(fixture(`images/${d}.png`));
const b64 = (b: Buffer) => b.toString('base64');
const deep = (n: number) => '['.repeat(n) + ']'.repeat(n);
const json = (body: unknown) => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
/** A KServe v2 binary request: the JSON header, then the binary parts. */
function binaryV2(header: object, tail: Buffer): RequestInit {
  const head = Buffer.from(JSON.stringify(header));
  return { method: 'POST', headers: { 'inference-header-content-length': String(head.length), 'content-type': 'application/octet-stream' }, body: Buffer.concat([head, tail]) };
}
/** `n` empty length-prefixed BYTES elements. */
const emptyElements = (n: number) => Buffer.alloc(4 * n);

interface Answer {
  status: number;
  type?: string;
  message?: string;
}

async function http(path: string, init: RequestInit): Promise<Answer> {
  const r = await call(`${srv.url}${path}`, init);
  const body = (r.json ?? JSON.parse(r.text)) as { type?: string; message?: string };
  return { status: r.status, type: body.type, message: body.message };
}

async function management(method: string, path: string): Promise<Answer> {
  const r = await call(`${srv.server.addresses.management}${path}`, { method });
  const body = r.json as { type?: string; message?: string };
  return { status: r.status, type: body.type, message: body.message };
}

/** A failed gRPC call as {status: the JSON details' code, type, message}. */
async function grpc(method: 'Predictions' | 'ModelInfer', request: object): Promise<Answer> {
  const f = await failure(rpc(method === 'Predictions' ? c.ts : c.v2, method, request));
  return { status: f.details.code, type: f.details.type, message: f.details.message };
}

const STEPS = 'n_steps must be an integer from 1 to 1024 (max_ig_steps), got';
const DEPTH = 'is nested deeper than 64 levels (max_json_depth 64)';
/** The synchronous parser's message for malformed JSON text (the off-loop parse must give the same). */
const malformed = (text: string) => {
  try {
    JSON.parse(text);
  } catch (err) {
    return `Malformed JSON body: ${(err as Error).message}`;
  }
  throw new Error('not malformed');
};
const nonFinite = (input: string, element: number) =>
  `Input "${input}" holds a non-finite number (NaN or ±Infinity) at element ${element}; set allowNonFinite: true in the model config to accept them`;
const tooMany = (n: number, what: string) => `Too many elements: the request has ${n} ${what}, more than max_request_elements (10000)`;
const jsonArray = (what: string) => `Too many elements: an array in the ${what} holds more than 10000 arrays, objects or strings (max_request_elements 10000)`;
/** A row of `n` numbers as JSON text (~6 bytes each), `last` appended verbatim: 60 000 make a body over 256 KiB, parsed off the event loop. */
const bigRow = (n: number, last?: string) => `[${Array.from({ length: n }, (_, i) => (i % 1000) / 4).join(',')}${last === undefined ? '' : `,${last}`}]`;
const BIG = 60_000;
const BOMB = 'Image is 9999x9999 pixels but model mnist takes 28x28 images and its handler does not resize (handler.image_size is null); refused before decoding';

const rows: [string, () => Promise<Answer>, number, string, string][] = [
  // One IG step cap for every protocol (v2 used to skip it).
  ['/explanations n_steps 1025', () => http('/explanations/mnist?n_steps=1025', { method: 'PUT', body: digit(3) }), 400, 'BadRequestException', `${STEPS} "1025"`],
  ['v1 :explain n_steps 1025', () => http('/v1/models/mnist:explain?n_steps=1025', json({ instances: [{ data: b64(digit(3)) }] })), 400, 'BadRequestException', `${STEPS} "1025"`],
  ['v2 explain n_steps 100000', () => http('/v2/models/mnist/explain', json({ inputs: [{ name: 'x', datatype: 'BYTES', shape: [1], data: [b64(digit(3))] }], parameters: { n_steps: 100000 } })), 400, 'BadRequestException', `${STEPS} 100000`],
  // JSON nested 100 000 deep: 400 everywhere, never a stack overflow.
  ['/predictions JSON 100 000 deep', () => http('/predictions/echo', json(deep(100_000))), 400, 'BadRequestException', `JSON body ${DEPTH}`],
  ['v1 JSON 100 000 deep', () => http('/v1/models/echo:predict', json(`{"instances": ${deep(100_000)}}`)), 400, 'BadRequestException', `JSON body ${DEPTH}`],
  ['v2 JSON 100 000 deep', () => http('/v2/models/echo/infer', json(`{"inputs": ${deep(100_000)}}`)), 400, 'BadRequestException', `JSON inference header ${DEPTH}`],
  ['multipart JSON part 100 000 deep', () => {
    const form = new FormData();
    form.append('data', new Blob([deep(100_000)], { type: 'application/json' }), 'x.json');
    return http('/predictions/echo', { method: 'POST', body: form });
  }, 400, 'BadRequestException', `JSON input ${DEPTH}`],
  ['gRPC Predictions JSON 100 000 deep', () => grpc('Predictions', { model_name: 'echo', input: { data: Buffer.from(deep(100_000)) } }), 400, 'BadRequestException', `JSON input ${DEPTH}`],
  // Non-finite numbers are refused, naming the input.
  ['/predictions [[1e999, 1, 2]]', () => http('/predictions/echo', json('[[1e999, 1, 2]]')), 400, 'BadRequestException', nonFinite('body', 0)],
  ['v1 instance [1, 1e999]', () => http('/v1/models/echo:predict', json('{"instances": [[1, 1e999]]}')), 400, 'BadRequestException', nonFinite('instances[0]', 1)],
  ['v2 JSON FP32 1e999', () => http('/v2/models/echo/infer', json('{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 1e999]}]}')), 400, 'BadRequestException', nonFinite('x', 1)],
  ['v2 binary FP32 NaN', () => http('/v2/models/echo/infer', binaryV2({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], parameters: { binary_data_size: 8 } }] }, Buffer.from(new Float32Array([NaN, 1]).buffer))), 400, 'BadRequestException', nonFinite('x', 0)],
  ['gRPC Predictions [[1, 1e999]]', () => grpc('Predictions', { model_name: 'echo', input: { data: Buffer.from('[[1, 1e999]]') } }), 400, 'BadRequestException', nonFinite('data', 1)],
  ['gRPC ModelInfer FP32 -Infinity', () => grpc('ModelInfer', { model_name: 'echo', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2] }], raw_input_contents: [Buffer.from(new Float32Array([1, -Infinity]).buffer)] }), 400, 'BadRequestException', nonFinite('x', 1)],
  // The same refusals for bodies large enough to be parsed on a worker thread (packed numeric arrays): same messages.
  ['/predictions 300 KB [[…, 1e999]] (parsed off the loop)', () => http('/predictions/echo', json(`[${bigRow(BIG, '1e999')}]`)), 400, 'BadRequestException', nonFinite('body', BIG)],
  ['v1 300 KB instance […, 1e999] (parsed off the loop)', () => http('/v1/models/echo:predict', json(`{"instances": [${bigRow(BIG, '1e999')}]}`)), 400, 'BadRequestException', nonFinite('instances[0]', BIG)],
  ['v2 JSON 300 KB FP32 with 1e999 (parsed off the loop)', () => http('/v2/models/echo/infer', json(`{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, ${BIG + 1}], "data": ${bigRow(BIG, '1e999')}}]}`)), 400, 'BadRequestException', nonFinite('x', BIG)],
  ['multipart 300 KB JSON part […, 1e999] (parsed off the loop)', () => {
    const form = new FormData();
    form.append('data', new Blob([`[${bigRow(BIG, '1e999')}]`], { type: 'application/json' }), 'x.json');
    return http('/predictions/echo', { method: 'POST', body: form });
  }, 400, 'BadRequestException', nonFinite('data', BIG)],
  ['gRPC Predictions 300 KB [[…, 1e999]] (parsed off the loop)', () => grpc('Predictions', { model_name: 'echo', input: { data: Buffer.from(`[${bigRow(BIG, '1e999')}]`) } }), 400, 'BadRequestException', nonFinite('data', BIG)],
  ['v2 request with Inference-Header-Content-Length and a 300 KB header holding 1e999 (header parsed off the loop)', () => {
    const head = Buffer.from(`{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, ${BIG + 1}], "data": ${bigRow(BIG, '1e999')}}]}`);
    return http('/v2/models/echo/infer', { method: 'POST', headers: { 'inference-header-content-length': String(head.length), 'content-type': 'application/octet-stream' }, body: head });
  }, 400, 'BadRequestException', nonFinite('x', BIG)],
  ['/predictions 300 KB ragged (parsed off the loop)', () => http('/predictions/echo', json(`[${bigRow(BIG)}, ${bigRow(BIG - 1)}]`)), 400, 'BadRequestException', `Ragged nested array at [1]: expected a list of ${BIG}, found a list of ${BIG - 1}`],
  ['/predictions JSON 150 000 deep (300 KB, parsed off the loop)', () => http('/predictions/echo', json(deep(150_000))), 400, 'BadRequestException', `JSON body ${DEPTH}`],
  ['v2 JSON 150 000 deep (300 KB, parsed off the loop)', () => http('/v2/models/echo/infer', json(`{"inputs": ${deep(150_000)}}`)), 400, 'BadRequestException', `JSON inference header ${DEPTH}`],
  ['v1 300 KB malformed (parsed off the loop)', () => http('/v1/models/echo:predict', json(`{"instances": [${bigRow(BIG)},]}`)), 400, 'BadRequestException', malformed(`{"instances": [${bigRow(BIG)},]}`)],
  // Elements per request, counted before any element is decoded.
  ['v1 10 001 instances', () => http('/v1/models/echo:predict', json({ instances: Array(10_001).fill(0) })), 400, 'BadRequestException', tooMany(10_001, 'instances')],
  // An array of many arrays/objects/strings is refused by the scan before JSON.parse builds it.
  ['v1 1 M array instances', () => http('/v1/models/echo:predict', json({ instances: Array(1_000_000).fill([0]) })), 400, 'BadRequestException', jsonArray('JSON body')],
  ['v2 binary 1.5 M empty BYTES', () => http('/v2/models/mnist/infer', binaryV2({ inputs: [{ name: 'x', datatype: 'BYTES', shape: [1_500_000], parameters: { binary_data_size: 6_000_000 } }] }, emptyElements(1_500_000))), 400, 'BadRequestException', tooMany(10_001, 'BYTES elements')],
  ['v2 JSON 10 001 BYTES', () => http('/v2/models/mnist/infer', json({ inputs: [{ name: 'x', datatype: 'BYTES', shape: [10_001], data: Array(10_001).fill('') }] })), 400, 'BadRequestException', jsonArray('JSON inference header')],
  ['v2 JSON 6 000 + 6 000 BYTES in two inputs', () => http('/v2/models/mnist/infer', json({ inputs: ['a', 'b'].map((name) => ({ name, datatype: 'BYTES', shape: [6000], data: Array(6000).fill('') })) })), 400, 'BadRequestException', tooMany(12_000, 'BYTES elements')],
  ['gRPC ModelInfer 20 000 raw BYTES', () => grpc('ModelInfer', { model_name: 'mnist', inputs: [{ name: 'x', datatype: 'BYTES', shape: [20_000] }], raw_input_contents: [emptyElements(20_000)] }), 400, 'BadRequestException', tooMany(10_001, 'BYTES elements')],
  ['form with 10 001 fields', () => http('/predictions/echo', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: Array.from({ length: 10_001 }, (_, i) => `f${i}=1`).join('&') }), 400, 'BadRequestException', tooMany(10_001, 'form fields')],
  // A pixel bomb (a 100-byte PNG claiming 9999×9999) to the non-resizing digit model: refused from the header.
  ['/predictions 9999² PNG', () => http('/predictions/mnist', { method: 'PUT', body: new Uint8Array(pngHeaderOnly(9999, 9999)) }), 400, 'BadRequestException', BOMB],
  ['v1 9999² PNG', () => http('/v1/models/mnist:predict', json({ instances: [{ data: b64(pngHeaderOnly(9999, 9999)) }] })), 400, 'BadRequestException', BOMB],
  ['v2 9999² PNG', () => http('/v2/models/mnist/infer', json({ inputs: [{ name: 'x', datatype: 'BYTES', shape: [1], data: [b64(pngHeaderOnly(9999, 9999))] }] })), 400, 'BadRequestException', BOMB],
  ['gRPC Predictions 9999² PNG', () => grpc('Predictions', { model_name: 'mnist', input: { data: pngHeaderOnly(9999, 9999) } }), 400, 'BadRequestException', BOMB],
  // Workers per model: a 400 above max_workers_per_model, never a 500.
  ['register initial_workers=5000', () => management('POST', '/models?url=echo.mar&model_name=echo5000&initial_workers=5000&synchronous=true'), 400, 'BadRequestException', 'minWorkers 5000 exceeds max_workers_per_model (64)'],
  ['scale min_worker=5000', () => management('PUT', '/models/echo?min_worker=5000&max_worker=5000&synchronous=true'), 400, 'BadRequestException', 'min_worker 5000 exceeds max_workers_per_model (64)'],
];

for (const [what, send, status, type, message] of rows) {
  test(`${what} → ${status} ${type}`, async (t) => {
    t.deepEqual(await send(), { status, type, message });
  });
}

// Content sniffing: an image is an image whatever Content-Type the client tool put on it.
for (const contentType of ['text/plain', 'text/html', 'application/x-www-form-urlencoded', 'application/json', 'application/octet-stream']) {
  test(`a PNG sent as ${contentType} (curl --data-binary, hey -D) is classified like curl -T`, async (t) => {
    const r = await call(`${srv.url}/predictions/mnist`, { method: 'POST', headers: { 'content-type': contentType }, body: digit(7) });
    t.is(r.status, 200, r.text);
    t.is(r.json, 7);
  });
}

test('base64 text is still an image for a text part that is not one', async (t) => {
  const r = await call(`${srv.url}/predictions/mnist`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: b64(digit(4)) });
  t.deepEqual([r.status, r.json], [200, 4]);
});

test('a tensor model takes non-finite numbers when its model config says allowNonFinite: true', async (t) => {
  const config = join(srv.store, 'allow-non-finite.yaml');
  await writeFile(config, 'allowNonFinite: true\n');
  await writeMar({ modelName: 'echo_nf', version: '1.0', serializedFile: fileURLToPath(new URL('../fixtures/v2/echo.pt', import.meta.url)), handler: 'tensor', configFile: config, exportPath: srv.store });
  const registered = await management('POST', '/models?url=echo_nf.mar&synchronous=true');
  t.is(registered.status, 200, registered.message);
  const r = await call(`${srv.url}/predictions/echo_nf`, json('[[1e999, 1]]'));
  t.is(r.status, 200, r.text);
});

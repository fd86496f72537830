// Bad inputs, each answered with its exact status and error type, and the server still serving after
// each: undecodable images, a decompression bomb, empty and oversized bodies, malformed JSON, wrong
// tensor shapes/dtypes, and archives the store must refuse (registered through the management port).
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { writeMar } from '../../src/store/index.js';
import { call, fixture, startTestServer, type TestServer } from './_server.js';

const LIMIT = 300_000;
let srv: TestServer;
test.before(async () => {
  srv = await startTestServer(['mnist', 'resnet-18', 'multi_out'], { max_request_size: String(LIMIT) });
});
test.after.always(async () => {
  await srv?.close();
});

type ErrorBody = { code: number; type: string; message: string };

/** Asserts the error, then that the same model still answers a good request. */
async function expectError(
  t: import('ava').ExecutionContext,
  r: Awaited<ReturnType<typeof call>>,
  status: number,
  type: string,
  message?: RegExp,
) {
  t.is(r.status, status, r.text);
  t.is(r.headers.get('content-type'), 'application/json; charset=utf-8');
  t.truthy(r.headers.get('x-request-id'));
  const body = r.json as ErrorBody;
  t.is(body.code, status);
  t.is(body.type, type);
  if (message) t.regex(body.message, message);
  const ok = await call(`${srv.url}/predictions/mnist`, { method: 'PUT', body: readFileSync(fixture('images/1.png')) });
  t.is(ok.json, 1, 'still serving');
}

/** A PNG that declares width×height but carries one tiny IDAT: decoding it would need ~1.2 GB. */
function pngHeaderOnly(width: number, height: number): Uint8Array<ArrayBuffer> {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc32 = (buf: Buffer) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(td));
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  const png = Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.alloc(64))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
  return new Uint8Array(png);
}

test('truncated JPEG → 400 BadRequestException', async (t) => {
  const jpeg = readFileSync(fixture('sample.jpg'));
  const r = await call(`${srv.url}/predictions/resnet-18`, { method: 'PUT', body: jpeg.subarray(0, Math.floor(jpeg.length / 3)) });
  await expectError(t, r, 400, 'BadRequestException');
});

test('random bytes → 400 BadRequestException', async (t) => {
  const bytes = Buffer.alloc(4096);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 2654435761) >>> 24;
  const r = await call(`${srv.url}/predictions/resnet-18`, { method: 'POST', body: bytes, headers: { 'content-type': 'application/octet-stream' } });
  await expectError(t, r, 400, 'BadRequestException');
});

test('zero-byte body → 400 BadRequestException naming the input forms', async (t) => {
  const r = await call(`${srv.url}/predictions/mnist`, { method: 'PUT', body: Buffer.alloc(0) });
  await expectError(t, r, 400, 'BadRequestException', /^Missing input: send the input as the request body \(curl -T FILE\), a multipart part \(curl -F data=@FILE\) or JSON$/);
});

test('an empty multipart file part → 400 BadRequestException', async (t) => {
  const f = new FormData();
  f.append('data', new Blob([]), 'empty.png');
  const r = await call(`${srv.url}/predictions/mnist`, { method: 'POST', body: f });
  await expectError(t, r, 400, 'BadRequestException', /^Input "data" is empty$/);
});

test('20000×20000 PNG header (decompression bomb) → 400, refused without decoding', async (t) => {
  const r = await call(`${srv.url}/predictions/resnet-18`, { method: 'PUT', body: pngHeaderOnly(20000, 20000) });
  await expectError(t, r, 400, 'BadRequestException');
});

const tooLargeMessage = new RegExp(`^Request body exceeds max_request_size \\(${LIMIT} bytes\\)$`);

test('raw body over max_request_size → 413 PayloadTooLargeException JSON', async (t) => {
  const r = await call(`${srv.url}/predictions/resnet-18`, { method: 'PUT', body: Buffer.alloc(LIMIT + 1) });
  await expectError(t, r, 413, 'PayloadTooLargeException', tooLargeMessage);
});

test('chunked body (no Content-Length) over max_request_size → 413 JSON', async (t) => {
  const chunk = new Uint8Array(64 * 1024);
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent > LIMIT * 2) controller.close();
      else {
        sent += chunk.length;
        controller.enqueue(chunk);
      }
    },
  });
  const r = await call(`${srv.url}/predictions/resnet-18`, { method: 'POST', body, duplex: 'half' } as RequestInit);
  await expectError(t, r, 413, 'PayloadTooLargeException', tooLargeMessage);
});

test('multipart over max_request_size → 413 JSON', async (t) => {
  const f = new FormData();
  f.append('data', new Blob([Buffer.alloc(LIMIT + 10)]), 'big.bin');
  const r = await call(`${srv.url}/predictions/resnet-18`, { method: 'POST', body: f });
  await expectError(t, r, 413, 'PayloadTooLargeException', tooLargeMessage);
});

test('JSON over max_request_size → 413 JSON', async (t) => {
  const r = await call(`${srv.url}/predictions/multi_out`, {
    method: 'POST',
    body: JSON.stringify([Array.from({ length: LIMIT / 2 }, () => 1)]),
    headers: { 'content-type': 'application/json' },
  });
  await expectError(t, r, 413, 'PayloadTooLargeException', tooLargeMessage);
});

test('malformed JSON → 400 BadRequestException', async (t) => {
  const r = await call(`${srv.url}/predictions/multi_out`, { method: 'POST', body: '[[1, 2,', headers: { 'content-type': 'application/json' } });
  await expectError(t, r, 400, 'BadRequestException', /^Malformed JSON body: /);
});

test('malformed multipart → 400 BadRequestException', async (t) => {
  const r = await call(`${srv.url}/predictions/mnist`, {
    method: 'POST',
    body: '--xyz\r\nContent-Disposition: form-data; name="data"\r\n\r\nabc',
    headers: { 'content-type': 'multipart/form-data; boundary=xyz' },
  });
  await expectError(t, r, 400, 'BadRequestException', /^Malformed multipart body: /);
});

test('raw tensor bytes that do not fill ?shape= → 400 BadRequestException', async (t) => {
  const r = await call(`${srv.url}/predictions/multi_out?shape=1,4&dtype=float32`, { method: 'PUT', body: Buffer.from(new Float32Array(3).buffer) });
  await expectError(t, r, 400, 'BadRequestException');
});

test('unknown ?dtype= → 400 BadRequestException', async (t) => {
  const r = await call(`${srv.url}/predictions/multi_out?shape=1,3&dtype=complex64`, { method: 'PUT', body: Buffer.alloc(24) });
  await expectError(t, r, 400, 'BadRequestException');
});

test('ragged JSON tensor → 400 BadRequestException', async (t) => {
  const r = await call(`${srv.url}/predictions/multi_out`, { method: 'POST', body: '[[1, 2, 3], [4]]', headers: { 'content-type': 'application/json' } });
  await expectError(t, r, 400, 'BadRequestException');
});

test('an image of the wrong size for a model without resize → 400 BadRequestException, refused from its header', async (t) => {
  // The digit model takes 28×28 and its config turns resizing off: the registry probed that size at registration, so
  // a 360×240 photo is refused from the header, before decoding, whether or not a digit was answered before.
  const r = await call(`${srv.url}/predictions/mnist`, { method: 'PUT', body: readFileSync(fixture('sample.png')) });
  await expectError(t, r, 400, 'BadRequestException',
    /^Image is 360x240 pixels but model mnist takes 28x28 images and its handler does not resize \(handler\.image_size is null\); refused before decoding$/);
});

test('an archive with ../ entries is refused at registration → 400, server still serving', async (t) => {
  const evil = join(srv.store, 'evil.mar');
  execFileSync('/usr/bin/python3', ['-c', `
import zipfile, json, sys
with zipfile.ZipFile(sys.argv[1], 'w') as z:
    z.writestr('MAR-INF/MANIFEST.json', json.dumps({"runtime": "python", "model": {"modelName": "evil", "modelVersion": "1.0", "serializedFile": "m.pt", "handler": "tensor"}}))
    z.writestr('../../escaped.txt', 'gotcha')
`, evil]);
  const r = await call(`${srv.server.addresses.management}/models?url=evil.mar`, { method: 'POST' });
  await expectError(t, r, 400, 'BadRequestException', /escapes the extraction folder: \.\.\/\.\.\/escaped\.txt/);
});

test('an archive whose model is not TorchScript is refused with how to export it → 400', async (t) => {
  await writeMar({ modelName: 'pickled', version: '1.0', serializedFile: fixture('state_dict.pt'), handler: 'tensor', exportPath: srv.store });
  const r = await call(`${srv.server.addresses.management}/models?url=pickled.mar`, { method: 'POST' });
  await expectError(t, r, 400, 'BadRequestException', /is not TorchScript.*torch\.jit\.script\(model\)\.save/);
  const predict = await call(`${srv.url}/predictions/pickled`, { method: 'PUT', body: Buffer.from('[1]') });
  t.is(predict.status, 404);
});

// KServe v2 body codec: JSON and binary tensors decode to the same typed arrays; every bad input names
// its problem; responses round-trip through the same decoder.
import test from 'ava';
import { BadRequestError } from '../../src/errors.js';
import { decodeInferRequest, encodeInferResponse, namedOutputs, tensorToJson, viewOf } from '../../src/http/v2/codec.js';
import { fromBfloat16, fromHalf, toBfloat16, toHalf } from '../../src/http/v2/datatypes.js';
import type { Tensor } from '../../src/native.js';

/** Build a binary-extension body: JSON header + raw tensors; returns body and header length. */
function binaryBody(header: object, tails: Buffer[]): { body: Buffer; headerLength: string } {
  const h = Buffer.from(JSON.stringify(header));
  return { body: Buffer.concat([h, ...tails]), headerLength: String(h.length) };
}

function json(o: object): Buffer {
  return Buffer.from(JSON.stringify(o));
}

test('JSON FP32 nested data decodes to a Float32Array with the given shape', (t) => {
  const r = decodeInferRequest(json({ id: 'r1', inputs: [{ name: 'x', shape: [2, 2], datatype: 'FP32', data: [[1, 2.5], [3, -4]] }] }));
  t.is(r.id, 'r1');
  t.is(r.inputs.length, 1);
  const x = r.inputs[0].tensor!;
  t.is(x.dtype, 'float32');
  t.deepEqual(x.shape, [2, 2]);
  t.true(x.data instanceof Float32Array);
  t.deepEqual(Array.from(x.data as Float32Array), [1, 2.5, 3, -4]);
});

test('every numeric datatype decodes from JSON to the matching typed array', (t) => {
  const cases: Array<[string, unknown[], string, unknown[]]> = [
    ['BOOL', [true, false, 1], 'bool', [1, 0, 1]],
    ['UINT8', [0, 255, 7], 'uint8', [0, 255, 7]],
    ['INT8', [-128, 127, 0], 'int8', [-128, 127, 0]],
    ['INT16', [-32768, 32767, 5], 'int16', [-32768, 32767, 5]],
    ['INT32', [-2147483648, 2147483647, 9], 'int32', [-2147483648, 2147483647, 9]],
    ['INT64', [-(2 ** 53) + 1, 2 ** 53 - 1, 3], 'int64', [BigInt(-(2 ** 53) + 1), BigInt(2 ** 53 - 1), 3n]],
    ['FP16', [1, -2, 0.5], 'float16', [0x3c00, 0xc000, 0x3800]],
    ['BF16', [1, -2, 0.5], 'bfloat16', [0x3f80, 0xc000, 0x3f00]],
    ['FP32', [1.5, -2, 0.25], 'float32', [1.5, -2, 0.25]],
    ['FP64', [0.1, -2, 1e300], 'float64', [0.1, -2, 1e300]],
  ];
  for (const [datatype, data, dtype, expected] of cases) {
    const r = decodeInferRequest(json({ inputs: [{ name: 'a', shape: [3], datatype, data }] }));
    const x = r.inputs[0].tensor!;
    t.is(x.dtype as string, dtype, datatype);
    t.deepEqual(Array.from(x.data as ArrayLike<unknown>), expected, datatype);
  }
});

test('binary FP32 input is a zero-copy view of the body when aligned, a copy when not', (t) => {
  const values = Float32Array.from({ length: 2 * 3 * 4 * 4 }, (_, i) => i / 7);
  const tail = Buffer.from(values.buffer);
  const header = { inputs: [{ name: 'x', shape: [2, 3, 4, 4], datatype: 'FP32', parameters: { binary_data_size: tail.length } }] };
  for (let pad = 0; pad < 4; pad++) {
    const h = Buffer.from(JSON.stringify(header) + ' '.repeat(pad));
    const body = Buffer.concat([h, tail]);
    const r = decodeInferRequest(body, String(h.length));
    const x = r.inputs[0].tensor!;
    t.deepEqual(Array.from(x.data as Float32Array), Array.from(values), `pad ${pad}`);
    const aligned = (body.byteOffset + h.length) % 4 === 0;
    t.is(x.data.buffer === body.buffer, aligned, `pad ${pad}: view iff aligned`);
  }
});

test('JSON and binary requests of the same tensors decode identically (two inputs, mixed)', (t) => {
  const a = Int32Array.of(1, -2, 3, 4);
  const b = Float64Array.of(0.5, 1.5);
  const jsonReq = decodeInferRequest(json({
    inputs: [
      { name: 'a', shape: [2, 2], datatype: 'INT32', data: [1, -2, 3, 4] },
      { name: 'b', shape: [2], datatype: 'FP64', data: [0.5, 1.5] },
    ],
  }));
  const { body, headerLength } = binaryBody({
    inputs: [
      { name: 'a', shape: [2, 2], datatype: 'INT32', parameters: { binary_data_size: 16 } },
      { name: 'b', shape: [2], datatype: 'FP64', parameters: { binary_data_size: 16 } },
    ],
  }, [Buffer.from(a.buffer), Buffer.from(b.buffer)]);
  const binReq = decodeInferRequest(body, headerLength);
  for (let i = 0; i < 2; i++) {
    t.is(binReq.inputs[i].tensor!.dtype, jsonReq.inputs[i].tensor!.dtype);
    t.deepEqual(binReq.inputs[i].shape, jsonReq.inputs[i].shape);
    t.deepEqual(Array.from(binReq.inputs[i].tensor!.data as Int32Array), Array.from(jsonReq.inputs[i].tensor!.data as Int32Array));
  }
});

test('BYTES: JSON base64 and binary length-prefixed both give the raw bytes; shape -1 is inferred', (t) => {
  const img = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 1, 2, 255]);
  const j = decodeInferRequest(json({ inputs: [{ name: 'img', shape: [-1], datatype: 'BYTES', data: [img.toString('base64'), `data:image/png;base64,${img.toString('base64')}`] }] }));
  t.deepEqual(j.inputs[0].shape, [2]);
  t.deepEqual(j.inputs[0].bytes!.map((b) => [...b]), [[...img], [...img]]);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(img.length);
  const tail = Buffer.concat([len, img]);
  const { body, headerLength } = binaryBody({ inputs: [{ name: 'img', shape: [1], datatype: 'BYTES', parameters: { binary_data_size: tail.length } }] }, [tail]);
  const b = decodeInferRequest(body, headerLength);
  t.deepEqual([...b.inputs[0].bytes![0]], [...img]);
});

test('requested outputs and binary_data flags are read', (t) => {
  const r = decodeInferRequest(json({
    inputs: [{ name: 'x', shape: [1], datatype: 'FP32', data: [1] }],
    outputs: [{ name: 'y', parameters: { binary_data: true } }, { name: 'z' }],
    parameters: { binary_data_output: true },
  }));
  t.deepEqual(r.outputs, [{ name: 'y', binary: true }, { name: 'z', binary: false }]);
  t.true(r.binaryOutputs);
});

test('bad requests are 400 BadRequestException naming the problem', (t) => {
  const fp = (extra: object) => ({ inputs: [{ name: 'x', shape: [2, 2], datatype: 'FP32', data: [1, 2, 3, 4], ...extra }] });
  const cases: Array<[string, Buffer, string | undefined, RegExp]> = [
    ['wrong element count', json(fp({ data: [1, 2, 3] })), undefined, /input "x": shape \[2, 2\] needs 4 elements but "data" has 3/],
    ['unknown datatype', json(fp({ datatype: 'FP8' })), undefined, /input "x": unknown datatype "FP8"; expected one of BOOL, UINT8/],
    ['unsupported unsigned width', json(fp({ datatype: 'UINT32' })), undefined, /unknown datatype "UINT32"/],
    ['missing inputs', json({ id: 'a' }), undefined, /"inputs" must be a non-empty array/],
    ['empty inputs', json({ inputs: [] }), undefined, /"inputs" must be a non-empty array/],
    ['missing data', json({ inputs: [{ name: 'x', shape: [1], datatype: 'FP32' }] }), undefined, /input "x": missing "data"/],
    ['missing name', json({ inputs: [{ shape: [1], datatype: 'FP32', data: [1] }] }), undefined, /inputs\[0\]: "name" must be a non-empty string/],
    ['bad shape', json(fp({ shape: [2, -2] })), undefined, /"shape" must be an array of non-negative integers/],
    ['two -1', json(fp({ shape: [-1, -1] })), undefined, /at most one -1/],
    ['non-number', json(fp({ data: [1, 2, 'three', 4] })), undefined, /element 2 \("three"\) is not a number/],
    ['uint8 out of range', json({ inputs: [{ name: 'u', shape: [1], datatype: 'UINT8', data: [256] }] }), undefined, /element 0 \(256\) is not an integer in \[0, 255\] for UINT8/],
    ['int with fraction', json({ inputs: [{ name: 'i', shape: [1], datatype: 'INT32', data: [1.5] }] }), undefined, /is not an integer/],
    ['malformed JSON', Buffer.from('{"inputs": ['), undefined, /Malformed JSON inference header/],
    ['empty body', Buffer.alloc(0), undefined, /Empty request body/],
    ['header length past body', json(fp({})), '100000', /Inference-Header-Content-Length 100000 is past the end of the body/],
    ['header length not a number', json(fp({})), 'abc', /must be a non-negative integer/],
    ['BYTES not base64', json({ inputs: [{ name: 'b', shape: [1], datatype: 'BYTES', data: ['not base64!'] }] }), undefined, /BYTES element 0 in JSON must be base64/],
  ];
  for (const [what, body, hl, message] of cases) {
    const err = t.throws(() => decodeInferRequest(body, hl), { instanceOf: BadRequestError }, what);
    t.regex(err!.message, message, what);
    t.is(err!.type, 'BadRequestException');
    t.is(err!.status, 400);
  }
});

test('binary extension errors are 400 with the sizes involved', (t) => {
  const h = (size: number, shape = [2]) => ({ inputs: [{ name: 'x', shape, datatype: 'FP32', parameters: { binary_data_size: size } }] });
  const eight = Buffer.alloc(8);
  const cases: Array<[string, () => unknown, RegExp]> = [
    ['size past the end', () => { const b = binaryBody(h(16), [eight]); return decodeInferRequest(b.body, b.headerLength); }, /binary_data_size 16 at offset 0 is past the end of the binary data \(8 bytes\)/],
    ['trailing bytes', () => { const b = binaryBody(h(4, [1]), [eight]); return decodeInferRequest(b.body, b.headerLength); }, /4 bytes after the last input's binary_data_size/],
    ['size vs shape', () => { const b = binaryBody(h(8, [3]), [eight]); return decodeInferRequest(b.body, b.headerLength); }, /shape \[3\] needs 3 elements but "data" has 2/],
    ['not a multiple of the item size', () => { const b = binaryBody(h(6, [-1]), [Buffer.alloc(6)]); return decodeInferRequest(b.body, b.headerLength); }, /binary_data_size 6 is not a multiple of 4 bytes \(FP32\)/],
    ['binary size without header', () => decodeInferRequest(json(h(8))), /needs the Inference-Header-Content-Length header/],
  ];
  for (const [what, fn, message] of cases) {
    const err = t.throws(fn, { instanceOf: BadRequestError }, what);
    t.regex(err!.message, message, what);
  }
});

test('half-precision conversions round to nearest even and survive a round trip', (t) => {
  t.is(toHalf(1), 0x3c00);
  t.is(toHalf(65504), 0x7bff);
  t.is(toHalf(65520), 0x7c00, 'rounds up to +Inf');
  t.is(toHalf(2 ** -24), 0x0001, 'smallest subnormal');
  t.is(toHalf(2 ** -26), 0x0000, 'below half the smallest subnormal → 0');
  t.is(toHalf(1 + 2 ** -11), 0x3c00, 'tie → even');
  t.is(toHalf(1 + 3 * 2 ** -11), 0x3c02, 'tie → even (up)');
  t.true(Number.isNaN(fromHalf(toHalf(NaN))));
  for (const v of [0, -0.5, 3.140625, 1000, -65504, 2 ** -20]) t.is(fromHalf(toHalf(v)), v);
  t.is(toBfloat16(1), 0x3f80);
  for (const v of [0, 1, -2.5, 3.140625, 1e30]) t.is(fromBfloat16(toBfloat16(v)), Math.fround(fromBfloat16(toBfloat16(v))));
  t.is(fromBfloat16(toBfloat16(-2.5)), -2.5);
  t.true(Math.abs(fromBfloat16(toBfloat16(3.14159)) - 3.14159) < 0.02);
});

test('output trees are named output{i} / dict keys and encode to JSON or binary', async (t) => {
  const y: Tensor = { data: Float32Array.of(1, 2, 3, 4, 5, 6), shape: [2, 3], dtype: 'float32' };
  const k: Tensor = { data: BigInt64Array.of(5n, 7n), shape: [2], dtype: 'int64' };
  t.deepEqual(namedOutputs(y).map((o) => o.name), ['output0']);
  t.deepEqual(namedOutputs([y, k]).map((o) => [o.name, o.datatype]), [['output0', 'FP32'], ['output1', 'INT64']]);
  t.deepEqual(namedOutputs({ logits: y, extra: { idx: k } }).map((o) => o.name), ['logits', 'extra.idx']);
  t.deepEqual(tensorToJson(k), [5, 7]);

  const outs = namedOutputs([y, k]);
  const asJson = await encodeInferResponse({ id: 'q', model_name: 'm', model_version: '1' }, outs, () => false);
  t.is(asJson.contentType, 'application/json; charset=utf-8');
  t.is(asJson.headerLength, undefined);
  const parsed = JSON.parse(Buffer.concat(asJson.chunks).toString());
  t.deepEqual(parsed, {
    id: 'q', model_name: 'm', model_version: '1',
    outputs: [
      { name: 'output0', datatype: 'FP32', shape: [2, 3], data: [1, 2, 3, 4, 5, 6] },
      { name: 'output1', datatype: 'INT64', shape: [2], data: [5, 7] },
    ],
  });

  // Binary output for output0 only: the bytes after the header are the tensor's little-endian bytes.
  const bin = await encodeInferResponse({ id: 'q' }, outs, (n) => n === 'output0');
  t.is(bin.contentType, 'application/octet-stream');
  const whole = Buffer.concat(bin.chunks);
  const header = JSON.parse(whole.subarray(0, bin.headerLength).toString());
  t.deepEqual(header.outputs[0], { name: 'output0', datatype: 'FP32', shape: [2, 3], parameters: { binary_data_size: 24 } });
  t.deepEqual(header.outputs[1].data, [5, 7]);
  const back = viewOf('float32', whole.subarray(bin.headerLength!));
  t.deepEqual(Array.from(back as Float32Array), [1, 2, 3, 4, 5, 6]);
});

// The KServe v2 gRPC codec without a server: raw inputs become views over the received bytes (no copy when
// aligned), the refusals with their exact messages, and when an answer must be raw.
import test from 'ava';
import { decodeModelInfer, encodeOutputs } from '../../src/grpc/kserve-v2.js';

type Req = Parameters<typeof decodeModelInfer>[0];
const input = (name: string, datatype: string, shape: number[], contents: Record<string, unknown[]> | null = null) => ({
  name, datatype, shape: shape.map(String), parameters: {}, contents: contents as never,
});
const request = (inputs: ReturnType<typeof input>[], raw: Buffer[] = []): Req => ({
  model_name: 'm', model_version: '', id: '', parameters: {}, inputs, outputs: [], raw_input_contents: raw,
});

test('an aligned raw input is a view over the message bytes; a misaligned one is copied once', (t) => {
  const message = Buffer.alloc(64);
  const aligned = message.subarray(8, 24);
  new Float32Array(aligned.buffer, aligned.byteOffset, 4).set([1, 2, 3, 4]);
  const { request: r, raw } = decodeModelInfer(request([input('x', 'FP32', [2, 2])], [aligned]));
  t.true(raw);
  const data = r.inputs[0].tensor!.data as Float32Array;
  t.is(data.buffer, message.buffer, 'no copy');
  t.is(data.byteOffset, message.byteOffset + 8);
  t.deepEqual(Array.from(data), [1, 2, 3, 4]);

  const odd = message.subarray(9, 25);
  odd.set(aligned);
  const copied = decodeModelInfer(request([input('x', 'FP32', [4])], [odd])).request.inputs[0].tensor!.data as Float32Array;
  t.not(copied.buffer, message.buffer);
  t.deepEqual(Array.from(copied), [1, 2, 3, 4]);
});

test('typed contents by datatype; -1 resolved from the count; raw BYTES are length-prefixed', (t) => {
  const { request: r, raw } = decodeModelInfer(request([
    input('a', 'INT8', [-1], { int_contents: [-128, 0, 127] }),
    input('b', 'UINT8', [1, 2], { uint_contents: [0, 255] }),
    input('c', 'BOOL', [2], { bool_contents: [true, false] }),
    input('d', 'FP64', [1], { fp64_contents: [0.1] }),
    input('e', 'BYTES', [1], { bytes_contents: [Buffer.from('hi')] }),
  ]));
  t.false(raw);
  t.deepEqual(r.inputs.map((i) => i.shape), [[3], [1, 2], [2], [1], [1]]);
  t.deepEqual(Array.from(r.inputs[0].tensor!.data as Int8Array), [-128, 0, 127]);
  t.deepEqual(Array.from(r.inputs[2].tensor!.data as Uint8Array), [1, 0]);
  t.deepEqual(r.inputs[4].bytes!.map(String), ['hi']);
  const prefixed = Buffer.concat([Buffer.from([2, 0, 0, 0]), Buffer.from('ab'), Buffer.from([0, 0, 0, 0])]);
  t.deepEqual(decodeModelInfer(request([input('s', 'BYTES', [2])], [prefixed])).request.inputs[0].bytes!.map(String), ['ab', '']);
});

test('bad requests are refused with what was wrong', (t) => {
  const cases: [Req, string][] = [
    [request([]), '"inputs" must be a non-empty list of tensors'],
    [request([input('x', 'FP32', [1]), input('y', 'FP32', [1])], [Buffer.alloc(4)]), 'raw_input_contents has 1 entries for 2 inputs: give one per input, in order'],
    [request([input('x', 'FP32', [1], { fp32_contents: [1] })], [Buffer.alloc(4)]), 'input "x": has contents, but the request uses raw_input_contents (use one or the other)'],
    [request([input('x', 'FP32', [3])], [Buffer.alloc(10)]), 'input "x": raw_input_contents has 10 bytes, not a multiple of 4 (FP32)'],
    [request([input('x', 'INT8', [1], { int_contents: [300] })]), 'input "x": element 0 (300) is not an integer in [-128, 127] for INT8'],
    [request([input('x', 'UINT64', [1], { uint64_contents: ['1'] })]), 'input "x": unknown datatype "UINT64"; expected one of BOOL, UINT8, INT8, INT16, INT32, INT64, FP16, BF16, FP32, FP64, BYTES'],
    [request([input('x', 'BF16', [1])]), 'input "x": BF16 has no typed contents field; send it in raw_input_contents'],
    [request([input('', 'FP32', [1], { fp32_contents: [1] })]), 'inputs[0]: "name" must be a non-empty string'],
  ];
  for (const [req, message] of cases) t.throws(() => decodeModelInfer(req), { message }, message);
});

test('answers are raw when the request was, or when an output is FP16/BF16; typed otherwise', (t) => {
  const f32 = { name: 'y', datatype: 'FP32' as const, shape: [2], tensor: { data: Float32Array.of(1.5, 2), shape: [2], dtype: 'float32' as const } };
  const i64 = { name: 'n', datatype: 'INT64' as const, shape: [1], tensor: { data: BigInt64Array.of(9007199254740993n), shape: [1], dtype: 'int64' as const } };
  const half = { name: 'h', datatype: 'FP16' as const, shape: [1], tensor: { data: Uint16Array.of(0x3c00), shape: [1], dtype: 'float16' as const } };
  const typed = encodeOutputs([f32, i64], false);
  t.deepEqual(typed.raw_output_contents, []);
  t.deepEqual(typed.outputs[0].contents, { fp32_contents: [1.5, 2] });
  t.deepEqual(typed.outputs[1].contents, { int64_contents: ['9007199254740993'] });
  const withHalf = encodeOutputs([f32, half], false);
  t.is(withHalf.outputs[0].contents, undefined);
  t.deepEqual(withHalf.raw_output_contents.map((b) => [...b]), [[...Buffer.from(Float32Array.of(1.5, 2).buffer)], [0x00, 0x3c]]);
  t.is(encodeOutputs([f32], true).raw_output_contents.length, 1);
});

// Large JSON bodies are parsed on a worker thread (bounded-json.ts parseJsonBoundedAsync): the same values, bounds
// and messages as the synchronous parse, with rectangular numeric arrays packed as Float64Array + shape so that
// bringing them back costs the event loop almost nothing. The packing itself, and the tensor conversions that take
// the packed form, are checked here; the HTTP rows are in bad-inputs.test.ts and amplification.test.ts.
import test from 'ava';
import {
  PACK_MIN_NUMBERS, PackedArray, packNumericArrays, parseJsonBounded, parseJsonBoundedAsync, plainJson, unpackInto, closeJsonWorkers,
} from '../../src/bounded-json.js';
import { jsonToTensor } from '../../src/handlers/tensors.js';
import { decodeInferRequest } from '../../src/http/v2/codec.js';

test.after.always(() => closeJsonWorkers());

const N = PACK_MIN_NUMBERS;
const seq = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i);
const bounds = { maxDepth: 64, maxElements: 10_000 };

/** What the worker does, in process: pack a parsed value and put the packs back. */
function roundTrip(value: unknown): { value: unknown; packed: number } {
  const { value: stripped, packs } = packNumericArrays(structuredClone(value));
  return { value: unpackInto(stripped, packs), packed: packs.length };
}

test('a rectangular numeric array (1-D, 2-D, 3-D) is packed row-major with its shape', (t) => {
  const oneD = seq(N);
  const { value: v1 } = roundTrip(oneD);
  t.true(v1 instanceof PackedArray);
  t.deepEqual((v1 as PackedArray).shape, [N]);
  t.deepEqual(Array.from((v1 as PackedArray).data), oneD);
  const threeD = [0, 1].map((a) => [0, 1].map((b) => seq(N / 4, (a * 2 + b) * (N / 4))));
  const { value: v3 } = roundTrip(threeD);
  t.deepEqual((v3 as PackedArray).shape, [2, 2, N / 4]);
  t.deepEqual(Array.from((v3 as PackedArray).data), seq(N));
  // rows(): views of the outermost dimension, and plainJson gives the nested arrays back.
  t.deepEqual(((v3 as PackedArray).rows() as PackedArray[]).map((r) => r.shape), [[2, N / 4], [2, N / 4]]);
  t.deepEqual(plainJson(v3), threeD);
});

test('ragged arrays (their rows too), mixed types, short arrays and empty arrays stay plain; objects are searched', (t) => {
  const ragged = [seq(N), seq(N - 1)];
  const mixed = [...seq(N), 'x'];
  const withBool = [...seq(N - 1), true];
  const withNull = [...seq(N - 1), null];
  const short = seq(N - 1);
  for (const plain of [ragged, mixed, withBool, withNull, short, [], [[]], [{ a: 1 }, seq(N)]]) {
    const r = roundTrip(plain);
    t.is(r.packed, 0);
    t.deepEqual(r.value, plain);
  }
  const doc = { id: 'a', inputs: [{ name: 'x', shape: [1, N], data: [seq(N)] }, { name: 'y', data: ragged }], parameters: { target: [1, 2] } };
  const { value, packed } = roundTrip(doc);
  t.is(packed, 1);
  const inputs = (value as typeof doc).inputs;
  t.true((inputs[0].data as unknown) instanceof PackedArray);
  t.deepEqual(inputs[0].shape, [1, N]);
  t.deepEqual(inputs[1].data, ragged);
  t.deepEqual((value as typeof doc).parameters, { target: [1, 2] });
  t.is((value as typeof doc).id, 'a');
});

test('on the worker: the same value as JSON.parse, numeric arrays packed (1e999 stays Infinity)', async (t) => {
  const text = `{"instances": [[${seq(N).join(',')}, 1e999]], "note": "x"}`;
  const parsed = (await parseJsonBoundedAsync(Buffer.from(text), bounds)) as { instances: PackedArray; note: string };
  t.true(parsed.instances instanceof PackedArray);
  t.deepEqual(parsed.instances.shape, [1, N + 1]);
  t.is(parsed.instances.data[N], Infinity);
  t.is(parsed.note, 'x');
  t.deepEqual(plainJson(parsed.instances), (JSON.parse(text) as { instances: number[][] }).instances);
});

test('on the worker: each bound and malformed JSON give exactly the synchronous message', async (t) => {
  const docs = [
    '['.repeat(100) + ']'.repeat(100), // too deep
    `{"instances": [${Array(10_001).fill('[0]').join(',')}]}`, // too many arrays in one array
    `[[${seq(N).join(',')},]]`, // trailing comma
    '{"a": 1', // truncated
  ];
  for (const doc of docs) {
    const sync = t.throws(() => parseJsonBounded(Buffer.from(doc), bounds, 'JSON inference header'))!;
    const offLoop = await t.throwsAsync(parseJsonBoundedAsync(Buffer.from(doc), bounds, 'JSON inference header'));
    t.is(offLoop!.constructor.name, 'BadRequestError');
    t.is(offLoop!.message, sync.message);
  }
});

test('jsonToTensor takes a packed array as it takes the nested one: shape, dtype conversion, and the same errors', (t) => {
  const values = seq(N).map((i) => i / 8 - 3);
  const packed = new PackedArray(Float64Array.from(values), [2, N / 2]);
  const plain = plainJson(packed);
  for (const dtype of ['float32', 'float64', 'float16', 'int64'] as const) {
    const fromPlain = (() => { try { return jsonToTensor(plain, dtype); } catch (err) { return (err as Error).message; } })();
    const fromPacked = (() => { try { return jsonToTensor(packed, dtype); } catch (err) { return (err as Error).message; } })();
    t.deepEqual(fromPacked, fromPlain, dtype);
  }
  t.is((jsonToTensor(packed) as { data: Float32Array }).data[3], Math.fround(values[3]));
  // {data, shape} with packed data.
  const obj = jsonToTensor({ data: new PackedArray(Float64Array.from(values), [N]), shape: [4, N / 4] });
  t.deepEqual(obj.shape, [4, N / 4]);
  t.is(t.throws(() => jsonToTensor({ data: new PackedArray(Float64Array.from(values), [N]), shape: [3] }))!.message,
    `Tensor data has ${N} elements but shape [3] needs 3`);
});

test('the v2 codec takes packed "data" with the nested array\'s checks and messages', (t) => {
  const values = seq(N).map((i) => i - 100.5);
  const request = (data: unknown, datatype = 'FP32', shape = [1, -1]) => ({ inputs: [{ name: 'x', datatype, shape, data }] });
  const packed = () => new PackedArray(Float64Array.from(values), [N]);
  const fp32 = decodeInferRequest(request(packed()));
  t.deepEqual(fp32.inputs[0].shape, [1, N]);
  t.deepEqual(Array.from(fp32.inputs[0].tensor!.data as Float32Array), Array.from(Float32Array.from(values)));
  for (const [datatype, shape] of [['INT32', [1, -1]], ['BYTES', [N]], ['FP32', [3]], ['FP64', [2, -1]]] as const) {
    const viaPlain = (() => { try { return decodeInferRequest(request(values, datatype, [...shape])).inputs[0].tensor?.data.length; } catch (err) { return (err as Error).message; } })();
    const viaPacked = (() => { try { return decodeInferRequest(request(packed(), datatype, [...shape])).inputs[0].tensor?.data.length; } catch (err) { return (err as Error).message; } })();
    t.is(viaPacked, viaPlain, `${datatype} [${shape}]`);
  }
});

// The response encoder thread (src/handlers/response-encoder.ts) writes the same bytes the event loop would: a
// large tensor's JSON text byte for byte as JSON.stringify of its nested arrays (float32 widened to double, int64 as
// Number, fp16/bf16 decoded, booleans, NaN/±Infinity as null, every shape), a whole body with some tensors encoded
// there equal to the body encoded on the loop, and a heatmap PNG equal to the one rendered in process.
import test from 'ava';
import { cpus, loadavg } from 'node:os';
import { OrderedJson, serializeJson, serializeJsonBuffer, serializeJsonChunks, TensorJson, tensorToJson, closeResponseEncoders } from '../../src/handlers/index.js';
import { renderHeatmap } from '../../src/handlers/heatmap.js';
import { encodeTensorJsonOffLoop, renderHeatmapOffLoop } from '../../src/handlers/response-encoder.js';
import { tensorJsonText } from '../../src/handlers/output.js';
import { toBfloat16, toHalf } from '../../src/float16.js';
import type { DType, Tensor, TypedArray } from '../../src/native.js';

test.after.always(() => closeResponseEncoders());

const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** Awkward float32 values: non-finite, signed zero, subnormal, extremes, values with long shortest forms. */
const AWKWARD = [NaN, Infinity, -Infinity, -0, 0, 1e-45, -1.4e-45, 3.4028234663852886e38, -3.4e38, 0.1, 1 / 3, -2.5e-8, 123456789, 16777217, 1e21, 1e-7];

function floats(n: number, seed: number): number[] {
  return Array.from({ length: n }, (_, i) => (i < AWKWARD.length ? AWKWARD[(i + seed) % AWKWARD.length] : Math.sin(i * 12.9898 + seed) * 10 ** ((i % 13) - 6)));
}

function tensorOf(dtype: DType, shape: number[], seed = 1): Tensor {
  const n = size(shape);
  const f = floats(n, seed);
  let data: TypedArray;
  switch (dtype) {
    case 'float32': data = Float32Array.from(f); break;
    case 'float64': data = Float64Array.from(f); break;
    case 'float16': data = Uint16Array.from(f, toHalf); break;
    case 'bfloat16': data = Uint16Array.from(f, toBfloat16); break;
    // int64 beyond 2^53 prints as the nearest double, as Number(bigint) does on the loop.
    case 'int64': data = BigInt64Array.from({ length: n }, (_, i) => (i % 3 === 0 ? 9007199254740993n * BigInt(i % 2 ? -1 : 1) : BigInt(i * 7919 - 5000))); break;
    case 'int32': data = Int32Array.from({ length: n }, (_, i) => (i % 2 ? -1 : 1) * ((i * 2654435761) % 2147483647)); break;
    case 'int16': data = Int16Array.from({ length: n }, (_, i) => i * 31 - 30000); break;
    case 'int8': data = Int8Array.from({ length: n }, (_, i) => i - 128); break;
    case 'uint8': data = Uint8Array.from({ length: n }, (_, i) => i % 256); break;
    case 'bool': data = Uint8Array.from({ length: n }, (_, i) => (i % 3 === 0 ? 1 : 0)); break;
  }
  return { data, shape, dtype };
}

const DTYPES: DType[] = ['float32', 'float64', 'float16', 'bfloat16', 'int64', 'int32', 'int16', 'int8', 'uint8', 'bool'];
const SHAPES: [number[], number][] = [[[], 0], [[0], 0], [[2, 0], 0], [[5], 0], [[1, 7], 1], [[2, 3, 4], 0], [[1, 1, 3, 5], 2], [[3, 1, 2], 0]];

test.serial('tensorJsonText is JSON.stringify of the nested arrays, byte for byte, for every dtype and shape (nested and flat)', (t) => {
  let checked = 0;
  for (const dtype of DTYPES) {
    for (const [shape, drop] of SHAPES) {
      const tensor = tensorOf(dtype, shape);
      t.is(tensorJsonText(new TensorJson(tensor, drop)), JSON.stringify(tensorToJson(tensor, drop)), `${dtype} [${shape}] drop ${drop}`);
      t.is(tensorJsonText(new TensorJson(tensor, 0, true)), JSON.stringify(new TensorJson(tensor, 0, true).toJSON()), `${dtype} [${shape}] flat`);
      checked++;
    }
  }
  t.is(checked, DTYPES.length * SHAPES.length);
  // The float32 cases spelled out: widened to double, NaN/±Infinity → null, -0 → 0.
  const f = { data: Float32Array.of(NaN, Infinity, -Infinity, -0, 0.1, 1e-45, 3.4028234663852886e38), shape: [1, 7], dtype: 'float32' as const };
  t.is(tensorJsonText(new TensorJson(f, 1)), '[null,null,null,0,0.10000000149011612,1.401298464324817e-45,3.4028234663852886e+38]');
  t.is(tensorJsonText(new TensorJson({ data: BigInt64Array.of(9007199254740993n, -5n), shape: [2], dtype: 'int64' })), '[9007199254740992,-5]');
  t.is(tensorJsonText(new TensorJson({ data: Uint8Array.of(1, 0), shape: [2, 1], dtype: 'bool' })), '[[true],[false]]');
  t.is(tensorJsonText(new TensorJson({ data: Uint16Array.of(toHalf(0.1), 0x7e00), shape: [2], dtype: 'float16' })), '[0.0999755859375,null]');
});

test.serial('on the encoder thread: the same UTF-8 bytes as in process, for every dtype', async (t) => {
  for (const dtype of DTYPES) {
    const tensor = tensorOf(dtype, [3, 2, 700], 5);
    for (const tj of [new TensorJson(tensor), new TensorJson({ ...tensor, shape: [1, 4200] }, 1), new TensorJson(tensor, 0, true)]) {
      const bytes = await encodeTensorJsonOffLoop(tj);
      t.true(Buffer.isBuffer(bytes));
      t.true(bytes.equals(Buffer.from(JSON.stringify(tj.toJSON()), 'utf8')), `${dtype} [${tj.tensor.shape}] flat ${tj.flat}`);
    }
    // The tensor sent is a copy: the caller's data is still there (never detached).
    t.is(tensor.data.length, 4200);
  }
});

test.serial('a body with tensors encoded off the loop equals the body encoded on it (OrderedJson, objects, small and large tensors)', async (t) => {
  const big = tensorOf('float32', [8, 20_000], 3);
  const body = {
    predictions: [
      [new TensorJson(big), { sum: new TensorJson(tensorOf('float32', [8], 4)), max: new TensorJson(tensorOf('int64', [], 2)) }],
      new OrderedJson([['281', 0.5], ['10', 0.25]]),
      new TensorJson(tensorOf('bool', [1, 40_000], 6), 1),
    ],
    label: 'Größe ✓',
  };
  const onLoop = await serializeJsonBuffer(body); // threshold Infinity: everything on the loop
  const offLoop = await serializeJsonChunks(body, 16_384);
  // The two large tensors came from the thread as pieces of their own; the text around them from the loop.
  t.is(offLoop.length, 5);
  t.true(Buffer.concat(offLoop).equals(onLoop));
  t.true(onLoop.toString('utf8').includes('{"281":0.5,"10":0.25}')); // label order kept
  t.is(await serializeJson(body), onLoop.toString('utf8'));
});

test.serial('the event loop keeps turning while a 700 000-number tensor is encoded off it', async (t) => {
  const tj = new TensorJson(tensorOf('float32', [8, 87_500], 7));
  const expected = Buffer.from(`{"out":${JSON.stringify(tj.toJSON())}}`);
  await encodeTensorJsonOffLoop(new TensorJson(tensorOf('float32', [4], 1))); // the thread started
  // Up to 3 tries while the gap is over the bound (other processes share these cores); the best one counts.
  let best = Infinity;
  for (let attempt = 0; attempt < 3 && best >= 20; attempt++) {
    let worst = 0;
    let last = performance.now();
    const probe = setInterval(() => {
      const now = performance.now();
      worst = Math.max(worst, now - last);
      last = now;
    }, 1);
    const t0 = performance.now();
    const bytes = await serializeJsonChunks({ out: tj }, 16_384);
    const ms = performance.now() - t0;
    clearInterval(probe);
    t.log(`encoded ${Buffer.concat(bytes).length} bytes in ${ms.toFixed(1)} ms; longest loop gap ${worst.toFixed(1)} ms`);
    t.true(Buffer.concat(bytes).equals(expected));
    best = Math.min(best, worst);
  }
  // On the loop this text took 100–250 ms to print; here the loop only waits. Timing asserted on a machine that is
  // not oversubscribed (the convention of test/service/amplification.test.ts).
  const loadPerCore = loadavg()[0] / cpus().length;
  if (loadPerCore > 1.5) t.log(`loop gap not asserted: machine oversubscribed (load per core ${loadPerCore.toFixed(1)} > 1.5)`);
  else t.true(best < 20, `longest loop gap ${best} ms`);
});

test.serial('renderHeatmapOffLoop gives renderHeatmap\'s PNG, and its errors as a 500 with the renderer\'s message', async (t) => {
  const att = tensorOf('float32', [1, 3, 32, 24], 8);
  const input = tensorOf('float32', [1, 3, 32, 24], 9);
  const source = { attributions: att, input, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
  for (const options of [{}, { overlay: false }]) {
    const inProcess = await renderHeatmap(source, options);
    const offLoop = await renderHeatmapOffLoop(source, options);
    t.true(offLoop.equals(inProcess), JSON.stringify(options));
  }
  const err = await t.throwsAsync(renderHeatmapOffLoop({ attributions: tensorOf('float32', [10]) }));
  t.is(err!.constructor.name, 'TorchdError');
  t.is((err as unknown as { status: number }).status, 500);
  t.is(err!.message, 'Encoding the response failed: TypeError: A heatmap needs an image-shaped attribution tensor ([C, H, W] or [1, C, H, W]), got [10]');
});

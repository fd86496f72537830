// The heatmap renderer (src/handlers/heatmap.ts) on synthetic attributions whose answer is known: size, PNG
// signature, where colour goes (sign, magnitude, 99th-percentile scaling) and where the input shows through.
import test from 'ava';
import sharp from 'sharp';
import { absQuantile, attributionMap, divergingColour, inputPixels, pngDataUrl, renderHeatmap } from '../../src/handlers/heatmap.js';
import type { Tensor } from '../../src/native.js';

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const MNIST = { mean: [0.1307], std: [0.3081] };
const IMAGENET = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };

function tensor(shape: number[], fill: (c: number, y: number, x: number) => number): Tensor {
  const [c, h, w] = shape.slice(-3);
  const data = new Float32Array(c * h * w);
  for (let k = 0; k < c; k++) for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data[(k * h + y) * w + x] = fill(k, y, x);
  return { data, shape, dtype: 'float32' };
}

async function pixels(png: Buffer): Promise<{ width: number; height: number; channels: number; at(x: number, y: number): number[] }> {
  const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  return { ...info, at: (x, y) => [...data.subarray((y * info.width + x) * info.channels, (y * info.width + x) * info.channels + 3)] };
}

// A grey ramp digit-sized input, normalised as the MNIST handler does; attributions: +hot at (20, 5), -hot at (5, 20).
const ramp = tensor([1, 1, 28, 28], (_c, _y, x) => (x / 27 - MNIST.mean[0]) / MNIST.std[0]);
const hot = tensor([1, 1, 28, 28], (_c, y, x) => (y === 5 && x === 20 ? 3 : y === 20 && x === 5 ? -3 : 0));

test('PNG of the model input width × height (28×28 grey; 224×224 RGB)', async (t) => {
  const png = await renderHeatmap({ attributions: hot, input: ramp, ...MNIST });
  t.deepEqual(png.subarray(0, 8), PNG_SIGNATURE);
  const meta = await sharp(png).metadata();
  t.is(meta.format, 'png');
  t.is(meta.width, 28);
  t.is(meta.height, 28);
  const rgb = tensor([1, 3, 224, 224], (c, y, x) => ((x + y + c) % 7) / 10);
  const meta2 = await sharp(await renderHeatmap({ attributions: rgb, input: rgb, ...IMAGENET })).metadata();
  t.deepEqual([meta2.width, meta2.height], [224, 224]);
});

test('pixels differ from the plain input where |attribution| is largest, and equal it where it is zero', async (t) => {
  const png = await pixels(await renderHeatmap({ attributions: hot, input: ramp, ...MNIST }));
  t.is(png.channels, 3, 'RGB, no alpha channel');
  const plain = inputPixels(ramp, MNIST.mean, MNIST.std);
  const input = (x: number, y: number) => [...plain.rgb.subarray((y * 28 + x) * 3, (y * 28 + x) * 3 + 3)];
  for (const [x, y] of [[20, 5], [5, 20]]) {
    const diff = png.at(x, y).reduce((s, v, k) => s + Math.abs(v - input(x, y)[k]), 0);
    t.true(diff > 60, `(${x}, ${y}): ${png.at(x, y)} vs input ${input(x, y)}`);
  }
  for (const [x, y] of [[0, 0], [14, 14], [27, 27]]) t.deepEqual(png.at(x, y), input(x, y), `(${x}, ${y})`);
});

test('signed: positive attribution reads red, negative blue', async (t) => {
  const png = await pixels(await renderHeatmap({ attributions: hot, input: ramp, ...MNIST }));
  const [r1, , b1] = png.at(20, 5);
  const [r2, , b2] = png.at(5, 20);
  t.true(r1 > b1 + 40, `positive: ${png.at(20, 5)}`);
  t.true(b2 > r2 + 40, `negative: ${png.at(5, 20)}`);
  t.deepEqual(divergingColour(1), [103, 0, 31]);
  t.deepEqual(divergingColour(-1), [5, 48, 97]);
  t.deepEqual(divergingColour(0), [247, 247, 247]);
  t.deepEqual(divergingColour(7), divergingColour(1), 'clamped');
});

test('summed over channels; scaled to the 99th percentile of |attribution|, so one outlier does not wash out the rest', async (t) => {
  // 3 channels: +1, +1, -1 → sum +1 everywhere, except one pixel at 1000 in each channel (sum 3000).
  const attributions = tensor([3, 10, 10], (c, y, x) => (y === 0 && x === 0 ? 1000 : c === 2 ? -1 : 1));
  const map = attributionMap(attributions);
  t.is(map.values[1], 1);
  t.is(map.values[0], 3000);
  t.is(map.scale, 1, 'p99 of 99 ones and one 3000');
  t.is(absQuantile(Float32Array.from([-5, 1, 2, 3]), 0.99), 5);
  const png = await pixels(await renderHeatmap({ attributions }, { overlay: false }));
  // Every ordinary pixel is at the top of the scale: the darkest red, not the near-white of 1/2000.
  t.deepEqual(png.at(5, 5), [103, 0, 31]);
});

test('overlay=false: the colour map alone (zero attribution near white), RGB', async (t) => {
  const png = await pixels(await renderHeatmap({ attributions: hot, input: ramp, ...MNIST }, { overlay: false }));
  t.is(png.channels, 3);
  t.deepEqual(png.at(0, 0), [247, 247, 247]);
  t.deepEqual(png.at(27, 0), [247, 247, 247], 'the input ramp does not show');
  t.deepEqual(png.at(20, 5), [103, 0, 31]);
});

test('all-zero attributions render the input unchanged (no division by zero)', async (t) => {
  const zero = tensor([1, 1, 28, 28], () => 0);
  const png = await pixels(await renderHeatmap({ attributions: zero, input: ramp, ...MNIST }));
  const plain = inputPixels(ramp, MNIST.mean, MNIST.std);
  t.deepEqual(png.at(27, 3), [...plain.rgb.subarray((3 * 28 + 27) * 3, (3 * 28 + 27) * 3 + 3)]);
});

test('bad tensors are refused with a TypeError naming the problem', async (t) => {
  const flat: Tensor = { data: new Float32Array(10), shape: [10], dtype: 'float32' };
  await t.throwsAsync(renderHeatmap({ attributions: flat, ...MNIST }), { instanceOf: TypeError, message: 'A heatmap needs an image-shaped attribution tensor ([C, H, W] or [1, C, H, W]), got [10]' });
  const ints: Tensor = { data: new Int32Array(4), shape: [1, 2, 2], dtype: 'int32' };
  await t.throwsAsync(renderHeatmap({ attributions: ints, ...MNIST }), { instanceOf: TypeError, message: 'A heatmap needs a float32 attribution tensor, got int32' });
  const small = tensor([1, 14, 14], () => 0);
  await t.throwsAsync(renderHeatmap({ attributions: hot, input: small, ...MNIST }), { instanceOf: TypeError, message: 'Attributions (28×28) and input (14×14) differ in size' });
});

test('data URL form for a JSON list of several heatmaps', (t) => {
  t.is(pngDataUrl(Buffer.from([1, 2, 3])), 'data:image/png;base64,AQID');
});

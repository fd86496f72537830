// The opt-in `fast_decode` handler key (README, model config): JPEGs whose shorter side is at least twice
// image_size decode at a reduced libjpeg-turbo DCT scale (1/2, 1/4, 1/8) before the same resize. Not
// bit-identical, so this checks the documented tolerance on the model input, that the top-1 class agrees on
// the fixtures (and on the shared data photos when they are there), that it changes nothing where no scale
// applies, and that the key is validated and reaches the native call from a model config.
import test from 'ava';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';

import { imageToTensor, nativeSpec } from '../../src/handlers/image.js';
import type { ImageConfig } from '../../src/handlers/image-preprocess.js';
import { loadModel, preprocessImage, type Model } from '../../src/native.js';
import { resolveHandler } from '../../src/store/model-config.js';
import { sharedData } from '../fixtures/shared-data.js';
import { ensureResnet, FIXTURES, IMAGENET } from './helpers.js';

/** README's documented bound for fast_decode against the exact path (normalised units; 1.0 ≈ 57/255 levels). */
const MAX_ABS = 1.5;
const MEAN_ABS = 0.12;

const imagesDir = join(FIXTURES, '..', 'images');
const CONFIG: ImageConfig = { channels: 3, image_size: 256, crop_size: 224, mean: IMAGENET.mean, std: IMAGENET.std };
/** A small target, so that the 320×213 fixture JPEGs are "large" for it and get the 1/2 scale. */
const SMALL: ImageConfig = { ...CONFIG, image_size: 96, crop_size: 88 };

const read = (dir: string, f: string): Buffer => readFileSync(join(dir, f));
const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** [name, bytes, config] for which fast_decode must use a reduced scale. */
async function scaledCases(): Promise<[string, Buffer, ImageConfig][]> {
  const sample = read(FIXTURES, 'sample.jpg');
  const cases: [string, Buffer, ImageConfig][] = [
    // The photo sizes the option is for: sample.jpg re-encoded at 1280 px wide and 1024 px high (the 1/2 and
    // 1/4 scales; the exact native path takes short sides up to 4 × image_size).
    ['sample.jpg @1280', await sharp(sample).resize(1280).jpeg({ quality: 90 }).toBuffer(), CONFIG],
    ['sample.jpg @h1024', await sharp(sample).resize({ height: 1024 }).jpeg({ quality: 90 }).toBuffer(), CONFIG],
    // EXIF orientation 6 kept through the reduced decode (sample_exif6.jpg is 240×360 stored, 360×240 shown).
    ['sample_exif6.jpg @2x', await sharp(read(FIXTURES, 'sample_exif6.jpg')).resize(480).jpeg({ quality: 90 }).withMetadata({ orientation: 6 }).toBuffer(), { ...CONFIG, image_size: 128, crop_size: 112 }],
    ...['jpeg_420.jpg', 'jpeg_444.jpg', 'jpeg_progressive.jpg'].map((f) => [f, read(imagesDir, f), SMALL] as [string, Buffer, ImageConfig]),
  ];
  for (const f of ['mobilenet_v2/cat_720p.jpg', 'mobilenet_v2/parrot.jpg']) {
    const path = sharedData(f);
    if (path) cases.push([`data/${f}`, readFileSync(path), CONFIG]);
  }
  return cases;
}

function diff(a: Float32Array, b: Float32Array): { max: number; mean: number } {
  let max = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (d > max) max = d;
    sum += d;
  }
  return { max, mean: sum / a.length };
}

async function both(bytes: Buffer, config: ImageConfig): Promise<[Float32Array, Float32Array, number[]]> {
  const exact = await preprocessImage(bytes, nativeSpec(config));
  const fast = await preprocessImage(bytes, nativeSpec({ ...config, fast_decode: true }));
  if (!('data' in exact)) throw new Error(`exact path declined: ${exact.declined}`);
  if (!('data' in fast)) throw new Error(`fast_decode declined: ${fast.declined}`);
  return [exact.data, fast.data, fast.shape];
}

async function top1(model: Model, data: Float32Array, shape: number[]): Promise<number> {
  const out = (await model.forward([{ data, shape, dtype: 'float32' }])) as { data: Float32Array };
  let best = 0;
  for (let i = 1; i < out.data.length; i++) if (out.data[i] > out.data[best]) best = i;
  return best;
}

test('fast_decode stays within the documented tolerance of the exact path, and differs where a DCT scale applies', async (t) => {
  for (const [name, bytes, config] of await scaledCases()) {
    const [exact, fast, shape] = await both(bytes, config);
    t.deepEqual(shape, [1, 3, config.crop_size, config.crop_size], name);
    const { max, mean } = diff(exact, fast);
    t.log(`${name}: max |Δ| ${max.toFixed(4)}, mean |Δ| ${mean.toFixed(5)}`);
    t.true(max > 0, `${name}: fast_decode changed nothing; the reduced scale was not used`);
    t.true(max <= MAX_ABS, `${name}: max |Δ| ${max} > ${MAX_ABS}`);
    t.true(mean <= MEAN_ABS, `${name}: mean |Δ| ${mean} > ${MEAN_ABS}`);
  }
});

test('fast_decode is bit-identical where no scale keeps the short side ≥ image_size (and for PNGs)', async (t) => {
  for (const [name, bytes] of [
    ['sample.jpg', read(FIXTURES, 'sample.jpg')],
    ['sample_exif6.jpg', read(FIXTURES, 'sample_exif6.jpg')],
    ['jpeg_420.jpg', read(imagesDir, 'jpeg_420.jpg')],
    ['sample.png', read(FIXTURES, 'sample.png')],
  ] as [string, Buffer][]) {
    const [exact, fast] = await both(bytes, CONFIG);
    t.true(bits(exact).equals(bits(fast)), name);
  }
});

test('top-1 agrees between fast_decode and the exact path (ResNet-18 fixture; real MobileNetV2 when converted)', async (t) => {
  const models: [string, Model][] = [['resnet18', await loadModel(ensureResnet())]];
  const mnv2 = join(FIXTURES, 'mobilenet_v2', 'model.pt');
  if (sharedData('mobilenet_v2/cat_720p.jpg') && existsSync(mnv2)) models.push(['mobilenet_v2', await loadModel(mnv2)]);
  else t.log('MobileNetV2 not converted here (scripts/setup needs ../shared/data): ResNet-18 only');
  try {
    for (const [name, bytes, config] of await scaledCases()) {
      if (config !== CONFIG) continue; // the 224² models are compared at their own input size
      const [exact, fast, shape] = await both(bytes, config);
      for (const [label, model] of models) t.is(await top1(model, fast, shape), await top1(model, exact, shape), `${label}: ${name}`);
    }
  } finally {
    for (const [, m] of models) await m.dispose();
  }
});

test('handler.fast_decode: validated as a boolean, off unless set, and passed to the native call', async (t) => {
  t.false('fast_decode' in resolveHandler('m', 'image_classifier', { name: 'image_classifier' }));
  t.false('fast_decode' in resolveHandler('m', 'image_classifier', { name: 'image_classifier', fast_decode: false }));
  const on = resolveHandler('m', 'image_classifier', { name: 'image_classifier', fast_decode: true });
  t.true(on.fast_decode);
  const big = await sharp(read(FIXTURES, 'sample.jpg')).resize(1280).jpeg({ quality: 90 }).toBuffer();
  const [exact, fast] = await both(big, CONFIG);
  t.true(bits((await imageToTensor(big, on)).data as Float32Array).equals(bits(fast)));
  t.true(bits((await imageToTensor(big, IMAGENET)).data as Float32Array).equals(bits(exact)));
  await t.throwsAsync(preprocessImage(big, { ...nativeSpec(CONFIG), fastDecode: 'yes' as unknown as boolean }), {
    instanceOf: TypeError,
    code: 'E_ARGUMENT',
    message: /spec.fastDecode must be a boolean/,
  } as never);
});

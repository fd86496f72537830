// What the opt-in `fast_decode` handler key costs and saves (bench/NOTES.md §30, README "fast_decode"): for
// each JPEG of the fixtures and of the shared data photos, the model input tensor with and without it (max and
// mean absolute difference), the top-1 class of ResNet-18 (fixture, random weights) and of the real MobileNetV2
// (when scripts/setup converted it) on both, and the native preprocess time of both (p50 of --iters calls,
// one at a time). Not a test. Run: npx tsx bench/fast-decode.ts [--iters 40] [--image-size 256 --crop 224]
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import sharp from 'sharp';

import { nativeSpec } from '../src/handlers/image.js';
import { loadModel, preprocessImage, type Model } from '../src/native.js';
import { IMAGENET_MEAN, IMAGENET_STD } from '../src/store/model-config.js';
import { REPO_ROOT, SHARED_DATA } from '../test/fixtures/shared-data.js';

const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const iters = arg('--iters', 40);
const imageSize = arg('--image-size', 256);
const cropSize = arg('--crop', 224);
const config = { channels: 3 as const, image_size: imageSize, crop_size: cropSize, mean: IMAGENET_MEAN, std: IMAGENET_STD };

const FIX = join(REPO_ROOT, 'test', 'fixtures');
const images: [string, Buffer][] = [
  ...readdirSync(join(FIX, 'images')).filter((f) => f.endsWith('.jpg')).map((f) => [f, readFileSync(join(FIX, 'images', f))] as [string, Buffer]),
  ...['sample.jpg', 'sample_exif6.jpg'].map((f) => [f, readFileSync(join(FIX, 'models', f))] as [string, Buffer]),
  ...['mobilenet_v2/cat_720p.jpg', 'mobilenet_v2/parrot.jpg', 'seed/kitten_small.jpg', 'seed/dogs-before.jpg']
    .filter((f) => existsSync(join(SHARED_DATA, f)))
    .map((f) => [`data/${f}`, readFileSync(join(SHARED_DATA, f))] as [string, Buffer]),
];
// A 1280 px re-encode of sample.jpg: the size of photo the option is for (short side ≥ 2 × image_size).
images.push(['sample.jpg @1280 (re-encoded, q90)', await sharp(images.find(([n]) => n === 'sample.jpg')![1]).resize(1280).jpeg({ quality: 90 }).toBuffer()]);

const models: [string, Model][] = [['resnet18 (random weights)', await loadModel(join(FIX, 'models', 'resnet18.pt'))]];
const mnv2 = join(FIX, 'models', 'mobilenet_v2', 'model.pt');
if (existsSync(mnv2)) models.push(['mobilenet_v2 (pretrained)', await loadModel(mnv2)]);

async function top1(model: Model, data: Float32Array): Promise<number> {
  const out = (await model.forward([{ data, shape: [1, 3, cropSize, cropSize], dtype: 'float32' }])) as { data: Float32Array };
  let best = 0;
  for (let i = 1; i < out.data.length; i++) if (out.data[i] > out.data[best]) best = i;
  return best;
}

async function p50(bytes: Buffer, fast: boolean): Promise<number> {
  const spec = nativeSpec({ ...config, fast_decode: fast });
  for (let i = 0; i < 5; i++) await preprocessImage(bytes, spec);
  const t: number[] = [];
  for (let i = 0; i < iters; i++) {
    const s = performance.now();
    await preprocessImage(bytes, spec);
    t.push(performance.now() - s);
  }
  return t.sort((a, b) => a - b)[Math.floor(t.length / 2)];
}

const rows: string[] = [];
for (const [name, bytes] of images) {
  const exact = await preprocessImage(bytes, nativeSpec(config));
  const fast = await preprocessImage(bytes, nativeSpec({ ...config, fast_decode: true }));
  const meta = await sharp(bytes).metadata();
  if (!('data' in fast) || !('data' in exact)) {
    const why = 'declined' in exact ? `exact: ${exact.declined}` : `fast: ${(fast as { declined: string }).declined}`;
    rows.push(`| ${name} | ${meta.width}×${meta.height} | declined (${why}) | | | | |`);
    continue;
  }
  let max = 0;
  let sum = 0;
  for (let i = 0; i < exact.data.length; i++) {
    const d = Math.abs(exact.data[i] - fast.data[i]);
    max = Math.max(max, d);
    sum += d;
  }
  const tops: string[] = [];
  for (const [, model] of models) {
    const [a, b] = [await top1(model, exact.data), await top1(model, fast.data)];
    tops.push(a === b ? `same (${a})` : `**${a} → ${b}**`);
  }
  const [te, tf] = [await p50(bytes, false), await p50(bytes, true)];
  rows.push(`| ${basename(name) === name ? name : name} | ${meta.width}×${meta.height} | ${max.toFixed(4)} | ${(sum / exact.data.length).toFixed(5)} | ${tops.join(' / ')} | ${te.toFixed(2)} | ${tf.toFixed(2)} |`);
}
console.log(`image_size ${imageSize}, crop ${cropSize}; top-1: ${models.map(([n]) => n).join(' / ')}; p50 of ${iters} native calls`);
console.log('| image | size | max abs diff | mean abs diff | top-1 exact → fast | exact ms | fast_decode ms |');
console.log('|---|---|---|---|---|---|---|');
for (const r of rows) console.log(r);
for (const [, m] of models) await m.dispose();

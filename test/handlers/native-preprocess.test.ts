// Native JPEG/PNG preprocessing (native/core/image_preprocess.cpp on the addon's threads) against the JS path
// (sharp decode + resample.ts) it replaces: bit-identical float32 tensors on every fixture image and config,
// and what it declines (CMYK, gray sources for 3-channel models, corrupt or truncated data) still gets
// today's result or today's 400 through imageToTensor.
import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';

import { imageToTensor, nativeSpec } from '../../src/handlers/image.js';
import { isSmallPng, preprocessImage as preprocessJs, type ImageConfig } from '../../src/handlers/image-preprocess.js';
import { preprocessImage as preprocessNative, preprocessImageSync } from '../../src/native.js';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
const imagesDir = join(fixtures, 'images');
const IMAGES: [string, Buffer][] = [
  ...readdirSync(imagesDir).filter((f) => /\.(jpg|png)$/.test(f)).sort().map((f) => [f, readFileSync(join(imagesDir, f))] as [string, Buffer]),
  ...['sample.jpg', 'sample_exif6.jpg', 'sample.png'].map((f) => [f, readFileSync(join(fixtures, 'models', f))] as [string, Buffer]),
  ...['0.png', '7.png'].map((f) => [`digit ${f}`, readFileSync(join(fixtures, 'models', 'images', f))] as [string, Buffer]),
];

const IMAGENET: ImageConfig = { channels: 3, image_size: 256, crop_size: 224, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
const CONFIGS: [string, ImageConfig][] = [
  ['imagenet 256/224', IMAGENET],
  ['rgb, no resize, crop 300 (zero padding)', { ...IMAGENET, image_size: null, crop_size: 300 }],
  ['rgb, upscale 400, crop 380', { ...IMAGENET, image_size: 400, crop_size: 380 }],
  ['gray, no resize (mnist preset)', { channels: 1, image_size: null, crop_size: null, mean: [0.1307], std: [0.3081] }],
  ['gray, 64/56', { channels: 1, image_size: 64, crop_size: 56, mean: [0.5], std: [0.25] }],
];

/** Images the native path leaves to sharp for the given config, and why (anything else must be handled). */
async function expectedDecline(name: string, bytes: Buffer, config: ImageConfig): Promise<RegExp | undefined> {
  const { channels } = config;
  if (name === 'jpeg_cmyk.jpg') return /CMYK/;
  if (/truncated|corrupt/.test(name)) return /decode|header/;
  if (name === 'png_gray16.png') return /16-bit gray PNG|for a 3-channel model/;
  const graySource = /gray|digit/.test(name);
  if (graySource && channels === 3) return /gray .*for a 3-channel model/;
  // The JS path lets libvips pre-shrink sources much larger than the target (not bit-exact, so not ported).
  const { width = 0, height = 0 } = await sharp(bytes).metadata();
  if (config.image_size !== null && Math.min(width, height) > 4 * config.image_size) return /pre-shrunk/;
  return undefined;
}

const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

for (const [label, config] of CONFIGS) {
  test(`native = JS path, bit for bit, on every fixture image: ${label}`, async (t) => {
    let handled = 0;
    for (const [name, bytes] of IMAGES) {
      const native = await preprocessNative(bytes, nativeSpec(config));
      const decline = await expectedDecline(name, bytes, config);
      if (decline) {
        t.true('declined' in native, `${name}: expected to be declined`);
        if ('declined' in native) t.regex(native.declined, decline, name);
        continue;
      }
      if (!('data' in native)) {
        t.fail(`${name}: declined (${native.declined})`);
        continue;
      }
      const js = await preprocessJs(bytes, config, false);
      t.deepEqual(native.shape, js.shape, name);
      t.true(bits(native.data).equals(bits(js.data as Float32Array)), `${name}: tensors differ`);
      handled++;
    }
    t.log(`${handled} of ${IMAGES.length} images handled natively`);
    t.true(handled >= (config.channels === 3 ? 18 : 20), `${handled} images handled natively`);
  });
}

test('EXIF orientations 1–8 give the displayed image (5–8 swap width and height)', async (t) => {
  const config: ImageConfig = { ...IMAGENET, image_size: null, crop_size: null };
  for (let o = 1; o <= 8; o++) {
    const out = await preprocessNative(readFileSync(join(imagesDir, `jpeg_orientation${o}.jpg`)), nativeSpec(config));
    t.true('data' in out, `orientation ${o}`);
    if ('data' in out) t.deepEqual(out.shape, o >= 5 ? [1, 3, 120, 80] : [1, 3, 80, 120], `orientation ${o}`);
  }
});

test('declined images get exactly the JS path\'s result or 400 through imageToTensor', async (t) => {
  for (const name of ['jpeg_truncated.jpg', 'jpeg_corrupt.jpg', 'png_truncated.png', 'jpeg_cmyk.jpg', 'jpeg_gray.jpg']) {
    const bytes = readFileSync(join(imagesDir, name));
    const expected = await preprocessJs(bytes, IMAGENET, false).then((v) => ({ ok: v }), (e: Error) => ({ err: e }));
    const actual = await imageToTensor(bytes, IMAGENET).then((v) => ({ ok: v }), (e: Error) => ({ err: e }));
    if ('err' in expected) {
      t.true('err' in actual, `${name}: should fail`);
      if ('err' in actual) {
        t.is(actual.err.constructor, expected.err.constructor, name);
        t.is(actual.err.message, expected.err.message, name);
        t.is((actual.err as { status?: number }).status, 400, name);
      }
    } else {
      t.true('ok' in actual, `${name}: should succeed`);
      if ('ok' in actual) t.true(bits(actual.ok.data as Float32Array).equals(bits(expected.ok.data as Float32Array)), name);
    }
  }
});

test('bad arguments reject with E_ARGUMENT', async (t) => {
  const bytes = readFileSync(join(imagesDir, 'jpeg_420.jpg'));
  await t.throwsAsync(preprocessNative('x' as unknown as Uint8Array, nativeSpec(IMAGENET)), { code: 'E_ARGUMENT', instanceOf: TypeError } as never);
  await t.throwsAsync(preprocessNative(bytes, { ...nativeSpec(IMAGENET), channels: 2 as 3 }), { code: 'E_ARGUMENT', message: /channels must be 1 or 3/ } as never);
  await t.throwsAsync(preprocessNative(bytes, { ...nativeSpec(IMAGENET), mean: [0.5] }), { code: 'E_ARGUMENT', message: /one value per channel/ } as never);
});

// The centre crop's JPEG decode reads only the columns the resize needs (jpeg_crop_scanline; bench/NOTES.md §38), so
// sample.jpg at 256/224 goes that way: damage anywhere in the file, inside the kept columns or not, is still seen.
test('a JPEG decoded for its kept columns only still declines truncated or corrupt data, with libjpeg\'s message', async (t) => {
  const jpeg = readFileSync(join(fixtures, 'models', 'sample.jpg'));
  const spec = nativeSpec(IMAGENET);
  for (const keep of [0.3, 0.7, 0.999]) {
    const native = await preprocessNative(jpeg.subarray(0, Math.floor(jpeg.length * keep)), spec);
    t.deepEqual(native, { declined: 'JPEG decode: Premature end of JPEG file' }, `first ${keep * 100} % of the file`);
  }
  const damaged = Buffer.from(jpeg);
  for (let i = 5000; i < 5100; i++) damaged[i] ^= 0x5a;
  t.deepEqual(await preprocessNative(damaged, spec), { declined: 'JPEG decode: Corrupt JPEG data: premature end of data segment' });
  // The same file whole is handled, bit for bit as the JS path (the loop above covers every config).
  const whole = await preprocessNative(jpeg, spec);
  t.true('data' in whole);
});

// Small PNGs (MNIST digits) are preprocessed on the calling thread by the same C++ (bench/NOTES.md §39): the same
// result or the same decline as on the image threads, for every image and config, and the same argument errors.
test('preprocessImageSync = preprocessImage on every fixture image and config', async (t) => {
  for (const [label, config] of CONFIGS) {
    for (const [name, bytes] of IMAGES) {
      const spec = nativeSpec(config);
      const threaded = await preprocessNative(bytes, spec);
      const inline = preprocessImageSync(bytes, spec);
      if ('declined' in threaded) {
        t.deepEqual(inline, threaded, `${label}, ${name}`);
      } else {
        t.true('data' in inline, `${label}, ${name}`);
        if ('data' in inline) {
          t.deepEqual(inline.shape, threaded.shape, `${label}, ${name}`);
          t.true(bits(inline.data).equals(bits(threaded.data)), `${label}, ${name}: tensors differ`);
        }
      }
    }
  }
  const bytes = readFileSync(join(imagesDir, 'png_gray.png'));
  t.throws(() => preprocessImageSync('x' as unknown as Uint8Array, nativeSpec(IMAGENET)), { code: 'E_ARGUMENT', instanceOf: TypeError, message: 'bytes must be a Uint8Array (or Buffer)' } as never);
  t.throws(() => preprocessImageSync(bytes, { ...nativeSpec(IMAGENET), channels: 2 as 3 }), { code: 'E_ARGUMENT', instanceOf: RangeError, message: 'spec.channels must be 1 or 3' } as never);
});

test('only small PNGs take the inline path; a small corrupt PNG is still the JS path\'s 400', async (t) => {
  const mnist: ImageConfig = { channels: 1, image_size: null, crop_size: null, mean: [0.1307], std: [0.3081] };
  const digit = readFileSync(join(fixtures, 'models', 'images', '0.png'));
  t.true(isSmallPng(digit, mnist));
  t.false(isSmallPng(digit, { ...mnist, image_size: 224 }), 'resize target above 128');
  t.false(isSmallPng(readFileSync(join(fixtures, 'models', 'sample.png')), IMAGENET), '640 × 427 source');
  t.false(isSmallPng(Buffer.concat([digit, Buffer.alloc(64 * 1024)]), mnist), 'file above 64 KB');
  t.false(isSmallPng(readFileSync(join(imagesDir, 'jpeg_420.jpg')), mnist), 'not a PNG');
  // Through imageToTensor: the digit bit for bit as the JS path, a truncated digit the JS path's own 400.
  const js = await preprocessJs(digit, mnist, false);
  const served = await imageToTensor(digit, mnist);
  t.true(bits(served.data as Float32Array).equals(bits(js.data as Float32Array)));
  const truncated = digit.subarray(0, digit.length - 20);
  t.true(isSmallPng(truncated, mnist));
  t.regex((preprocessImageSync(truncated, nativeSpec(mnist)) as { declined: string }).declined, /PNG/);
  const expected = await preprocessJs(truncated, mnist, false).then(() => undefined, (e: Error) => e);
  t.truthy(expected, 'the JS path refuses the truncated digit');
  const error = await t.throwsAsync(imageToTensor(truncated, mnist));
  t.is(error?.constructor, expected!.constructor);
  t.is(error?.message, expected!.message);
  t.is((error as { status?: number }).status, 400);
});

// image_classifier preprocessing against torchvision (Resize(256)+CenterCrop(224)+ToTensor on PIL), decoding of
// every supported format, EXIF orientation, and the refusals for bad images (exact messages).
import test from 'ava';
import sharp from 'sharp';
import { BadRequestError } from '../../src/errors.js';
import type { HandlerConfig } from '../../src/engine/types.js';
import { imageToTensor } from '../../src/handlers/image.js';
import { IMAGENET, MNIST, pngHeaderOnly, randomBytes, readFx, references } from './helpers.js';

// mean 0 / std 1 leaves the 0..1 values torchvision has before Normalize.
const UNNORMALISED: HandlerConfig = { ...IMAGENET, mean: [0, 0, 0], std: [1, 1, 1] };
const TOL = 2 / 255;

test('sample.jpg equals the torchvision reference within 2/255 on every one of 3×224×224 values', async (t) => {
  const ref = new Uint16Array(new Uint8Array(readFx('sample_jpg_224.u16')).buffer);
  const out = await imageToTensor(readFx('sample.jpg'), UNNORMALISED);
  t.deepEqual(out.shape, [1, 3, 224, 224]);
  t.is(out.dtype, 'float32');
  let max = 0;
  for (let i = 0; i < ref.length; i++) max = Math.max(max, Math.abs(out.data[i] as number - ref[i] / 65535));
  t.true(max <= TOL, `max deviation ${(max * 255).toFixed(3)}/255`);
});

test('ImageNet normalisation is (x − mean) / std per channel', async (t) => {
  const raw = await imageToTensor(readFx('sample.jpg'), UNNORMALISED);
  const norm = await imageToTensor(readFx('sample.jpg'), IMAGENET);
  const plane = 224 * 224;
  for (const i of [0, 1234, plane + 99, 2 * plane + 5000]) {
    const c = Math.floor(i / plane);
    t.true(Math.abs((norm.data[i] as number) - ((raw.data[i] as number) - IMAGENET.mean[c]) / IMAGENET.std[c]) < 1e-6);
  }
});

for (const name of ['sample.png', 'sample.webp', 'sample.gif', 'sample.tiff', 'sample_exif6.jpg']) {
  test(`${name} decodes and matches torchvision within 2/255 (256 sampled pixels, channel means)`, async (t) => {
    const ref = references.preprocess.images[name];
    const out = await imageToTensor(readFx(name), UNNORMALISED);
    t.deepEqual(out.shape, [1, 3, 224, 224]);
    for (const [c, y, x, v] of ref.samples as [number, number, number, number][]) {
      const got = out.data[(c * 224 + y) * 224 + x] as number;
      if (Math.abs(got - v) > TOL) t.fail(`${name} c${c} y${y} x${x}: ${got} vs ${v}`);
    }
    for (let c = 0; c < 3; c++) {
      let sum = 0;
      for (let i = 0; i < 224 * 224; i++) sum += out.data[c * 224 * 224 + i] as number;
      t.true(Math.abs(sum / (224 * 224) - ref.channel_means[c]) < 1 / 255, `channel ${c} mean`);
    }
  });
}

test('EXIF orientation is applied: the 240×360 stored JPEG with Orientation=6 comes out 360 wide, 240 high', async (t) => {
  const meta = await sharp(readFx('sample_exif6.jpg')).metadata();
  t.is(meta.orientation, 6);
  t.is(meta.width, 240);
  const out = await imageToTensor(readFx('sample_exif6.jpg'), { ...UNNORMALISED, image_size: null, crop_size: null });
  t.deepEqual(out.shape, [1, 3, 240, 360]);
  t.deepEqual(references.preprocess.images['sample_exif6.jpg'].decoded_size, [360, 240]);
});

test('MNIST preset: a 28×28 grayscale PNG becomes [1,1,28,28] with (v/255 − 0.1307)/0.3081', async (t) => {
  const png = readFx('images/3.png');
  const { data: pixels } = await sharp(png).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
  const out = await imageToTensor(png, MNIST);
  t.deepEqual(out.shape, [1, 1, 28, 28]);
  t.is(pixels.length, 784);
  for (let i = 0; i < 784; i++) {
    if (Math.abs((out.data[i] as number) - (pixels[i] / 255 - 0.1307) / 0.3081) > 1e-5) t.fail(`pixel ${i}`);
  }
  // A colour image for a 1-channel model is converted as Pillow's convert('L') does.
  const gray = await imageToTensor(readFx('sample.png'), { ...MNIST, image_size: 28, crop_size: 28 });
  t.deepEqual(gray.shape, [1, 1, 28, 28]);
});

test('crop larger than the image pads with zeros as torchvision CenterCrop does', async (t) => {
  const out = await imageToTensor(readFx('images/1.png'), { ...MNIST, mean: [0], std: [1], crop_size: 32 });
  t.deepEqual(out.shape, [1, 1, 32, 32]);
  // (32 − 28) / 2 = 2 rows/columns of padding on each side
  for (const i of [0, 1, 32, 33, 31, 32 * 31 + 5]) t.is(out.data[i], 0);
});

const jpeg = readFx('sample.jpg');
const badImages: [string, Buffer, string][] = [
  ['truncated JPEG', jpeg.subarray(0, jpeg.length >> 1),
    `Could not decode the JPEG image (${jpeg.length >> 1} bytes): the data is corrupt or truncated; expected JPEG, PNG, WebP, GIF or TIFF`],
  ['random bytes', randomBytes(1000), 'Unsupported or undecodable image (1000 bytes): expected JPEG, PNG, WebP, GIF or TIFF'],
  ['zero bytes', Buffer.alloc(0), 'Empty image: the input has 0 bytes; expected JPEG, PNG, WebP, GIF or TIFF bytes'],
  ['20000×20000 PNG header (decompression bomb)', pngHeaderOnly(20000, 20000),
    'Image too large: 20000x20000 pixels (limits: 10000 per side, 100 megapixels); refused before decoding'],
  ['12000×10 PNG header (one side too long)', pngHeaderOnly(12000, 10),
    'Image too large: 12000x10 pixels (limits: 10000 per side, 100 megapixels); refused before decoding'],
];
for (const [what, bytes, message] of badImages) {
  test(`refused: ${what}`, async (t) => {
    await t.throwsAsync(imageToTensor(bytes, IMAGENET), { instanceOf: BadRequestError, message });
  });
}

/** A JPEG without its APP2 ICC_PROFILE segments (everything else byte for byte). */
function stripIcc(jpeg: Buffer): Buffer {
  const keep: Buffer[] = [jpeg.subarray(0, 2)];
  let pos = 2;
  while (pos + 4 <= jpeg.length && jpeg[pos] === 0xff && jpeg[pos + 1] !== 0xda) {
    const end = pos + 2 + jpeg.readUInt16BE(pos + 2);
    const icc = jpeg[pos + 1] === 0xe2 && jpeg.toString('latin1', pos + 4, pos + 15) === 'ICC_PROFILE';
    if (!icc) keep.push(jpeg.subarray(pos, end));
    pos = end;
  }
  keep.push(jpeg.subarray(pos));
  return Buffer.concat(keep);
}

test('an embedded ICC profile is ignored, as PIL (so torchvision) ignores it: a Display P3 JPEG gives the same values with its profile as without', async (t) => {
  // Colour-managing the P3 pixels to sRGB (sharp's default) would change nearly every value.
  const p3 = await sharp(readFx('sample.jpg')).resize(96, 64, { fit: 'fill' }).withIccProfile('p3').jpeg({ quality: 92 }).toBuffer();
  const bare = stripIcc(p3);
  t.true((await sharp(p3).metadata()).hasProfile);
  t.false((await sharp(bare).metadata()).hasProfile);
  t.true(bare.length < p3.length);
  const config = { ...UNNORMALISED, image_size: 64, crop_size: 64 };
  const a = await imageToTensor(bare, config);
  const b = await imageToTensor(p3, config);
  const bytes = (x: typeof a) => Buffer.from((x.data as Float32Array).buffer, (x.data as Float32Array).byteOffset, (x.data as Float32Array).byteLength);
  t.deepEqual(b.shape, [1, 3, 64, 64]);
  t.true(bytes(b).equals(bytes(a)), 'the P3-tagged JPEG decodes to the same values as its untagged copy');
});

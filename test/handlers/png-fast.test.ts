// The small-PNG fast path (src/handlers/png-fast.ts) must give exactly what the sharp pipeline gives, take
// the cases it claims (so the small-model path really skips sharp and the worker hop), and leave every other
// PNG — and every damaged one — to sharp, whose errors are the ones clients see.
import test from 'ava';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import zlib from 'node:zlib';
import sharp, { type SharpOptions } from 'sharp';
import { BadRequestError } from '../../src/errors.js';
import { imageToTensor, imageWorkerThreadIds } from '../../src/handlers/image.js';
import { preprocessImage, preprocessSmallPng, type ImageConfig } from '../../src/handlers/image-preprocess.js';
import { decodeSmallPng } from '../../src/handlers/png-fast.js';

const fx = (name: string) => readFileSync(new URL(`../fixtures/models/${name}`, import.meta.url));
const MNIST: ImageConfig = { channels: 1, image_size: null, crop_size: null, mean: [0.1307], std: [0.3081] };
const SMALL_RGB: ImageConfig = { channels: 3, image_size: 40, crop_size: 32, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
const sha = (a: ArrayBufferView) => createHash('sha256').update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)).digest('hex');

/** `png` with a chunk of `type` inserted right after IHDR (valid CRC). */
function withChunk(png: Buffer, type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(body.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(Buffer.concat([head.subarray(4), body])) >>> 0, 0);
  return Buffer.concat([png.subarray(0, 33), head, body, crc, png.subarray(33)]);
}

/** A 61×47 crop of the sample photo: odd sizes so every filter type sees partial rows. */
const photo = await sharp(fx('sample.jpg')).resize(61, 47, { fit: 'fill' }).raw().toBuffer();
const rgb = (o: SharpOptions = {}) => sharp(photo, { raw: { width: 61, height: 47, channels: 3 }, ...o });

const variants: [string, () => Promise<Buffer>][] = [
  ['gray', () => rgb().toColourspace('b-w').png().toBuffer()],
  ['gray, no filtering', () => rgb().toColourspace('b-w').png({ adaptiveFiltering: false, compressionLevel: 0 }).toBuffer()],
  ['gray + alpha', () => rgb().toColourspace('b-w').ensureAlpha(0.5).png().toBuffer()],
  ['RGB', () => rgb().png().toBuffer()],
  ['RGB, max compression', () => rgb().png({ compressionLevel: 9, adaptiveFiltering: true }).toBuffer()],
  ['RGBA', () => rgb().ensureAlpha(0.25).png().toBuffer()],
];

for (const [what, make] of variants) {
  for (const [cname, config] of [['MNIST (1 channel, no resize)', MNIST], ['3 channels, resize 40, crop 32', SMALL_RGB]] as const) {
    test(`fast path equals sharp bit for bit: ${what} PNG → ${cname}`, async (t) => {
      const png = await make();
      const source = await sharp(png).metadata();
      if (source.channels! <= 2 && config.channels === 3) {
        // 1-channel sources for 3-channel models are libvips' conversion: left to sharp on purpose.
        t.is(preprocessSmallPng(png, config), undefined);
        return;
      }
      t.truthy(decodeSmallPng(png), 'the fast decoder takes this PNG');
      const fast = preprocessSmallPng(png, config);
      const slow = await preprocessImage(png, config, false);
      t.truthy(fast);
      t.deepEqual(fast!.shape, slow.shape);
      t.is(sha(fast!.data as Float32Array), sha(slow.data as Float32Array));
      t.is(sha((await preprocessImage(png, config)).data as Float32Array), sha(slow.data as Float32Array));
    });
  }
}

test('the MNIST fixtures take the fast path and match sharp exactly', async (t) => {
  for (let d = 0; d <= 8; d++) {
    const png = fx(`images/${d}.png`);
    const fast = preprocessSmallPng(png, MNIST);
    t.truthy(fast, `images/${d}.png decoded inline`);
    t.is(sha(fast!.data as Float32Array), sha((await preprocessImage(png, MNIST, false)).data as Float32Array), `images/${d}.png`);
  }
});

test('imageToTensor does a small PNG inline: no worker thread is started for it', async (t) => {
  const before = imageWorkerThreadIds().length;
  const out = await imageToTensor(fx('images/3.png'), MNIST);
  t.deepEqual(out.shape, [1, 1, 28, 28]);
  t.is(imageWorkerThreadIds().length, before);
});

test('PNGs outside the fast path are left to sharp: palette, 16-bit, interlaced, large, ICC, transparency key', async (t) => {
  const cases: [string, Buffer][] = [
    ['palette', await rgb().png({ palette: true }).toBuffer()],
    ['16-bit', await rgb().toColourspace('rgb16').png().toBuffer()],
    ['interlaced', await rgb().png({ progressive: true }).toBuffer()],
    ['with an ICC profile', await rgb().withIccProfile('p3').png().toBuffer()],
    ['larger than 256×256', await sharp(fx('sample.jpg')).png().toBuffer()],
  ];
  // Chunks pngjs skips or applies itself but libvips honours: inserted after IHDR with valid CRCs.
  const digit = fx('images/3.png');
  cases.push(
    ['with a tRNS transparency key', withChunk(digit, 'tRNS', Buffer.from([0, 0]))],
    ['with gAMA', withChunk(digit, 'gAMA', Buffer.from([0, 0, 0xb1, 0x8f]))],
    ['with eXIf', withChunk(digit, 'eXIf', Buffer.from('MM\0*\0\0\0\x08\0\0', 'latin1'))],
  );
  for (const [what, png] of cases) t.is(decodeSmallPng(png), undefined, what);
  // A harmless ancillary chunk (text) does not leave the fast path, and does not change the pixels.
  const withText = decodeSmallPng(withChunk(digit, 'tEXt', Buffer.from('Comment\0hello', 'latin1')));
  t.truthy(withText);
  t.is(sha(withText!.data), sha(decodeSmallPng(digit)!.data));
  // The same image through sharp still works (the general path).
  const pal = await preprocessImage(cases[0][1], MNIST);
  t.deepEqual(pal.shape, [1, 1, 47, 61]);
});

test('a damaged small PNG is refused by the fast path and gets sharp\'s precise 400', async (t) => {
  const good = fx('images/3.png');
  const badCrc = Buffer.from(good);
  badCrc[good.length - 20] ^= 0xff; // inside the last IDAT chunk's data: its CRC no longer matches
  t.is(decodeSmallPng(badCrc), undefined);
  const truncated = good.subarray(0, good.length - 30);
  t.is(decodeSmallPng(truncated), undefined);
  await t.throwsAsync(preprocessImage(truncated, MNIST), {
    instanceOf: BadRequestError,
    message: `Could not decode the PNG image (${truncated.length} bytes): the data is corrupt or truncated; expected JPEG, PNG, WebP, GIF or TIFF`,
  });
  t.is(decodeSmallPng(Buffer.from('not a png at all, just text')), undefined);
});

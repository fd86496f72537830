// image_classifier preprocessing proper: sharp decodes (libuv pool), then Pillow-exact resize/crop and normalisation
// in JS. It runs inside the image worker threads (image-worker.ts); image.ts is the event loop's side.
import sharp, { type Metadata, type OutputInfo } from 'sharp';
import { BadRequestError } from '../errors.js';
import type { HandlerConfig } from '../engine/types.js';
import type { Tensor } from '../native.js';
import { decodeSmallPng } from './png-fast.js';
import { cropOffset, resizeBilinearWindow, resizedSize } from './resample.js';

/** Decompression-bomb limits, checked on the header before any pixel is decoded. */
export const MAX_IMAGE_SIDE = 10_000;
export const MAX_IMAGE_PIXELS = 100_000_000;
/**
 * Above this downscale factor libvips first reduces the image (mitchell) to PRESHRINK× the target, so the exact
 * JS resampler never walks more than ~4× the target's pixels per axis. Such inputs can then differ from
 * torchvision by a few levels (measured ≤ 5/255, mean 0.4/255 on a 5000-px photo); smaller ones match exactly.
 */
export const PRESHRINK = 4;
export const EXPECTED = 'expected JPEG, PNG, WebP, GIF or TIFF';

sharp.cache(false); // request images are seen once: keep libvips' operation cache from holding their pixels

interface Decoded {
  data: Buffer;
  width: number;
  height: number;
  channels: number;
}

/** Decodes to interleaved uint8 (EXIF orientation applied; RGB, or 1 channel as Pillow's convert('L')). */
async function decode(bytes: Buffer, config: ImageConfig): Promise<Decoded> {
  if (bytes.length === 0) throw new BadRequestError(`Empty image: the input has 0 bytes; ${EXPECTED} bytes`);
  // Embedded ICC profiles are ignored, as PIL's convert() (so torchvision) ignores them; sharp would otherwise
  // run an lcms transform per image (≈ 8 ms of a 640×427 JPEG's 12 ms decode, bench/NOTES.md §15).
  const options = { limitInputPixels: MAX_IMAGE_PIXELS, failOn: 'error' as const, pages: 1, ignoreIcc: true };
  let meta: Metadata;
  try {
    // Header only; no pixel limit here, so an oversized image gets the clear message below, not libvips' error.
    meta = await sharp(bytes, { ...options, limitInputPixels: false }).metadata();
  } catch {
    throw new BadRequestError(`Unsupported or undecodable image (${bytes.length} bytes): ${EXPECTED}`);
  }
  const format = (meta.format ?? 'image').toUpperCase();
  const w = meta.width ?? 0;
  const h = meta.pageHeight ?? meta.height ?? 0;
  if (w > MAX_IMAGE_SIDE || h > MAX_IMAGE_SIDE || w * h > MAX_IMAGE_PIXELS) {
    throw new BadRequestError(
      `Image too large: ${w}x${h} pixels (limits: ${MAX_IMAGE_SIDE} per side, ${MAX_IMAGE_PIXELS / 1e6} megapixels); refused before decoding`,
    );
  }
  if (!['jpeg', 'png', 'webp', 'gif', 'tiff'].includes(meta.format ?? '')) {
    throw new BadRequestError(`Unsupported image format ${format} (${bytes.length} bytes): ${EXPECTED}`);
  }
  const swap = (meta.orientation ?? 1) >= 5;
  const ow = swap ? h : w;
  const oh = swap ? w : h;
  let pipeline = sharp(bytes, options).rotate().removeAlpha();
  if (config.image_size !== null && Math.min(ow, oh) > PRESHRINK * config.image_size) {
    const mid = resizedSize(ow, oh, PRESHRINK * config.image_size);
    pipeline = pipeline.resize(mid.width, mid.height, { kernel: 'mitchell', fit: 'fill' });
  }
  // A 1-channel source stays exact as b-w; colour → gray uses Pillow's integer formula below, not libvips'.
  const grayInput = config.channels === 1 && (meta.channels ?? 3) <= 2;
  pipeline = pipeline.toColourspace(grayInput ? 'b-w' : 'srgb');
  let raw: { data: Buffer; info: OutputInfo };
  try {
    raw = await pipeline.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  } catch {
    throw new BadRequestError(`Could not decode the ${format} image (${bytes.length} bytes): the data is corrupt or truncated; ${EXPECTED}`);
  }
  let { data } = raw;
  let channels = raw.info.channels;
  if (config.channels === 1 && channels >= 3) {
    const gray = Buffer.allocUnsafe(raw.info.width * raw.info.height);
    for (let i = 0, j = 0; i < gray.length; i++, j += channels) {
      gray[i] = (data[j] * 19595 + data[j + 1] * 38470 + data[j + 2] * 7471 + 0x8000) >>> 16;
    }
    data = gray;
    channels = 1;
  } else if (config.channels === 3 && channels === 1) {
    const rgb = Buffer.allocUnsafe(data.length * 3);
    for (let i = 0; i < data.length; i++) rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = data[i];
    data = rgb;
    channels = 3;
  }
  return { data, width: raw.info.width, height: raw.info.height, channels };
}

/** The HandlerConfig fields preprocessing reads (what crosses to the worker thread). */
export type ImageConfig = Pick<HandlerConfig, 'channels' | 'image_size' | 'crop_size' | 'mean' | 'std' | 'fast_decode'>;

/**
 * The small-PNG fast path (png-fast.ts) as decode() would return it, or undefined where it does not apply. A
 * 1-channel source for a 3-channel model is left to sharp (libvips' b-w → sRGB conversion is its business).
 */
function decodeFast(bytes: Buffer, config: ImageConfig): Decoded | undefined {
  const png = decodeSmallPng(bytes);
  if (!png) return undefined;
  if (png.channels === config.channels) return { data: Buffer.from(png.data.buffer, png.data.byteOffset, png.data.byteLength), width: png.width, height: png.height, channels: png.channels };
  if (config.channels !== 1 || png.channels !== 3) return undefined;
  const gray = Buffer.allocUnsafe(png.width * png.height);
  const d = png.data;
  // Pillow's convert('L'), as decode() applies to sharp's sRGB output.
  for (let i = 0, j = 0; i < gray.length; i++, j += 3) gray[i] = (d[j] * 19595 + d[j + 1] * 38470 + d[j + 2] * 7471 + 0x8000) >>> 16;
  return { data: gray, width: png.width, height: png.height, channels: 1 };
}

/** Largest source (pixels) and resize target that preprocessSmallPng takes: its whole work stays ≲ 0.3 ms. */
const INLINE_MAX_PIXELS = 128 * 128;
const INLINE_MAX_SIZE = 128;
/**
 * Largest file the native inline path takes: a 128 × 128 RGBA 16-bit PNG stored uncompressed is ≈ 128 KB, an
 * MNIST digit a few hundred bytes; the bound keeps chunk scanning (CRCs of whatever follows IHDR) off the event loop.
 */
const INLINE_MAX_BYTES = 64 * 1024;

/**
 * Whether `bytes` is a PNG small enough (header size, resize target, file size) to preprocess on the event loop
 * natively (src/handlers/image.ts): a few µs for 28 × 28, against tens of µs for the image threads' round trip.
 */
export function isSmallPng(bytes: Buffer, config: ImageConfig): boolean {
  if (bytes.length > INLINE_MAX_BYTES) return false;
  if (config.image_size !== null && config.image_size > INLINE_MAX_SIZE) return false;
  if (config.crop_size !== null && config.crop_size > INLINE_MAX_SIZE) return false;
  const size = pngSize(bytes);
  return size !== undefined && size <= INLINE_MAX_PIXELS;
}

/**
 * Synchronous preprocessing for small plain PNGs (MNIST-sized), cheap enough for the event loop: tens of µs
 * for 28×28, against ≈ 1 ms of fixed cost for sharp plus a worker round trip. Undefined when the input is
 * anything else (the caller then uses the worker pool); the result is bit-identical to preprocessImage's.
 */
export function preprocessSmallPng(bytes: Buffer, config: ImageConfig): Tensor | undefined {
  if (config.image_size !== null && config.image_size > INLINE_MAX_SIZE) return undefined;
  if (config.crop_size !== null && config.crop_size > INLINE_MAX_SIZE) return undefined;
  const size = pngSize(bytes);
  if (size === undefined || size > INLINE_MAX_PIXELS) return undefined;
  const img = decodeFast(bytes, config);
  return img && toTensor(img, config);
}

/** width × height from a PNG's IHDR, without decoding (undefined when not a PNG). */
function pngSize(bytes: Buffer): number | undefined {
  if (bytes.length < 24 || bytes.readUInt32BE(0) !== 0x89504e47 || bytes.toString('latin1', 12, 16) !== 'IHDR') return undefined;
  return bytes.readUInt32BE(16) * bytes.readUInt32BE(20);
}

/**
 * Image bytes → float32 [1, C, H, W]: decode (first frame, EXIF orientation), Resize(image_size) and
 * CenterCrop(crop_size) exactly as torchvision on PIL images, /255, (x − mean) / std. Runs on the calling
 * thread (≈ 10–35 ms of JS for a 640–1280 px photo): the server calls it through image.ts's worker pool.
 * Throws BadRequestError for empty, undecodable, truncated or oversized images. `useFastPng: false` forces the
 * sharp decode (tests compare the two).
 */
export async function preprocessImage(bytes: Buffer, config: ImageConfig, useFastPng = true): Promise<Tensor> {
  const img = (useFastPng ? decodeFast(bytes, config) : undefined) ?? (await decode(bytes, config));
  return toTensor(img, config);
}

/** Resize/crop and normalisation of decoded pixels. */
function toTensor(img: Decoded, config: ImageConfig): Tensor {
  const size = config.image_size !== null ? resizedSize(img.width, img.height, config.image_size) : { width: img.width, height: img.height };
  const cw = config.crop_size ?? size.width;
  const ch = config.crop_size ?? size.height;
  const win = { left: config.crop_size ? cropOffset(size.width, cw) : 0, top: config.crop_size ? cropOffset(size.height, ch) : 0, width: cw, height: ch };
  const pixels = resizeBilinearWindow(img.data, img.width, img.height, img.channels, size.width, size.height, win);
  const c = img.channels;
  const plane = cw * ch;
  const out = new Float32Array(c * plane);
  for (let k = 0; k < c; k++) {
    // Same arithmetic order as ToTensor + Normalize: (v/255 − mean) / std in float32.
    const mean = Math.fround(config.mean[k]);
    const std = Math.fround(config.std[k]);
    for (let i = 0; i < plane; i++) out[k * plane + i] = (Math.fround(pixels[i * c + k] / 255) - mean) / std;
  }
  return { data: out, shape: [1, c, ch, cw], dtype: 'float32' };
}

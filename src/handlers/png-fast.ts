// A synchronous decoder for small, plain PNGs (MNIST-sized inputs), run on the calling thread. For a 28×28
// image the whole decode is tens of microseconds, while a sharp call costs ≈ 0.6–0.7 ms of fixed set-up and a
// worker round trip another 0.05–0.1 ms: on the small-model path those fixed costs were larger than inference
// (bench/NOTES.md §4, §8). Only the cases whose result is bit-identical to the sharp pipeline of
// image-preprocess.ts are taken: 8-bit, non-interlaced gray / gray+alpha / RGB / RGBA, no colour-management or
// orientation chunks, every CRC valid. Anything else returns undefined and goes the general way, which also
// produces the precise error for a corrupt file.
import zlib from 'node:zlib';

/** Pixel count up to which the fast path is used (a 256×256 image inflates and unfilters in well under 1 ms). */
export const FAST_PNG_MAX_PIXELS = 256 * 256;

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
/** Colour type → samples per pixel (palette (3) and anything else are left to sharp). */
const SAMPLES: Record<number, number> = { 0: 1, 2: 3, 4: 2, 6: 4 };
/**
 * Ancillary chunks that make libvips' result differ from the raw samples (ICC/gamma/chromaticity colour
 * management, transparency expanded to alpha, EXIF orientation), or that we do not want to reason about.
 */
const REFUSED = new Set(['iCCP', 'gAMA', 'cHRM', 'sBIT', 'tRNS', 'eXIf', 'PLTE', 'acTL']);

export interface RawPixels {
  /** Interleaved uint8 samples, alpha dropped (as sharp's removeAlpha). */
  data: Uint8Array;
  width: number;
  height: number;
  channels: 1 | 3;
}

const crc32: ((data: Uint8Array) => number) | undefined = (zlib as unknown as { crc32?: (d: Uint8Array) => number }).crc32;

/** Decodes `bytes` when it is a small plain PNG (see the header); undefined for everything else. */
export function decodeSmallPng(bytes: Buffer): RawPixels | undefined {
  if (crc32 === undefined || bytes.length < 8 + 25 || !bytes.subarray(0, 8).equals(SIGNATURE)) return undefined;
  let pos = 8;
  let width = 0;
  let height = 0;
  let samples = 0;
  const idat: Buffer[] = [];
  let sawEnd = false;
  while (pos + 12 <= bytes.length) {
    const length = bytes.readUInt32BE(pos);
    const type = bytes.toString('latin1', pos + 4, pos + 8);
    const end = pos + 12 + length;
    if (length > 0x7fffffff || end > bytes.length) return undefined;
    if (crc32(bytes.subarray(pos + 4, pos + 8 + length)) !== bytes.readUInt32BE(pos + 8 + length)) return undefined;
    const body = bytes.subarray(pos + 8, pos + 8 + length);
    if (pos === 8) {
      if (type !== 'IHDR' || length !== 13) return undefined;
      width = body.readUInt32BE(0);
      height = body.readUInt32BE(4);
      const [depth, colour, compression, filter, interlace] = body.subarray(8, 13);
      samples = SAMPLES[colour] ?? 0;
      if (depth !== 8 || samples === 0 || compression !== 0 || filter !== 0 || interlace !== 0) return undefined;
      if (width === 0 || height === 0 || width * height > FAST_PNG_MAX_PIXELS) return undefined;
    } else if (type === 'IDAT') {
      idat.push(body);
    } else if (type === 'IEND') {
      sawEnd = true;
      break;
    } else if (REFUSED.has(type)) {
      return undefined;
    } else if ((type.charCodeAt(0) & 0x20) === 0) {
      return undefined; // an unknown critical chunk
    }
    pos = end;
  }
  if (!sawEnd || idat.length === 0) return undefined;
  const stride = width * samples;
  let filtered: Buffer;
  try {
    filtered = zlib.inflateSync(idat.length === 1 ? idat[0] : Buffer.concat(idat));
  } catch {
    return undefined;
  }
  if (filtered.length !== (stride + 1) * height) return undefined;
  const pixels = unfilter(filtered, stride, height, samples);
  if (!pixels) return undefined;
  return { ...dropAlpha(pixels, width * height, samples), width, height };
}

/** Reverses the PNG scanline filters (bytes per pixel = samples, depth 8). */
function unfilter(src: Buffer, stride: number, height: number, bpp: number): Uint8Array | undefined {
  const out = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    const f = src[y * (stride + 1)];
    const s = y * (stride + 1) + 1;
    const o = y * stride;
    const p = o - stride; // previous row in `out` (absent on row 0)
    switch (f) {
      case 0:
        out.set(src.subarray(s, s + stride), o);
        break;
      case 1:
        for (let i = 0; i < stride; i++) out[o + i] = src[s + i] + (i >= bpp ? out[o + i - bpp] : 0);
        break;
      case 2:
        for (let i = 0; i < stride; i++) out[o + i] = src[s + i] + (y > 0 ? out[p + i] : 0);
        break;
      case 3:
        for (let i = 0; i < stride; i++) {
          const left = i >= bpp ? out[o + i - bpp] : 0;
          const up = y > 0 ? out[p + i] : 0;
          out[o + i] = src[s + i] + ((left + up) >>> 1);
        }
        break;
      case 4:
        for (let i = 0; i < stride; i++) {
          const a = i >= bpp ? out[o + i - bpp] : 0;
          const b = y > 0 ? out[p + i] : 0;
          const c = i >= bpp && y > 0 ? out[p + i - bpp] : 0;
          const pa = Math.abs(b - c);
          const pb = Math.abs(a - c);
          const pc = Math.abs(a + b - 2 * c);
          out[o + i] = src[s + i] + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
        }
        break;
      default:
        return undefined;
    }
  }
  return out;
}

function dropAlpha(px: Uint8Array, n: number, samples: number): { data: Uint8Array; channels: 1 | 3 } {
  const channels = samples >= 3 ? 3 : 1;
  if (samples === channels) return { data: px, channels };
  const out = new Uint8Array(n * channels);
  for (let i = 0, j = 0, k = 0; i < n; i++, k += samples) {
    for (let c = 0; c < channels; c++) out[j++] = px[k + c];
  }
  return { data: out, channels };
}

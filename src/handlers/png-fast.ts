// A synchronous decoder for small, plain PNGs (MNIST-sized inputs), run on the calling thread. For a 28×28
// image the whole decode is tens of microseconds, while a sharp call costs ≈ 0.6–0.7 ms of fixed set-up and a
// worker round trip another 0.05–0.1 ms: on the small-model path those fixed costs were larger than inference
// (bench/NOTES.md §4, §8). Only the cases whose result is bit-identical to the sharp pipeline of
// image-preprocess.ts are taken: 8-bit, non-interlaced gray / gray+alpha / RGB / RGBA, no colour-management or
// orientation chunks, every CRC valid. Anything else returns undefined and goes the general way, which also
// produces the precise error for a corrupt file.
//
// The decoding itself (chunk CRCs, inflate, scanline unfiltering) is pngjs's (project standard: a kept library
// over hand-written parsing). What stays here is the eligibility check that pngjs cannot answer for us.
import pngjs from 'pngjs';

const { PNG } = pngjs;

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

/** Decodes `bytes` when it is a small plain PNG (see the header); undefined for everything else. */
export function decodeSmallPng(bytes: Buffer): RawPixels | undefined {
  const samples = eligibleSamples(bytes);
  if (samples === 0) return undefined;
  let png: { width: number; height: number; data: Buffer };
  try {
    // Always RGBA out (gray is replicated into R, G and B); throws on a bad CRC, a bad zlib stream, an unknown
    // filter or critical chunk, truncation, or bytes after IEND — all of which sharp then reports precisely.
    png = PNG.sync.read(bytes);
  } catch {
    return undefined;
  }
  const n = png.width * png.height;
  if (png.data.length !== n * 4) return undefined;
  return { ...fromRgba(png.data, n, samples >= 3 ? 3 : 1), width: png.width, height: png.height };
}

/**
 * Samples per pixel when `bytes` may take the fast path, else 0. This scan of chunk headers stays because
 * pngjs answers neither question it settles before any decoding: it decodes any size (a large image would
 * be inflated here only to be refused), and it skips iCCP, cHRM, sBIT, eXIf and acTL silently and applies
 * tRNS/PLTE/gAMA itself, while libvips honours those chunks — so their presence must send the PNG to sharp.
 * It reads only lengths and types; CRCs and chunk bodies are pngjs's business.
 */
function eligibleSamples(bytes: Buffer): number {
  if (bytes.length < 8 + 25 || !bytes.subarray(0, 8).equals(SIGNATURE)) return 0;
  // IHDR must come first (pngjs checks its CRC and the other fields).
  if (bytes.readUInt32BE(8) !== 13 || bytes.toString('latin1', 12, 16) !== 'IHDR') return 0;
  const width = bytes.readUInt32BE(16);
  const height = bytes.readUInt32BE(20);
  const [depth, colour, , , interlace] = bytes.subarray(24, 29);
  const samples = SAMPLES[colour] ?? 0;
  if (samples === 0 || depth !== 8 || interlace !== 0 || width === 0 || height === 0 || width * height > FAST_PNG_MAX_PIXELS) return 0;
  for (let pos = 8 + 25; pos + 8 <= bytes.length;) {
    const type = bytes.toString('latin1', pos + 4, pos + 8);
    if (type === 'IEND') return samples;
    if (REFUSED.has(type)) return 0;
    pos += 12 + bytes.readUInt32BE(pos);
  }
  return 0; // no IEND: truncated
}

/** Keeps the first `channels` samples of each RGBA pixel: R for gray (pngjs replicates it), R, G, B for colour. */
function fromRgba(rgba: Buffer, n: number, channels: 1 | 3): { data: Uint8Array; channels: 1 | 3 } {
  const out = new Uint8Array(n * channels);
  if (channels === 1) {
    for (let i = 0; i < n; i++) out[i] = rgba[i * 4];
  } else {
    for (let i = 0, j = 0, k = 0; i < n; i++, k += 4) {
      out[j++] = rgba[k];
      out[j++] = rgba[k + 1];
      out[j++] = rgba[k + 2];
    }
  }
  return { data: out, channels };
}

// Image signatures and header dimensions, read from the first bytes without decoding: content sniffing (an image is
// an image whatever its Content-Type says) and the pixel bounds checked before any decode.

export type ImageFormat = 'jpeg' | 'png' | 'gif' | 'webp' | 'tiff';

/** The image format whose signature `bytes` starts with, or undefined. */
export function imageSignature(bytes: Uint8Array): ImageFormat | undefined {
  const b = bytes;
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (b.length >= 8 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47 && b[4] === 0x0d && b[5] === 0x0a && b[6] === 0x1a && b[7] === 0x0a) return 'png';
  if (b.length >= 6 && b[0] === 0x47 && b[1] === 0x49 && b[2] === 0x46 && b[3] === 0x38 && (b[4] === 0x37 || b[4] === 0x39) && b[5] === 0x61) return 'gif';
  if (b.length >= 12 && ascii(b, 0, 4) === 'RIFF' && ascii(b, 8, 12) === 'WEBP') return 'webp';
  if (b.length >= 4 && ((b[0] === 0x49 && b[1] === 0x49 && b[2] === 0x2a && b[3] === 0) || (b[0] === 0x4d && b[1] === 0x4d && b[2] === 0 && b[3] === 0x2a))) return 'tiff';
  return undefined;
}

function ascii(b: Uint8Array, from: number, to: number): string {
  return String.fromCharCode(...b.subarray(from, to));
}

export interface ImageHeader {
  format: ImageFormat;
  width: number;
  height: number;
}

/**
 * Format and stored width × height from the header (EXIF rotation does not change the pixel count), or undefined
 * when `bytes` is not an image or its header cannot be read (the decoder then reports what is wrong).
 */
export function readImageHeader(bytes: Buffer): ImageHeader | undefined {
  const format = imageSignature(bytes);
  if (!format) return undefined;
  try {
    const size = SIZE_READERS[format](bytes);
    return size && { format, ...size };
  } catch {
    return undefined; // a header cut short: RangeError from the Buffer readers
  }
}

type Size = { width: number; height: number } | undefined;

const SIZE_READERS: Record<ImageFormat, (b: Buffer) => Size> = {
  png: (b) => (b.toString('latin1', 12, 16) === 'IHDR' ? { width: b.readUInt32BE(16), height: b.readUInt32BE(20) } : undefined),
  gif: gifSize,
  jpeg: jpegSize,
  webp: webpSize,
  tiff: tiffSize,
};

/**
 * The logical screen size, when what follows it is a GIF block (an extension `!` or an image `,`, after the global
 * colour table when there is one): a signature followed by anything else is left to the decoder.
 */
function gifSize(b: Buffer): Size {
  const packed = b[10];
  const next = 13 + (packed & 0x80 ? 3 * 2 ** ((packed & 7) + 1) : 0);
  if (next >= b.length || (b[next] !== 0x21 && b[next] !== 0x2c)) return undefined;
  return { width: b.readUInt16LE(6), height: b.readUInt16LE(8) };
}

/** The first SOFn segment's dimensions (markers C0–CF except C4 DHT, C8 JPG, CC DAC). */
function jpegSize(b: Buffer): Size {
  let off = 2;
  while (off + 9 < b.length) {
    if (b[off] !== 0xff) return undefined;
    const marker = b[off + 1];
    if (marker === 0xff) {
      off++; // fill byte
      continue;
    }
    if (marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) {
      off += 2; // markers without a length
      continue;
    }
    const length = b.readUInt16BE(off + 2);
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      return { height: b.readUInt16BE(off + 5), width: b.readUInt16BE(off + 7) };
    }
    if (marker === 0xda || length < 2) return undefined; // scan data before any frame header
    off += 2 + length;
  }
  return undefined;
}

function webpSize(b: Buffer): Size {
  const chunk = b.toString('latin1', 12, 16);
  if (chunk === 'VP8X') return { width: 1 + b.readUIntLE(24, 3), height: 1 + b.readUIntLE(27, 3) };
  if (chunk === 'VP8L') {
    const bits = b.readUInt32LE(21);
    return { width: 1 + (bits & 0x3fff), height: 1 + ((bits >>> 14) & 0x3fff) };
  }
  if (chunk === 'VP8 ') return { width: b.readUInt16LE(26) & 0x3fff, height: b.readUInt16LE(28) & 0x3fff };
  return undefined;
}

/** ImageWidth (256) and ImageLength (257) of the first IFD. */
function tiffSize(b: Buffer): Size {
  const le = b[0] === 0x49;
  const u16 = (o: number) => (le ? b.readUInt16LE(o) : b.readUInt16BE(o));
  const u32 = (o: number) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
  const ifd = u32(4);
  const count = u16(ifd);
  let width: number | undefined;
  let height: number | undefined;
  for (let i = 0; i < count; i++) {
    const e = ifd + 2 + 12 * i;
    const tag = u16(e);
    if (tag !== 256 && tag !== 257) continue;
    const value = u16(e + 2) === 3 ? u16(e + 8) : u32(e + 8);
    if (tag === 256) width = value;
    else height = value;
  }
  return width !== undefined && height !== undefined ? { width, height } : undefined;
}

// Pillow's antialiased bilinear resampling (Resample.c: triangle filter widened by the scale factor,
// 22-bit fixed-point coefficients, a uint8 intermediate between the horizontal and the vertical pass),
// computed only for the pixels of a crop window. torchvision's Resize on PIL images is exactly this,
// and libvips' reducers differ from it by up to ~10/255 (measured), so the exact port is what lets
// preprocessing agree with torchvision within 2/255.

const PRECISION_BITS = 32 - 8 - 2;
const ONE = 1 << PRECISION_BITS;
const HALF = 1 << (PRECISION_BITS - 1);

interface Coefficients {
  /** first input index per output index */
  start: Int32Array;
  /** number of taps per output index */
  count: Int32Array;
  /** `ksize` fixed-point weights per output index (integers, held as doubles so sums never leave V8's double path) */
  weights: Float64Array;
  ksize: number;
}

/** Pillow's precompute_coeffs + normalize_coeffs_8bpc for the bilinear filter (support 1). */
function coefficients(inSize: number, outSize: number): Coefficients {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = filterscale; // bilinear support 1.0 × filterscale
  const ksize = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Float64Array(outSize * ksize);
  const k = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterscale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const t = Math.abs((x + xmin - center + 0.5) * ss);
      const w = t < 1 ? 1 - t : 0;
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const w = ww !== 0 ? k[x] / ww : k[x];
      weights[xx * ksize + x] = w < 0 ? Math.trunc(-0.5 + w * ONE) : Math.trunc(0.5 + w * ONE);
    }
    start[xx] = xmin;
    count[xx] = xmax;
  }
  return { start, count, weights, ksize };
}

function clip8(ss: number): number {
  const v = Math.floor(ss / ONE);
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

export interface Window {
  /** offset of the window in the resized image (may be negative: zero padding, as torchvision's CenterCrop) */
  left: number;
  top: number;
  width: number;
  height: number;
}

/**
 * Resizes interleaved uint8 pixels (`channels` per pixel) from `inW`×`inH` to `outW`×`outH` the way Pillow's
 * BILINEAR does, returning only the `win` part of the result (pixels outside the resized image are 0).
 * Cost is proportional to the window, not to the resized image.
 */
export function resizeBilinearWindow(
  src: Uint8Array, inW: number, inH: number, channels: number,
  outW: number, outH: number, win: Window,
): Uint8Array {
  const out = new Uint8Array(win.width * win.height * channels);
  // Output columns/rows of the window that exist in the resized image.
  const x0 = Math.max(win.left, 0);
  const x1 = Math.min(win.left + win.width, outW);
  const y0 = Math.max(win.top, 0);
  const y1 = Math.min(win.top + win.height, outH);
  if (x1 <= x0 || y1 <= y0) return out;
  const needH = outW !== inW;
  const needV = outH !== inH;
  const hc = needH ? coefficients(inW, outW) : undefined;
  const vc = needV ? coefficients(inH, outH) : undefined;

  // Input rows the vertical pass reads for output rows y0..y1.
  const rowFirst = vc ? vc.start[y0] : y0;
  let rowLast = y1; // exclusive
  if (vc) {
    rowLast = 0;
    for (let y = y0; y < y1; y++) rowLast = Math.max(rowLast, vc.start[y] + vc.count[y]);
  }
  const cols = x1 - x0;
  const rows = rowLast - rowFirst;

  // Horizontal pass → uint8 intermediate (rows × cols), as Pillow does. All channels of a pixel are
  // accumulated together (one pass over the taps), which is what keeps this cheap in JS.
  const mid = new Uint8Array(rows * cols * channels);
  const acc = new Float64Array(channels);
  // 1 and 3 channels (every image model here) get loops with scalar accumulators: the same integer sums
  // (exact in doubles, so bit-identical), ≈ 3× faster than the generic loop (bench/NOTES.md §13).
  if (hc && (channels === 3 || channels === 1)) {
    horizontalPass(src, inW, channels, rowFirst, rows, x0, cols, hc, mid);
  } else for (let r = 0; r < rows; r++) {
    const inRow = (rowFirst + r) * inW * channels;
    const midRow = r * cols * channels;
    for (let xi = 0; xi < cols; xi++) {
      const xx = x0 + xi;
      const m = midRow + xi * channels;
      if (!hc) {
        for (let c = 0; c < channels; c++) mid[m + c] = src[inRow + xx * channels + c];
        continue;
      }
      const n = hc.count[xx];
      const kb = xx * hc.ksize;
      let p = inRow + hc.start[xx] * channels;
      acc.fill(HALF);
      for (let x = 0; x < n; x++, p += channels) {
        const w = hc.weights[kb + x];
        for (let c = 0; c < channels; c++) acc[c] += src[p + c] * w;
      }
      for (let c = 0; c < channels; c++) mid[m + c] = clip8(acc[c]);
    }
  }

  // Vertical pass into the window.
  const midStride = cols * channels;
  if (vc && (channels === 3 || channels === 1)) {
    verticalPass(mid, midStride, channels, rowFirst, x0, cols, y0, y1, vc, win, out);
    return out;
  }
  for (let yy = y0; yy < y1; yy++) {
    const outRow = (yy - win.top) * win.width * channels;
    const n = vc ? vc.count[yy] : 1;
    const kb = vc ? yy * vc.ksize : 0;
    const first = (vc ? vc.start[yy] : yy) - rowFirst;
    for (let xi = 0; xi < cols; xi++) {
      const o = outRow + (x0 + xi - win.left) * channels;
      let p = first * midStride + xi * channels;
      if (!vc) {
        for (let c = 0; c < channels; c++) out[o + c] = mid[p + c];
        continue;
      }
      acc.fill(HALF);
      for (let y = 0; y < n; y++, p += midStride) {
        const w = vc.weights[kb + y];
        for (let c = 0; c < channels; c++) acc[c] += mid[p + c] * w;
      }
      for (let c = 0; c < channels; c++) out[o + c] = clip8(acc[c]);
    }
  }
  return out;
}

function horizontalPass(
  src: Uint8Array, inW: number, channels: number, rowFirst: number, rows: number, x0: number, cols: number,
  hc: Coefficients, mid: Uint8Array,
): void {
  const { start, count, weights, ksize } = hc;
  for (let r = 0; r < rows; r++) {
    const inRow = (rowFirst + r) * inW * channels;
    let m = r * cols * channels;
    for (let xi = 0; xi < cols; xi++) {
      const xx = x0 + xi;
      const n = count[xx];
      const kb = xx * ksize;
      let p = inRow + start[xx] * channels;
      if (channels === 3) {
        let a0 = HALF;
        let a1 = HALF;
        let a2 = HALF;
        for (let x = 0; x < n; x++, p += 3) {
          const w = weights[kb + x];
          a0 += src[p] * w;
          a1 += src[p + 1] * w;
          a2 += src[p + 2] * w;
        }
        mid[m++] = clip8(a0);
        mid[m++] = clip8(a1);
        mid[m++] = clip8(a2);
      } else {
        let a0 = HALF;
        for (let x = 0; x < n; x++, p++) a0 += src[p] * weights[kb + x];
        mid[m++] = clip8(a0);
      }
    }
  }
}

function verticalPass(
  mid: Uint8Array, midStride: number, channels: number, rowFirst: number, x0: number, cols: number,
  y0: number, y1: number, vc: Coefficients, win: Window, out: Uint8Array,
): void {
  const { start, count, weights, ksize } = vc;
  for (let yy = y0; yy < y1; yy++) {
    const n = count[yy];
    const kb = yy * ksize;
    const first = (start[yy] - rowFirst) * midStride;
    let o = (yy - win.top) * win.width * channels + (x0 - win.left) * channels;
    for (let xi = 0; xi < cols; xi++) {
      let p = first + xi * channels;
      if (channels === 3) {
        let a0 = HALF;
        let a1 = HALF;
        let a2 = HALF;
        for (let y = 0; y < n; y++, p += midStride) {
          const w = weights[kb + y];
          a0 += mid[p] * w;
          a1 += mid[p + 1] * w;
          a2 += mid[p + 2] * w;
        }
        out[o++] = clip8(a0);
        out[o++] = clip8(a1);
        out[o++] = clip8(a2);
      } else {
        let a0 = HALF;
        for (let y = 0; y < n; y++, p += midStride) a0 += mid[p] * weights[kb + y];
        out[o++] = clip8(a0);
      }
    }
  }
}

/** Python's round() (half to even), as torchvision's CenterCrop uses for its offsets. */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** torchvision Resize(size) output for a w×h image: the shorter side becomes `size`, the other is truncated. */
export function resizedSize(w: number, h: number, size: number): { width: number; height: number } {
  if (w <= h) return { width: size, height: Math.trunc((size * h) / w) };
  return { width: Math.trunc((size * w) / h), height: size };
}

/** One axis of torchvision's CenterCrop: zero padding split floor/ceil when the crop is larger, else a round offset. */
export function cropOffset(size: number, crop: number): number {
  return crop > size ? -Math.floor((crop - size) / 2) : roundHalfEven((size - crop) / 2);
}

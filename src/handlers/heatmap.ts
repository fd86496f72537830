// Explanation heatmaps: integrated-gradients attributions of an image model rendered as a PNG a person can read.
// The attribution is summed over channels (signed), scaled by the 99th percentile of its magnitude (one hot pixel
// must not wash the rest out), coloured with a diverging map (blue = against the class, red = for it, near-white
// = no effect) and, by default, laid over the preprocessed input at the model's input size. sharp does the
// blending and the PNG encoding; only the per-pixel colour lookup is ours.
import sharp from 'sharp';
import type { Tensor } from '../native.js';

/** ColorBrewer RdBu (11 classes), from -1 (dark blue) through 0 (near white) to +1 (dark red). */
const DIVERGING: readonly (readonly [number, number, number])[] = [
  [5, 48, 97], [33, 102, 172], [67, 147, 195], [146, 197, 222], [209, 229, 240], [247, 247, 247],
  [253, 219, 199], [244, 165, 130], [214, 96, 77], [178, 24, 43], [103, 0, 31],
];

/** The most opaque the colour layer gets (at |attribution| ≥ the 99th percentile), so the image still shows. */
const MAX_ALPHA = 0.85;

export interface HeatmapSource {
  /** Integrated-gradients attributions for one example: [C, H, W] or [1, C, H, W], float32. */
  attributions: Tensor;
  /** The model input the attributions are for (normalised as the handler fed it), same shape; optional. */
  input?: Tensor;
  /** The handler's per-channel normalisation, to map `input` back to 0..1 pixels (default 0 and 1). */
  mean?: number[];
  std?: number[];
}

export interface HeatmapOptions {
  /** Blend over the input image (default true); false: the colour map alone. */
  overlay?: boolean;
}

/** The channel-summed attribution map and the scale that maps it onto -1..1. */
export interface AttributionMap {
  width: number;
  height: number;
  /** Signed sum over channels, row-major H × W. */
  values: Float32Array;
  /** The 99th percentile of |values|; 1 when every value is 0. */
  scale: number;
}

/** [C, H, W] or [1, C, H, W] → {channels, height, width}; throws a TypeError for any other shape. */
function imageDims(t: Tensor, what: string): { channels: number; height: number; width: number } {
  const s = t.shape[0] === 1 && t.shape.length === 4 ? t.shape.slice(1) : t.shape;
  if (s.length !== 3 || s.some((d) => !Number.isInteger(d) || d < 1)) {
    throw new TypeError(`A heatmap needs an image-shaped ${what} ([C, H, W] or [1, C, H, W]), got [${t.shape.join(', ')}]`);
  }
  if (!(t.data instanceof Float32Array)) throw new TypeError(`A heatmap needs a float32 ${what}, got ${t.dtype}`);
  return { channels: s[0], height: s[1], width: s[2] };
}

/** The q-quantile (0..1) of |values| by the nearest-rank method. */
export function absQuantile(values: Float32Array, q: number): number {
  const abs = Float32Array.from(values, Math.abs).sort();
  return abs.length === 0 ? 0 : abs[Math.min(abs.length - 1, Math.max(0, Math.ceil(q * abs.length) - 1))];
}

/** Sums the attributions over channels and finds the scale (99th percentile of |sum|). */
export function attributionMap(attributions: Tensor): AttributionMap {
  const { channels, height, width } = imageDims(attributions, 'attribution tensor');
  const data = attributions.data as Float32Array;
  const plane = height * width;
  const values = new Float32Array(plane);
  for (let c = 0; c < channels; c++) {
    for (let i = 0; i < plane; i++) values[i] += data[c * plane + i];
  }
  let scale = absQuantile(values, 0.99);
  // A map that is zero but for under 1 % of its pixels still shows them: scale by the largest instead.
  if (!(scale > 0)) scale = values.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  return { width, height, values, scale: scale > 0 && Number.isFinite(scale) ? scale : 1 };
}

/** RdBu at v in -1..1 (clamped), linearly interpolated between the 11 classes. */
export function divergingColour(v: number): [number, number, number] {
  const t = ((Number.isFinite(v) ? Math.max(-1, Math.min(1, v)) : 0) + 1) / 2 * (DIVERGING.length - 1);
  const i = Math.min(DIVERGING.length - 2, Math.floor(t));
  const f = t - i;
  const a = DIVERGING[i];
  const b = DIVERGING[i + 1];
  return [0, 1, 2].map((k) => Math.round(a[k] + (b[k] - a[k]) * f)) as [number, number, number];
}

/** The input tensor back as 8-bit RGB pixels (x * std + mean, clamped to 0..1; one channel → grey). */
export function inputPixels(input: Tensor, mean: number[], std: number[]): { width: number; height: number; rgb: Buffer } {
  const { channels, height, width } = imageDims(input, 'input tensor');
  if (channels !== 1 && channels !== 3) throw new TypeError(`A heatmap overlay needs a 1- or 3-channel input, got ${channels} channels`);
  const data = input.data as Float32Array;
  const plane = height * width;
  const rgb = Buffer.alloc(plane * 3);
  for (let i = 0; i < plane; i++) {
    for (let k = 0; k < 3; k++) {
      const c = channels === 1 ? 0 : k;
      const v = data[c * plane + i] * (std[c] ?? 1) + (mean[c] ?? 0);
      rgb[i * 3 + k] = Math.round(Math.max(0, Math.min(1, Number.isFinite(v) ? v : 0)) * 255);
    }
  }
  return { width, height, rgb };
}

/**
 * Renders one example's attributions as a PNG of the model input's width × height. With `overlay` (default) and
 * an `input`, the colour map is blended over the input image, opacity growing with |attribution| up to 0.85;
 * otherwise the colour map alone. Throws TypeError when the tensors are not image-shaped float32 or differ in
 * height/width.
 */
export async function renderHeatmap(source: HeatmapSource, options: HeatmapOptions = {}): Promise<Buffer> {
  const map = attributionMap(source.attributions);
  const { width, height } = map;
  const overlay = options.overlay !== false && source.input !== undefined;
  const layer = Buffer.alloc(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    const v = map.values[i] / map.scale;
    const [r, g, b] = divergingColour(v);
    layer[i * 4] = r;
    layer[i * 4 + 1] = g;
    layer[i * 4 + 2] = b;
    layer[i * 4 + 3] = overlay ? Math.round(Math.min(1, Math.abs(v)) * MAX_ALPHA * 255) : 255;
  }
  const raw = (channels: 3 | 4) => ({ raw: { width, height, channels } });
  if (!overlay) return sharp(layer, raw(4)).removeAlpha().png().toBuffer();
  const base = inputPixels(source.input!, source.mean ?? [], source.std ?? []);
  if (base.width !== width || base.height !== height) {
    throw new TypeError(`Attributions (${width}×${height}) and input (${base.width}×${base.height}) differ in size`);
  }
  // sharp composites last in its pipeline, so dropping the (opaque) alpha channel takes a second pass.
  const blended = await sharp(base.rgb, raw(3)).composite([{ input: layer, ...raw(4), blend: 'over' }]).raw().toBuffer();
  return sharp(blended, raw(4)).removeAlpha().png().toBuffer();
}

/** A PNG as a `data:` URL, the form one heatmap takes inside a JSON list of several. */
export function pngDataUrl(png: Buffer): string {
  return `data:image/png;base64,${png.toString('base64')}`;
}

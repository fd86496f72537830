// The image_classifier handler: images (raw bytes, base64 text, JSON {"data": base64}, v2 BYTES, or already
// preprocessed [C,H,W] tensors) → [1, C, H, W] float32, and class scores → top-k / argmax / probabilities / logits.
import { BadRequestError } from '../errors.js';
import { ITEM_SIZE } from '../engine/tensors.js';
import type { HandlerConfig, TensorMetadata } from '../engine/types.js';
import type { OutputTree, Tensor } from '../native.js';
import { parseJsonBounded } from '../bounded-json.js';
import type { HeatmapOptions } from './heatmap.js';
import { renderHeatmapOffLoop } from './response-encoder.js';
import { decodeBase64Image, imageToTensor } from './image.js';
import { imageSignature, readImageHeader } from './image-header.js';
import type { DecodeContext, DecodeLimits, Example, HandlerModel, InputPart, ModelHandler, NamedInput, NamedOutput } from './model-handler.js';
import { OrderedJson, postprocessScores } from './output.js';

const isText = (contentType: string | undefined) => contentType !== undefined && /^text\//i.test(contentType);
const isJsonType = (contentType: string | undefined) => contentType !== undefined && /^application\/([\w.+-]+\+)?json\b/i.test(contentType);

/** A JSON value that carries an image: `"<base64>"`, `{"data": "<base64>"}` or `{"b64": "<base64>"}`. */
function jsonImageBytes(value: unknown): Buffer {
  if (typeof value === 'string') return decodeBase64Image(value);
  if (value !== null && typeof value === 'object') {
    const v = value as { data?: unknown; b64?: unknown };
    if (typeof v.data === 'string') return decodeBase64Image(v.data);
    if (typeof v.b64 === 'string') return decodeBase64Image(v.b64);
    if (v.data !== null && typeof v.data === 'object' && typeof (v.data as { b64?: unknown }).b64 === 'string') {
      return decodeBase64Image((v.data as { b64: string }).b64);
    }
  }
  throw new BadRequestError('Expected an image: raw bytes, base64 text, or JSON {"data": "<base64 image>"}');
}

/** JSON text of a row; top-k objects keep their descending-probability key order (even numeric labels). */
function rowJson(row: unknown): string {
  if (row instanceof OrderedJson) return `{${row.entries.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`;
  return JSON.stringify(row);
}

export class ImageClassifierHandler implements ModelHandler {
  readonly name = 'image_classifier' as const;
  private readonly config: HandlerConfig;
  /**
   * [height, width] the model takes when the handler does not resize: declared in the model config's `inputs`, or
   * found by the registry's probe before the first request. Undefined when the model takes several sizes (adaptive
   * pooling) or no size is known: the pixel budget applies then. Never learnt from an answered image: one image
   * that worked does not show that other sizes would fail.
   */
  private readonly inputSize: [number, number] | undefined;

  constructor(private readonly model: HandlerModel) {
    this.config = model.handler;
    const declared = model.inputs?.[0]?.shape;
    if (declared && declared.length >= 2 && declared.at(-1)! > 0 && declared.at(-2)! > 0) {
      this.inputSize = [declared.at(-2)!, declared.at(-1)!];
    } else if (model.imageInput?.size) {
      this.inputSize = model.imageInput.size;
    }
  }

  /** Whether the preprocessing gives every image one size (so any source size is accepted, up to the pixel budget). */
  private get resizes(): boolean {
    return this.config.image_size !== null || this.config.crop_size !== null;
  }

  /**
   * Refuses, from the header alone, an image the model cannot take or that costs too much to decode: a resizing
   * handler above `max_image_pixels`; a non-resizing one whose size differs from the model's input.
   */
  private checkHeader(bytes: Buffer, limits: DecodeLimits): void {
    const header = readImageHeader(bytes);
    if (!header) return; // not an image, or an unreadable header: the decoder says what is wrong
    const { width, height } = header;
    if (!this.resizes && this.inputSize) {
      const [h, w] = this.inputSize;
      if (width !== w || height !== h) {
        throw new BadRequestError(
          `Image is ${width}x${height} pixels but model ${this.model.name} takes ${w}x${h} images and its handler does not resize (handler.image_size is null); refused before decoding`,
        );
      }
      return;
    }
    if (width * height > limits.maxImagePixels) {
      throw new BadRequestError(
        `Image too large: ${width}x${height} = ${width * height} pixels exceeds max_image_pixels (${limits.maxImagePixels}); refused before decoding`,
      );
    }
  }

  private async image(bytes: Buffer, limits: DecodeLimits): Promise<Tensor> {
    this.checkHeader(bytes, limits);
    return imageToTensor(bytes, this.config);
  }

  /** One part's image bytes: an image signature wins over any Content-Type; base64 is only tried on text. */
  private partBytes(part: InputPart, ctx: DecodeContext): Buffer {
    if ('json' in part) return jsonImageBytes(part.json);
    if (imageSignature(part.data)) return part.data;
    if (isJsonType(part.contentType)) return jsonImageBytes(parseJsonBounded(part.data, { maxDepth: ctx.limits.maxJsonDepth, maxElements: ctx.limits.maxElements }, 'JSON input'));
    if (isText(part.contentType)) return decodeBase64Image(part.data.toString('latin1'));
    return part.data;
  }

  partExamples(parts: InputPart[], ctx: DecodeContext): Example[] {
    return parts.map((part) => ({ decode: async () => [await this.image(this.partBytes(part, ctx), ctx.limits)] }));
  }

  instanceExamples(instances: unknown[], ctx: DecodeContext): Example[] {
    return instances.map((instance) => ({ decode: async () => [await this.image(jsonImageBytes(instance), ctx.limits)] }));
  }

  tensorExamples(inputs: NamedInput[], ctx: DecodeContext): Example[] {
    if (inputs.length !== 1) {
      throw new BadRequestError(`Model ${this.model.name} takes one input (images as BYTES), the request has ${inputs.length}`);
    }
    const input = inputs[0];
    if (input.bytes) {
      if (input.bytes.length === 0) throw new BadRequestError(`input "${input.name}": no images`);
      return input.bytes.map((b) => ({ decode: async () => [await this.image(b, ctx.limits)] }));
    }
    return splitExamples(input, this.config.channels).map((t) => ({ decode: async () => [t] }));
  }

  row(out: OutputTree): unknown {
    return postprocessScores(this.config, this.model.labels, out);
  }

  /**
   * The attributions over the normalised image the model saw, mapped back to pixels with this handler's mean/std;
   * rendered on the response encoder thread (40–65 ms of pixel work for a 224×224 map, bench/NOTES.md §31).
   */
  heatmap(args: Tensor[], attributions: Tensor, options: HeatmapOptions): Promise<Buffer> {
    return renderHeatmapOffLoop({ attributions, input: args[0], mean: this.config.mean, std: this.config.std }, options);
  }

  /** Rows as one output: class indices INT64, score lists FP32, anything else (top-k objects) JSON BYTES. */
  namedOutputs(outs: OutputTree[]): NamedOutput[] {
    const rows = outs.map((o) => this.row(o));
    const name = this.model.outputs?.[0]?.name ?? 'output0';
    const n = rows.length;
    if (rows.every((r) => Number.isInteger(r))) {
      return [{ name, datatype: 'INT64', shape: [n], tensor: { data: BigInt64Array.from(rows as number[], (r) => BigInt(r)), shape: [n], dtype: 'int64' } }];
    }
    if (rows.length > 0 && rows.every((r) => Array.isArray(r) && r.every((v) => typeof v === 'number'))) {
      const width = (rows[0] as number[]).length;
      if (rows.every((r) => (r as number[]).length === width)) {
        const data = new Float32Array(n * width);
        rows.forEach((r, i) => data.set(r as number[], i * width));
        return [{ name, datatype: 'FP32', shape: [n, width], tensor: { data, shape: [n, width], dtype: 'float32' } }];
      }
    }
    return [{ name, datatype: 'BYTES', shape: [n], strings: rows.map(rowJson) }];
  }

  metadata(): { inputs: TensorMetadata[]; outputs: TensorMetadata[] } {
    const out = this.config.output;
    return {
      inputs: this.model.inputs ?? [{ name: this.model.argumentNames[0] ?? 'input0', datatype: 'BYTES', shape: [-1] }],
      outputs: this.model.outputs ?? [
        out === 'argmax'
          ? { name: 'output0', datatype: 'INT64', shape: [-1] }
          : out === 'topk'
            ? { name: 'output0', datatype: 'BYTES', shape: [-1] }
            : { name: 'output0', datatype: 'FP32', shape: [-1, -1] },
      ],
    };
  }
}

/** One example's image-model input from a numeric tensor: [C,H,W] gains a batch dim, [N,C,H,W] splits into N. */
function splitExamples(input: NamedInput, channels: number): Tensor[] {
  const t = input.tensor!;
  let shape = t.shape;
  if (shape.length === 2 && channels === 1) shape = [1, 1, ...shape];
  else if (shape.length === 3) shape = [1, ...shape];
  if (shape.length !== 4) {
    throw new BadRequestError(`input "${input.name}": an image model takes [C,H,W] or [N,C,H,W] tensors (or BYTES images), got [${t.shape.join(', ')}]`);
  }
  const n = shape[0];
  const per = shape[1] * shape[2] * shape[3];
  const size = ITEM_SIZE[t.dtype];
  return Array.from({ length: n }, (_, i) => {
    const Ctor = t.data.constructor as new (b: ArrayBufferLike, o: number, l: number) => Tensor['data'];
    return { dtype: t.dtype, shape: [1, shape[1], shape[2], shape[3]], data: new Ctor(t.data.buffer, t.data.byteOffset + i * per * size, per) };
  });
}

// KServe v2 request/response bodies: JSON tensors and the binary tensor data extension.
// Binary inputs become typed-array views over the request body (no copy) whenever the offset is
// aligned for the element size; misaligned data is copied once.
import { BadRequestError } from '../../errors.js';
import type { DType, Tensor, TypedArray } from '../../native.js';
import {
  ARRAY_CTOR,
  DTYPE_TO_V2,
  INT_RANGE,
  ITEM_SIZE,
  SUPPORTED_DATATYPES,
  V2_TO_DTYPE,
  fromBfloat16,
  fromHalf,
  isNumericDatatype,
  toBfloat16,
  toHalf,
  type V2Datatype,
} from './datatypes.js';
import type { NamedOutput } from '../../handlers/model-handler.js';
import { PackedArray, parseJsonBounded } from '../../bounded-json.js';
import { serializeJsonChunks, TensorJson } from '../../handlers/output.js';
import { OFF_LOOP_JSON_NUMBERS } from '../../service/limits.js';
import { checkElementCount } from '../../service/index.js';

export const HEADER_LENGTH = 'inference-header-content-length';

export interface DecodedInput {
  name: string;
  datatype: V2Datatype;
  /** Shape with any -1 resolved from the element count. */
  shape: number[];
  /** Numeric datatypes. */
  tensor?: Tensor;
  /** BYTES elements (JSON: base64-decoded; binary: length-prefixed). */
  bytes?: Buffer[];
  parameters: Record<string, unknown>;
}

export interface RequestedOutput {
  name: string;
  binary: boolean;
}

export interface DecodedRequest {
  id?: string;
  inputs: DecodedInput[];
  /** Requested outputs, when the request names them. */
  outputs?: RequestedOutput[];
  /** Request-level `binary_data_output`: every output not named otherwise comes back binary. */
  binaryOutputs: boolean;
  parameters: Record<string, unknown>;
}

/** Bounds the decoder applies while reading (the service's `max_request_elements` and `max_json_depth`). */
export interface DecodeLimits {
  maxElements: number;
  maxJsonDepth: number;
}

const NO_LIMITS: DecodeLimits = { maxElements: Infinity, maxJsonDepth: 64 };

/** BYTES elements seen so far across the request's inputs, refused past max_request_elements before allocation. */
export interface Cursor {
  offset: number;
  elements: number;
  limits: DecodeLimits;
}

/** A fresh cursor for one request (gRPC decodes its inputs one by one with it). */
export function elementCursor(limits: DecodeLimits): Cursor {
  return { offset: 0, elements: 0, limits };
}

function countElements(cursor: Cursor, n: number): void {
  cursor.elements += n;
  checkElementCount(cursor.elements, 'BYTES elements', cursor.limits.maxElements);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Parse an infer/explain body. `headerLength` is the Inference-Header-Content-Length header (absent for
 * pure JSON). Throws BadRequestError naming the offending input and what was expected.
 */
export function decodeInferRequest(
  body: Buffer | Record<string, unknown>, headerLength?: string, limits: DecodeLimits = NO_LIMITS,
  /** The JSON header already parsed (a large one, off the event loop), when the body is a binary request. */
  parsedHeader?: { value: unknown },
): DecodedRequest {
  let json: unknown;
  let binary: Buffer | undefined;
  if (Buffer.isBuffer(body)) {
    let n = body.length;
    if (headerLength !== undefined) {
      if (!/^\d+$/.test(headerLength.trim())) {
        throw new BadRequestError(`Inference-Header-Content-Length must be a non-negative integer, got "${headerLength}"`);
      }
      n = Number(headerLength);
      if (n > body.length) {
        throw new BadRequestError(
          `Inference-Header-Content-Length ${n} is past the end of the body (${body.length} bytes)`,
        );
      }
      binary = body.subarray(n);
    }
    if (n === 0) throw new BadRequestError('Empty request body: expected a JSON inference request');
    json = parsedHeader ? parsedHeader.value
      : parseJsonBounded(body.subarray(0, n), { maxDepth: limits.maxJsonDepth, maxElements: limits.maxElements }, 'JSON inference header');
  } else {
    json = body;
  }
  if (!isRecord(json)) throw new BadRequestError('Inference request must be a JSON object');

  const { id, inputs, outputs, parameters } = json;
  if (id !== undefined && typeof id !== 'string') throw new BadRequestError('"id" must be a string');
  if (parameters !== undefined && !isRecord(parameters)) throw new BadRequestError('"parameters" must be an object');
  if (!Array.isArray(inputs) || inputs.length === 0) {
    throw new BadRequestError('"inputs" must be a non-empty array of {name, shape, datatype, data}');
  }

  const cursor = elementCursor(limits);
  const decoded = inputs.map((input, i) => decodeInput(input, i, binary, cursor));
  if (binary && cursor.offset !== binary.length) {
    throw new BadRequestError(
      `Binary tensor data has ${binary.length - cursor.offset} bytes after the last input's binary_data_size`,
    );
  }

  let requested: RequestedOutput[] | undefined;
  if (outputs !== undefined) {
    if (!Array.isArray(outputs)) throw new BadRequestError('"outputs" must be an array of {name, parameters?}');
    requested = outputs.map((o, i) => {
      if (!isRecord(o) || typeof o.name !== 'string') throw new BadRequestError(`outputs[${i}] must have a string "name"`);
      if (o.parameters !== undefined && !isRecord(o.parameters)) {
        throw new BadRequestError(`outputs[${i}].parameters must be an object`);
      }
      return { name: o.name, binary: o.parameters?.binary_data === true };
    });
  }
  const params = (parameters ?? {}) as Record<string, unknown>;
  return {
    id: id as string | undefined,
    inputs: decoded,
    outputs: requested,
    binaryOutputs: params.binary_data_output === true,
    parameters: params,
  };
}

function decodeInput(raw: unknown, index: number, binary: Buffer | undefined, cursor: Cursor): DecodedInput {
  if (!isRecord(raw)) throw new BadRequestError(`inputs[${index}] must be an object`);
  const where = typeof raw.name === 'string' ? `input "${raw.name}"` : `inputs[${index}]`;
  if (typeof raw.name !== 'string' || raw.name === '') throw new BadRequestError(`${where}: "name" must be a non-empty string`);
  const name = raw.name;
  if (typeof raw.datatype !== 'string') throw new BadRequestError(`${where}: "datatype" must be a string`);
  const datatype = raw.datatype.toUpperCase();
  if (!isNumericDatatype(datatype) && datatype !== 'BYTES') {
    throw new BadRequestError(
      `${where}: unknown datatype "${raw.datatype}"; expected one of ${SUPPORTED_DATATYPES.join(', ')}`,
    );
  }
  if (!Array.isArray(raw.shape) || !raw.shape.every((d) => Number.isInteger(d) && d >= -1)) {
    throw new BadRequestError(`${where}: "shape" must be an array of non-negative integers (one -1 may be inferred)`);
  }
  const shape = raw.shape as number[];
  if (shape.filter((d) => d === -1).length > 1) throw new BadRequestError(`${where}: at most one -1 in "shape"`);
  if (raw.parameters !== undefined && !isRecord(raw.parameters)) throw new BadRequestError(`${where}: "parameters" must be an object`);
  const parameters = (raw.parameters ?? {}) as Record<string, unknown>;

  const binarySize = parameters.binary_data_size;
  if (binarySize !== undefined) {
    if (!Number.isInteger(binarySize) || (binarySize as number) < 0) {
      throw new BadRequestError(`${where}: parameters.binary_data_size must be a non-negative integer`);
    }
    if (raw.data !== undefined) throw new BadRequestError(`${where}: has both "data" and parameters.binary_data_size`);
    if (!binary) {
      throw new BadRequestError(`${where}: parameters.binary_data_size needs the Inference-Header-Content-Length header`);
    }
    const size = binarySize as number;
    if (cursor.offset + size > binary.length) {
      throw new BadRequestError(
        `${where}: binary_data_size ${size} at offset ${cursor.offset} is past the end of the binary data (${binary.length} bytes)`,
      );
    }
    const bytes = binary.subarray(cursor.offset, cursor.offset + size);
    cursor.offset += size;
    return datatype === 'BYTES'
      ? decodeBinaryBytes(name, where, shape, bytes, parameters, cursor)
      : decodeBinaryNumeric(name, where, datatype, shape, bytes, parameters);
  }

  if (raw.data === undefined) throw new BadRequestError(`${where}: missing "data" (or parameters.binary_data_size)`);
  if (raw.data instanceof PackedArray) return decodePacked(name, where, datatype, shape, raw.data, parameters, cursor);
  const flat: unknown[] = [];
  flatten(raw.data, flat, 0, where, cursor.limits.maxJsonDepth);
  const resolved = resolveShape(where, shape, flat.length);
  if (datatype === 'BYTES') {
    countElements(cursor, flat.length);
    const bytes = flat.map((v, i) => {
      if (typeof v !== 'string') throw new BadRequestError(`${where}: BYTES element ${i} must be a base64 string`);
      return decodeBase64(where, i, v);
    });
    return { name, datatype, shape: resolved, bytes, parameters };
  }
  const dtype = V2_TO_DTYPE[datatype];
  return { name, datatype, shape: resolved, tensor: { data: fillTypedArray(where, dtype, flat), shape: resolved, dtype }, parameters };
}

/**
 * `data` parsed off the event loop as a PackedArray (bounded-json.ts): the same checks and messages as the nested
 * array's, with typed-array conversions instead of a loop over JS values.
 */
function decodePacked(
  name: string, where: string, datatype: V2Datatype, shape: number[], packed: PackedArray, parameters: Record<string, unknown>, cursor: Cursor,
): DecodedInput {
  const n = packed.data.length;
  const resolved = resolveShape(where, shape, n);
  if (datatype === 'BYTES') {
    countElements(cursor, n);
    throw new BadRequestError(`${where}: BYTES element 0 must be a base64 string`);
  }
  const dtype = V2_TO_DTYPE[datatype];
  const data = dtype === 'float64' ? packed.data : dtype === 'float32' ? new Float32Array(packed.data) : fillTypedArray(where, dtype, packed.data);
  return { name, datatype, shape: resolved, tensor: { data, shape: resolved, dtype }, parameters };
}

function flatten(v: unknown, out: unknown[], depth: number, where: string, maxDepth: number): void {
  if (!Array.isArray(v)) {
    out.push(v);
    return;
  }
  if (depth > maxDepth) throw new BadRequestError(`${where}: "data" is nested deeper than ${maxDepth} levels (max_json_depth ${maxDepth})`);
  for (const e of v) flatten(e, out, depth + 1, where, maxDepth);
}

function product(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Check the element count against `shape`, replacing a -1 with what the count implies. */
export function resolveShape(where: string, shape: number[], count: number): number[] {
  const known = product(shape.filter((d) => d !== -1));
  if (shape.includes(-1)) {
    if (known === 0 || count % known !== 0) {
      throw new BadRequestError(`${where}: ${count} elements cannot fill shape [${shape.join(', ')}]`);
    }
    return shape.map((d) => (d === -1 ? count / known : d));
  }
  if (known !== count) {
    throw new BadRequestError(
      `${where}: shape [${shape.join(', ')}] needs ${known} elements but "data" has ${count}`,
    );
  }
  return shape;
}

export function fillTypedArray(where: string, dtype: DType, flat: ArrayLike<unknown>): TypedArray {
  const n = flat.length;
  const bad = (i: number, what: string): never => {
    throw new BadRequestError(`${where}: element ${i} (${JSON.stringify(flat[i])}) is not ${what}`);
  };
  switch (dtype) {
    case 'bool': {
      const a = new Uint8Array(n);
      for (let i = 0; i < n; i++) {
        const v = flat[i];
        if (typeof v === 'boolean') a[i] = v ? 1 : 0;
        else if (v === 0 || v === 1) a[i] = v;
        else bad(i, 'a boolean');
      }
      return a;
    }
    case 'float32':
    case 'float64': {
      const a = dtype === 'float32' ? new Float32Array(n) : new Float64Array(n);
      for (let i = 0; i < n; i++) {
        const v = flat[i];
        if (typeof v !== 'number') bad(i, 'a number');
        a[i] = v as number;
      }
      return a;
    }
    case 'float16':
    case 'bfloat16': {
      const a = new Uint16Array(n);
      const conv = dtype === 'float16' ? toHalf : toBfloat16;
      for (let i = 0; i < n; i++) {
        const v = flat[i];
        if (typeof v !== 'number') bad(i, 'a number');
        a[i] = conv(v as number);
      }
      return a;
    }
    case 'int64': {
      const a = new BigInt64Array(n);
      const [lo, hi] = INT_RANGE.int64!;
      for (let i = 0; i < n; i++) {
        const v = flat[i];
        if (!Number.isInteger(v) || (v as number) < lo || (v as number) > hi) bad(i, 'an INT64 integer (within ±2^53 in JSON)');
        a[i] = BigInt(v as number);
      }
      return a;
    }
    default: {
      const a = new ARRAY_CTOR[dtype](n) as Exclude<TypedArray, BigInt64Array>;
      const [lo, hi] = INT_RANGE[dtype]!;
      for (let i = 0; i < n; i++) {
        const v = flat[i];
        if (!Number.isInteger(v) || (v as number) < lo || (v as number) > hi) {
          bad(i, `an integer in [${lo}, ${hi}] for ${DTYPE_TO_V2[dtype]}`);
        }
        a[i] = v as number;
      }
      return a;
    }
  }
}

const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

function decodeBase64(where: string, i: number, s: string): Buffer {
  // Accept data URLs ("data:image/png;base64,...") as browsers produce them.
  const comma = s.startsWith('data:') ? s.indexOf(',') : -1;
  const text = (comma >= 0 ? s.slice(comma + 1) : s).replace(/\s+/g, '');
  if (!BASE64.test(text)) throw new BadRequestError(`${where}: BYTES element ${i} in JSON must be base64`);
  return Buffer.from(text, text.includes('-') || text.includes('_') ? 'base64url' : 'base64');
}

function decodeBinaryNumeric(
  name: string,
  where: string,
  datatype: Exclude<V2Datatype, 'BYTES'>,
  shape: number[],
  bytes: Buffer,
  parameters: Record<string, unknown>,
): DecodedInput {
  const dtype = V2_TO_DTYPE[datatype];
  const size = ITEM_SIZE[dtype];
  if (bytes.length % size !== 0) {
    throw new BadRequestError(`${where}: binary_data_size ${bytes.length} is not a multiple of ${size} bytes (${datatype})`);
  }
  const resolved = resolveShape(where, shape, bytes.length / size);
  return { name, datatype, shape: resolved, tensor: { data: viewOf(dtype, bytes), shape: resolved, dtype }, parameters };
}

/** Typed-array view over `bytes` (little-endian host), copying only when the offset is misaligned. */
export function viewOf(dtype: DType, bytes: Buffer): TypedArray {
  const size = ITEM_SIZE[dtype];
  const n = bytes.length / size;
  if (bytes.byteOffset % size === 0) return new ARRAY_CTOR[dtype](bytes.buffer, bytes.byteOffset, n);
  const copy = new ArrayBuffer(bytes.length);
  new Uint8Array(copy).set(bytes);
  return new ARRAY_CTOR[dtype](copy, 0, n);
}

/** Binary BYTES: each element is a 4-byte little-endian length followed by that many bytes. */
export function decodeBinaryBytes(
  name: string, where: string, shape: number[], bytes: Buffer, parameters: Record<string, unknown>, cursor: Cursor = elementCursor(NO_LIMITS),
): DecodedInput {
  const elements: Buffer[] = [];
  let off = 0;
  while (off < bytes.length) {
    countElements(cursor, 1);
    if (off + 4 > bytes.length) throw new BadRequestError(`${where}: truncated BYTES length prefix at byte ${off}`);
    const len = bytes.readUInt32LE(off);
    off += 4;
    if (off + len > bytes.length) {
      throw new BadRequestError(`${where}: BYTES element ${elements.length} of ${len} bytes runs past binary_data_size`);
    }
    elements.push(bytes.subarray(off, off + len));
    off += len;
  }
  const resolved = resolveShape(where, shape, elements.length);
  return { name, datatype: 'BYTES', shape: resolved, bytes: elements, parameters };
}

// ---------------------------------------------------------------------------------------------
// Responses

export type { NamedOutput };
export { namedOutputs } from '../../handlers/output.js';

/** Plain JSON values of a tensor, flat row-major (as the v2 protocol sends them). */
export function tensorToJson(t: Tensor): Array<number | boolean> {
  const d = t.data;
  switch (t.dtype) {
    case 'bool':
      return Array.from(d as Uint8Array, (v) => v !== 0);
    case 'int64':
      return Array.from(d as BigInt64Array, (v) => Number(v));
    case 'float16':
      return Array.from(d as Uint16Array, fromHalf);
    case 'bfloat16':
      return Array.from(d as Uint16Array, fromBfloat16);
    default:
      return Array.from(d as Exclude<TypedArray, BigInt64Array>);
  }
}

export function bytesOfTensor(t: Tensor): Buffer {
  return Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

export function bytesOfStrings(strings: string[]): Buffer {
  const parts: Buffer[] = [];
  for (const s of strings) {
    const b = Buffer.from(s, 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32LE(b.length);
    parts.push(len, b);
  }
  return Buffer.concat(parts);
}

export interface EncodedResponse {
  /** Pieces to write in order (JSON header first). */
  chunks: Buffer[];
  /** Set when any output is binary: the JSON header's byte length. */
  headerLength?: number;
  contentType: string;
}

/**
 * Build the response body. Outputs for which `binary(name)` is true go after the JSON header as raw
 * little-endian bytes with `parameters.binary_data_size`, exactly as requests carry them. The JSON is written
 * by the serializer /predictions uses, in slices with event-loop yields (an attribution is 150 000 numbers).
 */
export async function encodeInferResponse(
  head: Record<string, unknown>,
  outputs: NamedOutput[],
  binary: (name: string) => boolean,
): Promise<EncodedResponse> {
  const tails: Buffer[] = [];
  const jsonOutputs = outputs.map((o) => {
    const base = { name: o.name, datatype: o.datatype, shape: o.shape };
    if (binary(o.name)) {
      const b = o.tensor ? bytesOfTensor(o.tensor) : bytesOfStrings(o.strings ?? []);
      tails.push(b);
      return { ...base, parameters: { binary_data_size: b.length } };
    }
    // Flat TensorJson: encoded by the serializer, a large one off the event loop (Array.from alone took ~30 ms).
    return { ...base, data: o.tensor ? new TensorJson(o.tensor, 0, true) : o.strings };
  });
  // The JSON header as the serializer wrote it, in pieces (a large output's text comes whole from the encoder thread).
  const header = await serializeJsonChunks({ ...head, outputs: jsonOutputs }, OFF_LOOP_JSON_NUMBERS);
  if (tails.length === 0) return { chunks: header, contentType: 'application/json; charset=utf-8' };
  return { chunks: [...header, ...tails], headerLength: header.reduce((n, c) => n + c.length, 0), contentType: 'application/octet-stream' };
}

// The tensor handler's input forms (JSON nested arrays, {data, shape, dtype}, raw little-endian bytes) and
// typed-array conversions both ways (float16/bfloat16 travel as 16-bit words, int64 as BigInt64Array).
import { PackedArray } from '../bounded-json.js';
import { BadRequestError } from '../errors.js';
import type { DType, Tensor, TypedArray } from '../native.js';
import { toBfloat16, toHalf } from '../float16.js';
import { ARRAY_CTOR, elementCount, INT_RANGE, ITEM_SIZE, parseDType } from '../engine/tensors.js';

export { parseDType } from '../engine/tensors.js';

/** "1,3,224,224" or "[1, 3, 224, 224]" or a number array → shape; BadRequestError otherwise. */
export function parseShape(value: unknown): number[] {
  const list = typeof value === 'string' ? value.replace(/[[\]()\s]/g, '').split(',').filter((s) => s !== '').map(Number) : value;
  if (!Array.isArray(list) || !list.every((d) => typeof d === 'number' && Number.isInteger(d) && d >= 0)) {
    throw new BadRequestError(`Invalid shape ${JSON.stringify(value)}: expected non-negative integers, e.g. 1,3,224,224`);
  }
  return list as number[];
}

/** Shape of a rectangular nested array, and its leaves in row-major order; BadRequestError if ragged. */
function flatten(value: unknown): { shape: number[]; leaves: unknown[] } {
  const shape: number[] = [];
  let probe: unknown = value;
  while (Array.isArray(probe)) {
    shape.push(probe.length);
    probe = probe[0];
  }
  const leaves: unknown[] = [];
  const walk = (v: unknown, dim: number, path: string): void => {
    if (dim === shape.length) {
      if (Array.isArray(v)) throw new BadRequestError(`Ragged nested array at ${path || 'the top'}: expected a number, found a list`);
      leaves.push(v);
      return;
    }
    if (!Array.isArray(v) || v.length !== shape[dim]) {
      throw new BadRequestError(`Ragged nested array at ${path || 'the top'}: expected a list of ${shape[dim]}, found ${Array.isArray(v) ? `a list of ${v.length}` : JSON.stringify(v)}`);
    }
    for (let i = 0; i < v.length; i++) walk(v[i], dim + 1, `${path}[${i}]`);
  };
  walk(value, 0, '');
  return { shape, leaves };
}

/** JSON leaves (or a packed array's float64 values) → a typed array of `dtype`; BadRequestError naming the first bad value. */
export function typedFromValues(values: ArrayLike<unknown>, dtype: DType): TypedArray {
  const n = values.length;
  const bad = (i: number): never => {
    throw new BadRequestError(`Element ${i} (${JSON.stringify(values[i])}) is not a valid ${dtype} value`);
  };
  if (dtype === 'bool') {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const v = values[i];
      if (v === true || v === 1) out[i] = 1;
      else if (v !== false && v !== 0) bad(i);
    }
    return out;
  }
  let nums: Float64Array;
  if (values instanceof Float64Array) nums = values;
  else {
    nums = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let v = values[i];
      if (typeof v === 'boolean') v = v ? 1 : 0;
      if (typeof v !== 'number') bad(i);
      nums[i] = v as number;
    }
  }
  const range = INT_RANGE[dtype];
  if (range) for (let i = 0; i < n; i++) if (!Number.isInteger(nums[i]) || nums[i] < range[0] || nums[i] > range[1]) bad(i);
  switch (dtype) {
    case 'float32': return new Float32Array(nums);
    case 'float64': return nums;
    case 'float16': return Uint16Array.from(nums, toHalf);
    case 'bfloat16': return Uint16Array.from(nums, toBfloat16);
    case 'int64': return BigInt64Array.from(nums, (v) => BigInt(v));
    case 'int32': return Int32Array.from(nums);
    case 'int16': return Int16Array.from(nums);
    case 'int8': return Int8Array.from(nums);
    case 'uint8': return Uint8Array.from(nums);
  }
  throw new BadRequestError(`Unknown dtype ${dtype}`);
}

/**
 * A JSON tensor: nested arrays (dtype from `defaultDType`, or bool when every leaf is a boolean), or
 * `{data, shape?, dtype?}` with flat or nested data. Throws BadRequestError saying what was expected.
 */
export function jsonToTensor(value: unknown, defaultDType: DType = 'float32'): Tensor {
  // A large body's rectangular numeric array, parsed off the event loop (bounded-json.ts): already flat float64.
  if (value instanceof PackedArray) return { data: typedFromValues(value.data, defaultDType), shape: [...value.shape], dtype: defaultDType };
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && 'data' in value) {
    const obj = value as { data: unknown; shape?: unknown; dtype?: unknown };
    const dtype = obj.dtype !== undefined ? parseDType(String(obj.dtype)) : defaultDType;
    const { shape: dataShape, leaves } = obj.data instanceof PackedArray ? { shape: [...obj.data.shape], leaves: obj.data.data } : flatten(obj.data);
    const shape = obj.shape !== undefined ? parseShape(obj.shape) : dataShape;
    const expected = elementCount(shape);
    if (leaves.length !== expected) {
      throw new BadRequestError(`Tensor data has ${leaves.length} elements but shape [${shape.join(', ')}] needs ${expected}`);
    }
    return { data: typedFromValues(leaves, dtype), shape, dtype };
  }
  if (typeof value === 'number' || typeof value === 'boolean' || Array.isArray(value)) {
    const { shape, leaves } = flatten(value);
    const dtype = leaves.length > 0 && leaves.every((v) => typeof v === 'boolean') ? 'bool' : defaultDType;
    return { data: typedFromValues(leaves, dtype), shape, dtype };
  }
  throw new BadRequestError('Expected a tensor as JSON: nested arrays of numbers, or {"data": [...], "shape": [...], "dtype": "float32"}');
}

/** Raw little-endian bytes with an explicit shape/dtype (`?shape=1,3,224,224&dtype=float32`). */
export function bytesToTensor(bytes: Buffer, shapeParam: string | undefined, dtypeParam: string | undefined): Tensor {
  if (shapeParam === undefined) {
    throw new BadRequestError(`Raw tensor bytes need ?shape=...&dtype=... (e.g. ?shape=1,3,224,224&dtype=float32); got ${bytes.length} bytes and no shape`);
  }
  const shape = parseShape(shapeParam);
  const dtype = parseDType(dtypeParam ?? 'float32');
  const size = ITEM_SIZE[dtype];
  const expected = elementCount(shape) * size;
  if (bytes.length !== expected) {
    throw new BadRequestError(`Raw tensor has ${bytes.length} bytes but shape [${shape.join(', ')}] of ${dtype} needs ${expected}`);
  }
  // A view of the request's own bytes where they are aligned for the dtype (a large body is a fresh allocation at
  // offset 0): a 602 KB image tensor is then not copied on the event loop. Otherwise (a small body at an odd offset
  // of Node's shared pool) a copy into a fresh, aligned buffer.
  if (bytes.byteOffset % size === 0) return { data: new ARRAY_CTOR[dtype](bytes.buffer, bytes.byteOffset, expected / size), shape, dtype };
  const buf = new ArrayBuffer(expected);
  new Uint8Array(buf).set(bytes);
  const data = new ARRAY_CTOR[dtype](buf, 0, expected / size);
  return { data, shape, dtype };
}

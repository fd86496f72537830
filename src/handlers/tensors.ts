// The tensor handler's input forms (JSON nested arrays, {data, shape, dtype}, raw little-endian bytes) and
// typed-array conversions both ways (float16/bfloat16 travel as 16-bit words, int64 as BigInt64Array).
import { BadRequestError } from '../errors.js';
import type { DType, Tensor, TypedArray } from '../native.js';
import { fromBfloat16, fromHalf, toBfloat16, toHalf } from '../float16.js';

export const DTYPES: readonly DType[] = ['float32', 'float16', 'bfloat16', 'float64', 'int64', 'int32', 'int16', 'int8', 'uint8', 'bool'];

const ALIASES: Record<string, DType> = {
  float: 'float32', fp32: 'float32', half: 'float16', fp16: 'float16', bf16: 'bfloat16', double: 'float64', fp64: 'float64',
  long: 'int64', int: 'int32', short: 'int16', char: 'int8', byte: 'uint8', boolean: 'bool',
};

export const ITEM_SIZE: Record<DType, number> = {
  float32: 4, float16: 2, bfloat16: 2, float64: 8, int64: 8, int32: 4, int16: 2, int8: 1, uint8: 1, bool: 1,
};

export function isTensor(value: unknown): value is Tensor {
  return typeof value === 'object' && value !== null && ArrayBuffer.isView((value as Tensor).data) &&
    Array.isArray((value as Tensor).shape) && typeof (value as Tensor).dtype === 'string';
}

/** A dtype name (torch names, short aliases, KServe's FP32/INT64) → DType; BadRequestError listing the valid ones. */
export function parseDType(name: string): DType {
  const lower = name.trim().toLowerCase().replace(/^torch\./, '');
  if ((DTYPES as string[]).includes(lower)) return lower as DType;
  const alias = ALIASES[lower];
  if (alias) return alias;
  throw new BadRequestError(`Unknown dtype "${name}": expected one of ${DTYPES.join(', ')}`);
}

/** "1,3,224,224" or "[1, 3, 224, 224]" or a number array → shape; BadRequestError otherwise. */
export function parseShape(value: unknown): number[] {
  const list = typeof value === 'string' ? value.replace(/[[\]()\s]/g, '').split(',').filter((s) => s !== '').map(Number) : value;
  if (!Array.isArray(list) || !list.every((d) => typeof d === 'number' && Number.isInteger(d) && d >= 0)) {
    throw new BadRequestError(`Invalid shape ${JSON.stringify(value)}: expected non-negative integers, e.g. 1,3,224,224`);
  }
  return list as number[];
}

function elementCount(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}


/** Element values for JSON: numbers (int64 as Number), booleans for bool, decoded fp16/bf16. */
export function tensorValues(t: Tensor): ArrayLike<number | boolean> {
  switch (t.dtype) {
    case 'float16':
      return Array.from(t.data as Uint16Array, fromHalf);
    case 'bfloat16':
      return Array.from(t.data as Uint16Array, fromBfloat16);
    case 'int64':
      return Array.from(t.data as BigInt64Array, Number);
    case 'bool':
      return Array.from(t.data as Uint8Array, (v) => v !== 0);
    default:
      return t.data as ArrayLike<number>;
  }
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

const INT_RANGE: Partial<Record<DType, [number, number]>> = {
  int32: [-(2 ** 31), 2 ** 31 - 1], int16: [-32768, 32767], int8: [-128, 127], uint8: [0, 255], int64: [-(2 ** 63), 2 ** 63],
};

/** JSON leaves → a typed array of `dtype`; BadRequestError naming the first bad value. */
export function typedFromValues(values: unknown[], dtype: DType): TypedArray {
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
  const nums = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let v = values[i];
    if (typeof v === 'boolean') v = v ? 1 : 0;
    if (typeof v !== 'number') bad(i);
    nums[i] = v as number;
  }
  const range = INT_RANGE[dtype];
  if (range) for (let i = 0; i < n; i++) if (!Number.isInteger(nums[i]) || nums[i] < range[0] || nums[i] > range[1]) bad(i);
  switch (dtype) {
    case 'float32': return Float32Array.from(nums);
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
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && 'data' in value) {
    const obj = value as { data: unknown; shape?: unknown; dtype?: unknown };
    const dtype = obj.dtype !== undefined ? parseDType(String(obj.dtype)) : defaultDType;
    const { shape: dataShape, leaves } = flatten(obj.data);
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
  // Copy into a fresh, aligned buffer (the request buffer may sit at any offset of a shared pool).
  const buf = new ArrayBuffer(expected);
  new Uint8Array(buf).set(bytes);
  const n = expected / size;
  const data: TypedArray = (() => {
    switch (dtype) {
      case 'float32': return new Float32Array(buf, 0, n);
      case 'float64': return new Float64Array(buf, 0, n);
      case 'float16': case 'bfloat16': return new Uint16Array(buf, 0, n);
      case 'int64': return new BigInt64Array(buf, 0, n);
      case 'int32': return new Int32Array(buf, 0, n);
      case 'int16': return new Int16Array(buf, 0, n);
      case 'int8': return new Int8Array(buf, 0, n);
      default: return new Uint8Array(buf, 0, n);
    }
  })();
  return { data, shape, dtype };
}

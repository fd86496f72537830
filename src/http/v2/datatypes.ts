// KServe v2 datatypes ↔ engine dtypes, and the half-precision conversions JSON needs.
import type { DType, TypedArray } from '../../native.js';

/** v2 datatype names the engine can hold (BYTES is handled apart: it never becomes a tensor). */
export const V2_TO_DTYPE = {
  BOOL: 'bool',
  UINT8: 'uint8',
  INT8: 'int8',
  INT16: 'int16',
  INT32: 'int32',
  INT64: 'int64',
  FP16: 'float16',
  BF16: 'bfloat16',
  FP32: 'float32',
  FP64: 'float64',
} as const satisfies Record<string, DType>;

export type NumericDatatype = keyof typeof V2_TO_DTYPE;
export type V2Datatype = NumericDatatype | 'BYTES';

export const DTYPE_TO_V2: Record<DType, NumericDatatype> = {
  bool: 'BOOL',
  uint8: 'UINT8',
  int8: 'INT8',
  int16: 'INT16',
  int32: 'INT32',
  int64: 'INT64',
  float16: 'FP16',
  bfloat16: 'BF16',
  float32: 'FP32',
  float64: 'FP64',
};

export const SUPPORTED_DATATYPES: readonly V2Datatype[] = [...(Object.keys(V2_TO_DTYPE) as NumericDatatype[]), 'BYTES'];

export function isNumericDatatype(s: string): s is NumericDatatype {
  return Object.hasOwn(V2_TO_DTYPE, s);
}

/** Bytes per element. */
export const ITEM_SIZE: Record<DType, number> = {
  bool: 1, uint8: 1, int8: 1, int16: 2, int32: 4, int64: 8, float16: 2, bfloat16: 2, float32: 4, float64: 8,
};

type TypedArrayCtor = {
  new (length: number): TypedArray;
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): TypedArray;
};

export const ARRAY_CTOR: Record<DType, TypedArrayCtor> = {
  bool: Uint8Array,
  uint8: Uint8Array,
  int8: Int8Array,
  int16: Int16Array,
  int32: Int32Array,
  int64: BigInt64Array,
  float16: Uint16Array,
  bfloat16: Uint16Array,
  float32: Float32Array,
  float64: Float64Array,
} as Record<DType, TypedArrayCtor>;

/** Inclusive integer ranges, so a JSON value that would wrap in the typed array is a 400 instead. */
export const INT_RANGE: Partial<Record<DType, [number, number]>> = {
  uint8: [0, 255],
  int8: [-128, 127],
  int16: [-32768, 32767],
  int32: [-2147483648, 2147483647],
  int64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
};

export { fromBfloat16, fromHalf, toBfloat16, toHalf } from '../../float16.js';

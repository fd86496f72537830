// KServe v2 datatype names ↔ engine dtypes (the dtype tables themselves live in engine/tensors.ts).

import { DTYPE_TO_V2, V2_TO_DTYPE, type NumericDatatype } from '../../engine/tensors.js';

export { DTYPE_TO_V2, V2_TO_DTYPE, type NumericDatatype };
export type V2Datatype = NumericDatatype | 'BYTES';

export const SUPPORTED_DATATYPES: readonly V2Datatype[] = [...(Object.keys(V2_TO_DTYPE) as NumericDatatype[]), 'BYTES'];

export function isNumericDatatype(s: string): s is NumericDatatype {
  return Object.hasOwn(V2_TO_DTYPE, s);
}

export { ARRAY_CTOR, INT_RANGE, ITEM_SIZE } from '../../engine/tensors.js';
export { fromBfloat16, fromHalf, toBfloat16, toHalf } from '../../float16.js';

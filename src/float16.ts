// 16-bit float bit patterns (IEEE binary16 and bfloat16) <-> JS numbers, rounded to nearest even.
// float16/bfloat16 tensors travel as Uint16Array words (src/native.ts); handlers and KServe v2 convert here.

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE binary16 bit pattern of `v`, rounded to nearest even (overflow → ±Inf). */
export function toHalf(v: number): number {
  f32[0] = v;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp32 = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp32 === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const exp = exp32 - 127 + 15;
  if (exp >= 0x1f) return sign | 0x7c00;
  if (exp <= 0) {
    // Subnormal half (or zero): shift the full 24-bit significand into the 10-bit field.
    if (exp < -10) return sign;
    const full = mant | 0x800000;
    const shift = 14 - exp;
    let h = full >>> shift;
    const rem = full & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (h & 1))) h++;
    return sign | h;
  }
  let h = (exp << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (up to Inf).
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  return sign | h;
}

export function fromHalf(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** bfloat16 bit pattern of `v`, rounded to nearest even. */
export function toBfloat16(v: number): number {
  f32[0] = v;
  const x = u32[0];
  if (Number.isNaN(v)) return ((x >>> 16) | 0x40) & 0xffff;
  return ((x + 0x7fff + ((x >>> 16) & 1)) / 0x10000) & 0xffff;
}

export function fromBfloat16(h: number): number {
  u32[0] = h << 16;
  return f32[0];
}

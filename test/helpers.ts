/** Shared test utilities: where the shared data is, and numeric comparisons. */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';

/** Absolute path of $MKA_SHARED, or null when unset (tests that need it skip). */
export const SHARED: string | null = process.env.MKA_SHARED && existsSync(process.env.MKA_SHARED)
  ? resolve(process.env.MKA_SHARED) : null;
export const NO_SHARED = SHARED ? false : 'MKA_SHARED is not set: shared data tests skipped (set MKA_SHARED=../shared)';

/** x rounded to the nearest IEEE half, ties to even (ggml's FP32_TO_FP16), from the format's definition; ±Infinity from 65520 on. */
export function roundHalf(x: number): number {
  const a = Math.abs(x);
  if (a >= 65520) return Math.sign(x) * Infinity;
  if (a === 0) return x;
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  const ulp = 2 ** (Math.max(e, -14) - 10), r = a / ulp, f = Math.floor(r);
  return Math.sign(x) * (r - f > 0.5 || (r - f === 0.5 && f % 2 === 1) ? f + 1 : f) * ulp;
}

/** Largest absolute difference between two nested number arrays of the same shape. */
export function maxAbsDiff(a: unknown, b: unknown): number {
  if (typeof a === 'number' && typeof b === 'number') return Math.abs(a - b);
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
    let m = 0;
    for (let i = 0; i < a.length; i++) m = Math.max(m, maxAbsDiff(a[i], b[i]));
    return m;
  }
  if (ArrayBuffer.isView(a) || ArrayBuffer.isView(b)) return maxAbsDiff(Array.from(a as Float32Array), Array.from(b as Float32Array));
  throw new Error('maxAbsDiff: shape mismatch');
}

/** An independent safetensors reader: header JSON, then little-endian F32 data. */
export function readSafetensors(file: string): Map<string, Float32Array> {
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; data_offsets: [number, number] }>;
  const out = new Map<string, Float32Array>();
  for (const [name, h] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    assert.equal(h.dtype, 'F32');
    const bytes = buf.subarray(8 + n + h.data_offsets[0], 8 + n + h.data_offsets[1]);
    out.set(name, new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length)));
  }
  return out;
}

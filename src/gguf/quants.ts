/**
 * Tensor data of the GGUF types mka reads and writes: F32, F16, BF16, and ggml's Q8_0 and Q4_0 blocks
 * of 32 values (an f16 scale d, then 32 int8 quants q with value d·q, or 16 bytes of 4-bit quants where
 * byte j holds value j in its low nibble and value j+16 in its high one, with value d·(q − 8)).
 *
 * The quantizers round exactly as llama.cpp's reference quantizers (ggml-quants.c quantize_row_q8_0_ref
 * and quantize_row_q4_0_ref) and gguf-py's numpy port of them, which llama.cpp's converter uses:
 * float32 arithmetic throughout (scale, inverse, products, sums); Q8_0 rounds x·id half away from zero;
 * Q4_0 takes the value of largest magnitude (the first on ties) as −8·d and truncates x·id + 8.5,
 * clamped to 15. (ggml-base, where these live, is built without FMA contraction on x86-64; a build
 * that fuses x·id + 8.5, as on aarch64, can differ in the last quant of a rare value.)
 */
import { fromFloat32, toFloat32, type Overflow } from '../io/safetensors.ts';
import { GgmlType, type ReadType, type SupportedType, GGML_BLOCK } from './format.ts';
import { dequantizeK } from './kquants.ts';

export const QK = 32;
const f32 = Math.fround;

/** float32 → f16 bits (round to nearest even), via the safetensors converter. */
function halfBits(x: number): number {
  const b = fromFloat32(Float32Array.of(x), 'F16');
  return b[0] | (b[1] << 8);
}

/** The 65,536 f16 values as float32, by bits. */
function halfTable(): Float32Array {
  const bytes = Buffer.alloc(2 * 65536);
  for (let h = 0; h < 65536; h++) bytes.writeUInt16LE(h, 2 * h);
  return toFloat32(bytes, 'F16');
}

/** Every f16 value by its bits. */
const HALF = halfTable();
const half = (bits: number): number => HALF[bits];

/** C's roundf of a float32 value: to nearest, halves away from zero (a + 0.5 is exact in double). */
function roundf(x: number): number {
  const r = Math.floor(Math.abs(x) + 0.5);
  return x < 0 ? -r : r;
}

/** Tells `overflow` of the largest value of the block at x0 when its f16 scale `h` is infinite (the value is beyond the block type's range). */
function checkScale(h: number, x: Float32Array, x0: number, overflow?: Overflow): void {
  if ((h & 0x7fff) !== 0x7c00 || !overflow) return;
  let at = x0;
  for (let j = 1; j < QK; j++) if (Math.abs(x[x0 + j]) > Math.abs(x[at])) at = x0 + j;
  if (Number.isFinite(x[at])) overflow(at, x[at]);
}

/** Quantizes rows of `x` (length a multiple of 32) to Q8_0 blocks. */
export function quantizeQ8_0(x: Float32Array, overflow?: Overflow): Uint8Array {
  const nb = x.length / QK;
  const out = new Uint8Array(nb * 34);
  const q = new Int8Array(out.buffer);
  for (let b = 0; b < nb; b++) {
    const x0 = b * QK;
    let amax = 0;
    for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(x[x0 + j]));
    const d = f32(amax / 127);
    const id = d !== 0 ? f32(1 / d) : 0;
    const h = halfBits(d);
    checkScale(h, x, x0, overflow);
    out[b * 34] = h & 0xff;
    out[b * 34 + 1] = h >> 8;
    for (let j = 0; j < QK; j++) q[b * 34 + 2 + j] = roundf(f32(x[x0 + j] * id));
  }
  return out;
}

/**
 * C's (int8_t) of a float as x86-64 computes it: truncation to int32 (cvttss2si, which gives 0x80000000
 * for NaN, infinities and values out of range), then the low byte. Only a block of values so small that
 * 1/d overflows to infinity reaches the non-finite case (ggml then writes quants 0).
 */
function toInt8(v: number): number {
  const t = Number.isFinite(v) && Math.abs(v) < 2 ** 31 ? Math.trunc(v) : -(2 ** 31);
  return (t << 24) >> 24;
}

/** Quantizes rows of `x` (length a multiple of 32) to Q4_0 blocks. */
export function quantizeQ4_0(x: Float32Array, overflow?: Overflow): Uint8Array {
  const nb = x.length / QK;
  const out = new Uint8Array(nb * 18);
  for (let b = 0; b < nb; b++) {
    const x0 = b * QK;
    let amax = 0, max = 0;
    for (let j = 0; j < QK; j++) {
      const v = x[x0 + j];
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = f32(max / -8);
    const id = d !== 0 ? f32(1 / d) : 0;
    const h = halfBits(d);
    checkScale(h, x, x0, overflow);
    out[b * 18] = h & 0xff;
    out[b * 18 + 1] = h >> 8;
    for (let j = 0; j < QK / 2; j++) {
      // float32 product, then float32 sum, then C's (int8_t) conversion (no fused multiply-add: ggml-base is compiled so on x86-64)
      const lo = Math.min(15, toInt8(f32(f32(x[x0 + j] * id) + 8.5))) & 0xff;
      const hi = Math.min(15, toInt8(f32(f32(x[x0 + QK / 2 + j] * id) + 8.5))) & 0xff;
      out[b * 18 + 2 + j] = (lo | (hi << 4)) & 0xff;
    }
  }
  return out;
}

/** The values of `n` elements of `type` stored in `bytes`, as float32. */
export function dequantize(type: ReadType, bytes: Uint8Array, n: number): Float32Array {
  switch (type) {
    case GgmlType.F32: {
      const out = new Float32Array(n);
      new Uint8Array(out.buffer).set(bytes.subarray(0, 4 * n));
      return out;
    }
    case GgmlType.F16:
    case GgmlType.BF16:
      return toFloat32(Buffer.from(bytes.buffer, bytes.byteOffset, 2 * n), type === GgmlType.F16 ? 'F16' : 'BF16');
    case GgmlType.Q8_0: {
      const out = new Float32Array(n);
      const q = new Int8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      for (let b = 0; b < n / QK; b++) {
        const d = half(bytes[b * 34] | (bytes[b * 34 + 1] << 8));
        for (let j = 0; j < QK; j++) out[b * QK + j] = d * q[b * 34 + 2 + j];
      }
      return out;
    }
    case GgmlType.Q4_0: {
      const out = new Float32Array(n);
      for (let b = 0; b < n / QK; b++) {
        const d = half(bytes[b * 18] | (bytes[b * 18 + 1] << 8));
        for (let j = 0; j < QK / 2; j++) {
          const v = bytes[b * 18 + 2 + j];
          out[b * QK + j] = d * ((v & 15) - 8);
          out[b * QK + QK / 2 + j] = d * ((v >> 4) - 8);
        }
      }
      return out;
    }
    default:
      return dequantizeK(type, bytes, n);
  }
}

/**
 * Encodes float32 values as `type` (F32/F16/BF16 element-wise, Q8_0/Q4_0 by the reference quantizers);
 * `overflow` is told of a finite value the type cannot hold (an f16 element, or a block's f16 scale, would be infinite).
 */
export function encode(type: SupportedType, x: Float32Array, overflow?: Overflow): Uint8Array {
  switch (type) {
    case GgmlType.F32: return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
    case GgmlType.F16: return fromFloat32(x, 'F16', overflow);
    case GgmlType.BF16: return fromFloat32(x, 'BF16', overflow);
    case GgmlType.Q8_0: return quantizeQ8_0(x, overflow);
    case GgmlType.Q4_0: return quantizeQ4_0(x, overflow);
  }
}

/**
 * A matrix in the packed layout of docs/quantization.md (src/io/packed.ts's PackedMatrix): quants row by row
 * in blocks of 32 inputs (8-bit: 32 bytes per block, int8 when symmetric; 4-bit: 16 bytes in ggml's
 * Q4_0 nibble order, unsigned 0..15), one float32 scale (and, asymmetric, one min) per (row, group) of
 * `group` inputs. Values: symmetric 8-bit scale·q, symmetric 4-bit scale·(q − 8), asymmetric scale·q + min.
 */
export interface PackedParts {
  rows: number;
  cols: number;
  spec: { bits: 8 | 4; group: number; symmetric: boolean };
  quants: Uint8Array;
  scales: Float32Array;
  mins: Float32Array | null;
}

/** The ggml block types that hold packed matrices as they are: Q8_0 (8-bit symmetric), Q4_0 (4-bit symmetric), Q4_1 (4-bit asymmetric). */
export type PackedBlockType = GgmlType.Q8_0 | GgmlType.Q4_0 | GgmlType.Q4_1;

/** Splits Q8_0/Q4_0/Q4_1 blocks into packed quants, scales and mins, one group per block (nothing is requantized). */
export function unpackBlocks(type: PackedBlockType, bytes: Uint8Array, rows: number, cols: number): PackedParts {
  const blockBytes = GGML_BLOCK[type].bytes, head = type === GgmlType.Q4_1 ? 4 : 2, qBytes = blockBytes - head;
  const nb = (rows * cols) / QK;
  const quants = new Uint8Array(nb * qBytes);
  const scales = new Float32Array(nb);
  const mins = type === GgmlType.Q4_1 ? new Float32Array(nb) : null;
  for (let b = 0; b < nb; b++) {
    const at = b * blockBytes;
    scales[b] = half(bytes[at] | (bytes[at + 1] << 8));
    if (mins) mins[b] = half(bytes[at + 2] | (bytes[at + 3] << 8));
    quants.set(bytes.subarray(at + head, at + blockBytes), b * qBytes);
  }
  return { rows, cols, spec: { bits: type === GgmlType.Q8_0 ? 8 : 4, group: QK, symmetric: type !== GgmlType.Q4_1 }, quants, scales, mins };
}

/**
 * The ggml block type that holds packed matrix `p` as it is, or null when none does: rows that do
 * not divide into blocks of 32, groups that are not whole blocks, 8-bit asymmetric quants.
 */
export function blockTypeOf(p: Pick<PackedParts, 'cols' | 'spec'>): PackedBlockType | null {
  if (p.cols % QK !== 0 || p.spec.group % QK !== 0) return null;
  if (p.spec.symmetric) return p.spec.bits === 8 ? GgmlType.Q8_0 : GgmlType.Q4_0;
  return p.spec.bits === 4 ? GgmlType.Q4_1 : null;
}

/**
 * Joins packed quants with their group's scale (and min) into ggml blocks of blockTypeOf(p), a group
 * of 64, 128 or a whole row repeating its scale in each of its blocks; null when there is no such type
 * or a scale or min is not exactly an f16 value (the blocks would then not hold the same weights).
 */
export function packBlocks(p: PackedParts): { type: PackedBlockType; bytes: Uint8Array } | null {
  const type = blockTypeOf(p);
  if (type === null) return null;
  const blockBytes = GGML_BLOCK[type].bytes, head = type === GgmlType.Q4_1 ? 4 : 2, qBytes = blockBytes - head;
  const perRow = p.cols / QK, groups = Math.ceil(p.cols / p.spec.group), perGroup = p.spec.group / QK;
  const out = new Uint8Array(p.rows * perRow * blockBytes);
  const f16 = (x: number): number | null => {
    const h = halfBits(x);
    return half(h) === x ? h : null;
  };
  for (let r = 0; r < p.rows; r++) {
    for (let j = 0; j < perRow; j++) {
      const g = r * groups + Math.floor(j / perGroup), b = r * perRow + j, at = b * blockBytes;
      const d = f16(p.scales[g]);
      const m = p.mins ? f16(p.mins[g]) : 0;
      if (d === null || m === null) return null;
      out[at] = d & 0xff;
      out[at + 1] = d >> 8;
      if (p.mins) {
        out[at + 2] = m & 0xff;
        out[at + 3] = m >> 8;
      }
      out.set(p.quants.subarray(b * qBytes, (b + 1) * qBytes), at + head);
    }
  }
  return { type, bytes: out };
}

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
import { fromFloat32, toFloat32 } from '../io/safetensors.ts';
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

/** Quantizes rows of `x` (length a multiple of 32) to Q8_0 blocks. */
export function quantizeQ8_0(x: Float32Array): Uint8Array {
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
export function quantizeQ4_0(x: Float32Array): Uint8Array {
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

/** Encodes float32 values as `type` (F32/F16/BF16 element-wise, Q8_0/Q4_0 by the reference quantizers). */
export function encode(type: SupportedType, x: Float32Array): Uint8Array {
  switch (type) {
    case GgmlType.F32: return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
    case GgmlType.F16: return fromFloat32(x, 'F16');
    case GgmlType.BF16: return fromFloat32(x, 'BF16');
    case GgmlType.Q8_0: return quantizeQ8_0(x);
    case GgmlType.Q4_0: return quantizeQ4_0(x);
  }
}

/**
 * A symmetric group-32 quantized matrix in the packed layout of CONTRACTS.md §1: quants row by row in
 * blocks of 32 inputs (8-bit: 32 int8 bytes per block; 4-bit: 16 bytes in ggml's Q4_0 nibble order,
 * unsigned 0..15 with value scale·(q − 8)), and one float32 scale per (row, block).
 */
export interface PackedBlocks {
  bits: 8 | 4;
  rows: number;
  cols: number;
  quants: Uint8Array;
  scales: Float32Array;
}

/** Splits Q8_0/Q4_0 blocks into quants and scales (nothing is requantized). */
export function unpackBlocks(type: GgmlType.Q8_0 | GgmlType.Q4_0, bytes: Uint8Array, rows: number, cols: number): PackedBlocks {
  const blockBytes = GGML_BLOCK[type].bytes, qBytes = blockBytes - 2;
  const nb = (rows * cols) / QK;
  const quants = new Uint8Array(nb * qBytes);
  const scales = new Float32Array(nb);
  for (let b = 0; b < nb; b++) {
    scales[b] = half(bytes[b * blockBytes] | (bytes[b * blockBytes + 1] << 8));
    quants.set(bytes.subarray(b * blockBytes + 2, (b + 1) * blockBytes), b * qBytes);
  }
  return { bits: type === GgmlType.Q8_0 ? 8 : 4, rows, cols, quants, scales };
}

/**
 * Joins packed quants and scales into Q8_0/Q4_0 blocks, or returns null when a scale is not exactly
 * an f16 value (the blocks would then not hold the same weights).
 */
export function packBlocks(p: PackedBlocks): Uint8Array | null {
  const qBytes = p.bits === 8 ? 32 : 16, blockBytes = qBytes + 2;
  const nb = p.scales.length;
  const out = new Uint8Array(nb * blockBytes);
  for (let b = 0; b < nb; b++) {
    const h = halfBits(p.scales[b]);
    if (half(h) !== p.scales[b]) return null;
    out[b * blockBytes] = h & 0xff;
    out[b * blockBytes + 1] = h >> 8;
    out.set(p.quants.subarray(b * qBytes, (b + 1) * qBytes), b * blockBytes + 2);
  }
  return out;
}

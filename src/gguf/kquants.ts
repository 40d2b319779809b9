/**
 * Dequantization of the other ggml block types llama.cpp's own files commonly hold (read only: mka
 * writes F32/F16/BF16/Q8_0/Q4_0): Q4_1, Q5_0, Q5_1 (blocks of 32) and the k-quants Q2_K, Q3_K, Q4_K,
 * Q5_K, Q6_K (super-blocks of 256 with quantized sub-block scales), which `llama-quantize` writes for
 * its Q4_K_M and similar presets. Each follows ggml-quants.c's dequantize_row_* with its float32
 * arithmetic in the same order, so the values are the ones llama.cpp (and gguf-py) get.
 */
import { toFloat32 } from '../io/safetensors.ts';
import { GgmlType } from './format.ts';

const f32 = Math.fround;
const HALF = toFloat32(Buffer.from(Uint16Array.from({ length: 65536 }, (_, i) => i).buffer), 'F16');
const half = (b: Uint8Array, at: number) => HALF[b[at] | (b[at + 1] << 8)];
const QK_K = 256;

/** The k-quant 6-bit scale and min of sub-block j (ggml's get_scale_min_k4) from 12 packed bytes at `at`. */
function scaleMinK4(j: number, b: Uint8Array, at: number): [number, number] {
  if (j < 4) return [b[at + j] & 63, b[at + j + 4] & 63];
  return [(b[at + j + 4] & 0xf) | ((b[at + j - 4] >> 6) << 4), (b[at + j + 4] >> 4) | ((b[at + j] >> 6) << 4)];
}

/** The block types this file dequantizes. */
export const KQUANT_TYPES = [GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K] as const;
export type KQuantType = (typeof KQUANT_TYPES)[number];

/** The `n` values of blocks of `type` in `b`, as float32. */
export function dequantizeK(type: KQuantType, b: Uint8Array, n: number): Float32Array {
  const y = new Float32Array(n);
  switch (type) {
    case GgmlType.Q4_1:
      for (let i = 0; i < n / 32; i++) {
        const o = i * 20, d = half(b, o), m = half(b, o + 2);
        for (let j = 0; j < 16; j++) {
          y[i * 32 + j] = f32(f32((b[o + 4 + j] & 15) * d) + m);
          y[i * 32 + j + 16] = f32(f32((b[o + 4 + j] >> 4) * d) + m);
        }
      }
      return y;
    case GgmlType.Q5_0:
    case GgmlType.Q5_1: {
      const one = type === GgmlType.Q5_1, size = one ? 24 : 22, qs = one ? 8 : 6;
      for (let i = 0; i < n / 32; i++) {
        const o = i * size, d = half(b, o), m = one ? half(b, o + 2) : 0;
        const qh = (b[o + qs - 4] | (b[o + qs - 3] << 8) | (b[o + qs - 2] << 16) | (b[o + qs - 1] << 24)) >>> 0;
        for (let j = 0; j < 16; j++) {
          const h0 = ((qh >>> j) << 4) & 0x10, h1 = (qh >>> (j + 12)) & 0x10;
          const x0 = ((b[o + qs + j] & 15) | h0) - (one ? 0 : 16), x1 = ((b[o + qs + j] >> 4) | h1) - (one ? 0 : 16);
          y[i * 32 + j] = one ? f32(f32(x0 * d) + m) : f32(x0 * d);
          y[i * 32 + j + 16] = one ? f32(f32(x1 * d) + m) : f32(x1 * d);
        }
      }
      return y;
    }
    case GgmlType.Q2_K:
      // scales[16], qs[64], d, dmin
      for (let i = 0; i < n / QK_K; i++) {
        const o = i * 84, d = half(b, o + 80), min = half(b, o + 82);
        let k = i * QK_K, is = 0;
        for (let h = 0; h < 2; h++) {
          const q = o + 16 + 32 * h;
          for (let shift = 0; shift < 8; shift += 2) {
            for (const off of [0, 16]) {
              const sc = b[o + is++];
              const dl = f32(d * (sc & 0xf)), ml = f32(min * (sc >> 4));
              for (let l = 0; l < 16; l++) y[k++] = f32(f32(dl * ((b[q + off + l] >> shift) & 3)) - ml);
            }
          }
        }
      }
      return y;
    case GgmlType.Q3_K:
      // hmask[32], qs[64], scales[12], d
      for (let i = 0; i < n / QK_K; i++) {
        const o = i * 110, dAll = half(b, o + 108);
        const sc = q3kScales(b, o + 96);
        let k = i * QK_K, is = 0, m = 1;
        for (let h = 0; h < 2; h++) {
          const q = o + 32 + 32 * h;
          for (let shift = 0; shift < 8; shift += 2) {
            for (const off of [0, 16]) {
              const dl = f32(dAll * (sc[is++] - 32));
              for (let l = 0; l < 16; l++) y[k++] = f32(dl * (((b[q + off + l] >> shift) & 3) - (b[o + off + l] & m ? 0 : 4)));
            }
            m <<= 1;
          }
        }
      }
      return y;
    case GgmlType.Q4_K:
    case GgmlType.Q5_K: {
      const five = type === GgmlType.Q5_K, size = five ? 176 : 144, qs = five ? 48 : 16;
      // d, dmin, scales[12], (qh[32]), qs[128]
      for (let i = 0; i < n / QK_K; i++) {
        const o = i * size, d = half(b, o), min = half(b, o + 2);
        let k = i * QK_K, u1 = 1, u2 = 2;
        for (let j = 0, is = 0; j < QK_K; j += 64, is += 2) {
          const [s1, m1] = scaleMinK4(is, b, o + 4), [s2, m2] = scaleMinK4(is + 1, b, o + 4);
          const d1 = f32(d * s1), mm1 = f32(min * m1), d2 = f32(d * s2), mm2 = f32(min * m2);
          const q = o + qs + j / 2;
          for (let l = 0; l < 32; l++) y[k++] = f32(f32(d1 * ((b[q + l] & 15) + (five && b[o + 16 + l] & u1 ? 16 : 0))) - mm1);
          for (let l = 0; l < 32; l++) y[k++] = f32(f32(d2 * ((b[q + l] >> 4) + (five && b[o + 16 + l] & u2 ? 16 : 0))) - mm2);
          u1 <<= 2;
          u2 <<= 2;
        }
      }
      return y;
    }
    case GgmlType.Q6_K:
      // ql[128], qh[64], scales[16] (int8), d
      for (let i = 0; i < n / QK_K; i++) {
        const o = i * 210, d = half(b, o + 208);
        for (let h = 0; h < 2; h++) {
          const ql = o + 64 * h, qh = o + 128 + 32 * h, sc = o + 192 + 8 * h, k = i * QK_K + 128 * h;
          const s = (j: number) => f32(d * ((b[sc + j] << 24) >> 24));
          for (let l = 0; l < 32; l++) {
            const is = l >> 4;
            const q1 = ((b[ql + l] & 15) | (((b[qh + l] >> 0) & 3) << 4)) - 32;
            const q2 = ((b[ql + l + 32] & 15) | (((b[qh + l] >> 2) & 3) << 4)) - 32;
            const q3 = ((b[ql + l] >> 4) | (((b[qh + l] >> 4) & 3) << 4)) - 32;
            const q4 = ((b[ql + l + 32] >> 4) | (((b[qh + l] >> 6) & 3) << 4)) - 32;
            y[k + l] = f32(s(is) * q1);
            y[k + l + 32] = f32(s(is + 2) * q2);
            y[k + l + 64] = f32(s(is + 4) * q3);
            y[k + l + 96] = f32(s(is + 6) * q4);
          }
        }
      }
      return y;
  }
}

/** Q3_K's sixteen 6-bit scales from its 12 packed bytes (ggml's kmask shuffle), as signed bytes. */
function q3kScales(b: Uint8Array, at: number): Int8Array {
  const aux = new Uint32Array(4);
  for (let w = 0; w < 3; w++) aux[w] = (b[at + 4 * w] | (b[at + 4 * w + 1] << 8) | (b[at + 4 * w + 2] << 16) | (b[at + 4 * w + 3] << 24)) >>> 0;
  const k1 = 0x03030303, k2 = 0x0f0f0f0f, tmp = aux[2];
  aux[2] = ((aux[0] >>> 4) & k2) | (((tmp >>> 4) & k1) << 4);
  aux[3] = ((aux[1] >>> 4) & k2) | (((tmp >>> 6) & k1) << 4);
  aux[0] = (aux[0] & k2) | (((tmp >>> 0) & k1) << 4);
  aux[1] = (aux[1] & k2) | (((tmp >>> 2) & k1) << 4);
  return new Int8Array(aux.buffer);
}

/*
 * What the AVX2 and AVX-512 paths share, written once for a vector of VW floats: 16-bit widening,
 * the 8x8 transpose that packs float32 Bᵀ, the kernel_body.h kernels, and the register-blocked
 * MR x NR microkernel (NR = 2 VW: two vectors per row of C). The including file sets its target
 * pragma and defines FN, MR, NR, VW, VEC, the V_* operations and UNROLL_MR first.
 */

static void FN(widen)(float *dst, const void *src, int type, size_t n) {
  const uint16_t *h = (const uint16_t *)src;
  size_t i = 0;
  if (type == MKA_F32) {
    memcpy(dst, src, n * 4);
  } else if (type == MKA_BF16) {
    for (; i + VW <= n; i += VW) V_STOREU(dst + i, V_FROM_BF16(h + i));
    for (; i < n; i++) dst[i] = bf16_to_f32(h[i]);
  } else {
    for (; i + VW <= n; i += VW) V_STOREU(dst + i, V_FROM_F16(h + i));
    for (; i < n; i++) dst[i] = f16_to_f32(h[i]);
  }
}

/* dst[i][j] = src[j][i] for an 8x8 block (row strides lds, ldd). */
static inline void transpose8(const float *src, long lds, float *dst, long ldd) {
  __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + lds), r2 = _mm256_loadu_ps(src + 2 * lds),
         r3 = _mm256_loadu_ps(src + 3 * lds), r4 = _mm256_loadu_ps(src + 4 * lds), r5 = _mm256_loadu_ps(src + 5 * lds),
         r6 = _mm256_loadu_ps(src + 6 * lds), r7 = _mm256_loadu_ps(src + 7 * lds);
  __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
         t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
         t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee), u2 = _mm256_shuffle_ps(t1, t3, 0x44),
         u3 = _mm256_shuffle_ps(t1, t3, 0xee), u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee),
         u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
  _mm256_storeu_ps(dst, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_storeu_ps(dst + ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_storeu_ps(dst + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_storeu_ps(dst + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_storeu_ps(dst + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_storeu_ps(dst + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_storeu_ps(dst + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_storeu_ps(dst + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
}
#define TRANSPOSE8 transpose8

#include "kern_body.h"

static inline VEC act_vec(VEC x, int act) {
  if (act >= 1) x = V_MAX(x, V_ZERO());
  if (act == 2) x = V_MIN(x, V_SET1(6.f));
  return x;
}

/* Adds C, bias and activation to the accumulators and stores the tile (tmp for partial tiles). */
static inline void store_tile(const VEC *c0, const VEC *c1, float *c, long ldc, int mr, int nr, int flags,
                              const float *bias, int act) {
  if (mr == MR && nr == NR) {
    UNROLL_MR
    for (int r = 0; r < MR; r++) {
      float *row = c + r * ldc;
      VEC x0 = c0[r], x1 = c1[r];
      if (flags & UK_LOAD) {
        x0 = V_ADD(x0, V_LOADU(row));
        x1 = V_ADD(x1, V_LOADU(row + VW));
      }
      if (flags & UK_LAST) {
        if (bias) {
          x0 = V_ADD(x0, V_LOADU(bias));
          x1 = V_ADD(x1, V_LOADU(bias + VW));
        }
        x0 = act_vec(x0, act);
        x1 = act_vec(x1, act);
      }
      V_STOREU(row, x0);
      V_STOREU(row + VW, x1);
    }
  } else {
    float tmp[MR * NR] __attribute__((aligned(4 * VW)));
    UNROLL_MR
    for (int r = 0; r < MR; r++) {
      V_STORE(tmp + r * NR, c0[r]);
      V_STORE(tmp + r * NR + VW, c1[r]);
    }
    FN(store_partial)(tmp, NR, c, ldc, mr, nr, flags, bias, act);
  }
}

static void FN(ukernel)(long kc, const float *ap, const float *bp, float *c, long ldc, int mr, int nr, int flags,
                        const float *bias, int act) {
  VEC c0[MR], c1[MR];
  UNROLL_MR
  for (int r = 0; r < MR; r++) c0[r] = c1[r] = V_ZERO();
  for (long p = 0; p < kc; p++) {
    const VEC b0 = V_LOAD(bp), b1 = V_LOAD(bp + VW);
    UNROLL_MR
    for (int r = 0; r < MR; r++) {
      const VEC a = V_BCAST(ap + r);
      c0[r] = V_FMA(a, b0, c0[r]);
      c1[r] = V_FMA(a, b1, c1[r]);
    }
    ap += MR;
    bp += NR;
  }
  store_tile(c0, c1, c, ldc, mr, nr, flags, bias, act);
}

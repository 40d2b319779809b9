/* The AVX2/FMA path (Haswell and later, Zen): a 6x16 ymm microkernel, F16C widening. */
#include "kern.h"
#if MKA_X86
#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC target("avx2,fma,f16c")
#endif

#define FN(name) name##_avx2

static void FN(widen)(float *dst, const void *src, int type, size_t n) {
  const uint16_t *h = (const uint16_t *)src;
  size_t i = 0;
  if (type == MKA_F32) {
    memcpy(dst, src, n * 4);
  } else if (type == MKA_BF16) {
    for (; i + 8 <= n; i += 8) {
      __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(h + i)));
      _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
    }
    for (; i < n; i++) dst[i] = bf16_to_f32(h[i]);
  } else {
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
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

#define MR 6
#define NR 16

static inline __m256 act8(__m256 x, int act) {
  if (act >= 1) x = _mm256_max_ps(x, _mm256_setzero_ps());
  if (act == 2) x = _mm256_min_ps(x, _mm256_set1_ps(6.f));
  return x;
}

/* Adds C, bias and activation to the accumulators and stores the tile (tmp for partial tiles). */
static inline void store_tile(const __m256 *c0, const __m256 *c1, float *c, long ldc, int mr, int nr, int flags,
                              const float *bias, int act) {
  if (mr == MR && nr == NR) {
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
      float *row = c + r * ldc;
      __m256 x0 = c0[r], x1 = c1[r];
      if (flags & UK_LOAD) {
        x0 = _mm256_add_ps(x0, _mm256_loadu_ps(row));
        x1 = _mm256_add_ps(x1, _mm256_loadu_ps(row + 8));
      }
      if (flags & UK_LAST) {
        if (bias) {
          x0 = _mm256_add_ps(x0, _mm256_loadu_ps(bias));
          x1 = _mm256_add_ps(x1, _mm256_loadu_ps(bias + 8));
        }
        x0 = act8(x0, act);
        x1 = act8(x1, act);
      }
      _mm256_storeu_ps(row, x0);
      _mm256_storeu_ps(row + 8, x1);
    }
  } else {
    float tmp[MR * NR] __attribute__((aligned(32)));
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
      _mm256_store_ps(tmp + r * NR, c0[r]);
      _mm256_store_ps(tmp + r * NR + 8, c1[r]);
    }
    store_partial_avx2(tmp, NR, c, ldc, mr, nr, flags, bias, act);
  }
}

static void ukernel_avx2(long kc, const float *ap, const float *bp, float *c, long ldc, int mr, int nr, int flags,
                         const float *bias, int act) {
  __m256 c0[MR], c1[MR];
#pragma GCC unroll 6
  for (int r = 0; r < MR; r++) c0[r] = c1[r] = _mm256_setzero_ps();
  for (long p = 0; p < kc; p++) {
    const __m256 b0 = _mm256_load_ps(bp), b1 = _mm256_load_ps(bp + 8);
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
      const __m256 a = _mm256_broadcast_ss(ap + r);
      c0[r] = _mm256_fmadd_ps(a, b0, c0[r]);
      c1[r] = _mm256_fmadd_ps(a, b1, c1[r]);
    }
    ap += MR;
    bp += NR;
  }
  store_tile(c0, c1, c, ldc, mr, nr, flags, bias, act);
}

KERN_TABLE(avx2, MR, NR, 256, 192, 512, ukernel_avx2)

#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
const kern_table kern_avx2 = {0};
#endif

/* The AVX-512 path (Skylake-X and later, Zen 4): a 12x32 zmm microkernel, 512-bit widening. */
#include "kern.h"
#if MKA_X86
#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,prefer-vector-width=512")
#endif

#define FN(name) name##_avx512

static void FN(widen)(float *dst, const void *src, int type, size_t n) {
  const uint16_t *h = (const uint16_t *)src;
  size_t i = 0;
  if (type == MKA_F32) {
    memcpy(dst, src, n * 4);
  } else if (type == MKA_BF16) {
    for (; i + 16 <= n; i += 16) {
      __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(h + i)));
      _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
    }
    for (; i < n; i++) dst[i] = bf16_to_f32(h[i]);
  } else {
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i))));
    for (; i < n; i++) dst[i] = f16_to_f32(h[i]);
  }
}

#include "kern_body.h"

#define MR 12
#define NR 32

static inline __m512 act16(__m512 x, int act) {
  if (act >= 1) x = _mm512_max_ps(x, _mm512_setzero_ps());
  if (act == 2) x = _mm512_min_ps(x, _mm512_set1_ps(6.f));
  return x;
}

/* Adds C, bias and activation to the accumulators and stores the tile (tmp for partial tiles). */
static inline void store_tile(const __m512 *c0, const __m512 *c1, float *c, long ldc, int mr, int nr, int flags,
                              const float *bias, int act) {
  if (mr == MR && nr == NR) {
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) {
      float *row = c + r * ldc;
      __m512 x0 = c0[r], x1 = c1[r];
      if (flags & UK_LOAD) {
        x0 = _mm512_add_ps(x0, _mm512_loadu_ps(row));
        x1 = _mm512_add_ps(x1, _mm512_loadu_ps(row + 16));
      }
      if (flags & UK_LAST) {
        if (bias) {
          x0 = _mm512_add_ps(x0, _mm512_loadu_ps(bias));
          x1 = _mm512_add_ps(x1, _mm512_loadu_ps(bias + 16));
        }
        x0 = act16(x0, act);
        x1 = act16(x1, act);
      }
      _mm512_storeu_ps(row, x0);
      _mm512_storeu_ps(row + 16, x1);
    }
  } else {
    float tmp[MR * NR] __attribute__((aligned(64)));
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) {
      _mm512_store_ps(tmp + r * NR, c0[r]);
      _mm512_store_ps(tmp + r * NR + 16, c1[r]);
    }
    store_partial_avx512(tmp, NR, c, ldc, mr, nr, flags, bias, act);
  }
}

static void ukernel_avx512(long kc, const float *ap, const float *bp, float *c, long ldc, int mr, int nr, int flags,
                           const float *bias, int act) {
  __m512 c0[MR], c1[MR];
#pragma GCC unroll 12
  for (int r = 0; r < MR; r++) c0[r] = c1[r] = _mm512_setzero_ps();
  for (long p = 0; p < kc; p++) {
    const __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) {
      const __m512 a = _mm512_set1_ps(ap[r]);
      c0[r] = _mm512_fmadd_ps(a, b0, c0[r]);
      c1[r] = _mm512_fmadd_ps(a, b1, c1[r]);
    }
    ap += MR;
    bp += NR;
  }
  store_tile(c0, c1, c, ldc, mr, nr, flags, bias, act);
}

KERN_TABLE(avx512, MR, NR, 256, 192, 512, ukernel_avx512, NULL)

#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
const kern_table kern_avx512 = {0};
#endif

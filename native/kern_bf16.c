/*
 * bf16 products with vdpbf16ps (AVX512_BF16: Cooper Lake, Sapphire Rapids, Zen 4 and later): a
 * 12x32 microkernel over an A panel of bf16 pairs and one BF16P weight panel, 24 zmm accumulators,
 * one instance per row count so partial tiles do no wasted work; activations are rounded to bf16
 * with vcvtne2ps2bf16 while A is packed. Leaves the table empty on compilers without the intrinsics
 * (GCC before 10, clang before 9): the emulated kernels then take the products.
 */
#include "kern.h"
#if MKA_X86 && ((defined(__clang__) && __clang_major__ >= 9) || (!defined(__clang__) && __GNUC__ >= 10))
#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma,f16c,prefer-vector-width=512")
#endif

#define MR 12

static void pack_a(uint32_t *dst, const float *x, long m, long k, long i0, long p0, long np, int mr) {
  uint32_t tmp[16] __attribute__((aligned(64)));
  for (int r = 0; r < mr; r++) {
    const long i = i0 + r;
    long p = 0;
    if (i < m) {
      const float *row = x + i * k + 2 * p0;
      const long kr = k - 2 * p0; /* values of the row from pair p0 on */
      for (; p + 16 <= np && 2 * p + 32 <= kr; p += 16) {
        const __m512 lo = _mm512_loadu_ps(row + 2 * p), hi = _mm512_loadu_ps(row + 2 * p + 16);
        _mm512_store_si512(tmp, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
        for (int q = 0; q < 16; q++) dst[(p + q) * mr + r] = tmp[q];
      }
      for (; p < np; p++) {
        const long k1 = 2 * p;
        const float lo = k1 < kr ? row[k1] : 0.f, hi = k1 + 1 < kr ? row[k1 + 1] : 0.f;
        dst[p * mr + r] = f32_to_bf16(lo) | f32_to_bf16(hi) << 16;
      }
    }
    for (; p < np; p++) dst[p * mr + r] = 0;
  }
}

/* Masks of the valid columns of a 32-wide tile's two halves. */
static inline __mmask16 half_mask(int cols) { return cols >= 16 ? 0xffff : cols <= 0 ? 0 : (__mmask16)((1u << cols) - 1); }

/*
 * M rows x 32 columns over kp pairs. Rows of few tiles (decoding's single row) keep U independent
 * accumulator sets over alternating pairs, so the dot products' latency does not bound them.
 */
static inline __attribute__((always_inline)) void tile(const int M, long kp, const uint32_t *ap, const uint32_t *bp,
                                                       float *c, long ldc, int nr, int flags, const float *bias) {
  enum { U = 4 };
  const int sets = M == 1 ? 4 : M <= 3 ? 2 : 1;
  __m512 c0[U][MR], c1[U][MR];
#pragma GCC unroll 4
  for (int u = 0; u < sets; u++)
#pragma GCC unroll 12
    for (int r = 0; r < M; r++) c0[u][r] = c1[u][r] = _mm512_setzero_ps();
  long p = 0;
  for (; p + sets <= kp; p += sets) {
#pragma GCC unroll 4
    for (int u = 0; u < sets; u++) {
      const __m512bh b0 = (__m512bh)_mm512_loadu_si512(bp), b1 = (__m512bh)_mm512_loadu_si512(bp + 16);
#pragma GCC unroll 12
      for (int r = 0; r < M; r++) {
        const __m512bh a = (__m512bh)_mm512_set1_epi32((int)ap[r]);
        c0[u][r] = _mm512_dpbf16_ps(c0[u][r], a, b0);
        c1[u][r] = _mm512_dpbf16_ps(c1[u][r], a, b1);
      }
      ap += MR;
      bp += BF16P_NR;
    }
  }
  for (; p < kp; p++) {
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(bp), b1 = (__m512bh)_mm512_loadu_si512(bp + 16);
#pragma GCC unroll 12
    for (int r = 0; r < M; r++) {
      const __m512bh a = (__m512bh)_mm512_set1_epi32((int)ap[r]);
      c0[0][r] = _mm512_dpbf16_ps(c0[0][r], a, b0);
      c1[0][r] = _mm512_dpbf16_ps(c1[0][r], a, b1);
    }
    ap += MR;
    bp += BF16P_NR;
  }
#pragma GCC unroll 4
  for (int u = 1; u < sets; u++)
#pragma GCC unroll 12
    for (int r = 0; r < M; r++) {
      c0[0][r] = _mm512_add_ps(c0[0][r], c0[u][r]);
      c1[0][r] = _mm512_add_ps(c1[0][r], c1[u][r]);
    }
  const __mmask16 m0 = half_mask(nr), m1 = half_mask(nr - 16);
  __m512 bias0 = _mm512_setzero_ps(), bias1 = _mm512_setzero_ps();
  if ((flags & UK_LAST) && bias) {
    bias0 = _mm512_maskz_loadu_ps(m0, bias);
    bias1 = _mm512_maskz_loadu_ps(m1, bias + 16);
  }
#pragma GCC unroll 12
  for (int r = 0; r < M; r++) {
    float *row = c + r * ldc;
    __m512 x0 = c0[0][r], x1 = c1[0][r];
    if (flags & UK_LOAD) {
      x0 = _mm512_add_ps(x0, _mm512_maskz_loadu_ps(m0, row));
      x1 = _mm512_add_ps(x1, _mm512_maskz_loadu_ps(m1, row + 16));
    }
    x0 = _mm512_add_ps(x0, bias0);
    x1 = _mm512_add_ps(x1, bias1);
    _mm512_mask_storeu_ps(row, m0, x0);
    _mm512_mask_storeu_ps(row + 16, m1, x1);
  }
}

#define TILE_FN(M)                                                                                                    \
  static void tile_##M(long kp, const uint32_t *ap, const uint32_t *bp, float *c, long ldc, int nr, int flags,       \
                       const float *bias) {                                                                          \
    tile(M, kp, ap, bp, c, ldc, nr, flags, bias);                                                                    \
  }
TILE_FN(1) TILE_FN(2) TILE_FN(3) TILE_FN(4) TILE_FN(5) TILE_FN(6) TILE_FN(7) TILE_FN(8) TILE_FN(9) TILE_FN(10)
TILE_FN(11) TILE_FN(12)

typedef void (*tile_fn)(long, const uint32_t *, const uint32_t *, float *, long, int, int, const float *);
static const tile_fn tiles[MR + 1] = {NULL, tile_1, tile_2, tile_3, tile_4, tile_5, tile_6,
                                      tile_7, tile_8, tile_9, tile_10, tile_11, tile_12};

static void ukernel(long kp, const uint32_t *ap, const uint32_t *bp, float *c, long ldc, int mr, int nr, int flags,
                    const float *bias) {
  tiles[mr](kp, ap, bp, c, ldc, nr, flags, bias);
}

const bf16_kern bf16_avx512bf16 = {"avx512bf16", MR, ukernel, pack_a};

#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
const bf16_kern bf16_avx512bf16 = {0};
#endif

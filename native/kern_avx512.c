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

#define MR 12
#define NR 32
#define VW 16
#define VEC __m512
#define V_LOAD _mm512_load_ps
#define V_LOADU _mm512_loadu_ps
#define V_STORE _mm512_store_ps
#define V_STOREU _mm512_storeu_ps
#define V_ADD _mm512_add_ps
#define V_FMA _mm512_fmadd_ps
#define V_MAX _mm512_max_ps
#define V_MIN _mm512_min_ps
#define V_ZERO _mm512_setzero_ps
#define V_SET1 _mm512_set1_ps
#define V_BCAST(p) _mm512_set1_ps(*(p))
#define V_FROM_BF16(p) _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p))), 16))
#define V_FROM_F16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define UNROLL_MR _Pragma("GCC unroll 12")

#include "kern_simd.h"

/* ---- bf16 weights times bf16-rounded activations with vdpbf16ps (MKA_BF16_DOT=1) ---- */
/* compilers before GCC 10 / clang 9 lack the intrinsics: the path is then left out */
#if (defined(__clang__) && __clang_major__ >= 9) || (!defined(__clang__) && __GNUC__ >= 10)

/* float to bf16 bits, round to nearest even (NaN stays NaN). */
static inline uint32_t to_bf16(float x) {
  uint32_t w;
  memcpy(&w, &x, 4);
  if ((w & 0x7fffffffu) > 0x7f800000u) return (w >> 16) | 0x40;
  return (w + 0x7fff + ((w >> 16) & 1)) >> 16;
}

/* A rows i0.. as bf16 pairs: dst[pair][r] = a[r][2p] | a[r][2p+1] << 16 (zero past m and k). */
static void pack_a_bf16(uint32_t *dst, const float *a, int trans, long m, long k, long i0, long k0, long kcb, int mr) {
  const long pairs = (kcb + 1) / 2;
  for (int r = 0; r < mr; r++) {
    const long i = i0 + r;
    for (long pp = 0; pp < pairs; pp++) {
      const long k1 = k0 + 2 * pp, k2 = k1 + 1;
      float lo = 0.f, hi = 0.f;
      if (i < m) {
        lo = trans ? a[k1 * m + i] : a[i * k + k1];
        if (k2 < k0 + kcb) hi = trans ? a[k2 * m + i] : a[i * k + k2];
      }
      dst[pp * mr + r] = to_bf16(lo) | to_bf16(hi) << 16;
    }
  }
}

/* B columns j0.. of bf16 as pairs: dst[panel][pair][c] = b[2p][c] | b[2p+1][c] << 16. */
static void pack_b_bf16(uint32_t *dst, const uint16_t *b, int trans, long n, long k, long k0, long kcb, long j0, long ns,
                        int nr) {
  const long pairs = (kcb + 1) / 2;
  for (long q = 0; q < ns; q += nr) {
    uint32_t *panel = dst + q * pairs;
    for (long c = 0; c < nr; c++) {
      const long j = j0 + q + c;
      for (long pp = 0; pp < pairs; pp++) {
        const long k1 = k0 + 2 * pp, k2 = k1 + 1;
        uint32_t lo = 0, hi = 0;
        if (j < n) {
          lo = trans ? b[j * k + k1] : b[k1 * n + j];
          if (k2 < k0 + kcb) hi = trans ? b[j * k + k2] : b[k2 * n + j];
        }
        panel[pp * nr + c] = lo | hi << 16;
      }
    }
  }
}

__attribute__((target("avx512bf16"))) static void ukernel_bf16(long pairs, const float *apf, const float *bpf, float *c,
                                                               long ldc, int mr, int nr, int flags, const float *bias,
                                                               int act) {
  const uint32_t *ap = (const uint32_t *)apf, *bp = (const uint32_t *)bpf;
  __m512 c0[MR], c1[MR];
#pragma GCC unroll 12
  for (int r = 0; r < MR; r++) c0[r] = c1[r] = _mm512_setzero_ps();
  for (long p = 0; p < pairs; p++) {
    const __m512bh b0 = (__m512bh)_mm512_load_si512(bp), b1 = (__m512bh)_mm512_load_si512(bp + 16);
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) {
      const __m512bh a = (__m512bh)_mm512_set1_epi32((int)ap[r]);
      c0[r] = _mm512_dpbf16_ps(c0[r], a, b0);
      c1[r] = _mm512_dpbf16_ps(c1[r], a, b1);
    }
    ap += MR;
    bp += NR;
  }
  store_tile(c0, c1, c, ldc, mr, nr, flags, bias, act);
}

const bf16_dot_fns bf16_dot_avx512 = {ukernel_bf16, pack_a_bf16, pack_b_bf16};
#else
const bf16_dot_fns bf16_dot_avx512 = {0};
#endif

KERN_TABLE(avx512, MR, NR, 256, 192, 512, ukernel_avx512)

#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
const kern_table kern_avx512 = {0};
const bf16_dot_fns bf16_dot_avx512 = {0};
#endif

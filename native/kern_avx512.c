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

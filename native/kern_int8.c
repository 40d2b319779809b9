/*
 * Integer product kernels for quant.c: VNNI (vpdpbusd: 4 unsigned weight quants of 16 columns times a
 * broadcast quad of int8 activations per instruction), AVX-512BW (vpmaddwd on the quants widened to
 * int16 pairs, exact: no saturation) and AVX2 (vpmaddubsw on bytes within its saturation bounds, see
 * there). Each has a packed microkernel (rows x 32 or 16 columns, float accumulation per block of 32
 * inputs) and a row-dot kernel for decoding that reads weight rows as stored. Built only for x86
 * compilers that know the instructions.
 */
#include "kern.h"
#if MKA_X86
#include <immintrin.h>

/* ---- packing (plain C: one pass over the weight bytes per call) ---- */

/* dst [b][quad][nr][4] of unsigned quants. */
static void pack_quads(uint8_t *dst, const uint8_t *rows, long rb, int format, int symmetric, long b0, long nb, long cols, int nr) {
  uint8_t blk[32];
  for (long b = 0; b < nb; b++)
    for (int c = 0; c < nr; c++) {
      if (c < cols) widen_block(blk, rows + c * rb, format, symmetric, b0 + b);
      else memset(blk, 0, 32);
      for (int q = 0; q < 8; q++) memcpy(dst + ((b * 8 + q) * nr + c) * 4, blk + 4 * q, 4);
    }
}

/* dst [b][pair][nr][2] of unsigned quants as int16. */
static void pack_pairs(uint8_t *dst8, const uint8_t *rows, long rb, int format, int symmetric, long b0, long nb, long cols, int nr) {
  int16_t *dst = (int16_t *)dst8;
  uint8_t blk[32];
  for (long b = 0; b < nb; b++)
    for (int c = 0; c < nr; c++) {
      if (c < cols) widen_block(blk, rows + c * rb, format, symmetric, b0 + b);
      else memset(blk, 0, 32);
      for (int p = 0; p < 16; p++) {
        dst[((b * 16 + p) * nr + c) * 2] = blk[2 * p];
        dst[((b * 16 + p) * nr + c) * 2 + 1] = blk[2 * p + 1];
      }
    }
}

static void pack_quads32(uint8_t *d, const uint8_t *r, long rb, int f, int s, long b0, long nb, long cols) { pack_quads(d, r, rb, f, s, b0, nb, cols, 32); }
static void pack_pairs32(uint8_t *d, const uint8_t *r, long rb, int f, int s, long b0, long nb, long cols) { pack_pairs(d, r, rb, f, s, b0, nb, cols, 32); }

/* ---- AVX-512: VNNI and BW share the tile's float part (compiled for BW, so VNNI callers inline it) ---- */
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")))
#define TVNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma")))
#define MR512 6

/* y (+)= acc for a tile of M rows x 32 columns, masked to t->cols, bias on the last k block. */
static inline __attribute__((always_inline)) T512 void store512(const int_tile *t, const int M, __m512 acc[][2]) {
  const __mmask16 m0 = t->cols >= 16 ? 0xffff : (__mmask16)((1u << t->cols) - 1);
  const __mmask16 m1 = t->cols >= 32 ? 0xffff : t->cols <= 16 ? 0 : (__mmask16)((1u << (t->cols - 16)) - 1);
  __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
  if ((t->flags & UK_LAST) && t->bias) {
    b0 = _mm512_maskz_loadu_ps(m0, t->bias);
    b1 = _mm512_maskz_loadu_ps(m1, t->bias + 16);
  }
  for (int r = 0; r < M; r++) {
    float *y = t->y + r * t->ldy;
    __m512 x0 = _mm512_add_ps(acc[r][0], b0), x1 = _mm512_add_ps(acc[r][1], b1);
    if (t->flags & UK_LOAD) {
      x0 = _mm512_add_ps(x0, _mm512_maskz_loadu_ps(m0, y));
      x1 = _mm512_add_ps(x1, _mm512_maskz_loadu_ps(m1, y + 16));
    }
    _mm512_mask_storeu_ps(y, m0, x0);
    _mm512_mask_storeu_ps(y + 16, m1, x1);
  }
}

/* acc += dx·(sw·dot + cw·Σqx) for block b of every row. */
static inline __attribute__((always_inline)) T512 void scale512(const int_tile *t, const int M, long b, __m512i ia[][2], __m512 acc[][2]) {
  const __m512 s0 = _mm512_loadu_ps(t->sw + b * 32), s1 = _mm512_loadu_ps(t->sw + b * 32 + 16);
  const __m512 c0 = _mm512_loadu_ps(t->cw + b * 32), c1 = _mm512_loadu_ps(t->cw + b * 32 + 16);
  for (int r = 0; r < M; r++) {
    const __m512 d = _mm512_set1_ps(t->da[r * t->ldd + b]), s = _mm512_set1_ps(t->sa[r * t->ldd + b]);
    acc[r][0] = _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_cvtepi32_ps(ia[r][0]), s0, _mm512_mul_ps(c0, s)), d, acc[r][0]);
    acc[r][1] = _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_cvtepi32_ps(ia[r][1]), s1, _mm512_mul_ps(c1, s)), d, acc[r][1]);
  }
}

static inline __attribute__((always_inline)) TVNNI void tile_vnni(const int_tile *t, const int M) {
  __m512 acc[MR512][2];
  for (int r = 0; r < M; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (long b = 0; b < t->nb; b++) {
    __m512i ia[MR512][2];
    for (int r = 0; r < M; r++) ia[r][0] = ia[r][1] = _mm512_setzero_si512();
    const uint8_t *bq = t->bq + b * 8 * 128;
    const int8_t *qa = t->qa + b * 32;
#pragma GCC unroll 8
    for (int q = 0; q < 8; q++) {
      const __m512i w0 = _mm512_loadu_si512(bq + q * 128), w1 = _mm512_loadu_si512(bq + q * 128 + 64);
#pragma GCC unroll 6
      for (int r = 0; r < M; r++) {
        int32_t quad;
        memcpy(&quad, qa + r * t->lda + 4 * q, 4);
        const __m512i a = _mm512_set1_epi32(quad);
        ia[r][0] = _mm512_dpbusd_epi32(ia[r][0], w0, a);
        ia[r][1] = _mm512_dpbusd_epi32(ia[r][1], w1, a);
      }
    }
    scale512(t, M, b, ia, acc);
  }
  store512(t, M, acc);
}

static inline __attribute__((always_inline)) T512 void tile_bw(const int_tile *t, const int M) {
  __m512 acc[MR512][2];
  for (int r = 0; r < M; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (long b = 0; b < t->nb; b++) {
    __m512i ia[MR512][2];
    for (int r = 0; r < M; r++) ia[r][0] = ia[r][1] = _mm512_setzero_si512();
    const uint8_t *bq = t->bq + b * 16 * 128;
    const int16_t *qa = t->qa16 + b * 32;
#pragma GCC unroll 4
    for (int p = 0; p < 16; p++) {
      const __m512i w0 = _mm512_loadu_si512(bq + p * 128), w1 = _mm512_loadu_si512(bq + p * 128 + 64);
#pragma GCC unroll 6
      for (int r = 0; r < M; r++) {
        int32_t pair;
        memcpy(&pair, qa + r * t->lda + 2 * p, 4);
        const __m512i a = _mm512_set1_epi32(pair);
        ia[r][0] = _mm512_add_epi32(ia[r][0], _mm512_madd_epi16(w0, a));
        ia[r][1] = _mm512_add_epi32(ia[r][1], _mm512_madd_epi16(w1, a));
      }
    }
    scale512(t, M, b, ia, acc);
  }
  store512(t, M, acc);
}

#define TILES(name, target, M) \
  static target void name##_##M(const int_tile *t) { name(t, M); }
TILES(tile_vnni, TVNNI, 1) TILES(tile_vnni, TVNNI, 2) TILES(tile_vnni, TVNNI, 3) TILES(tile_vnni, TVNNI, 4)
TILES(tile_vnni, TVNNI, 5) TILES(tile_vnni, TVNNI, 6)
TILES(tile_bw, T512, 1) TILES(tile_bw, T512, 2) TILES(tile_bw, T512, 3) TILES(tile_bw, T512, 4) TILES(tile_bw, T512, 5)
TILES(tile_bw, T512, 6)

static void ukernel_vnni(const int_tile *t) {
  static void (*const f[MR512 + 1])(const int_tile *) = {NULL, tile_vnni_1, tile_vnni_2, tile_vnni_3, tile_vnni_4, tile_vnni_5, tile_vnni_6};
  f[t->rows](t);
}

static void ukernel_bw(const int_tile *t) {
  static void (*const f[MR512 + 1])(const int_tile *) = {NULL, tile_bw_1, tile_bw_2, tile_bw_3, tile_bw_4, tile_bw_5, tile_bw_6};
  f[t->rows](t);
}

/* Block b of a weight row as 32 unsigned quants in a ymm. */
static inline __attribute__((always_inline)) T512 __m256i quants256(const uint8_t *row, int format, int symmetric, long b) {
  if (format == MKA_Q8) {
    const __m256i v = _mm256_loadu_si256((const __m256i *)(row + b * 32));
    return symmetric ? _mm256_xor_si256(v, _mm256_set1_epi8((char)0x80)) : v;
  }
  const __m128i v = _mm_loadu_si128((const __m128i *)(row + b * 16)), low = _mm_set1_epi8(15);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), low), _mm_and_si128(v, low));
}

static inline __attribute__((target("avx2"))) int32_t hsum_epi32(__m256i v) {
  const __m128i x = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  const __m128i y = _mm_add_epi32(x, _mm_shuffle_epi32(x, 0x4e));
  return _mm_cvtsi128_si32(_mm_add_epi32(y, _mm_shuffle_epi32(y, 0xb1)));
}

static inline __attribute__((target("avx2"))) float hsum256(__m256 v) {
  float s[8];
  _mm256_storeu_ps(s, v);
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

static TVNNI void rowdot_vnni(float *sums, const uint8_t *row, int format, int symmetric, const int8_t *qa, const int16_t *qa16,
                             const int32_t *si, long lda, const float *da, const float *sa, long ldd, long m, const float *scales,
                             const float *mins, long group, int off) {
  (void)qa16;
  (void)si;
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  float corr[4] = {0, 0, 0, 0};
  for (long b = 0; b < ldd; b++) {
    const __m256i w = quants256(row, format, symmetric, b);
    const long g = b * 32 / group;
    const float sw = scales[g], cw = (mins ? mins[g] : 0.f) - sw * (float)off;
    for (long r = 0; r < m; r++) {
      const __m256i a = _mm256_loadu_si256((const __m256i *)(qa + r * lda + b * 32));
      const __m256i dot = _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, a);
      const float d = da[r * ldd + b];
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(d * sw), acc[r]);
      corr[r] += d * cw * sa[r * ldd + b];
    }
  }
  for (long r = 0; r < m; r++) sums[r] = hsum256(acc[r]) + corr[r];
}

static T512 void rowdot_bw(float *sums, const uint8_t *row, int format, int symmetric, const int8_t *qa, const int16_t *qa16,
                           const int32_t *si, long lda, const float *da, const float *sa, long ldd, long m, const float *scales,
                           const float *mins, long group, int off) {
  (void)qa;
  (void)si;
  __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
  float corr[4] = {0, 0, 0, 0};
  for (long b = 0; b < ldd; b++) {
    const __m512i w = _mm512_cvtepu8_epi16(quants256(row, format, symmetric, b));
    const long g = b * 32 / group;
    const float sw = scales[g], cw = (mins ? mins[g] : 0.f) - sw * (float)off;
    for (long r = 0; r < m; r++) {
      const __m512i dot = _mm512_madd_epi16(w, _mm512_loadu_si512(qa16 + r * lda + b * 32));
      const float d = da[r * ldd + b];
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_set1_ps(d * sw), acc[r]);
      corr[r] += d * cw * sa[r * ldd + b];
    }
  }
  for (long r = 0; r < m; r++) sums[r] = _mm512_reduce_add_ps(acc[r]) + corr[r];
}

/*
 * ---- AVX2: MR256 rows x 16 columns of u8 quads (vpmaddubsw, no VNNI) ----
 * The panel is [block][quad][16 columns][4 bytes], as VNNI's; vpmaddubsw multiplies 32 unsigned by 32
 * signed bytes into 16 saturating int16 sums of pairs. 4-bit quants (0..15) times activations (|q| <= 127)
 * give pairs of at most 2·15·127 = 3810, so the eight quads of a block add up in int16 (30480 < 32767)
 * before one vpmaddwd with ones widens them. 8-bit quants are packed as signed bytes (the stored
 * value xored with 0x80: int8 w, or u − 128 with mins) and multiplied llama.cpp's way: |w| (at most
 * 128) by the activation carrying w's sign (at most 127 in size; -128 never occurs, quant.c clamps),
 * pairs within 2·128·127 = 32512, widened per quad; adding 128·Σqx then gives Σ u·qx exactly.
 */
#define T256 __attribute__((target("avx2,fma")))
#define MR256 3

/* dst[i][j] = src[j][i] for an 8 x 8 block of 32-bit values (8 columns' quads into 8 quads' columns). */
static inline __attribute__((always_inline)) T256 void transpose8x32(__m256i r[8]) {
  __m256 a[8], b[8];
  for (int i = 0; i < 8; i += 2) {
    a[i] = _mm256_unpacklo_ps(_mm256_castsi256_ps(r[i]), _mm256_castsi256_ps(r[i + 1]));
    a[i + 1] = _mm256_unpackhi_ps(_mm256_castsi256_ps(r[i]), _mm256_castsi256_ps(r[i + 1]));
  }
  for (int i = 0; i < 8; i += 4) {
    b[i] = _mm256_shuffle_ps(a[i], a[i + 2], 0x44);
    b[i + 1] = _mm256_shuffle_ps(a[i], a[i + 2], 0xee);
    b[i + 2] = _mm256_shuffle_ps(a[i + 1], a[i + 3], 0x44);
    b[i + 3] = _mm256_shuffle_ps(a[i + 1], a[i + 3], 0xee);
  }
  for (int i = 0; i < 4; i++) {
    r[i] = _mm256_castps_si256(_mm256_permute2f128_ps(b[i], b[i + 4], 0x20));
    r[i + 4] = _mm256_castps_si256(_mm256_permute2f128_ps(b[i], b[i + 4], 0x31));
  }
}

/* Block b of a weight row as the AVX2 kernels multiply it: 4-bit quants unsigned, 8-bit ones signed. */
static inline __attribute__((always_inline)) T256 __m256i quants_avx2(const uint8_t *row, int format, int symmetric, long b) {
  if (format == MKA_Q8) {
    const __m256i v = _mm256_loadu_si256((const __m256i *)(row + b * 32));
    return symmetric ? v : _mm256_xor_si256(v, _mm256_set1_epi8((char)0x80));
  }
  const __m128i v = _mm_loadu_si128((const __m128i *)(row + b * 16)), low = _mm_set1_epi8(15);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), low), _mm_and_si128(v, low));
}

static T256 void pack_avx2(uint8_t *dst, const uint8_t *rows, long rb, int format, int symmetric, long b0, long nb, long cols) {
  for (long b = 0; b < nb; b++)
    for (int c0 = 0; c0 < 16; c0 += 8) {
      __m256i r[8];
      for (int c = 0; c < 8; c++)
        r[c] = c0 + c < cols ? quants_avx2(rows + (c0 + c) * rb, format, symmetric, b0 + b) : _mm256_setzero_si256();
      transpose8x32(r);
      for (int q = 0; q < 8; q++) _mm256_storeu_si256((__m256i *)(dst + ((b * 8 + q) * 16 + c0) * 4), r[q]);
    }
}

/* acc += dx·(sw·dot + cw·Σqx) for one block of M rows, dot the exact int32 Σ u·qx of two 8-column halves. */
static inline __attribute__((always_inline)) T256 void scale256(const int_tile *t, const int M, long b, __m256i ia[][2], __m256 acc[][2]) {
  const __m256 s0 = _mm256_loadu_ps(t->sw + b * 16), s1 = _mm256_loadu_ps(t->sw + b * 16 + 8);
  const __m256 c0 = _mm256_loadu_ps(t->cw + b * 16), c1 = _mm256_loadu_ps(t->cw + b * 16 + 8);
  for (int r = 0; r < M; r++) {
    const __m256 d = _mm256_set1_ps(t->da[r * t->ldd + b]), s = _mm256_set1_ps(t->sa[r * t->ldd + b]);
    acc[r][0] = _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_cvtepi32_ps(ia[r][0]), s0, _mm256_mul_ps(c0, s)), d, acc[r][0]);
    acc[r][1] = _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_cvtepi32_ps(ia[r][1]), s1, _mm256_mul_ps(c1, s)), d, acc[r][1]);
  }
}

static inline __attribute__((always_inline)) T256 void store256(const int_tile *t, const int M, __m256 acc[][2]) {
  const int add_bias = (t->flags & UK_LAST) && t->bias;
  if (t->cols == 16) {
    const __m256 b0 = add_bias ? _mm256_loadu_ps(t->bias) : _mm256_setzero_ps(), b1 = add_bias ? _mm256_loadu_ps(t->bias + 8) : _mm256_setzero_ps();
    for (int r = 0; r < M; r++) {
      float *y = t->y + r * t->ldy;
      __m256 x0 = _mm256_add_ps(acc[r][0], b0), x1 = _mm256_add_ps(acc[r][1], b1);
      if (t->flags & UK_LOAD) {
        x0 = _mm256_add_ps(_mm256_loadu_ps(y), x0);
        x1 = _mm256_add_ps(_mm256_loadu_ps(y + 8), x1);
      }
      _mm256_storeu_ps(y, x0);
      _mm256_storeu_ps(y + 8, x1);
    }
    return;
  }
  for (int r = 0; r < M; r++) {
    float out[16];
    _mm256_storeu_ps(out, acc[r][0]);
    _mm256_storeu_ps(out + 8, acc[r][1]);
    float *y = t->y + r * t->ldy;
    for (int c = 0; c < t->cols; c++) {
      const float v = out[c] + (add_bias ? t->bias[c] : 0.f);
      y[c] = t->flags & UK_LOAD ? y[c] + v : v;
    }
  }
}

static inline __attribute__((always_inline)) T256 void tile_avx2_q4(const int_tile *t, const int M) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[MR256][2];
  for (int r = 0; r < M; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (long b = 0; b < t->nb; b++) {
    __m256i h[MR256][2];
    for (int r = 0; r < M; r++) h[r][0] = h[r][1] = _mm256_setzero_si256();
    const uint8_t *bq = t->bq + b * 8 * 64;
    const int8_t *qa = t->qa + b * 32;
#pragma GCC unroll 2
    for (int q = 0; q < 8; q++) {
      const __m256i w0 = _mm256_loadu_si256((const __m256i *)(bq + q * 64)), w1 = _mm256_loadu_si256((const __m256i *)(bq + q * 64 + 32));
#pragma GCC unroll 3
      for (int r = 0; r < M; r++) {
        int32_t quad;
        memcpy(&quad, qa + r * t->lda + 4 * q, 4);
        const __m256i a = _mm256_set1_epi32(quad);
        h[r][0] = _mm256_add_epi16(h[r][0], _mm256_maddubs_epi16(w0, a));
        h[r][1] = _mm256_add_epi16(h[r][1], _mm256_maddubs_epi16(w1, a));
      }
    }
    __m256i ia[MR256][2];
    for (int r = 0; r < M; r++) {
      ia[r][0] = _mm256_madd_epi16(h[r][0], ones);
      ia[r][1] = _mm256_madd_epi16(h[r][1], ones);
    }
    scale256(t, M, b, ia, acc);
  }
  store256(t, M, acc);
}

static inline __attribute__((always_inline)) T256 void tile_avx2_q8(const int_tile *t, const int M) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[MR256][2];
  for (int r = 0; r < M; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (long b = 0; b < t->nb; b++) {
    __m256i ia[MR256][2];
    for (int r = 0; r < M; r++) ia[r][0] = ia[r][1] = _mm256_set1_epi32(128 * t->si[r * t->ldd + b]);
    const uint8_t *bq = t->bq + b * 8 * 64;
    const int8_t *qa = t->qa + b * 32;
#pragma GCC unroll 2
    for (int q = 0; q < 8; q++) {
      const __m256i w0 = _mm256_loadu_si256((const __m256i *)(bq + q * 64)), w1 = _mm256_loadu_si256((const __m256i *)(bq + q * 64 + 32));
      const __m256i u0 = _mm256_abs_epi8(w0), u1 = _mm256_abs_epi8(w1);
#pragma GCC unroll 3
      for (int r = 0; r < M; r++) {
        int32_t quad;
        memcpy(&quad, qa + r * t->lda + 4 * q, 4);
        const __m256i a = _mm256_set1_epi32(quad);
        ia[r][0] = _mm256_add_epi32(ia[r][0], _mm256_madd_epi16(_mm256_maddubs_epi16(u0, _mm256_sign_epi8(a, w0)), ones));
        ia[r][1] = _mm256_add_epi32(ia[r][1], _mm256_madd_epi16(_mm256_maddubs_epi16(u1, _mm256_sign_epi8(a, w1)), ones));
      }
    }
    scale256(t, M, b, ia, acc);
  }
  store256(t, M, acc);
}

TILES(tile_avx2_q4, T256, 1) TILES(tile_avx2_q4, T256, 2) TILES(tile_avx2_q4, T256, 3)
TILES(tile_avx2_q8, T256, 1) TILES(tile_avx2_q8, T256, 2) TILES(tile_avx2_q8, T256, 3)

static void ukernel_avx2(const int_tile *t) {
  static void (*const q4[MR256 + 1])(const int_tile *) = {NULL, tile_avx2_q4_1, tile_avx2_q4_2, tile_avx2_q4_3};
  static void (*const q8[MR256 + 1])(const int_tile *) = {NULL, tile_avx2_q8_1, tile_avx2_q8_2, tile_avx2_q8_3};
  (t->format == MKA_Q8 ? q8 : q4)[t->rows](t);
}

static T256 void rowdot_avx2(float *sums, const uint8_t *row, int format, int symmetric, const int8_t *qa, const int16_t *qa16,
                             const int32_t *si, long lda, const float *da, const float *sa, long ldd, long m,
                             const float *scales, const float *mins, long group, int off) {
  (void)qa16;
  const __m256i ones = _mm256_set1_epi16(1);
  const long per_group = group % 32 ? ldd : group / 32; /* blocks per group (a group is 32·n inputs or the whole row) */
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  float corr[4] = {0, 0, 0, 0};
  for (long g = 0, b0 = 0; b0 < ldd; g++, b0 += per_group) {
    /* 8-bit quants multiply signed (u − 128): 128·sw·Σqx returns to the correction, exactly cancelling cw·Σqx when symmetric */
    const float sw = scales[g], cw = (mins ? mins[g] : 0.f) - sw * (float)off, kw = format == MKA_Q8 ? 128.f * sw : 0.f;
    for (long b = b0; b < ldd && b < b0 + per_group; b++) {
      const __m256i w = quants_avx2(row, format, symmetric, b);
      if (format == MKA_Q8) {
        const __m256i u = _mm256_abs_epi8(w);
        for (long r = 0; r < m; r++) {
          const __m256i a = _mm256_loadu_si256((const __m256i *)(qa + r * lda + b * 32));
          const __m256i dot = _mm256_madd_epi16(_mm256_maddubs_epi16(u, _mm256_sign_epi8(a, w)), ones);
          const float d = da[r * ldd + b];
          acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(d * sw), acc[r]);
          corr[r] += d * (cw * sa[r * ldd + b] + kw * (float)si[r * ldd + b]);
        }
      } else {
        for (long r = 0; r < m; r++) {
          const __m256i a = _mm256_loadu_si256((const __m256i *)(qa + r * lda + b * 32));
          const __m256i dot = _mm256_madd_epi16(_mm256_maddubs_epi16(w, a), ones);
          const float d = da[r * ldd + b];
          acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(d * sw), acc[r]);
          corr[r] += d * cw * sa[r * ldd + b];
        }
      }
    }
  }
  for (long r = 0; r < m; r++) sums[r] = hsum256(acc[r]) + corr[r];
}

/* The quants of whole blocks, as quant.c's plain C computes them: the same float multiply, rounding to nearest even. */
static T256 void quantize256(const float *x, long blocks, const float *id, int8_t *q, float *sums) {
  const __m256 lim = _mm256_set1_ps(127.f), nlim = _mm256_set1_ps(-127.f);
  for (long b = 0; b < blocks; b++) {
    const __m256 m = _mm256_set1_ps(id[b]);
    __m256i v[4];
    for (int i = 0; i < 4; i++) /* MXCSR's rounding: nearest even, as nearbyintf */
      v[i] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 32 * b + 8 * i), m), nlim), lim));
    const __m256i s = _mm256_add_epi32(_mm256_add_epi32(v[0], v[1]), _mm256_add_epi32(v[2], v[3]));
    /* packs work within 128-bit lanes: [0l 1l 0h 1h] and [2l 3l 2h 3h] as int16, then bytes [0l 1l 2l 3l 0h 1h 2h 3h]; permute to order */
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
    _mm256_storeu_si256((__m256i *)(q + 32 * b), _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    sums[b] = (float)hsum_epi32(s);
  }
}

/* The quants of whole blocks, as quant.c's plain C computes them: the same float multiply, rounding to nearest even. */
static T512 void quantize512(const float *x, long blocks, const float *id, int8_t *q, float *sums) {
  for (long b = 0; b < blocks; b++) {
    const __m512 m = _mm512_set1_ps(id[b]), lim = _mm512_set1_ps(127.f);
    const __m512 x0 = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(_mm512_loadu_ps(x + 32 * b), m), _mm512_sub_ps(_mm512_setzero_ps(), lim)), lim);
    const __m512 x1 = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(_mm512_loadu_ps(x + 32 * b + 16), m), _mm512_sub_ps(_mm512_setzero_ps(), lim)), lim);
    const __m512i q0 = _mm512_cvtps_epi32(x0), q1 = _mm512_cvtps_epi32(x1); /* MXCSR's rounding: nearest even */
    _mm_storeu_si128((__m128i *)(q + 32 * b), _mm512_cvtsepi32_epi8(q0));
    _mm_storeu_si128((__m128i *)(q + 32 * b + 16), _mm512_cvtsepi32_epi8(q1));
    sums[b] = (float)_mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
  }
}

const int_kern int_vnni = {"vnni", MR512, 32, 1, 0, pack_quads32, ukernel_vnni, rowdot_vnni, quantize512};
const int_kern int_avx512bw = {"avx512bw", MR512, 32, 2, 1, pack_pairs32, ukernel_bw, rowdot_bw, quantize512};
const int_kern int_avx2 = {"avx2", MR256, 16, 1, 0, pack_avx2, ukernel_avx2, rowdot_avx2, quantize256};
#else
const int_kern int_vnni = {0}, int_avx512bw = {0}, int_avx2 = {0};
#endif

/*
 * One table of kernels per instruction-set path. kern_generic.c, kern_avx2.c and kern_avx512.c
 * each compile kern_body.h (plain C that the compiler vectorises for that path) plus their own
 * register-blocked matrix-product microkernel; gemm.c and ops.c pick the table at run time.
 */
#ifndef MKA_KERN_H
#define MKA_KERN_H
#include "mka.h"

/* Microkernel flags: LOAD adds C's current value, LAST applies bias and activation. */
enum { UK_LOAD = 1, UK_LAST = 2 };

typedef void (*ukernel_fn)(long kc, const float *ap, const float *bp, float *c, long ldc, int mr, int nr,
                           int flags, const float *bias, int act);

typedef struct {
  const char *name;
  int mr, nr;        /* microkernel tile */
  int kc, mc, ns;    /* cache blocking: k block, rows per L2 block, columns per task strip */
  ukernel_fn ukernel;
  void (*widen)(float *dst, const void *src, int type, size_t n);
  void (*pack_a)(float *dst, const float *a, int trans, long m, long k, long i0, long k0, long kcb, int mr);
  void (*pack_b)(float *dst, const void *b, int type, int trans, long n, long k, long k0, long kcb, long j0,
                 long ns, int nr);
  /* Rows [0, m) of one product for columns [j0, j1), without packing (small m). */
  void (*small_m)(const float *a, const void *b, int type, float *c, long m, long n, long k, int trans_a,
                  int trans_b, long j0, long j1, const float *bias, int act, int accumulate);
  void (*softmax_block)(float *s, long nq, long nk, const long *lo, const long *hi, long s0, float *mx, float *l,
                        float *o, long hd, long ldo);
  void (*attention_rows)(const float *qs, const float *k, const float *v, float *out, long ldo, long nq,
                         const long *lo, const long *hi, long hd, float *sc);
  void (*rmsnorm_rows)(const float *x, const float *w, float *out, long r0, long r1, long n, float eps);
  void (*rope_rows)(float *x, const float *cos, const float *sin, long r0, long r1, long T, long heads, long hd);
  void (*silu_mul)(const float *g, const float *u, float *out, long i0, long i1);
} kern_table;

extern const kern_table kern_generic, kern_avx2, kern_avx512;

/*
 * bf16 products on BF16P weights (mka.h): A rows rounded to bf16 and packed as pairs, dst[p][r] =
 * bf16(a[r][2p]) | bf16(a[r][2p+1]) << 16 for the mr rows of one panel; the microkernel multiplies
 * such a panel by one BF16P column panel (32 columns) over kp pairs, float32 accumulation.
 * bf16_avx512bf16 uses vdpbf16ps; the others compute the same products in float32 (exact, since
 * bf16 times bf16 fits float32's significand) in vdpbf16ps's order (odd element of a pair first),
 * so they are its reference on any CPU.
 */
typedef void (*bf16_ukernel_fn)(long kp, const uint32_t *ap, const uint32_t *bp, float *c, long ldc, int mr, int nr,
                                int flags, const float *bias);
typedef struct {
  const char *name;
  int mr; /* rows per A panel (the A panel's stride) */
  bf16_ukernel_fn ukernel;
  /* Pairs [p0, p0+np) of rows [i0, i0+mr) of x [m][k] (zero past m and k) into dst [np][mr]. */
  void (*pack_a)(uint32_t *dst, const float *x, long m, long k, long i0, long p0, long np, int mr);
} bf16_kern;
extern const bf16_kern bf16_generic, bf16_avx2, bf16_avx512, bf16_avx512bf16;
/* The bf16 kernel of this CPU's path (after MKA_ISA), AMX aside (amx_linear). */
const bf16_kern *bf16_kern_get(void);

const kern_table *kern_for(int isa);

/*
 * Integer products on contract 1's weights (quant.c). A tile: `rows` rows of int8 activations (and
 * their int16 copy for the 16-bit kernels) over nb blocks of 32 inputs, by one panel of `cols` weight
 * rows (format Q8 or Q4) repacked by the kernel's `pack` ([block][group of 4 (elem 1) or 2 (elem 2)
 * inputs][nr columns]); per block and column, sw and cw ([nb][nr]) turn the integer dot product of the
 * stored unsigned quants, dot = Σ u·qx, into y's units: y += dx·(sw·dot + cw·sx), sx the block's Σqx
 * as a float (quant.c: for weights with mins, the value that makes dx·sx llama.cpp's Q8_1 sum) and si
 * the block's Σqx as an integer.
 */
typedef struct {
  long nb;
  const int8_t *qa;
  const int16_t *qa16;
  long lda;
  const float *da;
  const float *sa;
  const int32_t *si;
  long ldd;
  const uint8_t *bq;
  const float *sw, *cw;
  int off;
  float *y;
  long ldy;
  int rows, cols, flags, format;
  const float *bias;
} int_tile;

typedef struct {
  const char *name;
  int mr, nr, elem;  /* rows per tile, columns per panel, bytes per packed quant (1: u8 quads, 2: int16 pairs) */
  int wide_acts;     /* the kernels read the activations as int16 */
  /* Blocks [b0, b0+nb) of `cols` weight rows (row_bytes apart) into dst; zero past cols. */
  void (*pack)(uint8_t *dst, const uint8_t *rows, long row_bytes, int format, int symmetric, long b0, long nb, long cols);
  void (*ukernel)(const int_tile *t);
  /* sums[i] = Σ over all blocks for rows i < m of one weight row as stored (m <= 4). */
  void (*rowdot)(float *sums, const uint8_t *row, int format, int symmetric, const int8_t *qa, const int16_t *qa16,
                 const int32_t *si, long lda, const float *da, const float *sa, long ldd, long m, const float *scales, const float *mins,
                 long group, int off);
  /* Blocks of 32 whole inputs of one row, each with multiplier id: q = round-half-even(x·id) clamped to
   * ±127, sums[b] = Σq (NULL: plain C does it). */
  void (*quantize)(const float *x, long blocks, const float *id, int8_t *q, float *sums);
} int_kern;
extern const int_kern int_vnni, int_avx512bw, int_avx2;
/* The integer kernel of this CPU's path (after MKA_ISA), or NULL for the portable one. */
const int_kern *int_kern_get(void);

/* Block b of a Q8/Q4 weight row as 32 unsigned quants (int8 ones xored with 0x80 when symmetric). */
static inline void widen_block(uint8_t *dst, const uint8_t *row, int format, int symmetric, long b) {
  if (format == MKA_Q8) {
    const uint8_t *src = row + b * 32;
    for (int v = 0; v < 32; v++) dst[v] = symmetric ? src[v] ^ 0x80 : src[v];
  } else {
    const uint8_t *src = row + b * 16;
    for (int v = 0; v < 16; v++) {
      dst[v] = src[v] & 15;
      dst[v + 16] = src[v] >> 4;
    }
  }
}

/* Products with at most this many rows skip packing. */
#define SMALL_M_MAX 4

/* Attention tiles: queries x keys (multiples of every path's MR and NR). */
#define ATT_BQ 48
#define ATT_BK 64
#endif

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
 * bf16 B times bf16-rounded A with vdpbf16ps (avx512_bf16; the avx512 table's MR, NR): operands
 * packed as 32-bit pairs of bf16 along k, so k blocks count pairs. Opt-in (MKA_BF16_DOT=1).
 */
typedef struct {
  ukernel_fn ukernel; /* kc = number of k pairs */
  void (*pack_a)(uint32_t *dst, const float *a, int trans, long m, long k, long i0, long k0, long kcb, int mr);
  void (*pack_b)(uint32_t *dst, const uint16_t *b, int trans, long n, long k, long k0, long kcb, long j0, long ns, int nr);
} bf16_dot_fns;
extern const bf16_dot_fns bf16_dot_avx512;
const kern_table *kern_for(int isa);

/* Products with at most this many rows skip packing. */
#define SMALL_M_MAX 4

/* Attention tiles: queries x keys (multiples of every path's MR and NR). */
#define ATT_BQ 48
#define ATT_BK 64
#endif

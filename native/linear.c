/*
 * y = x·Wᵀ + bias for a weight in any format (mka.h's mka_weight). Float32 and 16-bit Hugging Face
 * layouts go through the float32 GEMM (gemm.c, 16-bit widened per tile); BF16P weights through the bf16
 * products: x is rounded to bf16 and packed once per call into panels of the kernel's MR rows, then
 * each task takes a strip of weight panels (32 columns each) and a range of A panels and runs the
 * microkernel over k blocks, the weight panel's k block staying in L2 across the A panels. The weight
 * was packed once (bf16p_pack), so no call reorders it. Contract 1's integer weights go to quant.c
 * (integer products), or with float_products to the float32 GEMM, which widens their rows per tile.
 */
#include "kern.h"
#include <stdlib.h>

int amx_linear(const linear_args *l, int emulated);
int quant_linear(const linear_args *l);

static uint32_t bf16_round_weight(float x) {
  uint32_t w;
  memcpy(&w, &x, 4);
  if ((w & 0x7fffffffu) > 0x7f800000u) return ((w >> 16) | 0x40) & 0xffff;
  return (w + 0x7fff + ((w >> 16) & 1)) >> 16;
}

typedef struct {
  uint32_t *dst;
  const void *w;
  int type;
  long n, k, kp;
} pack_ctx;

static void pack_task(void *p, long panel, int thread) {
  (void)thread;
  const pack_ctx *x = p;
  uint32_t *out = x->dst + (size_t)panel * x->kp * BF16P_NR;
  for (int c = 0; c < BF16P_NR; c++) {
    const long j = panel * BF16P_NR + c;
    if (j >= x->n) {
      for (long q = 0; q < x->kp; q++) out[q * BF16P_NR + c] = 0;
      continue;
    }
    for (long q = 0; q < x->kp; q++) {
      uint32_t half[2] = {0, 0};
      for (int h = 0; h < 2; h++) {
        const long kk = 2 * q + h;
        if (kk >= x->k) continue;
        const size_t at = (size_t)j * x->k + kk;
        if (x->type == MKA_BF16) half[h] = ((const uint16_t *)x->w)[at];
        else if (x->type == MKA_F16) half[h] = bf16_round_weight(f16_to_f32(((const uint16_t *)x->w)[at]));
        else half[h] = bf16_round_weight(((const float *)x->w)[at]);
      }
      out[q * BF16P_NR + c] = half[0] | half[1] << 16;
    }
  }
}

void bf16p_pack(uint32_t *dst, const void *w, int type, long n, long k) {
  pack_ctx x = {dst, w, type, n, k, bf16p_pairs(k)};
  pool_run((n + BF16P_NR - 1) / BF16P_NR, pack_task, &x);
}

void bf16p_row(float *dst, const uint32_t *w, long n, long k, long j) {
  (void)n;
  const long kp = bf16p_pairs(k);
  const uint32_t *col = w + (size_t)(j / BF16P_NR) * kp * BF16P_NR + j % BF16P_NR;
  for (long q = 0; 2 * q < k; q++) {
    const uint32_t word = col[q * BF16P_NR];
    dst[2 * q] = bf16_to_f32((uint16_t)word);
    if (2 * q + 1 < k) dst[2 * q + 1] = bf16_to_f32((uint16_t)(word >> 16));
  }
}

const bf16_kern *bf16_kern_get(void) {
  const mka_cpu *c = cpu_get();
  if (c->bf16 && bf16_avx512bf16.ukernel) return &bf16_avx512bf16;
#if MKA_X86
  if (c->isa == ISA_AVX512) return &bf16_avx512;
  if (c->isa == ISA_AVX2) return &bf16_avx2;
#endif
  return &bf16_generic;
}

typedef struct {
  const linear_args *l;
  const bf16_kern *bk;
  const uint32_t *w;
  uint32_t *pa;
  long kp, kc, mpanels, ns, nstrips, parts, per_part;
} bf16_ctx;

/* A packed by k block, then panel: block k0's panels lie together ([k0·mpanels + a·kcb][mr]), read in one stream. */
static size_t a_offset(const bf16_ctx *x, long k0, long kcb, long a) { return ((size_t)k0 * x->mpanels + (size_t)a * kcb) * x->bk->mr; }

static void bf16_pack_a_task(void *p, long t, int thread) {
  (void)thread;
  const bf16_ctx *x = p;
  const int mr = x->bk->mr;
  for (long k0 = 0; k0 < x->kp; k0 += x->kc) {
    const long kcb = x->kp - k0 < x->kc ? x->kp - k0 : x->kc;
    x->bk->pack_a(x->pa + a_offset(x, k0, kcb, t), x->l->x, x->l->m, x->l->w->k, t * mr, k0, kcb, mr);
  }
}

static void bf16_task(void *p, long t, int thread) {
  (void)thread;
  const bf16_ctx *x = p;
  const linear_args *l = x->l;
  const long n = l->w->n, m = l->m, mr = x->bk->mr;
  const long js = t % x->nstrips, part = t / x->nstrips;
  const long j0 = js * x->ns, ncols = n - j0 < x->ns ? n - j0 : x->ns;
  const long a0 = part * x->per_part, a1 = a0 + x->per_part < x->mpanels ? a0 + x->per_part : x->mpanels;
  for (long k0 = 0; k0 < x->kp; k0 += x->kc) {
    const long kcb = x->kp - k0 < x->kc ? x->kp - k0 : x->kc;
    const int flags = (k0 > 0 || l->accumulate ? UK_LOAD : 0) | (k0 + kcb == x->kp ? UK_LAST : 0);
    for (long q = 0; q < ncols; q += BF16P_NR) {
      const long j = j0 + q;
      const uint32_t *bp = x->w + ((size_t)(j / BF16P_NR) * x->kp + k0) * BF16P_NR;
      const int nr = ncols - q < BF16P_NR ? (int)(ncols - q) : BF16P_NR;
      const float *bias = l->bias ? l->bias + j : NULL;
      for (long a = a0; a < a1; a++) {
        const long i0 = a * mr;
        const int rows = m - i0 < mr ? (int)(m - i0) : (int)mr;
        x->bk->ukernel(kcb, x->pa + a_offset(x, k0, kcb, a), bp, l->y + i0 * n + j, n, rows, nr, flags, bias);
      }
    }
  }
}

/* Products below this many multiply-adds run on the calling thread: waking the pool costs more. */
#define SERIAL_MACS (1L << 17)

static void run(int serial, long ntasks, task_fn fn, void *ctx) {
  if (!serial) {
    pool_run(ntasks, fn, ctx);
    return;
  }
  for (long t = 0; t < ntasks; t++) fn(ctx, t, 0);
}

/* Tasks of a product of m rows by n columns: column strips (multiples of 32) and row parts of whole A panels. */
static void split(long m, long n, long mr, int threads, long *ns, long *nstrips, long *parts, long *per_part, long *mpanels) {
  *mpanels = (m + mr - 1) / mr;
  long s = (n + 4L * threads - 1) / (4L * threads);
  s = (s + BF16P_NR - 1) / BF16P_NR * BF16P_NR;
  *ns = s < BF16P_NR ? BF16P_NR : s > 512 ? 512 : s;
  *nstrips = (n + *ns - 1) / *ns;
  long want = (4L * threads + *nstrips - 1) / *nstrips, most = *mpanels / 4;
  if (want > most) want = most;
  if (want < 1) want = 1;
  *per_part = (*mpanels + want - 1) / want;
  *parts = (*mpanels + *per_part - 1) / *per_part;
}

static int bf16_linear(const linear_args *l) {
  const mka_cpu *cpu = cpu_get();
  if (cpu->amx || cpu->amx_emulated) return amx_linear(l, cpu->amx_emulated);
  const bf16_kern *bk = bf16_kern_get();
  const long m = l->m, n = l->w->n, k = l->w->k;
  const int serial = m * n * k < SERIAL_MACS;
  bf16_ctx x = {.l = l, .bk = bk, .w = l->w->data, .kp = bf16p_pairs(k)};
  split(m, n, bk->mr, serial ? 1 : pool_threads(), &x.ns, &x.nstrips, &x.parts, &x.per_part, &x.mpanels);
  /* k blocks of 1024 pairs: a weight panel's block (128 KB) stays in L2 while every A panel of the task passes */
  x.kc = x.kp < 1024 ? x.kp : 1024;
  x.pa = scratch(0, sizeof(uint32_t) * (size_t)(x.mpanels * x.kp * bk->mr));
  if (!x.pa) return -1;
  run(serial, x.mpanels, bf16_pack_a_task, &x);
  run(serial, x.nstrips * x.parts, bf16_task, &x);
  return 0;
}

int linear(const linear_args *l) {
  const mka_weight *w = l->w;
  if (l->m == 0 || w->n == 0) return 0;
  if (w->k == 0 || (w->format != MKA_BF16P && w->format != MKA_Q8 && w->format != MKA_Q4)) {
    const int type = w->format == MKA_BF16P ? MKA_BF16 : w->format;
    gemm_args g = {l->x, w->data, l->y, type, l->m, w->n, w->k, 1, 0, 1, NULL, l->bias, l->bias ? w->n : 0, 0, l->accumulate};
    return gemm(&g);
  }
  if (w->format == MKA_BF16P) return bf16_linear(l);
  if (w->float_products) {
    /* the GEMM takes the weight itself as B (b_type Q8/Q4) and widens its rows per tile */
    gemm_args g = {.a = l->x, .b = w, .c = l->y, .b_type = w->format, .m = l->m, .n = w->n, .k = w->k, .batch = 1, .trans_b = 1,
                   .bias = l->bias, .bias_len = l->bias ? w->n : 0, .accumulate = l->accumulate};
    return gemm(&g);
  }
  return quant_linear(l);
}

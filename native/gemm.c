/*
 * The packed matrix product. Per call: A is packed once into MR-row panels (all threads), then each
 * task takes a strip of NS columns of one batch item (and, when there are too few strips, a range
 * of rows), packs B's strip k-block by k-block into NR-column panels (16-bit B widened there, and a Q8/Q4
 * weight's rows dequantized there) and
 * runs the microkernel over it: the B micro-panel stays in L1, the A block in L2. Products with
 * m <= SMALL_M_MAX read B in place instead (packing would cost as much as the product).
 */
#include "kern.h"
#include <stdatomic.h>
#include <stdlib.h>

const kern_table *kern_for(int isa) {
#if MKA_X86
  if (isa == ISA_AVX512) return &kern_avx512;
  if (isa == ISA_AVX2) return &kern_avx2;
#endif
  (void)isa;
  return &kern_generic;
}

typedef struct {
  const gemm_args *g;
  const kern_table *kt;
  const float *bias;   /* n floats or NULL */
  float *pa;           /* packed A: one matrix of mpad*k floats per used A index */
  long mpad, a_size;
  const long *used;    /* used A indices (pack tasks) */
  const long *slot;    /* A index -> packed slot */
  long npanels;        /* MR panels of A */
  long nstrips, ns, mparts, rows_per_part, chunk;
  atomic_int failed;   /* a thread could not allocate its B buffer */
} gemm_ctx;

static long a_index(const gemm_args *g, long i) { return g->idx ? g->idx[2 * i] : i; }
static long b_index(const gemm_args *g, long i) { return g->idx ? g->idx[2 * i + 1] : i; }

/* B of batch item i: its values, or for a Q8/Q4 weight (one item) the mka_weight itself, widened per tile. */
static const void *b_item(const gemm_args *g, long i) {
  if (g->b_type == MKA_Q8 || g->b_type == MKA_Q4) return g->b;
  const size_t es = g->b_type == MKA_F32 ? 4 : 2;
  return (const char *)g->b + (size_t)b_index(g, i) * g->k * g->n * es;
}

static void pack_a_task(void *p, long t, int thread) {
  (void)thread;
  const gemm_ctx *x = p;
  const gemm_args *g = x->g;
  const long u = t / x->npanels, panel = t % x->npanels, ia = x->used[u];
  const int mr = x->kt->mr;
  const float *a = g->a + ia * g->m * g->k;
  float *dst = x->pa + x->slot[ia] * x->a_size;
  for (long k0 = 0; k0 < g->k; k0 += x->kt->kc) {
    const long kcb = g->k - k0 < x->kt->kc ? g->k - k0 : x->kt->kc;
    x->kt->pack_a(dst + k0 * x->mpad + panel * mr * kcb, a, g->trans_a, g->m, g->k, panel * mr, k0, kcb, mr);
  }
}

static void compute_task(void *p, long t, int thread) {
  (void)thread;
  const gemm_ctx *x = p;
  const gemm_args *g = x->g;
  const kern_table *kt = x->kt;
  const long per_batch = x->nstrips * x->mparts, bi = t / per_batch;
  const long js = (t % per_batch) % x->nstrips, mp = (t % per_batch) / x->nstrips;
  const long j0 = js * x->ns, ncols = g->n - j0 < x->ns ? g->n - j0 : x->ns;
  const long nspad = (ncols + kt->nr - 1) / kt->nr * kt->nr;
  const long mlo = mp * x->rows_per_part, mhi = mlo + x->rows_per_part < g->m ? mlo + x->rows_per_part : g->m;
  const void *b = b_item(g, bi);
  float *c = g->c + bi * g->m * g->n;
  const float *pa = x->pa + x->slot[a_index(g, bi)] * x->a_size;
  float *bp = scratch(1, sizeof(float) * (size_t)(kt->kc * nspad));
  if (!bp) {
    atomic_store(&((gemm_ctx *)p)->failed, 1);
    return;
  }
  for (long k0 = 0; k0 < g->k; k0 += kt->kc) {
    const long kcb = g->k - k0 < kt->kc ? g->k - k0 : kt->kc;
    const int flags = (k0 > 0 || g->accumulate ? UK_LOAD : 0) | (k0 + kcb == g->k ? UK_LAST : 0);
    const long kp = kcb;
    kt->pack_b(bp, b, g->b_type, g->trans_b, g->n, g->k, k0, kcb, j0, nspad, kt->nr);
    const ukernel_fn uk = kt->ukernel;
    const float *pak = pa + k0 * x->mpad;
    for (long i0 = mlo; i0 < mhi; i0 += kt->mc) {
      const long ie = i0 + kt->mc < mhi ? i0 + kt->mc : mhi;
      for (long q = 0; q < ncols; q += kt->nr) {
        const int nr = ncols - q < kt->nr ? (int)(ncols - q) : kt->nr;
        const float *bias = x->bias ? x->bias + j0 + q : NULL;
        for (long ir = i0; ir < ie; ir += kt->mr) {
          const int mr = ie - ir < kt->mr ? (int)(ie - ir) : kt->mr;
          uk(kp, pak + ir * kp, bp + q * kp, c + ir * g->n + j0 + q, g->n, mr, nr, flags, bias, g->act);
        }
      }
    }
  }
}

static void small_task(void *p, long t, int thread) {
  (void)thread;
  const gemm_ctx *x = p;
  const gemm_args *g = x->g;
  const long chunks = (g->n + x->chunk - 1) / x->chunk, bi = t / chunks, j0 = (t % chunks) * x->chunk;
  const long j1 = j0 + x->chunk < g->n ? j0 + x->chunk : g->n;
  x->kt->small_m(g->a + a_index(g, bi) * g->m * g->k, b_item(g, bi),
                 g->b_type, g->c + bi * g->m * g->n, g->m, g->n, g->k, g->trans_a, g->trans_b, j0, j1, x->bias, g->act,
                 g->accumulate);
}

/* k == 0: the product is zero, so C = act(bias) (or C += that). */
static void empty_k(const gemm_args *g, const float *bias) {
  for (long i = 0; i < g->batch * g->m; i++)
    for (long j = 0; j < g->n; j++) {
      float x = bias ? bias[j] : 0.f;
      if (g->act >= 1 && x < 0.f) x = 0.f;
      if (g->act == 2 && x > 6.f) x = 6.f;
      g->c[i * g->n + j] = g->accumulate ? g->c[i * g->n + j] + x : x;
    }
}

/* Products below this many multiply-adds run on the calling thread: waking the pool costs more. */
#define SERIAL_MACS (1L << 17)

/* pool_run, or a plain loop when the whole product is small. */
static void run(int serial, long ntasks, task_fn fn, void *ctx) {
  if (!serial) {
    pool_run(ntasks, fn, ctx);
    return;
  }
  for (long t = 0; t < ntasks; t++) fn(ctx, t, 0);
}

int gemm(const gemm_args *g) {
  if (g->batch == 0 || g->m == 0 || g->n == 0) return 0;
  const kern_table *kt = kern_for(cpu_get()->isa);
  /* narrow products (attention's P·V with 16-wide heads) waste half of a 32-wide tile: take 16 */
  if (kt == &kern_avx512 && g->n <= 16) kt = &kern_avx2;
  float *bias_n = NULL;
  const float *bias = g->bias;
  if (bias && g->bias_len == 1 && g->n > 1) {
    bias_n = malloc(sizeof(float) * (size_t)g->n);
    if (!bias_n) return -1;
    for (long j = 0; j < g->n; j++) bias_n[j] = g->bias[0];
    bias = bias_n;
  }
  int rc = 0;
  const int serial = g->batch * g->m * g->n * g->k < SERIAL_MACS;
  const int threads = serial ? 1 : pool_threads();
  gemm_ctx x = {.g = g, .kt = kt, .bias = bias};
  if (g->k == 0) {
    empty_k(g, bias);
  } else if (g->m <= SMALL_M_MAX) {
    long chunk = (g->n + 4 * threads - 1) / (4 * threads);
    chunk = chunk < 64 ? 64 : (chunk + 15) / 16 * 16;
    x.chunk = chunk;
    run(serial, g->batch * ((g->n + chunk - 1) / chunk), small_task, &x);
  } else if (g->accumulate && g->act != 0) {
    /* C += act(...): partial sums cannot live in C, so compute into a temporary and add */
    float *tmp = malloc(sizeof(float) * (size_t)(g->batch * g->m * g->n));
    if (!tmp) rc = -1;
    else {
      gemm_args h = *g;
      h.c = tmp;
      h.accumulate = 0;
      rc = gemm(&h);
      for (long i = 0; i < g->batch * g->m * g->n; i++) g->c[i] += tmp[i];
      free(tmp);
    }
  } else {
    const long mr = kt->mr;
    x.mpad = (g->m + mr - 1) / mr * mr;
    x.npanels = x.mpad / mr;
    x.a_size = x.mpad * g->k;
    /* which A matrices are used, each packed once */
    long max_a = 0;
    for (long i = 0; i < g->batch; i++) max_a = a_index(g, i) > max_a ? a_index(g, i) : max_a;
    long *slot = malloc(sizeof(long) * (size_t)(2 * (max_a + 1)));
    if (!slot) rc = -1;
    else {
      long *used = slot + max_a + 1, nused = 0;
      for (long i = 0; i <= max_a; i++) slot[i] = -1;
      for (long i = 0; i < g->batch; i++) {
        const long ia = a_index(g, i);
        if (slot[ia] < 0) {
          slot[ia] = nused;
          used[nused++] = ia;
        }
      }
      x.used = used;
      x.slot = slot;
      x.pa = scratch(0, sizeof(float) * (size_t)(nused * x.a_size));
      x.ns = kt->ns;
      x.nstrips = (g->n + x.ns - 1) / x.ns;
      long want = (4L * threads + g->batch * x.nstrips - 1) / (g->batch * x.nstrips);
      long most = (g->m + 47) / 48;
      x.mparts = want < most ? want : most;
      if (x.mparts < 1) x.mparts = 1;
      x.rows_per_part = ((g->m + x.mparts - 1) / x.mparts + mr - 1) / mr * mr;
      x.mparts = (g->m + x.rows_per_part - 1) / x.rows_per_part;
      if (!x.pa) rc = -1;
      else {
        run(serial, nused * x.npanels, pack_a_task, &x);
        run(serial, g->batch * x.mparts * x.nstrips, compute_task, &x);
        if (atomic_load(&x.failed)) rc = -1;
      }
      free(slot);
    }
  }
  free(bias_n);
  return rc;
}

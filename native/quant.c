/*
 * Products with contract 1's packed integer weights (Q8, Q4; mka.h): y = x·Wᵀ without widening W.
 *
 * x is quantized to int8 once per call, in blocks of 32 inputs each with its own scale exactly as
 * llama.cpp's x86 CPU backend quantizes activations for Q8_0/Q4_0 (Q8_0) and Q4_1 (Q8_1) weights:
 * q = round-half-even(x · 127/max|x|), the block's scale d = max|x|/127 stored as a half (the product
 * uses that rounded d), and for weights with mins the block's s = half(d·Σq) (Q8_1). So a GGUF
 * exported from a packed model gives the same products in both to float32 rounding. With
 * act_per_token (W8A8: SmoothQuant's dynamic per-token activations) one float32 scale per row,
 * d = max|x_t|/127, as contract 1 states. Each block also keeps its sum of quants. A block of 32
 * inputs then contributes to y[i][j]
 *     dx·(sw·Σ qx·qw + (mw − sw·off)·sx)
 * with qw the stored quant (unsigned; int8 ones xored with 0x80, off = 128; symmetric 4-bit off = 8;
 * asymmetric: off = 0 and mw the group's min), sw the weight's group scale, sx = Σ qx (with mins:
 * half(d·Σqx)/dx, so that dx·sx is Q8_1's s): integer dot products within a block, one float
 * multiply-add per block.
 *
 * Rows of x beyond SMALL_ROWS go through a packed GEMM: each task takes a strip of weight rows (output
 * columns), repacks one k block of it at a time into the kernel's panel layout (VNNI: [block][quad][32
 * columns][4 bytes], so one vpdpbusd multiplies 4 inputs of 16 columns by a broadcast quad of x; the
 * 4-bit nibbles widened there) and runs the microkernel over its rows. The repacking costs one pass
 * over the weight bytes per call against m multiply-adds per byte. Fewer rows (decoding) take a row-dot
 * kernel that reads the weight rows as stored. Paths: VNNI (vpdpbusd), AVX-512BW (16-bit vpmaddwd on
 * widened quants), AVX2 (vpmaddubsw on bytes), and portable C, which is every path's reference.
 *
 * With float_products x is not rounded: linear.c hands the weight to the float32 GEMM, whose packing
 * widens its rows a tile at a time (quant_row_range), so the products are the dequantized weight's, as
 * PyTorch computes them from the same file.
 */
#include "kern.h"
#include <math.h>
#include <stdlib.h>

/* Rows up to this many take the row-dot kernel. */
#define SMALL_ROWS 4
/* Blocks of 32 inputs per packed k block. */
#define KBLOCKS 64

/* Bytes of one 32-input block of a row, and the row's bytes. */
static long block_bytes(int format) { return format == MKA_Q8 ? 32 : 16; }

/* Quant v (0..31) of block `b` of weight row `row` as stored (unsigned for Q4; int8 read as uint8 for Q8). */
static inline int stored_quant(const uint8_t *row, int format, long b, int v) {
  if (format == MKA_Q8) return row[b * 32 + v];
  const uint8_t byte = row[b * 16 + (v & 15)];
  return v < 16 ? byte & 15 : byte >> 4;
}

void quant_row_range(float *dst, const mka_weight *w, long j, long k0, long len) {
  /* block by block: a group is a multiple of 32 inputs or the whole row, so a block lies in one group */
  const long kb = (w->k + 31) / 32, groups = (w->k + w->group - 1) / w->group;
  const uint8_t *row = (const uint8_t *)w->data + j * kb * block_bytes(w->format);
  const float *scales = w->scales + j * groups, *mins = w->mins ? w->mins + j * groups : NULL;
  float block[32];
  for (long b = k0 / 32; b * 32 < k0 + len; b++) {
    const long g = b * 32 / w->group;
    const float s = scales[g], m = mins ? mins[g] : 0.f;
    if (w->format == MKA_Q8) {
      const uint8_t *q = row + b * 32;
      if (mins)
        for (int v = 0; v < 32; v++) block[v] = s * (float)q[v] + m;
      else
        for (int v = 0; v < 32; v++) block[v] = s * (float)(int8_t)q[v];
    } else {
      const uint8_t *q = row + b * 16;
      if (mins)
        for (int v = 0; v < 16; v++) {
          block[v] = s * (float)(q[v] & 15) + m;
          block[v + 16] = s * (float)(q[v] >> 4) + m;
        }
      else
        for (int v = 0; v < 16; v++) {
          block[v] = s * (float)((q[v] & 15) - 8);
          block[v + 16] = s * (float)((q[v] >> 4) - 8);
        }
    }
    const long lo = b * 32 > k0 ? b * 32 : k0, hi = b * 32 + 32 < k0 + len ? b * 32 + 32 : k0 + len;
    memcpy(dst + (lo - k0), block + (lo - b * 32), sizeof(float) * (size_t)(hi - lo));
  }
}

void quant_row(float *dst, const mka_weight *w, long j) { quant_row_range(dst, w, j, 0, w->k); }

/* ---- activations ---- */

/* Rows of x [m][k] quantized: q [m][kpad] int8 (zero past k), d, s [m][kb]; q16 the same as int16 when wanted. */
typedef struct {
  const float *x;
  long m, k, kb, kpad;
  int per_token;
  int mins; /* the weight has mins: s as Q8_1's */
  int8_t *q;
  int16_t *q16;
  float *d;
  float *s;
  int32_t *si; /* Σq per block as an integer */
  const int_kern *ik; /* its vector quantize, when it has one */
} act_ctx;

static void quantize_rows(void *p, long r, int thread) {
  (void)thread;
  const act_ctx *a = p;
  const float *x = a->x + r * a->k;
  int8_t *q = a->q + r * a->kpad;
  float *d = a->d + r * a->kb, *s = a->s + r * a->kb;
  float id[KBLOCKS], row_amax = 0.f;
  if (a->per_token)
    for (long i = 0; i < a->k; i++) row_amax = fabsf(x[i]) > row_amax ? fabsf(x[i]) : row_amax;
  for (long b0 = 0; b0 < a->kb; b0 += KBLOCKS) {
    const long nb = a->kb - b0 < KBLOCKS ? a->kb - b0 : KBLOCKS;
    /* multipliers first: per block (or one per row), from max|x|, as llama.cpp: 127/max, 0 for a zero block */
    for (long b = b0; b < b0 + nb; b++) {
      float amax = row_amax;
      if (!a->per_token) {
        const long i0 = b * 32, n = a->k - i0 < 32 ? a->k - i0 : 32;
        amax = 0.f;
        for (long i = 0; i < n; i++) amax = fabsf(x[i0 + i]) > amax ? fabsf(x[i0 + i]) : amax;
      }
      id[b - b0] = amax > 0.f ? 127.f / amax : 0.f;
      d[b] = amax / 127.f;
    }
    /* then the quants: whole blocks by the kernel's vector code when it has one, the rest (a partial last block) here */
    const long whole_end = a->ik && a->ik->quantize ? (a->k / 32 < b0 + nb ? a->k / 32 : b0 + nb) : b0;
    if (whole_end > b0) a->ik->quantize(x + b0 * 32, whole_end - b0, id, q + b0 * 32, s + b0);
    for (long b = whole_end > b0 ? whole_end : b0; b < b0 + nb; b++) {
      const long i0 = b * 32, n = a->k - i0 < 32 ? a->k - i0 : 32;
      const float m = id[b - b0];
      int32_t sum = 0;
      for (long i = 0; i < 32; i++) {
        int v = 0;
        if (i < n) {
          const float t = x[i0 + i] * m;
          v = (int)nearbyintf(t > 127.f ? 127.f : t < -127.f ? -127.f : t);
        }
        q[i0 + i] = (int8_t)v;
        sum += v;
      }
      s[b] = (float)sum;
    }
  }
  for (long b = 0; b < a->kb; b++) a->si[r * a->kb + b] = (int32_t)s[b];
  /* per block: the half-rounded d of llama.cpp's Q8_0/Q8_1 (float32 past the half range, where llama.cpp's is inf) and with mins Q8_1's s */
  if (!a->per_token)
    for (long b = 0; b < a->kb; b++) {
      const float dh = f32_round_f16(d[b]);
      if (a->mins) {
        const float sh = f32_round_f16(d[b] * s[b]);
        s[b] = dh > 0.f && isfinite(dh) && isfinite(sh) ? sh / dh : s[b];
      }
      if (isfinite(dh)) d[b] = dh;
    }
  if (a->q16)
    for (long i = 0; i < a->kpad; i++) a->q16[r * a->kpad + i] = q[i];
}

/* ---- the portable path: every path's reference ---- */

typedef struct {
  const linear_args *l;
  const act_ctx *act;
  long off, groups, cols_per_task;
  const int_kern *ik;
  long ns, nstrips, parts, per_part, panels_a; /* packed GEMM split */
} quant_ctx;

/* Block b's contribution factors for weight row j: sw and mw − sw·off. */
static inline void block_scales(const quant_ctx *x, long j, long b, float *sw, float *cw) {
  const mka_weight *w = x->l->w;
  const long g = b * 32 / w->group;
  *sw = w->scales[j * x->groups + g];
  *cw = (w->mins ? w->mins[j * x->groups + g] : 0.f) - *sw * (float)x->off;
}

static void generic_task(void *p, long t, int thread) {
  (void)thread;
  const quant_ctx *x = p;
  const linear_args *l = x->l;
  const mka_weight *w = l->w;
  const act_ctx *a = x->act;
  const long n = w->n, rb = a->kb * block_bytes(w->format);
  const long j0 = t * x->cols_per_task, j1 = j0 + x->cols_per_task < n ? j0 + x->cols_per_task : n;
  const int xor80 = w->format == MKA_Q8 && !w->mins;
  for (long j = j0; j < j1; j++) {
    const uint8_t *row = (const uint8_t *)w->data + j * rb;
    for (long i = 0; i < l->m; i++) {
      const int8_t *q = a->q + i * a->kpad;
      float acc = 0.f;
      for (long b = 0; b < a->kb; b++) {
        int32_t dot = 0;
        for (int v = 0; v < 32; v++) dot += (stored_quant(row, w->format, b, v) ^ (xor80 ? 0x80 : 0)) * q[b * 32 + v];
        float sw, cw;
        block_scales(x, j, b, &sw, &cw);
        acc += a->d[i * a->kb + b] * (sw * (float)dot + cw * a->s[i * a->kb + b]);
      }
      float *y = l->y + i * n + j;
      const float v = acc + (l->bias ? l->bias[j] : 0.f);
      *y = l->accumulate ? *y + v : v;
    }
  }
}

/* ---- packed GEMM (SIMD paths) ---- */

static void packed_task(void *p, long t, int thread) {
  (void)thread;
  const quant_ctx *x = p;
  const linear_args *l = x->l;
  const mka_weight *w = l->w;
  const act_ctx *a = x->act;
  const int_kern *ik = x->ik;
  const long n = w->n, rb = a->kb * block_bytes(w->format), nr = ik->nr;
  const long js = t % x->nstrips, part = t / x->nstrips;
  const long j0 = js * x->ns, ncols = n - j0 < x->ns ? n - j0 : x->ns;
  const long a0 = part * x->per_part, a1 = a0 + x->per_part < x->panels_a ? a0 + x->per_part : x->panels_a;
  const long panel_bytes = (long)KBLOCKS * 32 * nr * ik->elem;
  uint8_t *buf = scratch(1, (size_t)panel_bytes + sizeof(float) * 2 * KBLOCKS * nr + 64);
  if (!buf) return;
  float *sc = (float *)(buf + panel_bytes), *cc = sc + KBLOCKS * nr;
  for (long q = 0; q < ncols; q += nr) {
    const long cols = ncols - q < nr ? ncols - q : nr;
    for (long b0 = 0; b0 < a->kb; b0 += KBLOCKS) {
      const long nb = a->kb - b0 < KBLOCKS ? a->kb - b0 : KBLOCKS;
      /* this k block of the panel's weight rows, in the kernel's layout, and its per-block scales */
      ik->pack(buf, (const uint8_t *)w->data + (j0 + q) * rb, rb, w->format, !w->mins, b0, nb, cols);
      for (long b = 0; b < nb; b++) {
        const long g = (b0 + b) * 32 / w->group;
        for (long c = 0; c < nr; c++) {
          const long at = (j0 + q + c) * x->groups + g;
          const float sw = c < cols ? w->scales[at] : 0.f;
          sc[b * nr + c] = sw;
          cc[b * nr + c] = c < cols ? (w->mins ? w->mins[at] : 0.f) - sw * (float)x->off : 0.f;
        }
      }
      const int flags = (b0 > 0 || l->accumulate ? UK_LOAD : 0) | (b0 + nb == a->kb ? UK_LAST : 0);
      for (long ap = a0; ap < a1; ap++) {
        const long i0 = ap * ik->mr, rows = l->m - i0 < ik->mr ? l->m - i0 : ik->mr;
        ik->ukernel(&(int_tile){
            .nb = nb, .qa = a->q + i0 * a->kpad + b0 * 32, .qa16 = a->q16 ? a->q16 + i0 * a->kpad + b0 * 32 : NULL, .lda = a->kpad,
            .da = a->d + i0 * a->kb + b0, .sa = a->s + i0 * a->kb + b0, .si = a->si + i0 * a->kb + b0, .ldd = a->kb, .bq = buf, .sw = sc, .cw = cc,
            .off = (int)x->off, .y = l->y + i0 * n + j0 + q, .ldy = n, .rows = (int)rows, .cols = (int)cols, .flags = flags, .format = w->format,
            .bias = l->bias ? l->bias + j0 + q : NULL});
      }
    }
  }
}

/* ---- row-dot kernel for few rows (SIMD paths) ---- */

static void rowdot_task(void *p, long t, int thread) {
  (void)thread;
  const quant_ctx *x = p;
  const linear_args *l = x->l;
  const mka_weight *w = l->w;
  const act_ctx *a = x->act;
  const long n = w->n, rb = a->kb * block_bytes(w->format);
  const long j0 = t * x->cols_per_task, j1 = j0 + x->cols_per_task < n ? j0 + x->cols_per_task : n;
  for (long j = j0; j < j1; j++) {
    float sums[SMALL_ROWS];
    x->ik->rowdot(sums, (const uint8_t *)w->data + j * rb, w->format, !w->mins, a->q, a->q16, a->si, a->kpad, a->d, a->s, a->kb,
                  l->m, w->scales + j * x->groups, w->mins ? w->mins + j * x->groups : NULL, w->group, (int)x->off);
    for (long i = 0; i < l->m; i++) {
      float *y = l->y + i * n + j;
      const float v = sums[i] + (l->bias ? l->bias[j] : 0.f);
      *y = l->accumulate ? *y + v : v;
    }
  }
}

const int_kern *int_kern_get(void) {
  const mka_cpu *c = cpu_get();
#if MKA_X86
  if (c->vnni && int_vnni.ukernel) return &int_vnni;
  if (c->isa == ISA_AVX512 && int_avx512bw.ukernel) return &int_avx512bw;
  if (c->isa == ISA_AVX2 && int_avx2.ukernel) return &int_avx2;
#endif
  (void)c;
  return NULL;
}

int quant_linear(const linear_args *l) {
  const mka_weight *w = l->w;
  const long m = l->m, n = w->n, kb = (w->k + 31) / 32, kpad = kb * 32;
  const int_kern *ik = int_kern_get();
  act_ctx a = {l->x, m, w->k, kb, kpad, w->act_per_token, w->mins != NULL, NULL, NULL, NULL, NULL, NULL, ik};
  const size_t qbytes = (size_t)(m * kpad), q16bytes = ik && ik->wide_acts ? 2 * qbytes : 0;
  uint8_t *mem = scratch(0, qbytes + q16bytes + (size_t)(m * kb) * 12 + 256);
  if (!mem) return -1;
  a.q = (int8_t *)mem;
  a.q16 = q16bytes ? (int16_t *)(mem + ((qbytes + 63) & ~(size_t)63)) : NULL;
  a.d = (float *)(mem + ((qbytes + q16bytes + 127) & ~(size_t)63));
  a.s = a.d + m * kb;
  a.si = (int32_t *)(a.s + m * kb);
  const int threads = pool_threads();
  pool_run(m, quantize_rows, &a);
  quant_ctx x = {.l = l, .act = &a, .groups = (w->k + w->group - 1) / w->group, .ik = ik};
  x.off = w->mins ? 0 : w->format == MKA_Q8 ? 128 : 8;
  if (!ik || m <= SMALL_ROWS) {
    long per = (n + 8L * threads - 1) / (8L * threads);
    x.cols_per_task = per < 8 ? 8 : per;
    pool_run((n + x.cols_per_task - 1) / x.cols_per_task, ik ? rowdot_task : generic_task, &x);
    return 0;
  }
  x.panels_a = (m + ik->mr - 1) / ik->mr;
  long s = (n + 4L * threads - 1) / (4L * threads);
  s = (s + ik->nr - 1) / ik->nr * ik->nr;
  x.ns = s < ik->nr ? ik->nr : s > 512 ? 512 : s;
  x.nstrips = (n + x.ns - 1) / x.ns;
  long want = (4L * threads + x.nstrips - 1) / x.nstrips, most = x.panels_a / 4;
  if (want > most) want = most;
  if (want < 1) want = 1;
  x.per_part = (x.panels_a + want - 1) / want;
  x.parts = (x.panels_a + x.per_part - 1) / x.per_part;
  pool_run(x.nstrips * x.parts, packed_task, &x);
  return 0;
}


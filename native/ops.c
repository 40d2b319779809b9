/* The decoder's other operations, split over the pool where the work is large enough to pay. */
#include "kern.h"
#include <math.h>

static const kern_table *kt(void) { return kern_for(cpu_get()->isa); }

/* Tasks for `units` units of `cost` work each: about 64K work per task, at most 8 per thread. */
static long tasks_for(long units, long cost) {
  long t = units * cost / 65536;
  const long most = 8L * pool_threads();
  if (t > most) t = most;
  if (t > units) t = units;
  return t < 1 ? 1 : t;
}

typedef struct {
  const float *q, *k, *v;
  float *out;
  long B, T, S, nH, nKV, hd, kvB, window, nqb;
  float scale;
} att_ctx;

static long round_up(long x, long to) { return (x + to - 1) / to * to; }

/*
 * Query rows [t0, t1) of one (batch row, head), key tile by key tile with an online softmax. Both
 * products of a tile (scores = Q·Kᵀ, out += P·V) run through the path's packed GEMM microkernel.
 */
static void att_task(void *p, long t, int thread) {
  (void)thread;
  const att_ctx *a = p;
  const kern_table *K = kt();
  if (K == &kern_avx512 && a->hd <= 16) K = &kern_avx2; /* 16-wide heads waste half of a 32-wide tile in P·V */
  const long rows = a->B * a->nH;
  const long qb = a->nqb - 1 - t / rows; /* the longest (last) query blocks first */
  const long b = (t % rows) / a->nH, h = (t % rows) % a->nH;
  const long kvh = h / (a->nH / a->nKV), kb = a->kvB == 1 ? 0 : b;
  const long T = a->T, S = a->S, hd = a->hd, stride = a->nH * hd;
  const long t0 = qb * ATT_BQ, t1 = t0 + ATT_BQ < T ? t0 + ATT_BQ : T, nq = t1 - t0;
  const long mr = K->mr, nr = K->nr, hdp = round_up(hd, nr), qpad = round_up(ATT_BQ, mr);
  /* work: q rows (scaled), packed Q, packed K tile, scores, packed P, packed V tile, output rows */
  const long sizes[] = {round_up(ATT_BQ * hd, 16), round_up(qpad * hd, 16), round_up(ATT_BK * hd, 16), ATT_BQ * ATT_BK,
                        qpad * ATT_BK, round_up(ATT_BK * hdp, 16), round_up(ATT_BQ * hdp, 16), 2 * ATT_BQ};
  long total = 0;
  for (int i = 0; i < 8; i++) total += sizes[i];
  float *w = scratch(3, sizeof(float) * (size_t)total);
  if (!w) return;
  float *qs = w, *qp = qs + sizes[0], *kp = qp + sizes[1], *s = kp + sizes[2], *pp = s + sizes[3], *vp = pp + sizes[4];
  float *o = vp + sizes[5], *mx = o + sizes[6], *l = mx + ATT_BQ;
  const float *q = a->q + (b * T * a->nH + h) * hd;
  const float *kk = a->k + (kb * a->nKV + kvh) * S * hd, *vv = a->v + (kb * a->nKV + kvh) * S * hd;
  long lo[ATT_BQ], hi[ATT_BQ], lo_min = S, hi_max = 0;
  for (long r = 0; r < nq; r++) {
    const long pos = S - T + t0 + r;
    hi[r] = pos + 1;
    lo[r] = a->window > 0 && pos - a->window + 1 > 0 ? pos - a->window + 1 : 0;
    lo_min = lo[r] < lo_min ? lo[r] : lo_min;
    hi_max = hi[r] > hi_max ? hi[r] : hi_max;
    mx[r] = -INFINITY;
    l[r] = 0.f;
    for (long d = 0; d < hd; d++) qs[r * hd + d] = q[(t0 + r) * stride + d] * a->scale;
  }
  if (nq <= 2) { /* decoding: packing would cost more than it saves */
    float *out = a->out + (b * T * a->nH + h) * hd + t0 * stride;
    K->attention_rows(qs, kk, vv, out, stride, nq, lo, hi, hd, s);
    return;
  }
  memset(o, 0, sizeof(float) * (size_t)(nq * hdp));
  for (long ir = 0; ir < nq; ir += mr) K->pack_a(qp + ir * hd, qs, 0, nq, hd, ir, 0, hd, (int)mr);
  for (long s0 = lo_min; s0 < hi_max; s0 += ATT_BK) {
    const long nk = hi_max - s0 < ATT_BK ? hi_max - s0 : ATT_BK;
    /* scores [nq][nk] = Qs · K[s0 : s0+nk]ᵀ */
    K->pack_b(kp, kk, MKA_F32, 1, s0 + nk, hd, 0, hd, s0, round_up(nk, nr), (int)nr);
    for (long jq = 0; jq < nk; jq += nr)
      for (long ir = 0; ir < nq; ir += mr)
        K->ukernel(hd, qp + ir * hd, kp + jq * hd, s + ir * ATT_BK + jq, ATT_BK, (int)(nq - ir < mr ? nq - ir : mr),
                   (int)(nk - jq < nr ? nk - jq : nr), UK_LAST, NULL, 0);
    K->softmax_block(s, nq, nk, lo, hi, s0, mx, l, o, hd, hdp);
    /* out [nq][hd] += P [nq][nk] · V[s0 : s0+nk] */
    for (long ir = 0; ir < nq; ir += mr) K->pack_a(pp + ir * nk, s, 0, nq, ATT_BK, ir, 0, nk, (int)mr);
    K->pack_b(vp, vv, MKA_F32, 0, hd, S, s0, nk, 0, hdp, (int)nr);
    for (long jd = 0; jd < hd; jd += nr)
      for (long ir = 0; ir < nq; ir += mr)
        K->ukernel(nk, pp + ir * nk, vp + jd * nk, o + ir * hdp + jd, hdp, (int)(nq - ir < mr ? nq - ir : mr),
                   (int)(hd - jd < nr ? hd - jd : nr), UK_LOAD | UK_LAST, NULL, 0);
  }
  float *out = a->out + (b * T * a->nH + h) * hd;
  for (long r = 0; r < nq; r++) {
    const float inv = 1.f / l[r];
    for (long d = 0; d < hd; d++) out[(t0 + r) * stride + d] = o[r * hdp + d] * inv;
  }
}

/* Values [s0, s0+nk) (rows of hd) as BF16P panels of 32 dimensions over key pairs: P·V's "weight" (zero past nk and hd). */
static void pack_values(uint32_t *dst, const float *v, long s0, long nk, long hd) {
  const long panels = (hd + BF16P_NR - 1) / BF16P_NR, pairs = ATT_BK / 2;
  memset(dst, 0, sizeof(uint32_t) * (size_t)(panels * pairs * BF16P_NR));
  for (long j = 0; j < nk; j++) {
    const float *row = v + (s0 + j) * hd;
    const int shift = (int)(j & 1) * 16;
    uint32_t *col = dst + (j / 2) * BF16P_NR;
    for (long d = 0; d < hd; d++) col[(d / BF16P_NR) * pairs * BF16P_NR + d % BF16P_NR] |= f32_to_bf16(row[d]) << shift;
  }
}

/*
 * The bf16 products' attention: query rows [t0, t1) of every head of one kv head (the g heads that share
 * it stacked, so each key and value tile is packed once for all of them), scores and P·V as bf16 products
 * (q, k, p and v rounded to bf16, float32 accumulation), the online softmax in float32.
 */
static void att_task_bf16(void *p, long t, int thread) {
  (void)thread;
  const att_ctx *a = p;
  const kern_table *K = kt();
  const bf16_kern *bk = bf16_kern_get();
  const long rows = a->B * a->nKV, g = a->nH / a->nKV;
  const long qb = a->nqb - 1 - t / rows; /* the longest (last) query blocks first */
  const long b = (t % rows) / a->nKV, kvh = (t % rows) % a->nKV, kb = a->kvB == 1 ? 0 : b;
  const long T = a->T, S = a->S, hd = a->hd, stride = a->nH * hd, mr = bk->mr;
  const long t0 = qb * ATT_BQ, t1 = t0 + ATT_BQ < T ? t0 + ATT_BQ : T, nq = t1 - t0, R = g * nq;
  const long pairs = bf16p_pairs(hd), hdp = round_up(hd, BF16P_NR), apan = (R + mr - 1) / mr, dpan = hdp / BF16P_NR;
  /* work: q rows (scaled), packed Q, packed K tile, scores, packed P, packed V tile, output rows, max, sum, ranges */
  const long sizes[] = {round_up(R * hd, 16), apan * pairs * mr, (ATT_BK / BF16P_NR) * pairs * BF16P_NR, R * ATT_BK,
                        apan * (ATT_BK / 2) * mr, dpan * (ATT_BK / 2) * BF16P_NR, R * hdp, round_up(R, 16), round_up(R, 16),
                        round_up(2 * R * 2, 16)};
  long total = 0;
  for (int i = 0; i < 10; i++) total += sizes[i];
  float *w = scratch(3, sizeof(float) * (size_t)total);
  if (!w) return;
  float *qs = w, *s = qs + sizes[0] + sizes[1] + sizes[2], *o = s + sizes[3] + sizes[4] + sizes[5], *mx = o + sizes[6], *l = mx + sizes[7];
  uint32_t *qp = (uint32_t *)(qs + sizes[0]), *kp = qp + sizes[1], *pp = (uint32_t *)(s + sizes[3]), *vp = pp + sizes[4];
  long *lo = (long *)(l + sizes[8]), *hi = lo + R;
  const float *kk = a->k + (kb * a->nKV + kvh) * S * hd, *vv = a->v + (kb * a->nKV + kvh) * S * hd;
  long lo_min = S, hi_max = 0;
  for (long hh = 0; hh < g; hh++) {
    const float *q = a->q + (b * T * a->nH + kvh * g + hh) * hd;
    for (long r = 0; r < nq; r++) {
      const long i = hh * nq + r, pos = S - T + t0 + r;
      hi[i] = pos + 1;
      lo[i] = a->window > 0 && pos - a->window + 1 > 0 ? pos - a->window + 1 : 0;
      lo_min = lo[i] < lo_min ? lo[i] : lo_min;
      hi_max = hi[i] > hi_max ? hi[i] : hi_max;
      mx[i] = -INFINITY;
      l[i] = 0.f;
      for (long d = 0; d < hd; d++) qs[i * hd + d] = q[(t0 + r) * stride + d] * a->scale;
    }
  }
  memset(o, 0, sizeof(float) * (size_t)(R * hdp));
  for (long ap = 0; ap < apan; ap++) bk->pack_a(qp + ap * pairs * mr, qs, R, hd, ap * mr, 0, pairs, (int)mr);
  for (long s0 = lo_min; s0 < hi_max; s0 += ATT_BK) {
    const long nk = hi_max - s0 < ATT_BK ? hi_max - s0 : ATT_BK;
    /* scores [R][nk] = Qs · K[s0 : s0+nk]ᵀ: the key tile as BF16P panels of 32 keys (pack_a's [pair][32 rows] layout) */
    for (long P = 0; P < ATT_BK / BF16P_NR; P++) bk->pack_a(kp + P * pairs * BF16P_NR, kk + s0 * hd, nk, hd, P * BF16P_NR, 0, pairs, BF16P_NR);
    for (long P = 0; P * BF16P_NR < nk; P++)
      for (long ap = 0; ap < apan; ap++)
        bk->ukernel(pairs, qp + ap * pairs * mr, kp + P * pairs * BF16P_NR, s + ap * mr * ATT_BK + P * BF16P_NR, ATT_BK,
                    (int)(R - ap * mr < mr ? R - ap * mr : mr), (int)(nk - P * BF16P_NR < BF16P_NR ? nk - P * BF16P_NR : BF16P_NR),
                    UK_LAST, NULL);
    K->softmax_block(s, R, nk, lo, hi, s0, mx, l, o, hd, hdp);
    if (nk < ATT_BK)
      for (long i = 0; i < R; i++) memset(s + i * ATT_BK + nk, 0, sizeof(float) * (size_t)(ATT_BK - nk));
    /* out [R][hd] += P [R][nk] · V[s0 : s0+nk] */
    for (long ap = 0; ap < apan; ap++) bk->pack_a(pp + ap * (ATT_BK / 2) * mr, s, R, ATT_BK, ap * mr, 0, ATT_BK / 2, (int)mr);
    pack_values(vp, vv, s0, nk, hd);
    for (long D = 0; D < dpan; D++)
      for (long ap = 0; ap < apan; ap++)
        bk->ukernel(ATT_BK / 2, pp + ap * (ATT_BK / 2) * mr, vp + D * (ATT_BK / 2) * BF16P_NR, o + ap * mr * hdp + D * BF16P_NR, hdp,
                    (int)(R - ap * mr < mr ? R - ap * mr : mr), (int)(hd - D * BF16P_NR < BF16P_NR ? hd - D * BF16P_NR : BF16P_NR),
                    UK_LOAD | UK_LAST, NULL);
  }
  for (long hh = 0; hh < g; hh++) {
    float *out = a->out + (b * T * a->nH + kvh * g + hh) * hd;
    for (long r = 0; r < nq; r++) {
      const long i = hh * nq + r;
      const float inv = 1.f / l[i];
      for (long d = 0; d < hd; d++) out[(t0 + r) * stride + d] = o[i * hdp + d] * inv;
    }
  }
}

void attention(const float *q, const float *k, const float *v, float *out, long B, long T, long S, long nH, long nKV,
               long hd, long kvB, long window, float scale, int bf16) {
  att_ctx a = {q, k, v, out, B, T, S, nH, nKV, hd, kvB, window, (T + ATT_BQ - 1) / ATT_BQ, scale};
  /* bf16 products pay where there are query blocks to pack; decoding's few rows read keys in place in float32 */
  if (bf16 && T > 2) pool_run(B * nKV * a.nqb, att_task_bf16, &a);
  else pool_run(B * nH * a.nqb, att_task, &a);
}

typedef struct {
  const float *x, *w;
  float *out;
  long rows, n, per;
  float eps;
} rms_ctx;

static void rms_task(void *p, long t, int thread) {
  (void)thread;
  const rms_ctx *r = p;
  const long r0 = t * r->per, r1 = r0 + r->per < r->rows ? r0 + r->per : r->rows;
  kt()->rmsnorm_rows(r->x, r->w, r->out, r0, r1, r->n, r->eps);
}

void rmsnorm(const float *x, const void *w, int w_type, float *out, long rows, long n, float eps) {
  float *wf = scratch(2, sizeof(float) * (size_t)(n > 0 ? n : 1));
  if (!wf) return;
  kt()->widen(wf, w, w_type, (size_t)n);
  const long tasks = tasks_for(rows, n);
  rms_ctx r = {x, wf, out, rows, n, (rows + tasks - 1) / tasks, eps};
  pool_run(rows == 0 ? 0 : (rows + r.per - 1) / r.per, rms_task, &r);
}

typedef struct {
  float *x;
  const float *cos, *sin;
  long rows, T, heads, hd, per;
} rope_ctx;

static void rope_task(void *p, long t, int thread) {
  (void)thread;
  const rope_ctx *r = p;
  const long r0 = t * r->per, r1 = r0 + r->per < r->rows ? r0 + r->per : r->rows;
  kt()->rope_rows(r->x, r->cos, r->sin, r0, r1, r->T, r->heads, r->hd);
}

void rope(float *x, const float *cos, const float *sin, long B, long T, long heads, long hd) {
  const long rows = B * T * heads, tasks = tasks_for(rows, hd);
  rope_ctx r = {x, cos, sin, rows, T, heads, hd, (rows + tasks - 1) / tasks};
  pool_run(rows == 0 ? 0 : (rows + r.per - 1) / r.per, rope_task, &r);
}

typedef struct {
  const float *g, *u;
  float *out;
  long n, per;
} silu_ctx;

static void silu_task(void *p, long t, int thread) {
  (void)thread;
  const silu_ctx *s = p;
  const long i0 = t * s->per, i1 = i0 + s->per < s->n ? i0 + s->per : s->n;
  kt()->silu_mul(s->g, s->u, s->out, i0, i1);
}

void silu_mul(const float *gate, const float *up, float *out, long n) {
  const long tasks = tasks_for((n + 1023) / 1024, 1024 * 8);
  silu_ctx s = {gate, up, out, n, ((n + tasks - 1) / tasks + 15) / 16 * 16};
  pool_run(n == 0 ? 0 : (n + s.per - 1) / s.per, silu_task, &s);
}

typedef struct {
  const void *src;
  int type;
  long n, per; /* values per row (gather) or in all (widen) */
  const int32_t *ids;
  long count;
  float *out;
  long rows; /* gather of a BF16P table: its rows */
  const mka_weight *table; /* gather: the table */
} widen_ctx;

static void gather_task(void *p, long t, int thread) {
  (void)thread;
  const widen_ctx *w = p;
  const size_t es = w->type == MKA_F32 ? 4 : 2;
  const long r0 = t * w->per, r1 = r0 + w->per < w->count ? r0 + w->per : w->count;
  for (long r = r0; r < r1; r++) {
    if (w->type == MKA_BF16P) bf16p_row(w->out + r * w->n, w->src, w->rows, w->n, w->ids[r]);
    else if (w->type == MKA_Q8 || w->type == MKA_Q4) quant_row(w->out + r * w->n, w->table, w->ids[r]);
    else kt()->widen(w->out + r * w->n, (const char *)w->src + (size_t)w->ids[r] * w->n * es, w->type, (size_t)w->n);
  }
}

void gather_rows(const mka_weight *table, const int32_t *ids, long count, float *out) {
  const long n = table->k, tasks = tasks_for(count, n);
  widen_ctx w = {table->data, table->format, n, (count + tasks - 1) / tasks, ids, count, out, table->n, table};
  pool_run(count == 0 ? 0 : (count + w.per - 1) / w.per, gather_task, &w);
}

static void widen_task(void *p, long t, int thread) {
  (void)thread;
  const widen_ctx *w = p;
  const size_t es = w->type == MKA_F32 ? 4 : 2;
  const long i0 = t * w->per, i1 = i0 + w->per < w->n ? i0 + w->per : w->n;
  kt()->widen(w->out + i0, (const char *)w->src + (size_t)i0 * es, w->type, (size_t)(i1 - i0));
}

void to_float32(const void *src, int type, float *out, long n) {
  const long tasks = tasks_for((n + 1023) / 1024, 1024 * 2);
  widen_ctx w = {src, type, n, ((n + tasks - 1) / tasks + 15) / 16 * 16, NULL, 0, out, 0, NULL};
  pool_run(n == 0 ? 0 : (n + w.per - 1) / w.per, widen_task, &w);
}

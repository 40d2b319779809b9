/*
 * A whole decoder layer in one call: the op-by-op path's kernels (rmsnorm, gemm, rope, attention,
 * silu_mul) run in the same order on the same operands, so the result is the same to the bit, without
 * a tfjs dispatch, an output allocation and a thread-pool wake-up per op. For small models those, not
 * the arithmetic, are most of the time.
 */
#include "mka.h"
#include <stdlib.h>

/* Largest per-call buffer kept for the next call (a 512-token pass of a 4096-wide model needs ~90 MB). */
#define LAYER_SCRATCH ((size_t)256 << 20)

/* out [m][n] (= or +=) in [m][k] · Wᵀ + bias, as the MkaLinear kernel computes it. */
static int project(const float *in, const mka_weight *w, const float *bias, float *out, long m, int accumulate) {
  linear_args l = {in, m, w, bias, out, accumulate};
  return linear(&l);
}

/* dst [B][nKV][S0+T][hd]: each row's cached positions (row 0's when kvB = 1), then its new ones from src [B][T][nKV][hd]. */
static void gather_kv(float *dst, const float *past, const float *src, long B, long T, long nKV, long hd, long S0,
                      long kvB) {
  const long S = S0 + T;
  for (long b = 0; b < B; b++)
    for (long g = 0; g < nKV; g++) {
      float *d = dst + (b * nKV + g) * S * hd;
      if (S0 > 0) memcpy(d, past + ((kvB == 1 ? 0 : b) * nKV + g) * S0 * hd, sizeof(float) * (size_t)(S0 * hd));
      for (long t = 0; t < T; t++) memcpy(d + (S0 + t) * hd, src + ((b * T + t) * nKV + g) * hd, sizeof(float) * (size_t)hd);
    }
}

int decoder_layer(const layer_args *a) {
  const long rows = a->B * a->T, H = a->H, qw = a->nH * a->hd, kw = a->nKV * a->hd, S = a->S0 + a->T;
  const size_t kv = (size_t)(a->B * a->nKV * S * a->hd);
  const size_t n_xn = (size_t)(rows * H), n_q = (size_t)(rows * qw), n_k = (size_t)(rows * kw),
               n_f = (size_t)(rows * a->F);
  const size_t n_kv = a->k_out ? 0 : 2 * kv;
  const size_t bytes = sizeof(float) * (n_xn + 2 * n_q + 2 * n_k + 2 * n_f + n_kv);
  /* up to LAYER_SCRATCH bytes are kept between calls: a fresh allocation costs page faults on every layer */
  float *buf = bytes <= LAYER_SCRATCH ? scratch(4, bytes) : malloc(bytes);
  if (!buf) return -1;
  float *xn = buf, *q = xn + n_xn, *att = q + n_q, *k = att + n_q, *v = k + n_k, *gate = v + n_k, *up = gate + n_f;
  float *K = a->k_out ? a->k_out : up + n_f, *V = a->k_out ? a->v_out : K + kv;
  int rc = 0;
  /* attention half: h = x + o_proj(attention(rope(q), rope(k), v)) on rmsnorm(x) */
  rmsnorm(a->x, a->norm1, MKA_F32, xn, rows, H, a->eps);
  rc |= project(xn, &a->w[DL_WQ], a->bias[DL_WQ], q, rows, 0);
  rc |= project(xn, &a->w[DL_WK], a->bias[DL_WK], k, rows, 0);
  rc |= project(xn, &a->w[DL_WV], a->bias[DL_WV], v, rows, 0);
  rope(q, a->cos, a->sin, a->B, a->T, a->nH, a->hd);
  rope(k, a->cos, a->sin, a->B, a->T, a->nKV, a->hd);
  gather_kv(K, a->past_k, k, a->B, a->T, a->nKV, a->hd, a->S0, a->kvB);
  gather_kv(V, a->past_v, v, a->B, a->T, a->nKV, a->hd, a->S0, a->kvB);
  attention(q, K, V, att, a->B, a->T, S, a->nH, a->nKV, a->hd, a->B, a->window, a->scale, a->bf16_attention);
  memcpy(a->h, a->x, sizeof(float) * n_xn);
  rc |= project(att, &a->w[DL_WO], a->bias[DL_WO], a->h, rows, 1);
  /* MLP half: h += down_proj(silu(gate_proj) * up_proj) on rmsnorm(h) */
  rmsnorm(a->h, a->norm2, MKA_F32, xn, rows, H, a->eps);
  rc |= project(xn, &a->w[DL_WG], a->bias[DL_WG], gate, rows, 0);
  rc |= project(xn, &a->w[DL_WU], a->bias[DL_WU], up, rows, 0);
  silu_mul(gate, up, gate, rows * a->F);
  rc |= project(gate, &a->w[DL_WD], a->bias[DL_WD], a->h, rows, 1);
  if (bytes > LAYER_SCRATCH) free(buf);
  return rc ? -1 : 0;
}

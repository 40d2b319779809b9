/*
 * The AMX-BF16 product, written once over tile operations (T_* macros) that kern_amx.c defines twice:
 * as the AMX instructions, and as plain C on an emulated tile file, so the same tile schedule (which
 * tiles are loaded from where, with which strides, in which order) runs and is tested on any CPU.
 * Tiles: 0-3 C (2x2 blocks of 16x16 float32), 4-5 A (16 rows x 32 bf16), 6-7 B (16 pairs x 16 columns).
 */

static void FN(amx_task)(void *p, long t, int thread) {
  (void)thread;
  const amx_ctx *x = p;
  const linear_args *l = x->l;
  const long n = l->w->n, m = l->m, kp = x->kp;
  const long js = t % x->nstrips, part = t / x->nstrips;
  const long j0 = js * x->ns, j1 = j0 + x->ns < n ? j0 + x->ns : n;
  const long b0 = part * x->per_part, b1 = b0 + x->per_part < x->mblocks ? b0 + x->per_part : x->mblocks;
  const long lda = 2 * kp * 2; /* bytes per row of packed A */
  float out[32 * 32] __attribute__((aligned(64)));
  T_DECLARE;
  T_CONFIG(&x->cfg);
  for (long mb = b0; mb < b1; mb++) {
    const uint16_t *a = x->pa + (size_t)mb * 32 * 2 * kp;
    for (long j = j0; j < j1; j += BF16P_NR) {
      const uint32_t *w = x->w + (size_t)(j / BF16P_NR) * kp * BF16P_NR;
      T_ZERO(0);
      T_ZERO(1);
      T_ZERO(2);
      T_ZERO(3);
      for (long q = 0; q < kp; q += 16) {
        T_LOAD(4, a + 2 * q, lda);
        T_LOAD(5, a + 16 * 2 * kp + 2 * q, lda);
        T_LOAD(6, w + q * BF16P_NR, BF16P_NR * 4);
        T_LOAD(7, w + q * BF16P_NR + 16, BF16P_NR * 4);
        T_DP(0, 4, 6);
        T_DP(1, 4, 7);
        T_DP(2, 5, 6);
        T_DP(3, 5, 7);
      }
      T_STORE(0, out, 32 * 4);
      T_STORE(1, out + 16, 32 * 4);
      T_STORE(2, out + 16 * 32, 32 * 4);
      T_STORE(3, out + 16 * 32 + 16, 32 * 4);
      const long rows = m - mb * 32 < 32 ? m - mb * 32 : 32, cols = j1 - j < BF16P_NR ? j1 - j : BF16P_NR;
      for (long r = 0; r < rows; r++) {
        float *y = l->y + (mb * 32 + r) * n + j;
        for (long c = 0; c < cols; c++) {
          float v = out[r * 32 + c];
          if (l->bias) v += l->bias[j + c];
          y[c] = l->accumulate ? y[c] + v : v;
        }
      }
    }
  }
  T_RELEASE();
}

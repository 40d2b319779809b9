/*
 * Plain-C kernels compiled once per instruction-set path (included by kern_<isa>.c with FN() naming
 * the copy and the file's target pragma letting the compiler vectorise for it). The including file
 * defines FN(widen) first.
 */
#include <math.h>

/* Scalar epilogue of one C element: (C +) x (+ bias), activation. */
static inline float FN(finish)(float x, float old, int flags, const float *bias, long j, int act) {
  if (flags & UK_LOAD) x += old;
  if (flags & UK_LAST) {
    if (bias) x += bias[j];
    if (act == 1) x = x < 0.f ? 0.f : x;
    else if (act == 2) x = x < 0.f ? 0.f : (x > 6.f ? 6.f : x);
  }
  return x;
}

/* A partial tile (mr x nr valid of a register tile whose rows lie ldt floats apart in tmp) stored into C. */
static void FN(store_partial)(const float *tmp, int ldt, float *c, long ldc, int mr, int nr, int flags,
                              const float *bias, int act) {
  for (int r = 0; r < mr; r++)
    for (int j = 0; j < nr; j++) c[r * ldc + j] = FN(finish)(tmp[r * ldt + j], c[r * ldc + j], flags, bias, j, act);
}

/* Rows i0..i0+mr-1 (zero past m), k range [k0, k0+kcb) of op(A) into dst[kk][r]. */
static void FN(pack_a)(float *dst, const float *a, int trans, long m, long k, long i0, long k0, long kcb, int mr) {
  if (!trans) {
    for (int r = 0; r < mr; r++) {
      if (i0 + r < m) {
        const float *src = a + (i0 + r) * k + k0;
        for (long kk = 0; kk < kcb; kk++) dst[kk * mr + r] = src[kk];
      } else {
        for (long kk = 0; kk < kcb; kk++) dst[kk * mr + r] = 0.f;
      }
    }
  } else {
    long valid = m - i0 < mr ? m - i0 : mr;
    for (long kk = 0; kk < kcb; kk++) {
      const float *src = a + (k0 + kk) * m + i0;
      for (int r = 0; r < valid; r++) dst[kk * mr + r] = src[r];
      for (int r = (int)valid; r < mr; r++) dst[kk * mr + r] = 0.f;
    }
  }
}

/*
 * Columns [j0, j0+ns) (zero past n), k range [k0, k0+kcb) of op(B) into NR-wide panels:
 * dst[panel][kk][c]. 16-bit values are widened here, one row piece at a time, and with Bᵀ a Q8/Q4
 * weight (b the mka_weight) has its rows' pieces dequantized here.
 */
static void FN(pack_b)(float *dst, const void *b, int type, int trans, long n, long k, long k0, long kcb, long j0,
                       long ns, int nr) {
  const size_t es = type == MKA_F32 ? 4 : 2;
  float row[512];
  for (long q = 0; q < ns; q += nr) {
    float *panel = dst + q * kcb;
    const long cols = n - (j0 + q) < nr ? n - (j0 + q) : nr;
    if (!trans) {
      for (long kk = 0; kk < kcb; kk++) {
        const char *src = (const char *)b + ((k0 + kk) * n + j0 + q) * es;
        float *d = panel + kk * nr;
        if (cols <= 0) {
          for (int c = 0; c < nr; c++) d[c] = 0.f;
          continue;
        }
        if (type == MKA_F32) memcpy(d, src, (size_t)cols * 4);
        else FN(widen)(d, src, type, (size_t)cols);
        for (long c = cols; c < nr; c++) d[c] = 0.f;
      }
    } else {
#ifdef TRANSPOSE8
      /* float32 Bᵀ: 8x8 blocks transposed in registers, so each store writes 8 adjacent floats */
      if (type == MKA_F32 && cols > 0) {
        const long c8 = cols / 8 * 8, k8 = kcb / 8 * 8;
        const float *bt = (const float *)b + (j0 + q) * k + k0;
        for (long c = 0; c < c8; c += 8)
          for (long kk = 0; kk < k8; kk += 8) TRANSPOSE8(bt + c * k + kk, k, panel + kk * nr + c, nr);
        for (long c = 0; c < c8; c++)
          for (long kk = k8; kk < kcb; kk++) panel[kk * nr + c] = bt[c * k + kk];
        for (long c = c8; c < nr; c++)
          for (long kk = 0; kk < kcb; kk++) panel[kk * nr + c] = c < cols ? bt[c * k + kk] : 0.f;
        continue;
      }
#endif
      for (long c = 0; c < nr; c++) {
        if (c >= cols) {
          for (long kk = 0; kk < kcb; kk++) panel[kk * nr + c] = 0.f;
          continue;
        }
        const int quant = type == MKA_Q8 || type == MKA_Q4;
        const char *src = quant ? NULL : (const char *)b + ((j0 + q + c) * k + k0) * es;
        for (long k1 = 0; k1 < kcb; k1 += 512) {
          const long len = kcb - k1 < 512 ? kcb - k1 : 512;
          const float *s;
          if (quant) {
            quant_row_range(row, (const mka_weight *)b, j0 + q + c, k0 + k1, len);
            s = row;
          } else if (type == MKA_F32) {
            s = (const float *)src + k1;
          } else {
            FN(widen)(row, src + k1 * es, type, (size_t)len);
            s = row;
          }
          float *d = panel + k1 * nr + c;
          for (long kk = 0; kk < len; kk++) d[kk * nr] = s[kk];
        }
      }
    }
  }
}

/* Sum of x[i] * y[i] with 16 independent partial sums (vectorisable without reassociation). */
static inline float FN(dot)(const float *x, const float *y, long n) {
  float acc[16] = {0};
  long i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; l++) acc[l] += x[i + l] * y[i + l];
  float s = 0.f;
  for (; i < n; i++) s += x[i] * y[i];
  for (int l = 0; l < 16; l += 2) s += acc[l] + acc[l + 1];
  return s;
}

#define SMALL_KB 256
#define SMALL_NB 64

/* Small-m product (m <= SMALL_M_MAX) for columns [j0, j1), reading B in place (16-bit widened per piece). */
static void FN(small_m)(const float *a, const void *b, int type, float *c, long m, long n, long k, int trans_a,
                        int trans_b, long j0, long j1, const float *bias, int act, int accumulate) {
  const size_t es = type == MKA_F32 ? 4 : 2;
  float arow[SMALL_M_MAX][SMALL_KB];
  float bw[SMALL_KB > SMALL_NB ? SMALL_KB : SMALL_NB];
  const int flags = UK_LAST | (accumulate ? UK_LOAD : 0);
  if (trans_b) {
    /* c[r][j] = dot(A row r, B row j), four B rows at a time sharing each load of A */
    float bw4[4][SMALL_KB];
    for (long jb = j0; jb < j1; jb += 4) {
      const long nc = j1 - jb < 4 ? j1 - jb : 4;
      float sum[SMALL_M_MAX][4] = {{0}};
      for (long k0 = 0; k0 < k; k0 += SMALL_KB) {
        const long kb = k - k0 < SMALL_KB ? k - k0 : SMALL_KB;
        const float *ar[SMALL_M_MAX];
        for (long r = 0; r < m; r++) {
          if (!trans_a) ar[r] = a + r * k + k0;
          else {
            for (long kk = 0; kk < kb; kk++) arow[r][kk] = a[(k0 + kk) * m + r];
            ar[r] = arow[r];
          }
        }
        const float *bj[4];
        for (long c = 0; c < 4; c++) {
          if (type == MKA_Q8 || type == MKA_Q4) {
            if (c < nc) quant_row_range(bw4[c], (const mka_weight *)b, jb + c, k0, kb);
            bj[c] = c < nc ? bw4[c] : bj[0];
            continue;
          }
          const char *src = (const char *)b + ((jb + (c < nc ? c : 0)) * k + k0) * es;
          if (type == MKA_F32) bj[c] = (const float *)src;
          else if (c < nc) {
            FN(widen)(bw4[c], src, type, (size_t)kb);
            bj[c] = bw4[c];
          } else bj[c] = bj[0];
        }
        for (long r = 0; r < m; r++) {
          float a0[16] = {0}, a1[16] = {0}, a2[16] = {0}, a3[16] = {0};
          const float *x = ar[r], *y0 = bj[0], *y1 = bj[1], *y2 = bj[2], *y3 = bj[3];
          long kk = 0;
          for (; kk + 16 <= kb; kk += 16)
            for (int l = 0; l < 16; l++) {
              const float xv = x[kk + l];
              a0[l] += xv * y0[kk + l];
              a1[l] += xv * y1[kk + l];
              a2[l] += xv * y2[kk + l];
              a3[l] += xv * y3[kk + l];
            }
          float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
          for (; kk < kb; kk++) {
            s0 += x[kk] * y0[kk];
            s1 += x[kk] * y1[kk];
            s2 += x[kk] * y2[kk];
            s3 += x[kk] * y3[kk];
          }
          for (int l = 0; l < 16; l++) {
            s0 += a0[l];
            s1 += a1[l];
            s2 += a2[l];
            s3 += a3[l];
          }
          sum[r][0] += s0;
          sum[r][1] += s1;
          sum[r][2] += s2;
          sum[r][3] += s3;
        }
      }
      for (long r = 0; r < m; r++)
        for (long j = jb; j < jb + nc; j++) {
          float *cj = c + r * n + j;
          float x = FN(finish)(sum[r][j - jb], 0.f, UK_LAST, bias, j, act);
          *cj = accumulate ? *cj + x : x;
        }
    }
  } else {
    /* c[r][j0:j1] = sum_k A[r][k] * B[k][j0:j1], SMALL_NB columns at a time */
    for (long jb = j0; jb < j1; jb += SMALL_NB) {
      const long nb = j1 - jb < SMALL_NB ? j1 - jb : SMALL_NB;
      float acc[SMALL_M_MAX][SMALL_NB] = {{0}};
      for (long kk = 0; kk < k; kk++) {
        const char *src = (const char *)b + (kk * n + jb) * es;
        const float *bk;
        if (type == MKA_F32) bk = (const float *)src;
        else {
          FN(widen)(bw, src, type, (size_t)nb);
          bk = bw;
        }
        for (long r = 0; r < m; r++) {
          const float ar = trans_a ? a[kk * m + r] : a[r * k + kk];
          if (nb == SMALL_NB)
            for (int j = 0; j < SMALL_NB; j++) acc[r][j] += ar * bk[j];
          else
            for (long j = 0; j < nb; j++) acc[r][j] += ar * bk[j];
        }
      }
      for (long r = 0; r < m; r++)
        for (long j = 0; j < nb; j++) {
          float *cj = c + r * n + jb + j;
          float x = FN(finish)(acc[r][j], 0.f, UK_LAST, bias, jb + j, act);
          *cj = accumulate ? *cj + x : x;
        }
    }
  }
  (void)flags;
}

/* expf to ~2 ulp without branches (vectorisable): 2^n * p(r), r = x - n ln2. */
static inline float FN(exp)(float x) {
  x = x < -87.33654f ? -87.33654f : (x > 88.37626f ? 88.37626f : x);
  const float n = (x * 1.44269504f + 12582912.f) - 12582912.f;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  int32_t e = ((int32_t)n + 127) << 23;
  float scale;
  memcpy(&scale, &e, 4);
  return p * scale;
}

/*
 * One online-softmax step of attention: scores s [nq][ATT_BK] of keys s0.. for rows with key
 * ranges [lo[r], hi[r]); turns them into probabilities p (zero outside the range, up to nk),
 * updates the running max mx and sum l, and rescales the output rows o [nq][ldo] by the change.
 */
static void FN(softmax_block)(float *s, long nq, long nk, const long *lo, const long *hi, long s0, float *mx, float *l,
                              float *o, long hd, long ldo) {
  for (long r = 0; r < nq; r++) {
    float *sr = s + r * ATT_BK;
    const long jlo = lo[r] > s0 ? lo[r] - s0 : 0, jhi = hi[r] - s0 < nk ? hi[r] - s0 : nk;
    if (jlo >= jhi) {
      for (long j = 0; j < nk; j++) sr[j] = 0.f;
      continue;
    }
    float m_new = mx[r];
    for (long j = jlo; j < jhi; j++) m_new = sr[j] > m_new ? sr[j] : m_new;
    const float alpha = FN(exp)(mx[r] - m_new);
    float sum = 0.f;
    for (long j = 0; j < nk; j++) {
      const float p = j >= jlo && j < jhi ? FN(exp)(sr[j] - m_new) : 0.f;
      sr[j] = p;
      sum += p;
    }
    l[r] = l[r] * alpha + sum;
    mx[r] = m_new;
    float *orow = o + r * ldo;
    for (long d = 0; d < hd; d++) orow[d] *= alpha;
  }
}

/*
 * Attention of a few query rows (decoding): qs [nq][hd] already scaled, keys [lo[r], hi[r]) of
 * k, v [S][hd]; dot products read K in place (no packing), out rows at stride ldo.
 */
static void FN(attention_rows)(const float *qs, const float *k, const float *v, float *out, long ldo, long nq,
                               const long *lo, const long *hi, long hd, float *sc) {
  for (long r = 0; r < nq; r++) {
    float m = -INFINITY, l = 0.f;
    float *o = out + r * ldo;
    for (long d = 0; d < hd; d++) o[d] = 0.f;
    for (long s0 = lo[r]; s0 < hi[r]; s0 += ATT_BK) {
      const long nk = hi[r] - s0 < ATT_BK ? hi[r] - s0 : ATT_BK;
      float m_new = m;
      for (long j = 0; j < nk; j++) {
        sc[j] = FN(dot)(qs + r * hd, k + (s0 + j) * hd, hd);
        m_new = sc[j] > m_new ? sc[j] : m_new;
      }
      const float alpha = FN(exp)(m - m_new);
      float sum = 0.f;
      for (long j = 0; j < nk; j++) {
        sc[j] = FN(exp)(sc[j] - m_new);
        sum += sc[j];
      }
      l = l * alpha + sum;
      m = m_new;
      for (long d = 0; d < hd; d++) o[d] *= alpha;
      for (long j = 0; j < nk; j++) {
        const float p = sc[j], *vj = v + (s0 + j) * hd;
        for (long d = 0; d < hd; d++) o[d] += p * vj[d];
      }
    }
    const float inv = 1.f / l;
    for (long d = 0; d < hd; d++) o[d] *= inv;
  }
}

static void FN(rmsnorm_rows)(const float *x, const float *w, float *out, long r0, long r1, long n, float eps) {
  for (long r = r0; r < r1; r++) {
    const float *xr = x + r * n;
    float *yr = out + r * n;
    const float ms = FN(dot)(xr, xr, n) / (float)n;
    const float inv = 1.f / sqrtf(ms + eps);
    for (long i = 0; i < n; i++) yr[i] = w[i] * (xr[i] * inv);
  }
}

/* Rows r0..r1 of x viewed as [B*T*heads][hd]: x = x*cos + rotate_half(x)*sin. */
static void FN(rope_rows)(float *x, const float *cos, const float *sin, long r0, long r1, long T, long heads, long hd) {
  const long half = hd / 2;
  for (long r = r0; r < r1; r++) {
    const long t = (r / heads) % T;
    float *xr = x + r * hd;
    const float *cr = cos + t * hd, *sr = sin + t * hd;
    for (long i = 0; i < half; i++) {
      const float x1 = xr[i], x2 = xr[i + half];
      xr[i] = x1 * cr[i] - x2 * sr[i];
      xr[i + half] = x2 * cr[i + half] + x1 * sr[i + half];
    }
  }
}

static void FN(silu_mul)(const float *g, const float *u, float *out, long i0, long i1) {
  for (long i = i0; i < i1; i++) out[i] = g[i] / (1.f + FN(exp)(-g[i])) * u[i];
}

/* ---- bf16 products computed in float32 (the reference of every bf16 kernel; kern.h) ---- */

#define BFE_MR 4

static inline float FN(bits_f32)(uint32_t w) {
  float f;
  memcpy(&f, &w, 4);
  return f;
}

static void FN(pack_a_bf16)(uint32_t *dst, const float *x, long m, long k, long i0, long p0, long np, int mr) {
  for (int r = 0; r < mr; r++) {
    const long i = i0 + r;
    if (i >= m) {
      for (long p = 0; p < np; p++) dst[p * mr + r] = 0;
      continue;
    }
    const float *row = x + i * k;
    for (long p = 0; p < np; p++) {
      const long k1 = 2 * (p0 + p);
      const float lo = k1 < k ? row[k1] : 0.f, hi = k1 + 1 < k ? row[k1 + 1] : 0.f;
      dst[p * mr + r] = f32_to_bf16(lo) | f32_to_bf16(hi) << 16;
    }
  }
}

/* mr x nr of C from an A panel [kp][BFE_MR] and a B panel [kp][32]: per pair, odd products first, as vdpbf16ps. */
static void FN(ukernel_bf16)(long kp, const uint32_t *ap, const uint32_t *bp, float *c, long ldc, int mr, int nr,
                             int flags, const float *bias) {
  float acc[BFE_MR][BF16P_NR];
  memset(acc, 0, sizeof acc);
  for (long p = 0; p < kp; p++) {
    float blo[BF16P_NR], bhi[BF16P_NR];
    for (int j = 0; j < BF16P_NR; j++) {
      blo[j] = FN(bits_f32)(bp[j] << 16);
      bhi[j] = FN(bits_f32)(bp[j] & 0xffff0000u);
    }
    for (int r = 0; r < BFE_MR; r++) {
      const float alo = FN(bits_f32)(ap[r] << 16), ahi = FN(bits_f32)(ap[r] & 0xffff0000u);
      for (int j = 0; j < BF16P_NR; j++) {
        acc[r][j] += ahi * bhi[j];
        acc[r][j] += alo * blo[j];
      }
    }
    ap += BFE_MR;
    bp += BF16P_NR;
  }
  FN(store_partial)(&acc[0][0], BF16P_NR, c, ldc, mr, nr, flags, bias, 0);
}

#define BF16_TABLE(isa_name) \
  const bf16_kern bf16_##isa_name = {"emulated-" #isa_name, BFE_MR, FN(ukernel_bf16), FN(pack_a_bf16)};

#define KERN_TABLE(isa_name, MR, NR, KC, MC, NS, UK)                                                  \
  const kern_table kern_##isa_name = {#isa_name, MR, NR, KC, MC, NS, UK, FN(widen), FN(pack_a),         \
                                      FN(pack_b), FN(small_m), FN(softmax_block), FN(attention_rows), FN(rmsnorm_rows),   \
                                      FN(rope_rows), FN(silu_mul)};

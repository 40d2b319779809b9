/* The portable path: plain C for any CPU (the compiler's baseline vectors, e.g. SSE2 or NEON). */
#include "kern.h"

#define FN(name) name##_generic

static void FN(widen)(float *dst, const void *src, int type, size_t n) {
  const uint16_t *h = (const uint16_t *)src;
  if (type == MKA_F32) memcpy(dst, src, n * 4);
  else if (type == MKA_BF16) for (size_t i = 0; i < n; i++) dst[i] = bf16_to_f32(h[i]);
  else for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32(h[i]);
}

#include "kern_body.h"

#define G_MR 4
#define G_NR 8

/* 4x8 tile of C from packed A (kc x 4) and B (kc x 8) panels (8 accumulator vectors fit any 16-register SIMD set). */
static void ukernel_generic(long kc, const float *ap, const float *bp, float *c, long ldc, int mr, int nr, int flags,
                            const float *bias, int act) {
  float acc[G_MR][G_NR] = {{0}};
  for (long p = 0; p < kc; p++) {
    for (int r = 0; r < G_MR; r++) {
      const float a = ap[p * G_MR + r];
      for (int j = 0; j < G_NR; j++) acc[r][j] += a * bp[p * G_NR + j];
    }
  }
  store_partial_generic(&acc[0][0], G_NR, c, ldc, mr, nr, flags, bias, act);
}

KERN_TABLE(generic, G_MR, G_NR, 256, 128, 256, ukernel_generic)
BF16_TABLE(generic)

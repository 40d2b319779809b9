/*
 * bf16 products on AMX tiles (Sapphire Rapids and later): x rounded to bf16 row-major, padded to
 * 32 rows and to BF16P's k; each task takes a strip of BF16P panels and a range of 32-row blocks and
 * runs kern_amx_body.h's tile schedule. A BF16P panel's k pairs x 16 columns are exactly an AMX B
 * tile at a 128-byte stride, so the weights keep the one packed layout of every bf16 kernel. The
 * same schedule on emulated tiles (MKA_ISA=amx-emulated) is this path's reference on any CPU.
 * Tile state is asked of Linux once per process (cpu.c); each task loads its tile configuration and
 * releases the tiles when done.
 */
#include "kern.h"
#include <stdlib.h>

typedef struct __attribute__((aligned(64))) {
  uint8_t palette;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} tile_config;

typedef struct {
  const linear_args *l;
  const uint32_t *w;
  uint16_t *pa;
  long kp, mblocks, ns, nstrips, per_part;
  tile_config cfg;
} amx_ctx;

/* ---- emulated tiles: the instructions' definitions (Intel SDM) in C ---- */
typedef struct {
  uint8_t b[16][64];
} emu_tile;

static void emu_load(emu_tile *t, const void *base, long stride) {
  for (int r = 0; r < 16; r++) memcpy(t->b[r], (const uint8_t *)base + r * stride, 64);
}

static void emu_store(const emu_tile *t, void *base, long stride) {
  for (int r = 0; r < 16; r++) memcpy((uint8_t *)base + r * stride, t->b[r], 64);
}

static float emu_bf16(const emu_tile *t, int r, int i) {
  uint16_t h;
  memcpy(&h, t->b[r] + 2 * i, 2);
  return bf16_to_f32(h);
}

/* TDPBF16PS: c[m][n] += a[m][2k]·b[k][2n], then += a[m][2k+1]·b[k][2n+1], for k over the pairs. */
static void emu_dp(emu_tile *c, const emu_tile *a, const emu_tile *b) {
  for (int m = 0; m < 16; m++) {
    float acc[16];
    memcpy(acc, c->b[m], 64);
    for (int k = 0; k < 16; k++)
      for (int n = 0; n < 16; n++) {
        acc[n] += emu_bf16(a, m, 2 * k) * emu_bf16(b, k, 2 * n);
        acc[n] += emu_bf16(a, m, 2 * k + 1) * emu_bf16(b, k, 2 * n + 1);
      }
    memcpy(c->b[m], acc, 64);
  }
}

#define FN(name) name##_emulated
#define T_DECLARE emu_tile tiles[8]
#define T_CONFIG(cfg) (void)(cfg)
#define T_RELEASE() (void)0
#define T_ZERO(t) memset(&tiles[t], 0, sizeof tiles[t])
#define T_LOAD(t, base, stride) emu_load(&tiles[t], base, stride)
#define T_STORE(t, base, stride) emu_store(&tiles[t], base, stride)
#define T_DP(c, a, b) emu_dp(&tiles[c], &tiles[a], &tiles[b])
#include "kern_amx_body.h"
#undef FN
#undef T_DECLARE
#undef T_CONFIG
#undef T_RELEASE
#undef T_ZERO
#undef T_LOAD
#undef T_STORE
#undef T_DP

/* ---- the AMX instructions (GCC 11 / clang 12 and later) ---- */
#if MKA_X86 && ((defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && __GNUC__ >= 11))
#define HAVE_AMX 1
#include <immintrin.h>
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("amx-tile,amx-bf16,avx512f"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("amx-tile,amx-bf16,avx512f")
#endif
#define FN(name) name##_hw
#define T_DECLARE (void)0
#define T_CONFIG(cfg) _tile_loadconfig(cfg)
#define T_RELEASE() _tile_release()
#define T_ZERO(t) _tile_zero(t)
#define T_LOAD(t, base, stride) _tile_loadd(t, base, stride)
#define T_STORE(t, base, stride) _tile_stored(t, base, stride)
#define T_DP(c, a, b) _tile_dpbf16ps(c, a, b)
#include "kern_amx_body.h"
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#else
#define HAVE_AMX 0
#endif

/* Row block b (32 rows) of x as bf16 [32][2·kp], zero past m and k. */
static void pack_rows(void *p, long b, int thread) {
  (void)thread;
  const amx_ctx *x = p;
  const linear_args *l = x->l;
  const long k = l->w->k, kpad = 2 * x->kp;
  for (long r = 0; r < 32; r++) {
    const long i = b * 32 + r;
    uint16_t *dst = x->pa + (size_t)i * kpad;
    long c = 0;
    if (i < l->m)
      for (; c < k; c++) dst[c] = (uint16_t)f32_to_bf16(l->x[i * k + c]);
    for (; c < kpad; c++) dst[c] = 0;
  }
}

int amx_linear(const linear_args *l, int emulated) {
  const long m = l->m, n = l->w->n;
  amx_ctx x = {.l = l, .w = l->w->data, .kp = bf16p_pairs(l->w->k)};
  x.mblocks = (m + 31) / 32;
  const int threads = pool_threads();
  long s = (n + 4L * threads - 1) / (4L * threads);
  s = (s + BF16P_NR - 1) / BF16P_NR * BF16P_NR;
  x.ns = s < BF16P_NR ? BF16P_NR : s > 512 ? 512 : s;
  x.nstrips = (n + x.ns - 1) / x.ns;
  long want = (4L * threads + x.nstrips - 1) / x.nstrips;
  if (want > x.mblocks) want = x.mblocks;
  x.per_part = (x.mblocks + want - 1) / want;
  const long parts = (x.mblocks + x.per_part - 1) / x.per_part;
  x.cfg.palette = 1;
  for (int t = 0; t < 8; t++) {
    x.cfg.rows[t] = 16;
    x.cfg.colsb[t] = 64;
  }
  x.pa = scratch(0, sizeof(uint16_t) * (size_t)(x.mblocks * 32 * 2 * x.kp));
  if (!x.pa) return -1;
  pool_run(x.mblocks, pack_rows, &x);
#if HAVE_AMX
  if (!emulated) {
    pool_run(x.nstrips * parts, amx_task_hw, &x);
    return 0;
  }
#endif
  (void)emulated;
  pool_run(x.nstrips * parts, amx_task_emulated, &x);
  return 0;
}

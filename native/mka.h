/*
 * mka_native: the project's own float32 kernels (matrix product, attention, norms) behind a
 * Node-API addon. This header is shared by the C files; addon.c is the only one that knows N-API.
 */
#ifndef MKA_H
#define MKA_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Element types of 16-bit operands, as in the JS contract. */
enum { MKA_F32 = 0, MKA_BF16 = 1, MKA_F16 = 2 };

/* Instruction-set paths, lowest first. */
enum { ISA_GENERIC = 0, ISA_AVX2 = 1, ISA_AVX512 = 2 };

#if defined(__x86_64__) || defined(__i386__)
#define MKA_X86 1
#define TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#define TARGET_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma,f16c")))
#else
#define MKA_X86 0
#endif

/* ---- cpu.c ---- */
typedef struct {
  int isa;          /* path in use (after MKA_ISA) */
  int best_isa;     /* best path this CPU supports */
  int bf16_dot;     /* avx512_bf16 present */
  int amx;          /* AMX tiles present */
  int bf16_dot_on;  /* MKA_BF16_DOT=1 asked for the vdpbf16ps path */
  int procs;        /* online processors */
  char cpu[64];     /* model name */
} mka_cpu;

/* Detects the CPU once; `forced` is MKA_ISA's value or NULL, `bf16_dot` MKA_BF16_DOT's. Returns 0, or -1 for a bad MKA_ISA. */
int cpu_init(const char *forced, const char *bf16_dot);
const mka_cpu *cpu_get(void);
const char *isa_name(int isa);

/* ---- threads.c ---- */
typedef void (*task_fn)(void *ctx, long task, int thread);
/* Runs fn(ctx, t, thread) for t in [0, ntasks) on the pool (the caller is thread 0); returns when all are done. */
void pool_run(long ntasks, task_fn fn, void *ctx);
int pool_set_threads(int n);
int pool_threads(void);
/* Per-thread scratch of at least `bytes` bytes, 64-byte aligned, reused across calls (slot 0..3). */
void *scratch(int slot, size_t bytes);

/* ---- widening 16-bit values ---- */
static inline float bf16_to_f32(uint16_t h) {
  uint32_t w = (uint32_t)h << 16;
  float f;
  memcpy(&f, &w, 4);
  return f;
}

/* Exact IEEE half to float, subnormals, infinities and NaNs included. */
static inline float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, w;
  if (exp == 0x1f) {
    w = sign | 0x7f800000u | (man << 13);
  } else if (exp != 0) {
    w = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    w = sign;
  } else { /* subnormal: normalise */
    int e = 113;
    while (!(man & 0x400)) {
      man <<= 1;
      e--;
    }
    w = sign | ((uint32_t)e << 23) | ((man & 0x3ff) << 13);
  }
  float f;
  memcpy(&f, &w, 4);
  return f;
}

/* n values of `type` at src (element index off) widened into dst, on the given ISA. */
void widen(int isa, float *dst, const void *src, int type, size_t n);

/* ---- gemm.c ---- */
typedef struct {
  const float *a;   /* A base, [batchA][m][k] or [batchA][k][m] */
  const void *b;    /* B base, [batchB][k][n] or [batchB][n][k], of b_type */
  float *c;         /* C [batch][m][n] */
  int b_type;
  long m, n, k, batch;
  int trans_a, trans_b;
  const int32_t *idx; /* 2*batch (A, B) indices or NULL */
  const float *bias; long bias_len;
  int act;          /* 0 linear, 1 relu, 2 relu6 */
  int accumulate;
  int bf16_dot;     /* multiply bf16 B with vdpbf16ps (activations rounded to bf16) */
} gemm_args;

/* Returns 0, or -1 when out of memory. */
int gemm(const gemm_args *g);

/* ---- ops.c ---- */
void attention(const float *q, const float *k, const float *v, float *out, long B, long T, long S,
               long nH, long nKV, long hd, long kvB, long window, float scale);
void rmsnorm(const float *x, const void *w, int w_type, float *out, long rows, long n, float eps);
void rope(float *x, const float *cos, const float *sin, long B, long T, long heads, long hd);
void silu_mul(const float *gate, const float *up, float *out, long n);
void gather_rows(const void *table, int t_type, long n, const int32_t *ids, long count, float *out);
void to_float32(const void *src, int type, float *out, long n);

/* ---- layer.c ---- */
/* Operands of one decoder layer; weights are Hugging Face [out, in] of w_type, norms and biases float32. */
enum { DL_WQ, DL_WK, DL_WV, DL_WO, DL_WG, DL_WU, DL_WD, DL_NPROJ };
typedef struct {
  const float *x;          /* [B*T][H] */
  float *h;                /* [B*T][H] out */
  const float *norm1, *norm2; /* [H] */
  const void *w[DL_NPROJ];
  const float *bias[DL_NPROJ]; /* NULL or [out] */
  int w_type;
  const float *past_k, *past_v; /* NULL or [kvB][nKV][S0][hd] */
  const float *cos, *sin;  /* [T][hd] */
  float *k_out, *v_out;    /* NULL or [B][nKV][S0+T][hd] */
  long B, T, H, nH, nKV, hd, F, S0, kvB, window;
  float eps, scale;
} layer_args;

/*
 * One Llama decoder layer: h = x + o(attn(rope(q), rope(k), v)), then h += down(silu(gate) * up) on
 * rmsnorm'd inputs; the same kernels, in the same order, as the op-by-op path. Returns 0, or -1 when
 * out of memory.
 */
int decoder_layer(const layer_args *a);

#endif

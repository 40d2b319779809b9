/*
 * mka_native: the project's own float32 kernels (matrix product, attention, norms) behind a
 * Node-API addon. This header is shared by the C files; addon.c is the only one that knows N-API.
 */
#ifndef MKA_H
#define MKA_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

/*
 * Weight formats, as in the JS contract: float32, bfloat16 and float16 in Hugging Face layout
 * (W [n][k], or B of a matmul), bf16 packed into panels for the bf16 products (BF16P, see
 * bf16p_pairs), and contract 1's packed integer weights (Q8, Q4: blocks of 32 inputs per row).
 */
enum { MKA_F32 = 0, MKA_BF16 = 1, MKA_F16 = 2, MKA_BF16P = 3, MKA_Q8 = 4, MKA_Q4 = 5 };

/* Instruction-set paths of the float32 kernels, lowest first. */
enum { ISA_GENERIC = 0, ISA_AVX2 = 1, ISA_AVX512 = 2 };
/* Levels MKA_ISA caps: the float32 paths, then AVX-512 VNNI, AVX512_BF16, AMX (each with those below it). */
enum { LEVEL_GENERIC = 0, LEVEL_AVX2 = 1, LEVEL_AVX512 = 2, LEVEL_VNNI = 3, LEVEL_BF16 = 4, LEVEL_AMX = 5 };

#if defined(__x86_64__) || defined(__i386__)
#define MKA_X86 1
#define TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#else
#define MKA_X86 0
#endif

/* ---- cpu.c ---- */
typedef struct {
  int isa;          /* float32 path in use (after MKA_ISA) */
  int best_isa;     /* best float32 path this CPU supports */
  int has_vnni, has_bf16, has_amx; /* the CPU has AVX512_VNNI, AVX512_BF16, AMX-TILE + AMX-BF16 (+ AMX-INT8) */
  int amx_os;       /* the OS lets this process use AMX tiles (arch_prctl XCOMP_PERM granted) */
  int vnni, bf16, amx; /* in use: present, allowed by MKA_ISA (and for AMX by the OS) */
  int amx_emulated; /* MKA_ISA=amx-emulated: the AMX kernels with tiles emulated in C (tests, any CPU) */
  int level;        /* the MKA_ISA cap (LEVEL_*) */
  int procs;        /* online processors */
  char cpu[64];     /* model name */
  char amx_note[96]; /* why AMX is not used although the CPU has it, or "" */
} mka_cpu;

/* Detects the CPU once; `forced` is MKA_ISA's value or NULL. Returns 0, or -1 for a bad MKA_ISA. */
int cpu_init(const char *forced);
const mka_cpu *cpu_get(void);
const char *isa_name(int isa);
/* The kernel that computes bf16 products here: "amx", "amx-emulated", "avx512bf16", or "emulated-<isa>". */
const char *bf16_kernel_name(void);
/* The kernel that computes integer products here: "vnni", "avx512bw", "avx2" or "generic". */
const char *int8_kernel_name(void);

/* ---- threads.c ---- */
typedef void (*task_fn)(void *ctx, long task, int thread);
/* Runs fn(ctx, t, thread) for t in [0, ntasks) on the pool (the caller is thread 0); returns when all are done. */
void pool_run(long ntasks, task_fn fn, void *ctx);
int pool_set_threads(int n);
int pool_threads(void);
/* Per-thread scratch of at least `bytes` bytes, 64-byte aligned, reused across calls (slot 0..4). */
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

/* x rounded to the nearest IEEE half (ties to even), as a float: what ggml's FP32_TO_FP16 stores;
 * ±inf past the half range (65520 and beyond), NaN kept. */
static inline float f32_round_f16(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  const uint32_t sign = u & 0x80000000u, a = u & 0x7fffffffu;
  if (a >= 0x7f800000u) return x;                       /* inf, NaN */
  if (a >= 0x477ff000u) u = sign | 0x7f800000u;         /* >= 65520: inf */
  else if (a < 0x38800000u) {                           /* below 2^-14: subnormal halves, ulp 2^-24 */
    const float r = nearbyintf((sign ? -x : x) * 16777216.f) * (1.f / 16777216.f);
    memcpy(&u, &r, 4);
    u |= sign;
  } else u = sign | ((a + 0xfffu + ((a >> 13) & 1u)) & ~0x1fffu); /* 10 mantissa bits, nearest even */
  float f;
  memcpy(&f, &u, 4);
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
} gemm_args;

/* Returns 0, or -1 when out of memory. */
int gemm(const gemm_args *g);

/* ---- linear.c: x·Wᵀ for a weight in any format ---- */
/*
 * A weight as the products take it. F32/BF16/F16: Hugging Face [n][k] values. BF16P: bf16 panels of
 * BF16P_NR columns, u32 words [ceil(n/32)][bf16p_pairs(k)][32], word (P, p, c) = bf16(W[32P+c][2p]) |
 * bf16(W[32P+c][2p+1]) << 16, zero past n and k. Q8/Q4: contract 1 (rows of 32-input blocks; 8-bit
 * int8 when symmetric, uint8 with mins; 4-bit 16 bytes per block, ggml Q4_0 nibble order, unsigned,
 * symmetric meaning scale·(q−8)); scales and mins float32 [n][k/group].
 */
typedef struct {
  int format;
  long n, k;
  const void *data;
  const float *scales, *mins; /* Q8/Q4; mins NULL when symmetric */
  long group;                 /* Q8/Q4: inputs per scale, a multiple of 32 dividing k */
  int act_per_token;          /* Q8/Q4: int8 activations per token (W8A8) instead of per block */
  int float_products;         /* Q8/Q4 without act_per_token: float32 products, rows widened per tile by the GEMM */
} mka_weight;

#define BF16P_NR 32
/* k pairs of a BF16P panel: k rounded up to 32 (one AMX tile's depth), halved. */
static inline long bf16p_pairs(long k) { return (k + 31) / 32 * 16; }
static inline size_t bf16p_words(long n, long k) { return (size_t)((n + BF16P_NR - 1) / BF16P_NR) * (size_t)bf16p_pairs(k) * BF16P_NR; }
/* Packs W [n][k] of `type` (F32, BF16 or F16) into BF16P panels (float32 and float16 rounded to nearest even). */
void bf16p_pack(uint32_t *dst, const void *w, int type, long n, long k);
/* Row j of a Q8/Q4 weight dequantized (embedding rows gathered from a packed table). */
void quant_row(float *dst, const mka_weight *w, long j);
/* Inputs [k0, k0+len) of row j of a Q8/Q4 weight dequantized (the GEMM's tiles of a float_products weight). */
void quant_row_range(float *dst, const mka_weight *w, long j, long k0, long len);
/* Row j of a BF16P weight as float32 (embedding rows of a tied lm_head). */
void bf16p_row(float *dst, const uint32_t *w, long n, long k, long j);

typedef struct {
  const float *x;        /* [m][k] */
  long m;
  const mka_weight *w;   /* n = w->n outputs, k = w->k inputs */
  const float *bias;     /* NULL or [n] */
  float *y;              /* [m][n] */
  int accumulate;        /* y += instead of y = */
} linear_args;

/* y (=, or +=) x·Wᵀ + bias. Returns 0, or -1 when out of memory. */
int linear(const linear_args *l);

/* float to bf16 bits as the bf16 products round activations: nearest even, NaN quiet, denormals to zero. */
static inline uint32_t f32_to_bf16(float x) {
  uint32_t w;
  memcpy(&w, &x, 4);
  if ((w & 0x7fffffffu) > 0x7f800000u) return ((w >> 16) | 0x40) & 0xffff;
  if ((w & 0x7f800000u) == 0) return (w >> 16) & 0x8000;
  return (w + 0x7fff + ((w >> 16) & 1)) >> 16;
}

/* ---- ops.c ---- */
/* bf16: scores and P·V as bf16 products (the query block's heads of a kv head together); else float32. */
void attention(const float *q, const float *k, const float *v, float *out, long B, long T, long S,
               long nH, long nKV, long hd, long kvB, long window, float scale, int bf16);
void rmsnorm(const float *x, const void *w, int w_type, float *out, long rows, long n, float eps);
void rope(float *x, const float *cos, const float *sin, long B, long T, long heads, long hd);
void silu_mul(const float *gate, const float *up, float *out, long n);
/* out[r] = float32(row ids[r] of the table), a weight of any format (Q8/Q4 rows dequantized). */
void gather_rows(const mka_weight *table, const int32_t *ids, long count, float *out);
void to_float32(const void *src, int type, float *out, long n);

/* ---- layer.c ---- */
/* Operands of one decoder layer; weights are Hugging Face [out, in] of w_type, norms and biases float32. */
enum { DL_WQ, DL_WK, DL_WV, DL_WO, DL_WG, DL_WU, DL_WD, DL_NPROJ };
typedef struct {
  const float *x;          /* [B*T][H] */
  float *h;                /* [B*T][H] out */
  const float *norm1, *norm2; /* [H] */
  mka_weight w[DL_NPROJ];
  const float *bias[DL_NPROJ]; /* NULL or [out] */
  const float *past_k, *past_v; /* NULL or [kvB][nKV][S0][hd] */
  const float *cos, *sin;  /* [T][hd] */
  float *k_out, *v_out;    /* NULL or [B][nKV][S0+T][hd] */
  long B, T, H, nH, nKV, hd, F, S0, kvB, window;
  float eps, scale;
  int bf16_attention; /* attention's products in bf16 (--compute bfloat16) */
} layer_args;

/*
 * One Llama decoder layer: h = x + o(attn(rope(q), rope(k), v)), then h += down(silu(gate) * up) on
 * rmsnorm'd inputs; the same kernels, in the same order, as the op-by-op path. Returns 0, or -1 when
 * out of memory.
 */
int decoder_layer(const layer_args *a);

#endif

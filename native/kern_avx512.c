/* The AVX-512 path (Skylake-X and later, Zen 4): a 12x32 zmm microkernel, 512-bit widening. */
#include "kern.h"
#if MKA_X86
#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,prefer-vector-width=512")
#endif

#define FN(name) name##_avx512

#define MR 12
#define NR 32
#define VW 16
#define VEC __m512
#define V_LOAD _mm512_load_ps
#define V_LOADU _mm512_loadu_ps
#define V_STORE _mm512_store_ps
#define V_STOREU _mm512_storeu_ps
#define V_ADD _mm512_add_ps
#define V_FMA _mm512_fmadd_ps
#define V_MAX _mm512_max_ps
#define V_MIN _mm512_min_ps
#define V_ZERO _mm512_setzero_ps
#define V_SET1 _mm512_set1_ps
#define V_BCAST(p) _mm512_set1_ps(*(p))
#define V_FROM_BF16(p) _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p))), 16))
#define V_FROM_F16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define UNROLL_MR _Pragma("GCC unroll 12")

#include "kern_simd.h"

KERN_TABLE(avx512, MR, NR, 256, 192, 512, ukernel_avx512)
BF16_TABLE(avx512)

#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
const kern_table kern_avx512 = {0};
const bf16_kern bf16_avx512 = {0};
#endif

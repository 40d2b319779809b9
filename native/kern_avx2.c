/* The AVX2/FMA path (Haswell and later, Zen): a 6x16 ymm microkernel, F16C widening. */
#include "kern.h"
#if MKA_X86
#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC target("avx2,fma,f16c")
#endif

#define FN(name) name##_avx2

#define MR 6
#define NR 16
#define VW 8
#define VEC __m256
#define V_LOAD _mm256_load_ps
#define V_LOADU _mm256_loadu_ps
#define V_STORE _mm256_store_ps
#define V_STOREU _mm256_storeu_ps
#define V_ADD _mm256_add_ps
#define V_FMA _mm256_fmadd_ps
#define V_MAX _mm256_max_ps
#define V_MIN _mm256_min_ps
#define V_ZERO _mm256_setzero_ps
#define V_SET1 _mm256_set1_ps
#define V_BCAST _mm256_broadcast_ss
#define V_FROM_BF16(p) _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))), 16))
#define V_FROM_F16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define UNROLL_MR _Pragma("GCC unroll 6")

#include "kern_simd.h"

KERN_TABLE(avx2, MR, NR, 256, 192, 512, ukernel_avx2)
BF16_TABLE(avx2)

#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
const kern_table kern_avx2 = {0};
const bf16_kern bf16_avx2 = {0};
#endif

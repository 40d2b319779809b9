/*
 * Bench-only: the machine's ceiling for each kind of product, measured (not derived from clocks):
 * every pool thread runs a loop of independent multiply-adds that never touches memory, and the
 * wall time of all of them gives the ceiling `npm run bench` compares the kernels with.
 * kind 0: float32 FMA on the float32 path's vectors; 1: vdpbf16ps; 2: vpdpbusd (int8 ops, 2 per
 * multiply-add). Returns wall GFLOP/s and sets *per_cpu_second to GFLOP per CPU-second of the loops
 * (the steadier figure on a shared machine); 0 when this CPU (or MKA_ISA) lacks the instruction.
 */
#include "mka.h"
#include <time.h>
#if MKA_X86
#include <immintrin.h>
#endif

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

#define CHAINS 12

#if MKA_X86
__attribute__((target("avx512f"))) static float loop_fma512(long iters) {
  __m512 c[CHAINS], a = _mm512_set1_ps(1.0001f), b = _mm512_set1_ps(0.9999f);
  for (int i = 0; i < CHAINS; i++) c[i] = _mm512_setzero_ps();
  for (long i = 0; i < iters; i++) {
#pragma GCC unroll 12
    for (int j = 0; j < CHAINS; j++) c[j] = _mm512_fmadd_ps(a, b, c[j]);
    __asm__ volatile("" : "+v"(a));
  }
  float s = 0;
  for (int i = 0; i < CHAINS; i++) s += _mm512_reduce_add_ps(c[i]);
  return s;
}

__attribute__((target("avx2,fma"))) static float loop_fma256(long iters) {
  __m256 c[CHAINS], a = _mm256_set1_ps(1.0001f), b = _mm256_set1_ps(0.9999f);
  for (int i = 0; i < CHAINS; i++) c[i] = _mm256_setzero_ps();
  for (long i = 0; i < iters; i++) {
#pragma GCC unroll 12
    for (int j = 0; j < CHAINS; j++) c[j] = _mm256_fmadd_ps(a, b, c[j]);
    __asm__ volatile("" : "+x"(a));
  }
  float s[8] = {0}, t = 0;
  for (int i = 0; i < CHAINS; i++) {
    _mm256_storeu_ps(s, c[i]);
    for (int j = 0; j < 8; j++) t += s[j];
  }
  return t;
}

#if (defined(__clang__) && __clang_major__ >= 9) || (!defined(__clang__) && __GNUC__ >= 10)
__attribute__((target("avx512f,avx512bf16"))) static float loop_bf16(long iters) {
  __m512 c[CHAINS];
  __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80), b = (__m512bh)_mm512_set1_epi32(0x3f803f80);
  for (int i = 0; i < CHAINS; i++) c[i] = _mm512_setzero_ps();
  for (long i = 0; i < iters; i++) {
#pragma GCC unroll 12
    for (int j = 0; j < CHAINS; j++) c[j] = _mm512_dpbf16_ps(c[j], a, b);
    __asm__ volatile("" : "+v"(a));
  }
  float s = 0;
  for (int i = 0; i < CHAINS; i++) s += _mm512_reduce_add_ps(c[i]);
  return s;
}
#define HAVE_BF16_LOOP 1
#endif

__attribute__((target("avx512f,avx512vnni"))) static float loop_vnni(long iters) {
  __m512i c[CHAINS], a = _mm512_set1_epi32(0x01010101), b = _mm512_set1_epi32(0x01010101);
  for (int i = 0; i < CHAINS; i++) c[i] = _mm512_setzero_si512();
  for (long i = 0; i < iters; i++) {
#pragma GCC unroll 12
    for (int j = 0; j < CHAINS; j++) c[j] = _mm512_dpbusd_epi32(c[j], a, b);
    __asm__ volatile("" : "+v"(a));
  }
  int s = 0;
  for (int i = 0; i < CHAINS; i++) s += _mm512_reduce_add_epi32(c[i]);
  return (float)s;
}
#endif

typedef struct {
  int kind;
  long iters;
  volatile float sink;
  double cpu[1024]; /* CPU seconds of each thread's loop */
} peak_ctx;

static double thread_cpu(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static void peak_task(void *p, long t, int thread) {
  (void)thread;
  peak_ctx *x = p;
  float s = 0;
  const double c0 = thread_cpu();
#if MKA_X86
  const mka_cpu *c = cpu_get();
  if (x->kind == 0) s = c->isa == ISA_AVX512 ? loop_fma512(x->iters) : loop_fma256(x->iters);
#ifdef HAVE_BF16_LOOP
  if (x->kind == 1) s = loop_bf16(x->iters);
#endif
  if (x->kind == 2) s = loop_vnni(x->iters);
#endif
  x->sink = s;
  x->cpu[t] = thread_cpu() - c0;
}

double peak_gflops(int kind, double seconds, double *per_cpu_second) {
  *per_cpu_second = 0;
#if MKA_X86
  const mka_cpu *c = cpu_get();
  if ((kind == 0 && c->isa < ISA_AVX2) || (kind == 1 && !c->bf16) || (kind == 2 && !c->vnni) || kind < 0 || kind > 2) return 0;
#ifndef HAVE_BF16_LOOP
  if (kind == 1) return 0;
#endif
  /* flops per instruction: fma 2 x lanes; vdpbf16ps 4 x 16; vpdpbusd 2 x 64 */
  const double per = kind == 0 ? (c->isa == ISA_AVX512 ? 32 : 16) : kind == 1 ? 64 : 128;
  const int threads = pool_threads() < 1024 ? pool_threads() : 1024;
  static peak_ctx x;
  x.kind = kind;
  x.iters = 1000;
  double t0 = now();
  pool_run(threads, peak_task, &x); /* warm-up and calibration */
  double dt = now() - t0;
  x.iters = (long)(1000 * seconds / (dt > 1e-6 ? dt : 1e-6));
  if (x.iters < 1000) x.iters = 1000;
  t0 = now();
  pool_run(threads, peak_task, &x);
  dt = now() - t0;
  const double work = (double)threads * x.iters * CHAINS * per;
  double cpu = 0;
  for (int t = 0; t < threads; t++) cpu += x.cpu[t];
  *per_cpu_second = cpu > 0 ? work / cpu / 1e9 : 0;
  return work / dt / 1e9;
#else
  (void)kind;
  (void)seconds;
  return 0;
#endif
}

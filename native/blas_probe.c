/*
 * Bench-only: times OpenBLAS's cblas_sgemm through dlopen when a libopenblas happens to be installed,
 * so `npm run bench -- sgemm` can print its figure beside mka's kernels. mka never computes with it.
 */
#include <dlfcn.h>
#include <stddef.h>
#include "blas_probe.h"

typedef void (*sgemm_fn)(int order, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                         const float *b, int ldb, float beta, float *c, int ldc);
typedef void (*threads_fn)(int n);

int openblas_sgemm(const char *path, int threads, const float *a, const float *b, float *c, int m, int n, int k,
                   int trans_b) {
  void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!lib) return -1;
  sgemm_fn sgemm = (sgemm_fn)dlsym(lib, "cblas_sgemm");
  threads_fn set_threads = (threads_fn)dlsym(lib, "openblas_set_num_threads");
  if (!sgemm) return -1;
  if (set_threads) set_threads(threads);
  /* CblasRowMajor = 101, CblasNoTrans = 111, CblasTrans = 112 */
  sgemm(101, 111, trans_b ? 112 : 111, m, n, k, 1.f, a, k, b, trans_b ? k : n, 0.f, c, n);
  return 0; /* the library stays loaded: dlclose would tear down its threads on every call */
}

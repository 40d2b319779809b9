#ifndef MKA_BLAS_PROBE_H
#define MKA_BLAS_PROBE_H
/* C[m][n] = A[m][k] · op(B) with the libopenblas at `path`; -1 when it cannot be loaded. */
int openblas_sgemm(const char *path, int threads, const float *a, const float *b, float *c, int m, int n, int k, int trans_b);
#endif

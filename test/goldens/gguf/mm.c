// y = x·Wᵀ as llama.cpp's CPU backend computes it (ggml_mul_mat, one thread): its quantized products
// quantize x to the weight type's vec_dot_type (Q8_0 for Q8_0/Q4_0, Q8_1 for Q4_1) first.
// stdin: int32 type, n, k, m; W as ggml blocks (n rows of k inputs); x f32 [m][k].
// stdout: y f32 [m][n], then x as ggml's from_float of that vec_dot_type quantizes it ([m] rows).
#include "ggml.h"
#include "ggml-cpu.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char ** argv) {
    int hdr[4];
    if (fread(hdr, 4, 4, stdin) != 4) return 1;
    enum ggml_type type = (enum ggml_type) hdr[0];
    int n = hdr[1], k = hdr[2], m = hdr[3];
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    ggml_cpu_init();
    size_t wbytes = ggml_row_size(type, k) * n;
    struct ggml_init_params ip = { wbytes + (size_t) m * k * 4 + (size_t) m * n * 4 + 64 * 1024 * 1024, NULL, false };
    struct ggml_context * ctx = ggml_init(ip);
    struct ggml_tensor * w = ggml_new_tensor_2d(ctx, type, k, n);
    struct ggml_tensor * x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, k, m);
    if (fread(w->data, 1, wbytes, stdin) != wbytes) return 2;
    if (fread(x->data, 4, (size_t) m * k, stdin) != (size_t) m * k) return 3;
    struct ggml_tensor * y = ggml_mul_mat(ctx, w, x);
    struct ggml_cgraph * gf = ggml_new_graph(ctx);
    ggml_build_forward_expand(gf, y);
    ggml_graph_compute_with_ctx(ctx, gf, threads);
    fwrite(y->data, 4, (size_t) m * n, stdout);
    const struct ggml_type_traits_cpu * t = ggml_get_type_traits_cpu(type);
    enum ggml_type vt = t->vec_dot_type;
    size_t qb = ggml_row_size(vt, k);
    char * q = malloc(qb * m);
    for (int i = 0; i < m; i++) ggml_get_type_traits_cpu(vt)->from_float((float *) x->data + (size_t) i * k, q + i * qb, k);
    fwrite(q, 1, qb * m, stdout);
    return 0;
}

// reads float32 values (rows of 256) from stdin; for each block type, quantizes them with ggml's quantize_*
// (no importance matrix) and dequantizes with dequantize_row_*; prints "NAME BLOCKS_HEX VALUES_HEX" lines.
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include "ggml.h"
typedef size_t (*qfn)(const float *, void *, int64_t, int64_t, const float *);
typedef void (*dfn)(const void *, float *, int64_t);
#define DECL(t) size_t quantize_##t(const float *, void *, int64_t, int64_t, const float *); void dequantize_row_##t(const void *, float *, int64_t);
DECL(q4_1) DECL(q5_0) DECL(q5_1) DECL(q2_K) DECL(q3_K) DECL(q4_K) DECL(q5_K) DECL(q6_K)
static void hex(const unsigned char * p, size_t n) { for (size_t i = 0; i < n; i++) printf("%02x", p[i]); }
int main(void) {
    struct ggml_init_params ip = { 1024, NULL, true };
    ggml_free(ggml_init(ip)); // fills ggml's f16 -> f32 table, which dequantize_row_* read
    size_t n = 0, cap = 1 << 16; float * x = malloc(cap * 4); size_t got;
    while ((got = fread(x + n, 4, cap - n, stdin)) > 0) { n += got; if (n == cap) { cap *= 2; x = realloc(x, cap * 4); } }
    const int64_t per_row = 256, rows = n / per_row;
    struct { const char * name; qfn q; dfn d; size_t block; size_t bytes; } t[] = {
        { "Q4_1", quantize_q4_1, dequantize_row_q4_1, 32, 20 }, { "Q5_0", quantize_q5_0, dequantize_row_q5_0, 32, 22 },
        { "Q5_1", quantize_q5_1, dequantize_row_q5_1, 32, 24 }, { "Q2_K", quantize_q2_K, dequantize_row_q2_K, 256, 84 },
        { "Q3_K", quantize_q3_K, dequantize_row_q3_K, 256, 110 }, { "Q4_K", quantize_q4_K, dequantize_row_q4_K, 256, 144 },
        { "Q5_K", quantize_q5_K, dequantize_row_q5_K, 256, 176 }, { "Q6_K", quantize_q6_K, dequantize_row_q6_K, 256, 210 },
    };
    for (size_t k = 0; k < sizeof t / sizeof t[0]; k++) {
        size_t bytes = rows * per_row / t[k].block * t[k].bytes;
        unsigned char * b = calloc(bytes, 1); float * y = malloc(n * 4);
        t[k].q(x, b, rows, per_row, NULL);
        t[k].d(b, y, n);
        printf("%s ", t[k].name); hex(b, bytes); printf(" "); hex((unsigned char *) y, n * 4); printf("\n");
        free(b); free(y);
    }
    return 0;
}

// reads float32 values from stdin, writes Q8_0 then Q4_0 blocks (ggml's reference quantizers) to stdout
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
void quantize_row_q8_0_ref(const float * x, void * y, int64_t k);
void quantize_row_q4_0_ref(const float * x, void * y, int64_t k);
int main(void) {
    size_t cap = 1 << 20, n = 0; float * x = malloc(cap * 4); size_t got;
    while ((got = fread(x + n, 4, cap - n, stdin)) > 0) { n += got; if (n == cap) { cap *= 2; x = realloc(x, cap * 4); } }
    unsigned char * q8 = malloc(n / 32 * 34), * q4 = malloc(n / 32 * 18);
    quantize_row_q8_0_ref(x, q8, n); quantize_row_q4_0_ref(x, q4, n);
    fwrite(q8, 1, n / 32 * 34, stdout); fwrite(q4, 1, n / 32 * 18, stdout);
    return 0;
}

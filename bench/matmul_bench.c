// The CPU backend's two forward matmuls side by side (not a test): OpenBLAS's sgemm (it
// repacks the weight matrix on every call) and the few-rows kernel (kernels/cpu/matmul_rows.c:
// the input transposed instead), microseconds per call on one thread, for row counts from
// AR decoding (1) through speculative verifies and drafts (6..64) to a LLaDA pass (69, 128),
// on the weight shapes of bench/speculative.sh's target (d 256, d_ff 704, vocabulary 4096)
// and of the demo's model (d 128). Weights cold, as in a forward pass: each call takes the
// next of enough matrices to overflow the last-level cache. The last column is blas / rows
// (> 1: the few-rows kernel is faster); backend_cpu.c sends 6..64 rows to it.
// Usage: matmul_bench [--calls N]
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/flags.h"
#include "common/rng.h"
#include "kernels/cpu/cpu_ops.h"

enum { MATRICES_MB = 96 };  // > a 32 MB L3

static float *random_floats(size_t n, Rng *rng) {
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = rng_uniform(rng) - 0.5f;
    return x;
}

typedef void (*Matmul)(float *, const float *, const float *, int, int, int);

// Microseconds per call, cycling through the weight matrices.
static double time_calls(Matmul f, float *out, const float *x, float **w, int n_w, int N,
                         int C_in, int C_out, int calls) {
    f(out, x, w[0], N, C_in, C_out);  // warm-up: the allocator, the library
    double t0 = omp_get_wtime();
    for (int c = 0; c < calls; c++) f(out, x, w[c % n_w], N, C_in, C_out);
    return (omp_get_wtime() - t0) / calls * 1e6;
}

int main(int argc, char **argv) {
    int calls = 200;
    Flag flags[] = {{"calls", FLAG_INT, &calls, "timed calls per cell", FLAG_FREE, 0}};
    int rc = flags_parse_command(flags, 1, argc - 1, argv + 1, "usage: matmul_bench [--calls N]");
    if (rc) return rc < 0;
    if (calls < 1) return cli_fail("matmul_bench: --calls must be >= 1");
    omp_set_num_threads(1);
    static const int rows[] = {1, 4, 6, 8, 16, 24, 32, 48, 64, 69, 128};
    static const int shapes[][2] = {{256, 256}, {256, 704}, {704, 256}, {256, 4096}, {128, 4096}};
    Rng rng;
    rng_seed(&rng, 1);
    printf("| rows | C_in | C_out | OpenBLAS (us) | few-rows (us) | blas / rows |\n");
    printf("|---|---|---|---|---|---|\n");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int C_in = shapes[s][0], C_out = shapes[s][1];
        size_t w_size = (size_t)C_in * C_out;
        int n_w = (int)((size_t)MATRICES_MB * 1024 * 1024 / (w_size * sizeof(float))) + 1;
        float **w = malloc((size_t)n_w * sizeof *w);
        for (int i = 0; i < n_w; i++) w[i] = random_floats(w_size, &rng);
        for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
            int N = rows[r];
            float *x = random_floats((size_t)N * C_in, &rng);
            float *out = malloc((size_t)N * C_out * sizeof(float));
            double blas = time_calls(cpu_matmul_forward_blas, out, x, w, n_w, N, C_in, C_out,
                                     calls);
            double few = time_calls(cpu_matmul_forward_rows, out, x, w, n_w, N, C_in, C_out,
                                    calls);
            printf("| %d | %d | %d | %.1f | %.1f | %.2f |\n", N, C_in, C_out, blas, few,
                   blas / few);
            free(x), free(out);
        }
        for (int i = 0; i < n_w; i++) free(w[i]);
        free(w);
    }
    return 0;
}

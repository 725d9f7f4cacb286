// The linear layer for a few rows: a speculative verify (k + 1 rows per sequence), a drafter's
// pass, the sampler's LM head over one block. OpenBLAS packs the weight matrix into panels on
// every call, which at a few rows costs more than the multiply (perf of speculative decoding:
// sgemm_incopy 28% beside sgemm_kernel 18% of the run). Here the small operand is the one
// rearranged: the input is transposed once per call (C_in x rows, rows padded to 16), and each
// tile of 8 weight rows x 32 input rows is a run of broadcast multiply-adds over the summed
// dimension, read straight from the weight's own rows. Every output is one chain of
// multiply-adds in order of the summed index, so its bits do not depend on the thread count.
// backend_cpu.c sends 6..64 rows here (`make bench-matmul`; figures in bench/RESULTS.md).
// Over bf16 weights (`bf16` a constant in each caller) each weight is widened as it is
// broadcast: the bits of the fp32 kernel over the widened weights.
#include <stdlib.h>
#include <string.h>

#include "common/bf16.h"
#include "kernels/cpu/cpu_ops.h"

typedef float vec16 __attribute__((vector_size(64)));

enum { TILE_O = 8, TILE_M = 32 };

// out[m0 + m, o0 + o] for o < n_o (<= 8), m < n_m (<= 16 * nv): weight rows past n_o are read
// again as the last one (never stored), input rows past the call's are xt's zero padding.
static inline __attribute__((always_inline)) void tile(float *out, int C_out, const float *xt,
                                                       int rows_padded, const void *weight,
                                                       int C_in, int o0, int n_o, int m0,
                                                       int n_m, int nv, int bf16) {
    size_t row[TILE_O];  // element offsets of the tile's weight rows
    for (int o = 0; o < TILE_O; o++) row[o] = (size_t)(o0 + (o < n_o ? o : n_o - 1)) * C_in;
    vec16 acc[TILE_O][2];
    memset(acc, 0, sizeof acc);
    for (int i = 0; i < C_in; i++) {
        const vec16 *x = (const vec16 *)(xt + (size_t)i * rows_padded + m0);
        vec16 x0 = x[0], x1 = nv == 2 ? x[1] : x0;
#pragma GCC unroll 8
        for (int o = 0; o < TILE_O; o++) {
            float w = bf16 ? bf16_to_float(((const uint16_t *)weight)[row[o] + i])
                           : ((const float *)weight)[row[o] + i];
            acc[o][0] += w * x0;
            if (nv == 2) acc[o][1] += w * x1;
        }
    }
    float t[TILE_O][TILE_M];
    memcpy(t, acc, sizeof t);
    for (int m = 0; m < n_m; m++)
        for (int o = 0; o < n_o; o++) out[(size_t)(m0 + m) * C_out + o0 + o] = t[o][m];
}

// Outputs [o0, o0 + 8) of every row, a tile of up to 32 rows at a time (nv and bf16 constants
// in each inlined tile).
static inline __attribute__((always_inline)) void output_tile(float *out, const float *xt,
                                                              int rows_padded, const void *weight,
                                                              int N, int C_in, int C_out, int o0,
                                                              int bf16) {
    int n_o = C_out - o0 < TILE_O ? C_out - o0 : TILE_O;
    for (int m0 = 0; m0 < N; m0 += TILE_M) {
        int n_m = N - m0 < TILE_M ? N - m0 : TILE_M;
        if (n_m > 16) tile(out, C_out, xt, rows_padded, weight, C_in, o0, n_o, m0, n_m, 2, bf16);
        else tile(out, C_out, xt, rows_padded, weight, C_in, o0, n_o, m0, n_m, 1, bf16);
    }
}

static void matmul_rows(float *out, const float *inp, const void *weight, int N, int C_in,
                        int C_out, int bf16) {
    // out[N, C_out] = inp[N, C_in] @ weight[C_out, C_in]^T, with xt[i][n] = inp[n][i]
    int rows_padded = (N + 15) / 16 * 16;
    float *xt = aligned_alloc(64, (size_t)C_in * rows_padded * sizeof(float));
    for (int i = 0; i < C_in; i++) {
        float *col = xt + (size_t)i * rows_padded;
        for (int n = 0; n < N; n++) col[n] = inp[(size_t)n * C_in + i];
        for (int n = N; n < rows_padded; n++) col[n] = 0.0f;
    }
    int o_tiles = (C_out + TILE_O - 1) / TILE_O;
    // as fast per multiply-add as sgemm, so threads pay at sgemm's threshold (blas_threads.h)
#pragma omp parallel for schedule(static) if (worth_threads((double)N * C_in * C_out / 16.0))
    for (int ot = 0; ot < o_tiles; ot++) {
        if (bf16) output_tile(out, xt, rows_padded, weight, N, C_in, C_out, ot * TILE_O, 1);
        else output_tile(out, xt, rows_padded, weight, N, C_in, C_out, ot * TILE_O, 0);
    }
    free(xt);
}

void cpu_matmul_forward_rows(float *out, const float *inp, const float *weight, int N, int C_in,
                             int C_out) {
    matmul_rows(out, inp, weight, N, C_in, C_out, 0);
}

void cpu_matmul_forward_rows_w16(float *out, const float *inp, const float *weight_bf16, int N,
                                 int C_in, int C_out) {
    matmul_rows(out, inp, weight_bf16, N, C_in, C_out, 1);
}

// The linear layer through OpenBLAS's sgemm: what the CPU backend runs; the loops of matmul.c
// stay the reference the tests compare it with. dllm does the threading itself, as everywhere
// on the CPU: each thread computes its own pieces of the output, only when the product is
// worth threads, and OpenBLAS itself stays on one thread (blas_threads.h).
//
// The bits must not depend on the thread count: threads_adapt changes it under load, and a
// run must not change with it (test_kernels checks it). But a product's bits depend on how it
// is cut into sgemm calls: OpenBLAS 0.3.21's Haswell kernels (an AVX2 CPU without AVX-512, or
// OPENBLAS_CORETYPE=Haswell in the environment, which ./dllm leaves as it finds it) round the
// last columns of a call differently from the same columns inside a wider call. So the cut
// follows the shape alone:
// - many rows: whole blocks of ROW_BLOCK rows per thread, one call each. A row's bits do not
//   depend on which multiple of ROW_BLOCK its call starts at (the kernels' row unrolls, 4 to
//   16, divide 48), so one thread's single call equals two threads' halves;
// - few rows: chunks of COL_CHUNK columns, one call per chunk whatever the thread count.
#include <cblas.h>
#include <omp.h>

#include "kernels/cpu/blas_threads.h"

enum { ROW_BLOCK = 48, COL_CHUNK = 128 };

// A piece of a rows x cols output: rows [r0, r1), columns [c0, c1), one sgemm call.
typedef struct {
    int r0, r1, c0, c1;
} Piece;

static int min_int(int a, int b) { return a < b ? a : b; }

static int piece_count(int rows, int cols, int threads) {
    return rows >= 2 * ROW_BLOCK ? threads : (cols + COL_CHUNK - 1) / COL_CHUNK;
}

static Piece piece_at(int rows, int cols, int threads, int p) {
    if (rows >= 2 * ROW_BLOCK) {
        long blocks = (rows + ROW_BLOCK - 1) / ROW_BLOCK;
        int r0 = (int)(blocks * p / threads) * ROW_BLOCK;
        int r1 = (int)(blocks * (p + 1) / threads) * ROW_BLOCK;
        return (Piece){min_int(r0, rows), min_int(r1, rows), 0, cols};
    }
    return (Piece){0, rows, p * COL_CHUNK, min_int((p + 1) * COL_CHUNK, cols)};
}

void cpu_matmul_forward_blas(float *out, const float *inp, const float *weight, int N, int C_in,
                             int C_out) {
    // out[N, C_out] = inp[N, C_in] @ weight[C_out, C_in]^T
    int saved, threads = blas_threads((double)N * C_in * C_out, &saved);
    int pieces = piece_count(N, C_out, threads);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int p = 0; p < pieces; p++) {
        Piece c = piece_at(N, C_out, threads, p);
        if (c.r1 > c.r0 && c.c1 > c.c0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c.r1 - c.r0, c.c1 - c.c0, C_in,
                        1.0f, inp + (size_t)c.r0 * C_in, C_in, weight + (size_t)c.c0 * C_in, C_in,
                        0.0f, out + (size_t)c.r0 * C_out + c.c0, C_out);
    }
    blas_restore_threads(saved);
}

void cpu_matmul_backward_blas(Act *dinp_act, float *dweight, const Act *dout_act,
                              const Act *inp_act, const float *weight, int N, int C_in, int C_out) {
    float *dinp = dinp_act;
    const float *dout = dout_act;
    const float *inp = inp_act;
    int saved, threads = blas_threads((double)N * C_in * C_out, &saved);
    int dinp_pieces = piece_count(N, C_in, threads);
    int dweight_pieces = dweight ? piece_count(C_out, C_in, threads) : 0;
#pragma omp parallel num_threads(threads)
    {
        // dinp[N, C_in] += dout[N, C_out] @ weight[C_out, C_in]
#pragma omp for schedule(static) nowait
        for (int p = 0; p < dinp_pieces; p++) {
            Piece c = piece_at(N, C_in, threads, p);
            if (c.r1 > c.r0 && c.c1 > c.c0)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c.r1 - c.r0, c.c1 - c.c0,
                            C_out, 1.0f, dout + (size_t)c.r0 * C_out, C_out, weight + c.c0, C_in,
                            1.0f, dinp + (size_t)c.r0 * C_in + c.c0, C_in);
        }
        // dweight[C_out, C_in] += dout^T @ inp (no pieces for frozen weights)
#pragma omp for schedule(static)
        for (int p = 0; p < dweight_pieces; p++) {
            Piece c = piece_at(C_out, C_in, threads, p);
            if (c.r1 > c.r0 && c.c1 > c.c0)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c.r1 - c.r0, c.c1 - c.c0, N,
                            1.0f, dout + c.r0, C_out, inp + c.c0, C_in, 1.0f,
                            dweight + (size_t)c.r0 * C_in + c.c0, C_in);
        }
    }
    blas_restore_threads(saved);
}

// The linear layer through OpenBLAS's sgemm: what the CPU backend runs; the loops of matmul.c
// stay the reference the tests compare it with. dllm does the threading itself, as everywhere
// on the CPU: each thread multiplies its own slice of the output's columns, only when the
// product is worth threads, and OpenBLAS itself stays on one thread (blas_threads.h).
// A slice is a whole sgemm over the full summed dimension, so the bits do not depend on the
// thread count (test_kernels checks it).
#include <cblas.h>
#include <omp.h>

#include "kernels/cpu/blas_threads.h"

// Columns [*first, *end) of `cols` for this thread: equal slices, multiples of 16.
static void my_columns(int cols, int *first, int *end) {
    int threads = omp_get_num_threads(), me = omp_get_thread_num();
    int per = ((cols + threads - 1) / threads + 15) / 16 * 16;
    *first = me * per < cols ? me * per : cols;
    *end = *first + per < cols ? *first + per : cols;
}

void cpu_matmul_forward_blas(float *out, const float *inp, const float *weight, int N, int C_in,
                             int C_out) {
    // out[N, C_out] = inp[N, C_in] @ weight[C_out, C_in]^T, by slices of C_out
    int saved, threads = blas_threads((double)N * C_in * C_out, &saved);
#pragma omp parallel num_threads(threads)
    {
        int o0, o1;
        my_columns(C_out, &o0, &o1);
        if (o1 > o0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, o1 - o0, C_in, 1.0f, inp,
                        C_in, weight + (size_t)o0 * C_in, C_in, 0.0f, out + o0, C_out);
    }
    blas_restore_threads(saved);
}

void cpu_matmul_backward_blas(Act *dinp_act, float *dweight, const Act *dout_act,
                              const Act *inp_act, const float *weight, int N, int C_in, int C_out) {
    float *dinp = dinp_act;
    const float *dout = dout_act;
    const float *inp = inp_act;
    int saved, threads = blas_threads((double)N * C_in * C_out, &saved);
#pragma omp parallel num_threads(threads)
    {
        // dinp[N, C_in] += dout[N, C_out] @ weight[C_out, C_in], by slices of C_in
        int i0, i1;
        my_columns(C_in, &i0, &i1);
        if (i1 > i0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, i1 - i0, C_out, 1.0f, dout,
                        C_out, weight + i0, C_in, 1.0f, dinp + i0, C_in);
        // dweight[C_out, C_in] += dout^T @ inp, by slices of C_in (none for frozen weights)
        if (i1 > i0 && dweight)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C_out, i1 - i0, N, 1.0f, dout,
                        C_out, inp + i0, C_in, 1.0f, dweight + i0, C_in);
    }
    blas_restore_threads(saved);
}

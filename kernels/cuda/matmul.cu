// Linear layers through cuBLAS. Row-major out[N, C_out] = inp[N, C_in] @ W[C_out, C_in]^T is,
// in cuBLAS's column-major terms, out^T = W^T(op T of the C_in x C_out matrix) x inp^T.
// Inputs and outputs stay fp32; with bf16 on (the default) cuBLAS multiplies in bf16 on the
// tensor cores and accumulates in fp32 (CUBLAS_COMPUTE_32F_FAST_16BF).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/cuda_ops.h"

static cublasHandle_t handle;
static int use_bf16 = 1;

static cublasHandle_t get_handle(void) {
    if (!handle) {
        CUDA_CHECK(cublasCreate(&handle));
        // deterministic results: no split-K reductions that race
        CUDA_CHECK(cublasSetAtomicsMode(handle, CUBLAS_ATOMICS_NOT_ALLOWED));
    }
    return handle;
}

extern "C" void cuda_matmul_set_bf16(int on) { use_bf16 = on; }

// C[m, n] (column-major) = alpha * op(A) op(B) + beta * C
static void gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const float *A,
                 int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    float alpha = 1.0f;
    cublasComputeType_t compute = use_bf16 ? CUBLAS_COMPUTE_32F_FAST_16BF : CUBLAS_COMPUTE_32F;
    CUDA_CHECK(cublasGemmEx(get_handle(), ta, tb, m, n, k, &alpha, A, CUDA_R_32F, lda, B,
                            CUDA_R_32F, ldb, &beta, C, CUDA_R_32F, ldc, compute,
                            CUBLAS_GEMM_DEFAULT));
}

extern "C" void cuda_matmul_forward(float *out, const float *inp, const float *weight, int N,
                                    int C_in, int C_out) {
    gemm(CUBLAS_OP_T, CUBLAS_OP_N, C_out, N, C_in, weight, C_in, inp, C_in, 0.0f, out, C_out);
}

extern "C" void cuda_matmul_backward(float *dinp, float *dweight, const float *dout,
                                     const float *inp, const float *weight, int N, int C_in,
                                     int C_out) {
    // dinp[N, C_in] += dout[N, C_out] @ W[C_out, C_in]
    gemm(CUBLAS_OP_N, CUBLAS_OP_N, C_in, N, C_out, weight, C_in, dout, C_out, 1.0f, dinp, C_in);
    // dW[C_out, C_in] += dout^T @ inp
    gemm(CUBLAS_OP_N, CUBLAS_OP_T, C_in, C_out, N, inp, C_in, dout, C_out, 1.0f, dweight, C_in);
}

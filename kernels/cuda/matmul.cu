// Linear layers through cuBLASLt. Row-major out[N, C_out] = inp[N, C_in] @ W[C_out, C_in]^T
// is, in cuBLAS's column-major terms, out^T = op_T(W^T) x inp^T.
// With bf16 on (the default) both operands are rounded to bf16 into a scratch buffer and
// multiplied on the tensor cores with fp32 accumulation into the fp32 output; the weights
// and activations themselves stay fp32 (the master copy AdamW updates). With bf16 off every
// operand is fp32 (CUBLAS_COMPUTE_32F), the mode the whole-model CPU comparison uses.
// The model has no biases, so no epilogue is fused; the backward's "adds into" contract is
// the GEMM's beta = 1. cuBLASLt's results are the same bits from run to run on one GPU (its
// split-K reductions are ordered), which the determinism tests rely on.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/cuda_ops.h"

#define WORKSPACE_BYTES (32u << 20)

static cublasLtHandle_t lt;
static void *workspace;
static __nv_bfloat16 *operands;  // bf16 copies of the current GEMM's two operands
static size_t operands_cap;      // elements

static void lt_init(void) {
    if (lt) return;
    CUDA_CHECK(cublasLtCreate(&lt));
    CUDA_CHECK(cudaMalloc(&workspace, WORKSPACE_BYTES));
}

__global__ void to_bf16_kernel(__nv_bfloat16 *out, const float *in, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = __float2bfloat16(in[i]);
}

// Elements from 0 and from the returned offset (256-byte aligned) hold a and b.
static size_t operands_fit(size_t a, size_t b) {
    size_t offset = (a + 127) / 128 * 128;
    if (offset + b > operands_cap) {
        if (operands) CUDA_CHECK(cudaFree(operands));
        CUDA_CHECK(cudaMalloc(&operands, (offset + b) * sizeof(__nv_bfloat16)));
        operands_cap = offset + b;
    }
    return offset;
}

// The largest power of two (up to 256) that divides the address: cuBLASLt assumes 256-byte
// aligned matrices unless told otherwise, and slices of the parameter and activation buffers
// (one layer's weights, a norm gain's gradient) are often less aligned.
static uint32_t alignment_of(const void *p) {
    uintptr_t a = (uintptr_t)p;
    uint32_t align = 256;
    while (align > 1 && a % align != 0) align /= 2;
    return align;
}

static void round_to_bf16(__nv_bfloat16 *out, const float *in, size_t n) {
    to_bf16_kernel<<<(unsigned)((n + 255) / 256), 256>>>(out, in, n);
    CUDA_CHECK_LAUNCH();
}

// C[m, n] (column-major) = op(A) op(B) + beta * C; A is m x k after op, B is k x n.
// na and nb are the operands' element counts (for the bf16 copies).
static void gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const float *A,
                 int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    lt_init();
    const void *a = A, *b = B;
    int use_bf16 = cuda_bf16();
    cudaDataType_t type = use_bf16 ? CUDA_R_16BF : CUDA_R_32F;
    if (use_bf16) {
        size_t na = (size_t)m * k, nb = (size_t)k * n;
        size_t offset = operands_fit(na, nb);
        round_to_bf16(operands, A, na);
        round_to_bf16(operands + offset, B, nb);
        a = operands, b = operands + offset;
    }
    cublasLtMatmulDesc_t op;
    CUDA_CHECK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    CUDA_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CUDA_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    cublasLtMatrixLayout_t la, lb, lc;
    int ta_t = ta == CUBLAS_OP_T, tb_t = tb == CUBLAS_OP_T;
    CUDA_CHECK(cublasLtMatrixLayoutCreate(&la, type, ta_t ? k : m, ta_t ? m : k, lda));
    CUDA_CHECK(cublasLtMatrixLayoutCreate(&lb, type, tb_t ? n : k, tb_t ? k : n, ldb));
    CUDA_CHECK(cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, m, n, ldc));
    cublasLtMatmulPreference_t pref;
    CUDA_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    size_t ws = WORKSPACE_BYTES;
    CUDA_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                    &ws, sizeof ws));
    uint32_t align[4] = {alignment_of(a), alignment_of(b), alignment_of(C), alignment_of(C)};
    cublasLtMatmulPreferenceAttributes_t which[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    for (int i = 0; i < 4; i++)
        CUDA_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, which[i], &align[i], sizeof align[i]));
    cublasLtMatmulHeuristicResult_t heuristic;
    int found = 0;
    CUDA_CHECK(cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 1, &heuristic, &found));
    if (!found) cuda_fail("no cuBLASLt algorithm for this shape", "gemm", __FILE__, __LINE__);
    float alpha = 1.0f;
    CUDA_CHECK(cublasLtMatmul(lt, op, &alpha, a, la, b, lb, &beta, C, lc, C, lc, &heuristic.algo,
                              workspace, WORKSPACE_BYTES, 0));
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(la);
    cublasLtMatrixLayoutDestroy(lb);
    cublasLtMatrixLayoutDestroy(lc);
    cublasLtMatmulDescDestroy(op);
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

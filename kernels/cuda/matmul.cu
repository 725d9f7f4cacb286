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
static __nv_bfloat16 *operands;  // bf16 copies of the current op's operands, one after another
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

// An op's operands as the GEMMs read them: the fp32 matrices themselves, or in bf16 mode
// their bf16 copies (each rounded once per op, though the backward reads dout twice).
typedef struct {
    const void *ptr[3];
} Operands;

static size_t padded(size_t n) { return (n + 127) / 128 * 128; }  // 256-byte steps

// x[i] (n[i] floats, count of them) rounded into the scratch in bf16 mode.
static Operands prepare(const float *const *x, const size_t *n, int count) {
    Operands o;
    if (!cuda_bf16()) {
        for (int i = 0; i < count; i++) o.ptr[i] = x[i];
        return o;
    }
    size_t total = 0;
    for (int i = 0; i < count; i++) total += padded(n[i]);
    if (total > operands_cap) {
        if (operands) CUDA_CHECK(cudaFree(operands));
        CUDA_CHECK(cudaMalloc(&operands, total * sizeof(__nv_bfloat16)));
        operands_cap = total;
    }
    size_t at = 0;
    for (int i = 0; i < count; i++) {
        to_bf16_kernel<<<(unsigned)((n[i] + 255) / 256), 256>>>(operands + at, x[i], n[i]);
        CUDA_CHECK_LAUNCH();
        o.ptr[i] = operands + at;
        at += padded(n[i]);
    }
    return o;
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

// C[m, n] (column-major) = op(A) op(B) + beta * C; A is m x k after op, B is k x n; A and B
// are fp32 or bf16 as prepare() left them.
static void gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const void *a,
                 int lda, const void *b, int ldb, float beta, float *C, int ldc) {
    lt_init();
    cudaDataType_t type = cuda_bf16() ? CUDA_R_16BF : CUDA_R_32F;
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
    const float *x[2] = {weight, inp};
    size_t n[2] = {(size_t)C_out * C_in, (size_t)N * C_in};
    Operands o = prepare(x, n, 2);
    gemm(CUBLAS_OP_T, CUBLAS_OP_N, C_out, N, C_in, o.ptr[0], C_in, o.ptr[1], C_in, 0.0f, out,
         C_out);
}

extern "C" void cuda_matmul_backward(float *dinp, float *dweight, const float *dout,
                                     const float *inp, const float *weight, int N, int C_in,
                                     int C_out) {
    const float *x[3] = {weight, dout, inp};
    size_t n[3] = {(size_t)C_out * C_in, (size_t)N * C_out, (size_t)N * C_in};
    Operands o = prepare(x, n, 3);
    // dinp[N, C_in] += dout[N, C_out] @ W[C_out, C_in]
    gemm(CUBLAS_OP_N, CUBLAS_OP_N, C_in, N, C_out, o.ptr[0], C_in, o.ptr[1], C_out, 1.0f, dinp,
         C_in);
    // dW[C_out, C_in] += dout^T @ inp
    gemm(CUBLAS_OP_N, CUBLAS_OP_T, C_in, C_out, N, o.ptr[2], C_in, o.ptr[1], C_out, 1.0f, dweight,
         C_in);
}

// Linear layers through cuBLASLt. Row-major out[N, C_out] = inp[N, C_in] @ W[C_out, C_in]^T
// is, in cuBLAS's column-major terms, out^T = op_T(W^T) x inp^T.
// fp32 activations (backend_cuda_fp32): every matrix fp32, CUBLAS_COMPUTE_32F. bf16 activations
// (backend_cuda): activations and outputs bf16, the fp32 master weights rounded to bf16 into a
// scratch buffer once per op, multiplied on the tensor cores with fp32 accumulation.
// A bf16-weight model's weights are bf16 already (cuda_matmul_*_w16: no rounding pass).
// Biases are a separate op, so no epilogue is fused; the backward's "adds into" contract is
// the GEMM's beta = 1. cuBLASLt's results are the same bits from run to run on one GPU (its
// split-K reductions are ordered), which the determinism tests rely on.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <string.h>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/cuda_ops.h"

#define WORKSPACE_BYTES (32u << 20)

static cublasLtHandle_t lt;
static void *workspace;
static __nv_bfloat16 *weights_bf16;  // the current op's weight, rounded
static size_t weights_cap;           // elements

static void lt_init(void) {
    if (lt) return;
    CUDA_CHECK(cublasLtCreate(&lt));
    CUDA_CHECK(cudaMalloc(&workspace, WORKSPACE_BYTES));
}

// The weight as the GEMMs read it: itself for fp32 activations, else rounded to bf16.
template <typename A>
static const void *weight_operand(const float *w, size_t n) {
    if (sizeof(A) == sizeof(float)) return w;
    if (n > weights_cap) {
        if (weights_bf16) CUDA_CHECK(cudaFree(weights_bf16));
        CUDA_CHECK(cudaMalloc(&weights_bf16, n * sizeof(__nv_bfloat16)));
        weights_cap = n;
    }
    cuda_floats_to_act<__nv_bfloat16>(weights_bf16, w, n);
    return weights_bf16;
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

// What cuBLASLt's heuristic chose for each GEMM shape seen so far: asking takes tens of
// microseconds on the host, as long as a small model's whole GEMM, so each shape asks once.
// The key holds everything the answer depends on: types, transposes, sizes, leading
// dimensions and pointer alignments. A shape the heuristic refused is remembered as refused.
enum { KEY_INTS = 13, MAX_SHAPES = 256 };
typedef struct {
    int key[KEY_INTS];
    int refused;
    cublasLtMatmulAlgo_t algo;
} ShapeAlgo;
static ShapeAlgo shapes[MAX_SHAPES];
static int n_shapes;

// The heuristic's first algorithm for these descriptors and alignments (bytes) into *algo;
// 0 when it offers none (no result, or a result whose state is not success): cuBLASLt then
// has no algorithm for this shape at these alignments, and none may be run.
static int ask_heuristic(cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t la,
                         cublasLtMatrixLayout_t lb, cublasLtMatrixLayout_t lc,
                         const uint32_t align[3], cublasLtMatmulAlgo_t *algo) {
    cublasLtMatmulPreference_t pref;
    CUDA_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    size_t ws = WORKSPACE_BYTES;
    CUDA_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                    &ws, sizeof ws));
    cublasLtMatmulPreferenceAttributes_t which[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    for (int i = 0; i < 4; i++) {
        const uint32_t *value = &align[i < 3 ? i : 2];  // D is C
        CUDA_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, which[i], value, sizeof *value));
    }
    cublasLtMatmulHeuristicResult_t heuristic;
    int found = 0;
    cublasStatus_t status =
        cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 1, &heuristic, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (status != CUBLAS_STATUS_SUCCESS || found < 1 || heuristic.state != CUBLAS_STATUS_SUCCESS)
        return 0;
    *algo = heuristic.algo;
    return 1;
}

// C[m, n] (column-major) = op(A) op(B) + beta * C; A is m x k after op, B is k x n; A and B
// are of type `in`, C of type `out` (fp32 or bf16 each), the arithmetic fp32. Returns 0, or
// -1 when cuBLASLt has no algorithm for it (nothing computed).
static int gemm_try(cudaDataType_t in, cudaDataType_t out, cublasOperation_t ta,
                    cublasOperation_t tb, int m, int n, int k, const void *a, int lda,
                    const void *b, int ldb, float beta, void *C, int ldc) {
    lt_init();
    cublasLtMatmulDesc_t op;
    CUDA_CHECK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    CUDA_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CUDA_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    cublasLtMatrixLayout_t la, lb, lc;
    int ta_t = ta == CUBLAS_OP_T, tb_t = tb == CUBLAS_OP_T;
    CUDA_CHECK(cublasLtMatrixLayoutCreate(&la, in, ta_t ? k : m, ta_t ? m : k, lda));
    CUDA_CHECK(cublasLtMatrixLayoutCreate(&lb, in, tb_t ? n : k, tb_t ? k : n, ldb));
    CUDA_CHECK(cublasLtMatrixLayoutCreate(&lc, out, m, n, ldc));
    uint32_t align[3] = {alignment_of(a), alignment_of(b), alignment_of(C)};
    int key[KEY_INTS] = {(int)in, (int)out, (int)ta, (int)tb, m, n, k, lda, ldb, ldc,
                         (int)align[0], (int)align[1], (int)align[2]};
    const ShapeAlgo *known = NULL;
    for (int i = 0; i < n_shapes && !known; i++)
        if (memcmp(shapes[i].key, key, sizeof key) == 0) known = &shapes[i];
    ShapeAlgo asked;
    if (!known) {
        memcpy(asked.key, key, sizeof key);
        asked.refused = !ask_heuristic(op, la, lb, lc, align, &asked.algo);
        if (n_shapes < MAX_SHAPES) shapes[n_shapes++] = asked;  // past that, asked every time
        known = &asked;
    }
    float alpha = 1.0f;
    if (!known->refused)
        CUDA_CHECK(cublasLtMatmul(lt, op, &alpha, a, la, b, lb, &beta, C, lc, C, lc,
                                  &known->algo, workspace, WORKSPACE_BYTES, 0));
    cublasLtMatrixLayoutDestroy(la);
    cublasLtMatrixLayoutDestroy(lb);
    cublasLtMatrixLayoutDestroy(lc);
    cublasLtMatmulDescDestroy(op);
    return known->refused ? -1 : 0;
}

// Elements a column-major rows x cols matrix with leading dimension ld spans.
static size_t span(int rows, int cols, int ld) { return (size_t)ld * (cols - 1) + rows; }

// p itself when it is 16-byte aligned, else a copy of its `bytes` in scratch buffer `slot`
// (cudaMalloc's alignment, 256 bytes).
static void *aligned(int slot, const void *p, size_t bytes) {
    static void *buf[3];
    static size_t cap[3];
    if (alignment_of(p) >= 16) return (void *)p;
    if (bytes > cap[slot]) {
        if (buf[slot]) CUDA_CHECK(cudaFree(buf[slot]));
        buf[slot] = NULL, cap[slot] = 0;
        if (cudaMalloc(&buf[slot], bytes) != cudaSuccess) return NULL;
        cap[slot] = bytes;
    }
    CUDA_CHECK(cudaMemcpy(buf[slot], p, bytes, cudaMemcpyDeviceToDevice));
    return buf[slot];
}

// The GEMM of gemm_try. Slices of the parameter and activation buffers may be less aligned
// than cuBLASLt's algorithms accept (a bf16 span of an odd-width row: 2 bytes); when it
// refuses, the misaligned matrices go through aligned copies. A refusal even then is a
// recorded device error with nothing computed, never a run of an algorithm it did not offer.
static void gemm(cudaDataType_t in, cudaDataType_t out, cublasOperation_t ta, cublasOperation_t tb,
                 int m, int n, int k, const void *a, int lda, const void *b, int ldb, float beta,
                 void *C, int ldc) {
    if (gemm_try(in, out, ta, tb, m, n, k, a, lda, b, ldb, beta, C, ldc) == 0) return;
    size_t in_bytes = in == CUDA_R_32F ? 4 : 2, out_bytes = out == CUDA_R_32F ? 4 : 2;
    int ta_t = ta == CUBLAS_OP_T, tb_t = tb == CUBLAS_OP_T;
    size_t c_bytes = span(m, n, ldc) * out_bytes;
    const void *a2 = aligned(0, a, span(ta_t ? k : m, ta_t ? m : k, lda) * in_bytes);
    const void *b2 = aligned(1, b, span(tb_t ? n : k, tb_t ? k : n, ldb) * in_bytes);
    void *c2 = aligned(2, C, c_bytes);  // beta = 1 reads it
    if (!a2 || !b2 || !c2 || gemm_try(in, out, ta, tb, m, n, k, a2, lda, b2, ldb, beta, c2, ldc)) {
        cuda_fail("no cuBLASLt algorithm for this GEMM, even on aligned copies", "gemm",
                  __FILE__, __LINE__);
        return;
    }
    if (c2 != C) CUDA_CHECK(cudaMemcpy(C, c2, c_bytes, cudaMemcpyDeviceToDevice));
}

template <typename A>
static cudaDataType_t data_type(void) {
    return sizeof(A) == sizeof(float) ? CUDA_R_32F : CUDA_R_16BF;
}

template <typename A>
void cuda_matmul_forward(void *out, const void *inp, const float *weight, int N, int C_in,
                         int C_out) {
    const void *w = weight_operand<A>(weight, (size_t)C_out * C_in);
    gemm(data_type<A>(), data_type<A>(), CUBLAS_OP_T, CUBLAS_OP_N, C_out, N, C_in, w, C_in, inp,
         C_in, 0.0f, out, C_out);
}

void cuda_matmul_forward_w16(void *out, const void *inp, const float *weight, int N, int C_in,
                             int C_out) {
    gemm(CUDA_R_16BF, CUDA_R_16BF, CUBLAS_OP_T, CUBLAS_OP_N, C_out, N, C_in, weight, C_in, inp,
         C_in, 0.0f, out, C_out);
}

template <typename A>
void cuda_matmul_backward(void *dinp, float *dweight, const void *dout, const void *inp,
                          const float *weight, int N, int C_in, int C_out) {
    const void *w = weight_operand<A>(weight, (size_t)C_out * C_in);
    // dinp[N, C_in] += dout[N, C_out] @ W[C_out, C_in]
    gemm(data_type<A>(), data_type<A>(), CUBLAS_OP_N, CUBLAS_OP_N, C_in, N, C_out, w, C_in, dout,
         C_out, 1.0f, dinp, C_in);
    // dW[C_out, C_in] += dout^T @ inp, into the fp32 gradients (none for frozen weights)
    if (dweight)
        gemm(data_type<A>(), CUDA_R_32F, CUBLAS_OP_N, CUBLAS_OP_T, C_in, C_out, N, inp, C_in,
             dout, C_out, 1.0f, dweight, C_in);
}

void cuda_matmul_backward_w16(void *dinp, float *dweight, const void *dout, const void *inp,
                              const float *weight, int N, int C_in, int C_out) {
    (void)dweight, (void)inp;
    gemm(CUDA_R_16BF, CUDA_R_16BF, CUBLAS_OP_N, CUBLAS_OP_N, C_in, N, C_out, weight, C_in, dout,
         C_out, 1.0f, dinp, C_in);
}

template void cuda_matmul_forward<float>(void *, const void *, const float *, int, int, int);
template void cuda_matmul_forward<__nv_bfloat16>(void *, const void *, const float *, int, int,
                                                 int);
template void cuda_matmul_backward<float>(void *, float *, const void *, const void *,
                                          const float *, int, int, int);
template void cuda_matmul_backward<__nv_bfloat16>(void *, float *, const void *, const void *,
                                                  const float *, int, int, int);

// The cuBLASLt stand-in of tests/cuda_emu/cublasLt.h: descriptors as plain structs, the
// heuristic's rules, and the GEMM on the CPU in fp32 (column-major, as cuBLASLt reads them).
#include <cblas.h>
#include <cublas_v2.h>
#include <omp.h>

#include <vector>

struct EmuLtHandle {
    int unused;
};
struct EmuLtDesc {
    cublasOperation_t ta = CUBLAS_OP_N, tb = CUBLAS_OP_N;
};
struct EmuLtLayout {
    cudaDataType_t type;
    uint64_t rows, cols;
    int64_t ld;
};
struct EmuLtPref {
    uint32_t align[4] = {256, 256, 256, 256};  // A, B, C, D: cuBLASLt's default assumption
};

static const uint64_t ALGO_MAGIC = 0x656d75616c676fULL;  // what the heuristic hands out

const char *cublasGetStatusString(cublasStatus_t s) {
    return s == CUBLAS_STATUS_SUCCESS         ? "CUBLAS_STATUS_SUCCESS"
           : s == CUBLAS_STATUS_INVALID_VALUE ? "CUBLAS_STATUS_INVALID_VALUE"
           : s == CUBLAS_STATUS_NOT_SUPPORTED ? "CUBLAS_STATUS_NOT_SUPPORTED"
                                              : "CUBLAS_STATUS_(emulated)";
}

cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) {
    static EmuLtHandle handle;
    *h = &handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t compute,
                                        cudaDataType_t scale) {
    if (compute != CUBLAS_COMPUTE_32F || scale != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    *d = new EmuLtDesc;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d,
                                              cublasLtMatmulDescAttributes_t a, const void *v,
                                              size_t n) {
    if (n != sizeof(cublasOperation_t)) return CUBLAS_STATUS_INVALID_VALUE;
    (a == CUBLASLT_MATMUL_DESC_TRANSA ? d->ta : d->tb) = *(const cublasOperation_t *)v;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
    delete d;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType_t type,
                                          uint64_t rows, uint64_t cols, int64_t ld) {
    if (ld < (int64_t)rows || ld < 1) return CUBLAS_STATUS_INVALID_VALUE;  // column-major
    *l = new EmuLtLayout{type, rows, cols, ld};
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
    delete l;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) {
    *p = new EmuLtPref;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t a,
                                                    const void *v, size_t n) {
    if (a == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES) return CUBLAS_STATUS_SUCCESS;
    if (n != sizeof(uint32_t)) return CUBLAS_STATUS_INVALID_VALUE;
    p->align[a - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES] = *(const uint32_t *)v;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
    delete p;
    return CUBLAS_STATUS_SUCCESS;
}

// m, n, k from the layouts after the transposes, or -1 when they do not fit together.
static int gemm_sizes(const EmuLtDesc *op, const EmuLtLayout *a, const EmuLtLayout *b,
                      const EmuLtLayout *c, uint64_t *m, uint64_t *n, uint64_t *k) {
    uint64_t am = op->ta == CUBLAS_OP_T ? a->cols : a->rows;
    uint64_t ak = op->ta == CUBLAS_OP_T ? a->rows : a->cols;
    uint64_t bk = op->tb == CUBLAS_OP_T ? b->cols : b->rows;
    uint64_t bn = op->tb == CUBLAS_OP_T ? b->rows : b->cols;
    if (am != c->rows || bn != c->cols || ak != bk || a->type != b->type) return -1;
    *m = am, *n = bn, *k = ak;
    return 0;
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t op,
                                              cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                              cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t,
                                              cublasLtMatmulPreference_t pref, int requested,
                                              cublasLtMatmulHeuristicResult_t results[],
                                              int *returned) {
    if (requested < 1) return CUBLAS_STATUS_INVALID_VALUE;
    uint64_t m, n, k;
    *returned = 0;
    if (gemm_sizes(op, a, b, c, &m, &n, &k)) return CUBLAS_STATUS_NOT_SUPPORTED;
    // bf16 on the tensor cores: every matrix 16-byte aligned, or no algorithm at all
    bool half = a->type == CUDA_R_16BF || c->type == CUDA_R_16BF;
    for (int i = 0; i < 4 && half; i++)
        if (pref->align[i] < 16) return CUBLAS_STATUS_SUCCESS;  // none found
    memset(&results[0], 0, sizeof results[0]);
    results[0].algo.data[0] = ALGO_MAGIC;
    memcpy(&results[0].algo.data[1], pref->align, sizeof pref->align);
    results[0].state = CUBLAS_STATUS_SUCCESS;
    *returned = 1;
    return CUBLAS_STATUS_SUCCESS;
}

static float read(cudaDataType_t t, const void *p, size_t i) {
    if (t == CUDA_R_32F) return ((const float *)p)[i];
    return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
}

// x of op(X) (rows x cols after the transpose) at (r, c), from its column-major layout.
static float element(const EmuLtLayout *l, cublasOperation_t t, const void *p, uint64_t r,
                     uint64_t c) {
    return t == CUBLAS_OP_T ? read(l->type, p, c + r * l->ld) : read(l->type, p, r + c * l->ld);
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t op, const void *alpha,
                              const void *A, cublasLtMatrixLayout_t la, const void *B,
                              cublasLtMatrixLayout_t lb, const void *beta, const void *C,
                              cublasLtMatrixLayout_t lc, void *D, cublasLtMatrixLayout_t ld,
                              const cublasLtMatmulAlgo_t *algo, void *, size_t, int) {
    uint64_t m, n, k;
    if (!algo || algo->data[0] != ALGO_MAGIC || C != D || lc != ld ||
        gemm_sizes(op, la, lb, lc, &m, &n, &k))
        return CUBLAS_STATUS_INVALID_VALUE;
    const void *ptrs[3] = {A, B, C};
    uint32_t promised[3];
    memcpy(promised, &algo->data[1], sizeof promised);
    for (int i = 0; i < 3; i++)  // on a GPU: a misaligned-address fault, or wrong results
        if ((uintptr_t)ptrs[i] % promised[i] != 0) return CUBLAS_STATUS_INVALID_VALUE;
    // op(A), op(B) and C widened to fp32, column-major without padding; the product by
    // OpenBLAS (a loop of its own made the emulated model tests minutes slower)
    std::vector<float> a(m * k), b(k * n), c(m * n);
    for (uint64_t p = 0; p < k; p++)
        for (uint64_t i = 0; i < m; i++) a[i + p * m] = element(la, op->ta, A, i, p);
    for (uint64_t j = 0; j < n; j++)
        for (uint64_t p = 0; p < k; p++) b[p + j * k] = element(lb, op->tb, B, p, j);
    float al = *(const float *)alpha, be = *(const float *)beta;
    for (uint64_t j = 0; j < n && be != 0.0f; j++)
        for (uint64_t i = 0; i < m; i++) c[i + j * m] = read(lc->type, C, i + j * lc->ld);
#ifdef EMU_GEMM_REVERSED
    // the hardware-like build: each dot product fused and summed from its last term down
    for (uint64_t j = 0; j < n; j++)
        for (uint64_t i = 0; i < m; i++) {
            float sum = 0.0f;
            for (uint64_t p = k; p-- > 0;) sum = fmaf(a[i + p * m], b[p + j * k], sum);
            c[i + j * m] = al * sum + be * c[i + j * m];
        }
#else
    // OpenBLAS on one thread: with its own threads it splits the product by their count, which
    // threads_adapt lowers under load, and its Haswell kernels round a split's edge columns
    // their own way, so a rerun of the emulated training would not repeat its bits
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    cblas_sgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, al, a.data(),
                (int)m, b.data(), (int)k, be, c.data(), (int)m);
    omp_set_num_threads(threads);
#endif
    for (uint64_t j = 0; j < n; j++)
        for (uint64_t i = 0; i < m; i++) {
            size_t at = i + j * lc->ld;
            if (lc->type == CUDA_R_32F) ((float *)D)[at] = c[i + j * m];
            else ((__nv_bfloat16 *)D)[at] = __float2bfloat16(c[i + j * m]);
        }
    return CUBLAS_STATUS_SUCCESS;
}

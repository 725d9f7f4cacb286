// CUDA_CHECK for runtime calls (and, where cublas_v2.h is included first, cuBLAS calls):
// each status type is named by its own library's message.
#ifndef DLLM_CHECK_CUH
#define DLLM_CHECK_CUH

#include <cuda_runtime.h>

#include "kernels/cuda/cuda_ops.h"

static inline void cuda_check(cudaError_t status, const char *what, const char *file, int line) {
    if (status != cudaSuccess) cuda_fail(cudaGetErrorString(status), what, file, line);
}

#ifdef CUBLAS_V2_H_
static inline void cuda_check(cublasStatus_t status, const char *what, const char *file, int line) {
    if (status != CUBLAS_STATUS_SUCCESS) cuda_fail(cublasGetStatusString(status), what, file, line);
}
#endif

#define CUDA_CHECK(call) cuda_check((call), #call, __FILE__, __LINE__)
// Checks the last kernel launch.
#define CUDA_CHECK_LAUNCH() cuda_check(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)

#endif

// Device memory, error checks, scratch space, and the deterministic sum of squares.
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/cuda/check.cuh"
#include "kernels/backend.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/reduce.cuh"

// The first failure since it was last read: library code records, the CLI decides.
static char first_failure[400];

extern "C" void cuda_fail(const char *message, const char *what, const char *file, int line) {
    if (first_failure[0]) return;
    snprintf(first_failure, sizeof first_failure, "CUDA error (%s) in %s at %s:%d", message,
             what, file, line);
}

int cuda_device_error(Error *err) {
    if (!first_failure[0]) return 0;
    error_set(err, "%s", first_failure);
    first_failure[0] = '\0';
    return -1;
}

extern "C" int cuda_device_count(void) {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

void *cuda_alloc(size_t bytes) {
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky error: the caller reports out of memory
        return NULL;
    }
    CUDA_CHECK(cudaMemset(p, 0, bytes));
    return p;
}

void cuda_free(void *ptr) { CUDA_CHECK(cudaFree(ptr)); }
void cuda_zero(void *ptr, size_t bytes) { CUDA_CHECK(cudaMemset(ptr, 0, bytes)); }

void cuda_to_device(void *dst, const void *src, size_t bytes) {
    CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}

void cuda_to_host(void *dst, const void *src, size_t bytes) {
    CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}

void cuda_copy_rows(void *dst, size_t dst_stride, const void *src, size_t src_stride,
                               size_t row_bytes, size_t rows) {
    CUDA_CHECK(cudaMemcpy2D(dst, dst_stride, src, src_stride, row_bytes, rows,
                            cudaMemcpyDeviceToDevice));
}

void cuda_to_device_rows(void *dst, size_t dst_stride, const void *src,
                                    size_t src_stride, size_t row_bytes, size_t rows) {
    CUDA_CHECK(cudaMemcpy2D(dst, dst_stride, src, src_stride, row_bytes, rows,
                            cudaMemcpyHostToDevice));
}

static void *scratch;
static size_t scratch_bytes;

void *cuda_scratch(size_t bytes) {
    if (bytes > scratch_bytes) {
        if (scratch) CUDA_CHECK(cudaFree(scratch));
        CUDA_CHECK(cudaMalloc(&scratch, bytes));
        scratch_bytes = bytes;
    }
    return scratch;
}

#define SUM_BLOCKS 1024
#define SUM_THREADS 256

// Each block sums a fixed strided subset in double: the same grouping on every run.
__global__ void sum_squares_kernel(double *partial, const float *x, size_t n) {
    double s = 0.0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        s += (double)x[i] * x[i];
    s = block_sum(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// One block per chunk of SUM_SQUARES_CHUNK values: its sum of squares in double.
__global__ void sum_squares_chunks_kernel(double *partial, const float *x, size_t n) {
    size_t start = (size_t)blockIdx.x * SUM_SQUARES_CHUNK;
    size_t end = start + SUM_SQUARES_CHUNK < n ? start + SUM_SQUARES_CHUNK : n;
    double s = 0.0;
    for (size_t i = start + threadIdx.x; i < end; i += blockDim.x) s += (double)x[i] * x[i];
    s = block_sum(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

void cuda_sum_squares_chunks(double *partials, const float *x, size_t n) {
    size_t chunks = (n + SUM_SQUARES_CHUNK - 1) / SUM_SQUARES_CHUNK;
    if (chunks == 0) return;
    double *partial = (double *)cuda_scratch(chunks * sizeof(double));
    sum_squares_chunks_kernel<<<(unsigned)chunks, SUM_THREADS>>>(partial, x, n);
    CUDA_CHECK_LAUNCH();
    CUDA_CHECK(cudaMemcpy(partials, partial, chunks * sizeof(double), cudaMemcpyDeviceToHost));
}

double cuda_sum_squares(const float *x, size_t n) {
    double *partial = (double *)cuda_scratch(SUM_BLOCKS * sizeof(double));
    sum_squares_kernel<<<SUM_BLOCKS, SUM_THREADS>>>(partial, x, n);
    CUDA_CHECK_LAUNCH();
    double host[SUM_BLOCKS], total = 0.0;
    CUDA_CHECK(cudaMemcpy(host, partial, sizeof host, cudaMemcpyDeviceToHost));
    for (int i = 0; i < SUM_BLOCKS; i++) total += host[i];
    return total;
}

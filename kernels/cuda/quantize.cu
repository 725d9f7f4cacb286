// BitNet b1.58's quantisers, the twins of kernels/cpu/quantize.c. The ternary scale is the mean
// |w| of the whole matrix: per-block partial sums in double, then one thread adds them in order
// (the same bits on every run, no host round trip), then every weight is rounded against it.
// Activations: one block per row finds the row's largest magnitude, then quantises the row.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>

#include "kernels/cuda/act.cuh"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/reduce.cuh"

#define TERNARY_BLOCKS 128
#define TERNARY_THREADS 256

// partial[b] = sum of |src[i]| over block b's grid-stride share
__global__ void abs_sum_partial_kernel(double *partial, const float *src, size_t n) {
    double s = 0.0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        s += fabs((double)src[i]);
    s = block_sum(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// *scale = max(mean |src|, 1e-5), the partials added in order by one thread
__global__ void ternary_scale_kernel(float *scale, const double *partial, size_t n) {
    double s = 0.0;
    for (int b = 0; b < TERNARY_BLOCKS; b++) s += partial[b];
    *scale = fmaxf((float)(s / (double)n), 1e-5f);
}

__global__ void ternarize_kernel(float *dst, const float *src, const float *scale, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    float s = *scale;
    if (i < n) dst[i] = s * fminf(fmaxf(rintf(src[i] / s), -1.0f), 1.0f);
}

void cuda_ternarize(float *dst, const float *src, size_t n) {
    double *partial = (double *)cuda_scratch(TERNARY_BLOCKS * sizeof(double) + sizeof(double));
    float *scale = (float *)(partial + TERNARY_BLOCKS);
    abs_sum_partial_kernel<<<TERNARY_BLOCKS, TERNARY_THREADS>>>(partial, src, n);
    CUDA_CHECK_LAUNCH();
    ternary_scale_kernel<<<1, 1>>>(scale, partial, n);
    CUDA_CHECK_LAUNCH();
    ternarize_kernel<<<blocks_for(n, 256), 256>>>(dst, src, scale, n);
    CUDA_CHECK_LAUNCH();
}

template <typename A>
__global__ void quantize_rows_kernel(A *out, const A *x, int C) {
    size_t row = (size_t)blockIdx.x * C;
    float m = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) m = fmaxf(m, fabsf(to_float(x[row + i])));
    float q = 127.0f / fmaxf(block_max(m), 1e-5f);
    for (int i = threadIdx.x; i < C; i += blockDim.x)
        out[row + i] = from_float<A>(fminf(fmaxf(rintf(to_float(x[row + i]) * q), -128.0f), 127.0f) / q);
}

template <typename A>
void cuda_quantize_rows(void *out, const void *x, int N, int C) {
    quantize_rows_kernel<A><<<N, 256>>>((A *)out, (const A *)x, C);
    CUDA_CHECK_LAUNCH();
}

template void cuda_quantize_rows<float>(void *, const void *, int, int);
template void cuda_quantize_rows<__nv_bfloat16>(void *, const void *, int, int);

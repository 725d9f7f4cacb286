// Block-wide sum and max for the row kernels (one block per row): a warp shuffle tree, then
// the warps' results through shared memory. Fixed order: the same bits on every run.
#ifndef DLLM_REDUCE_CUH
#define DLLM_REDUCE_CUH

#include <math.h>

__device__ inline float warp_sum(float v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

__device__ inline float warp_max(float v) {
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

// Every thread of the block gets the result. blockDim.x is a multiple of 32, at most 1024.
__device__ inline float block_sum(float v) {
    __shared__ float partial[32];
    v = warp_sum(v);
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
    __syncthreads();  // partial may still be read by a previous call
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    v = lane < n_warps ? partial[lane] : 0.0f;
    return warp_sum(v);
}

// The same in double (the sampler's softmax denominator, as LLaDA's float64).
__device__ inline double block_sum_double(double v) {
    __shared__ double partial_d[32];
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
    __syncthreads();
    if (lane == 0) partial_d[warp] = v;
    __syncthreads();
    v = lane < n_warps ? partial_d[lane] : 0.0;
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

__device__ inline float block_max(float v) {
    __shared__ float partial[32];
    v = warp_max(v);
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
    __syncthreads();
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    v = lane < n_warps ? partial[lane] : -INFINITY;
    return warp_max(v);
}

#endif

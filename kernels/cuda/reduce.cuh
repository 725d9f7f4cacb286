// Block-wide sum and max for the row kernels (one block per row): a warp shuffle tree, then
// the warps' results through shared memory. Fixed order: the same bits on every run.
#ifndef DLLM_REDUCE_CUH
#define DLLM_REDUCE_CUH

#include <math.h>

template <typename T>
__device__ inline T warp_sum(T v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

__device__ inline float warp_max(float v) {
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

// Every thread of the block gets the result. blockDim.x is a multiple of 32, at most 1024.
// float for the row kernels, double for the sampler's softmax denominator (LLaDA's float64).
template <typename T>
__device__ inline T block_sum(T v) {
    __shared__ T partial[32];  // one array per type
    v = warp_sum(v);
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
    __syncthreads();  // partial may still be read by a previous call
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    v = lane < n_warps ? partial[lane] : T(0);
    return warp_sum(v);
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

// The sampler's per-position pick on the device: one block per row guides the logits, finds
// the Gumbel-max token (ties to the lower id, as the CPU twin kernels/cpu/pick.c) and its
// softmax probability, both in double as LLaDA's float64. Only a token and a confidence per row go back to the host.
#include <cuda_runtime.h>
#include <math.h>

#include "kernels/cuda/act.cuh"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/reduce.cuh"
#include "kernels/noise.h"

#define PICK_THREADS 256

template <typename A>
__device__ inline float guided(const A *cond, const A *uncond, float w, int v) {
    float c = to_float(cond[v]);
    return uncond ? to_float(uncond[v]) + w * (c - to_float(uncond[v])) : c;
}

// (score, index) pairs: the larger score wins, equal scores go to the lower index.
__device__ inline void better(double *score, int *index, double other_score, int other_index) {
    if (other_index < 0) return;
    if (*index < 0 || other_score > *score || (other_score == *score && other_index < *index)) {
        *score = other_score;
        *index = other_index;
    }
}

// Every thread of the block gets the winning index.
__device__ int block_argmax(double score, int index) {
    __shared__ double scores[32];
    __shared__ int indices[32];
    for (int off = 16; off > 0; off >>= 1)
        better(&score, &index, __shfl_xor_sync(0xffffffffu, score, off),
               __shfl_xor_sync(0xffffffffu, index, off));
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
    __syncthreads();
    if (lane == 0) scores[warp] = score, indices[warp] = index;
    __syncthreads();
    score = lane < n_warps ? scores[lane] : -INFINITY;
    index = lane < n_warps ? indices[lane] : -1;
    for (int off = 16; off > 0; off >>= 1)
        better(&score, &index, __shfl_xor_sync(0xffffffffu, score, off),
               __shfl_xor_sync(0xffffffffu, index, off));
    return index;
}

template <typename A>
__global__ void pick_tokens_kernel(int *tokens, double *confidence, const A *logits, int B,
                                   int rows_per_seq, int first, int count, int V, float cfg,
                                   float temperature, uint64_t seed, int banned) {
    int i = blockIdx.x, b = blockIdx.y;
    const A *cond = logits + ((size_t)b * rows_per_seq + first + i) * V;
    const A *uncond = cfg > 0.0f ? cond + (size_t)B * rows_per_seq * V : NULL;
    float w = cfg + 1.0f;
    size_t out = (size_t)b * count + i;
    double best_score = -INFINITY;
    float maxv = -INFINITY;
    int best = -1;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        if (v == banned) continue;
        float l = guided(cond, uncond, w, v);
        double score = temperature > 0.0f
                           ? l + (double)temperature * noise_gumbel(seed, out * V + v) : l;
        better(&best_score, &best, score, v);
        maxv = fmaxf(maxv, l);
    }
    best = block_argmax(best_score, best);
    maxv = block_max(maxv);
    double sum = 0.0;
    for (int v = threadIdx.x; v < V; v += blockDim.x)
        if (v != banned) sum += exp((double)guided(cond, uncond, w, v) - maxv);
    sum = block_sum(sum);
    if (threadIdx.x == 0) {
        tokens[out] = best;
        confidence[out] = exp((double)guided(cond, uncond, w, best) - maxv) / sum;
    }
}

template <typename A>
void cuda_pick_tokens(int *tokens, double *confidence, const void *logits, int B,
                      int rows_per_seq, int first, int count, int V, float cfg, float temperature,
                      uint64_t seed, int banned) {
    dim3 grid(count, B);
    pick_tokens_kernel<A><<<grid, PICK_THREADS>>>(tokens, confidence, (const A *)logits, B,
                                                  rows_per_seq, first, count, V, cfg, temperature,
                                                  seed, banned);
    CUDA_CHECK_LAUNCH();
}

template void cuda_pick_tokens<float>(int *, double *, const void *, int, int, int, int, int, float,
                                      float, uint64_t, int);
template void cuda_pick_tokens<bf16>(int *, double *, const void *, int, int, int, int, int, float,
                                     float, uint64_t, int);

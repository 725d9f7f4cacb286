// Activations in their storage type A (float or __nv_bfloat16), arithmetic in fp32: every
// kernel reads them through to_float and writes them through from_float<A>; and where the
// heads of an attention activation sit.
#ifndef DLLM_ACT_CUH
#define DLLM_ACT_CUH

#include <cuda_bf16.h>

typedef __nv_bfloat16 bf16;

__device__ inline float to_float(float x) { return x; }
__device__ inline float to_float(bf16 x) { return __bfloat162float(x); }

template <typename A>
__device__ inline A from_float(float x);
template <>
__device__ inline float from_float<float>(float x) {
    return x;
}
template <>
__device__ inline bf16 from_float<bf16>(float x) {
    return __float2bfloat16(x);
}

// Offset of head h of position t of sequence b in a [B, T, H, head_dim] activation (attention's
// q, k, v and output).
__device__ inline size_t head_offset(int b, int t, int h, int T, int H, int head_dim) {
    return (((size_t)b * T + t) * H + h) * head_dim;
}

static inline unsigned blocks_for(size_t n, int threads) {
    return (unsigned)((n + threads - 1) / threads);
}

#endif

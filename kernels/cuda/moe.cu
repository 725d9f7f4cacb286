// Mixture-of-experts ops, twins of kernels/cpu/moe.c: routing one row per thread through the
// same kernels/moe_route.h, gathers and combines one output value per thread (each token's
// experts summed in pick order), the weights' gradients one slot per block.
#include <cuda_runtime.h>

#include "kernels/cuda/act.cuh"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/reduce.cuh"
#include "kernels/moe_route.h"

// The row's logits are first copied to its probs row as fp32: route_row reads each logit
// before writing the probability of the same expert, so the two may share memory.
template <typename A>
__global__ void moe_route_kernel(int *pick, float *weight, float *probs, const A *logits,
                                 const float *bias, int N, int E, int k, int router,
                                 int n_groups, int topk_groups, float routed_scale) {
    int n = blockIdx.x * blockDim.x + threadIdx.x;
    if (n >= N) return;
    unsigned char eligible[ROUTE_MAX_EXPERTS];
    float *p = probs + (size_t)n * E;
    for (int e = 0; e < E; e++) p[e] = to_float(logits[(size_t)n * E + e]);
    route_row(pick + (size_t)n * k, weight + (size_t)n * k, p, eligible, p, bias, E, k, router,
              n_groups, topk_groups, routed_scale);
}

template <typename A>
__global__ void moe_route_backward_kernel(A *dlogits, const float *dweight, const int *pick,
                                          const float *probs, const float *aux, int N, int E,
                                          int k, int router, float routed_scale) {
    int n = blockIdx.x * blockDim.x + threadIdx.x;
    if (n >= N) return;
    float d[ROUTE_MAX_EXPERTS];
    route_row_backward(d, dweight + (size_t)n * k, pick + (size_t)n * k, probs + (size_t)n * E,
                       aux, E, k, router, routed_scale);
    for (int e = 0; e < E; e++) dlogits[(size_t)n * E + e] = from_float<A>(d[e]);
}

template <typename A>
__global__ void gather_rows_kernel(A *dst, const A *src, const int *rows, int n, int C) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)n * C) return;
    size_t r = i / C, c = i % C;
    dst[i] = src[(size_t)rows[r] * C + c];
}

template <typename A>
__global__ void moe_combine_kernel(A *out, const A *ys, const int *slot, const float *weight,
                                   int N, int k, int C) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * C) return;
    size_t t = i / C, c = i % C;
    float sum = to_float(out[i]);
    for (int j = 0; j < k; j++) {
        size_t s = t * k + j;
        sum += (weight ? weight[s] : 1.0f) * to_float(ys[(size_t)slot[s] * C + c]);
    }
    out[i] = from_float<A>(sum);
}

template <typename A>
__global__ void moe_combine_dys_kernel(A *dys, const A *dout, const int *slot,
                                       const float *weight, int N, int k, int C) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * k * C) return;
    size_t s = i / C, c = i % C, t = s / k;
    dys[(size_t)slot[s] * C + c] = from_float<A>(weight[s] * to_float(dout[t * C + c]));
}

// one block per slot: the dot product of its token's output gradient and its expert's output
template <typename A>
__global__ void moe_combine_dweight_kernel(float *dweight, const A *dout, const A *ys,
                                           const int *slot, int k, int C) {
    size_t s = blockIdx.x, t = s / k;
    float dot = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        dot += to_float(dout[t * C + c]) * to_float(ys[(size_t)slot[s] * C + c]);
    dot = block_sum(dot);
    if (threadIdx.x == 0) dweight[s] = dot;
}

template <typename A>
void cuda_moe_route(int *pick, float *weight, float *probs, const void *logits,
                    const float *bias, int N, int E, int k, int router, int n_groups,
                    int topk_groups, float routed_scale) {
    moe_route_kernel<A><<<blocks_for(N, 64), 64>>>(pick, weight, probs, (const A *)logits, bias,
                                                    N, E, k, router, n_groups, topk_groups,
                                                    routed_scale);
    CUDA_CHECK_LAUNCH();
}

template <typename A>
void cuda_moe_route_backward(void *dlogits, const float *dweight, const int *pick,
                             const float *probs, const float *aux, int N, int E, int k,
                             int router, float routed_scale) {
    moe_route_backward_kernel<A><<<blocks_for(N, 64), 64>>>((A *)dlogits, dweight, pick, probs,
                                                             aux, N, E, k, router, routed_scale);
    CUDA_CHECK_LAUNCH();
}

template <typename A>
void cuda_gather_rows(void *dst, const void *src, const int *rows, int n, int C) {
    if (n == 0) return;
    gather_rows_kernel<A><<<blocks_for((size_t)n * C, 256), 256>>>((A *)dst, (const A *)src, rows,
                                                                   n, C);
    CUDA_CHECK_LAUNCH();
}

template <typename A>
void cuda_moe_combine(void *out, const void *ys, const int *slot, const float *weight, int N,
                      int k, int C) {
    moe_combine_kernel<A><<<blocks_for((size_t)N * C, 256), 256>>>((A *)out, (const A *)ys, slot,
                                                                   weight, N, k, C);
    CUDA_CHECK_LAUNCH();
}

template <typename A>
void cuda_moe_combine_backward(void *dys, float *dweight, const void *dout, const void *ys,
                               const int *slot, const float *weight, int N, int k, int C) {
    moe_combine_dys_kernel<A><<<blocks_for((size_t)N * k * C, 256), 256>>>(
        (A *)dys, (const A *)dout, slot, weight, N, k, C);
    CUDA_CHECK_LAUNCH();
    moe_combine_dweight_kernel<A><<<N * k, 128>>>(dweight, (const A *)dout, (const A *)ys, slot,
                                                  k, C);
    CUDA_CHECK_LAUNCH();
}

template void cuda_moe_route<float>(int *, float *, float *, const void *, const float *, int,
                                  int, int, int, int, int, float);
template void cuda_moe_route_backward<float>(void *, const float *, const int *, const float *,
                                           const float *, int, int, int, int, float);
template void cuda_gather_rows<float>(void *, const void *, const int *, int, int);
template void cuda_moe_combine<float>(void *, const void *, const int *, const float *, int, int, int);
template void cuda_moe_combine_backward<float>(void *, float *, const void *, const void *,
                                             const int *, const float *, int, int, int);
template void cuda_moe_route<bf16>(int *, float *, float *, const void *, const float *, int,
                                  int, int, int, int, int, float);
template void cuda_moe_route_backward<bf16>(void *, const float *, const int *, const float *,
                                           const float *, int, int, int, int, float);
template void cuda_gather_rows<bf16>(void *, const void *, const int *, int, int);
template void cuda_moe_combine<bf16>(void *, const void *, const int *, const float *, int, int, int);
template void cuda_moe_combine_backward<bf16>(void *, float *, const void *, const void *,
                                             const int *, const float *, int, int, int);

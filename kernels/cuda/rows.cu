// Row ops, one thread block per row: RMSNorm, the cross-entropy loss, and the token embedding.
// Column sums (RMSNorm's dweight, a bias gradient, the embedding gradient) run in a fixed order, no atomics:
// RMSNorm's in two passes (each thread sums one column over a chunk of rows, then one thread
// per column adds the chunks in order), the embedding's by blocks that each own a range of
// table rows and add their positions in order. Activations are A (float or bf16); weights,
// their gradients, rstd and losses fp32.
#include <cuda_runtime.h>
#include <math.h>

#include "kernels/cuda/act.cuh"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/reduce.cuh"

#define ROW_THREADS 256

template <typename A, typename W>
__global__ void rmsnorm_forward_kernel(A *out, float *rstd, const A *inp, const W *weight, int C,
                                       float eps) {
    const A *x = inp + (size_t)blockIdx.x * C;
    A *y = out + (size_t)blockIdx.x * C;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) ss += to_float(x[i]) * to_float(x[i]);
    float r = rsqrtf(block_sum(ss) / C + eps);
    for (int i = threadIdx.x; i < C; i += blockDim.x)
        y[i] = from_float<A>(to_float(x[i]) * r * to_float(weight[i]));
    if (threadIdx.x == 0) rstd[blockIdx.x] = r;
}

template <typename A, typename W>
__global__ void rmsnorm_backward_kernel(A *dinp, const A *dout, const A *inp, const W *weight,
                                        const float *rstd, int C) {
    size_t row = (size_t)blockIdx.x * C;
    float r = rstd[blockIdx.x], dot = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x)
        dot += to_float(weight[i]) * to_float(dout[row + i]) * to_float(inp[row + i]);
    float coef = r * r * block_sum(dot) / C;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        float d = r * (to_float(weight[i]) * to_float(dout[row + i]) - to_float(inp[row + i]) * coef);
        dinp[row + i] = from_float<A>(to_float(dinp[row + i]) + d);
    }
}

#define DWEIGHT_ROWS 128  // rows per partial column sum

// partial[chunk, i] = sum over the chunk's rows n of dout[n, i] * inp[n, i] * rstd[n]
template <typename A>
__global__ void rmsnorm_dweight_partial_kernel(float *partial, const A *dout, const A *inp,
                                               const float *rstd, int N, int C) {
    int i = blockIdx.x * blockDim.x + threadIdx.x, chunk = blockIdx.y;
    if (i >= C) return;
    int end = min((chunk + 1) * DWEIGHT_ROWS, N);
    float s = 0.0f;
    for (int n = chunk * DWEIGHT_ROWS; n < end; n++)
        s += to_float(dout[(size_t)n * C + i]) * to_float(inp[(size_t)n * C + i]) * rstd[n];
    partial[(size_t)chunk * C + i] = s;
}

// partial[chunk, i] = sum over the chunk's rows n of dout[n, i]: a bias gradient
template <typename A>
__global__ void column_sum_partial_kernel(float *partial, const A *dout, int N, int C) {
    int i = blockIdx.x * blockDim.x + threadIdx.x, chunk = blockIdx.y;
    if (i >= C) return;
    int end = min((chunk + 1) * DWEIGHT_ROWS, N);
    float s = 0.0f;
    for (int n = chunk * DWEIGHT_ROWS; n < end; n++) s += to_float(dout[(size_t)n * C + i]);
    partial[(size_t)chunk * C + i] = s;
}

// out[i] += sum over chunks of partial[chunk, i], the chunks in order
__global__ void add_column_sums_kernel(float *out, const float *partial, int chunks, int C) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= C) return;
    float s = 0.0f;
    for (int k = 0; k < chunks; k++) s += partial[(size_t)k * C + i];
    out[i] += s;
}

// max and sum of exp(x - max) of a row, every thread of the block gets both
template <typename A>
__device__ float row_exp_sum(const A *x, int V, float *maxv) {
    float m = -INFINITY;
    for (int i = threadIdx.x; i < V; i += blockDim.x) m = fmaxf(m, to_float(x[i]));
    m = block_max(m);
    float sum = 0.0f;
    for (int i = threadIdx.x; i < V; i += blockDim.x) sum += expf(to_float(x[i]) - m);
    *maxv = m;
    return block_sum(sum);
}

template <typename A>
__global__ void cross_entropy_forward_kernel(float *losses, const A *logits, const int *targets,
                                             int V) {
    const A *x = logits + (size_t)blockIdx.x * V;
    float m, sum = row_exp_sum(x, V, &m);
    if (threadIdx.x == 0) losses[blockIdx.x] = logf(sum) + m - to_float(x[targets[blockIdx.x]]);
}

// Loss and gradient of a row in one pass, never storing probabilities. In place when
// dlogits == logits: every thread reads an element before it writes it, and x[target] is
// read by all before the first barrier.
template <typename A>
__global__ void cross_entropy_fused_kernel(float *losses, A *dlogits, const A *logits,
                                           const int *targets, const float *weights, int V) {
    const A *x = logits + (size_t)blockIdx.x * V;
    A *dx = dlogits + (size_t)blockIdx.x * V;
    int target = targets[blockIdx.x];
    float w = weights[blockIdx.x], x_target = to_float(x[target]);
    float m, sum = row_exp_sum(x, V, &m);
    if (threadIdx.x == 0) losses[blockIdx.x] = logf(sum) + m - x_target;
    float coef = w / sum;
    for (int i = threadIdx.x; i < V; i += blockDim.x)
        dx[i] = from_float<A>(
            w == 0.0f ? 0.0f : coef * expf(to_float(x[i]) - m) - (i == target ? w : 0.0f));
}

template <typename A, typename W>
__global__ void embedding_forward_kernel(A *out, const int *tokens, const W *table, int C) {
    const W *src = table + (size_t)tokens[blockIdx.x] * C;
    A *dst = out + (size_t)blockIdx.x * C;
    for (int i = threadIdx.x; i < C; i += blockDim.x) dst[i] = from_float<A>(to_float(src[i]));
}

#define EMBEDDING_ROWS 64  // table rows owned by one block

// Each block owns EMBEDDING_ROWS rows of the table and walks the tokens in order, a chunk at a
// time: the chunk's positions holding one of its rows are listed in order, then every thread
// adds its columns of those positions' gradient rows. Each table element is updated by one
// thread, position by position: no atomics, and the CPU twin's order.
template <typename A>
__global__ void embedding_backward_kernel(float *dtable, const A *dout, const int *tokens, int N,
                                          int C) {
    __shared__ int hits[ROW_THREADS];
    __shared__ int n_hits;
    int v0 = blockIdx.x * EMBEDDING_ROWS;
    for (int n0 = 0; n0 < N; n0 += blockDim.x) {
        int n = n0 + threadIdx.x;
        hits[threadIdx.x] = n < N && tokens[n] >= v0 && tokens[n] < v0 + EMBEDDING_ROWS ? n : -1;
        __syncthreads();
        if (threadIdx.x == 0) {  // compact in position order
            int k = 0;
            for (int i = 0; i < (int)blockDim.x; i++)
                if (hits[i] >= 0) hits[k++] = hits[i];
            n_hits = k;
        }
        __syncthreads();
        for (int k = 0; k < n_hits; k++) {
            int m = hits[k];
            float *row = dtable + (size_t)tokens[m] * C;
            for (int c = threadIdx.x; c < C; c += blockDim.x)
                row[c] += to_float(dout[(size_t)m * C + c]);
        }
        __syncthreads();  // hits is rewritten by the next chunk
    }
}

template <typename A>
__global__ void act_from_float_kernel(A *dst, const float *src, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = from_float<A>(src[i]);
}

template <typename A>
__global__ void act_to_float_kernel(float *dst, const A *src, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = to_float(src[i]);
}

template <typename A>
void cuda_floats_to_act(void *dst, const float *src, size_t n) {
    act_from_float_kernel<A><<<blocks_for(n, 256), 256>>>((A *)dst, src, n);
    CUDA_CHECK_LAUNCH();
}

// Host floats through a device staging buffer (the scratch) converted on the device.
template <typename A>
void cuda_act_to_device(void *dst, const float *src, size_t n) {
    float *stage = (float *)cuda_scratch(n * sizeof(float));
    cuda_to_device(stage, src, n * sizeof(float));
    cuda_floats_to_act<A>(dst, stage, n);
}

template <typename A>
void cuda_act_to_host(float *dst, const void *src, size_t n) {
    float *stage = (float *)cuda_scratch(n * sizeof(float));
    act_to_float_kernel<A><<<blocks_for(n, 256), 256>>>(stage, (const A *)src, n);
    CUDA_CHECK_LAUNCH();
    cuda_to_host(dst, stage, n * sizeof(float));
}

static unsigned column_blocks(int C) { return (unsigned)((C + ROW_THREADS - 1) / ROW_THREADS); }

template <typename A, typename W>
void cuda_rmsnorm_forward(void *out, float *rstd, const void *inp, const float *weight, int N,
                          int C, float eps) {
    rmsnorm_forward_kernel<A, W>
        <<<N, ROW_THREADS>>>((A *)out, rstd, (const A *)inp, (const W *)weight, C, eps);
    CUDA_CHECK_LAUNCH();
}

template <typename A, typename W>
void cuda_rmsnorm_backward(void *dinp, float *dweight, const void *dout, const void *inp,
                           const float *weight, const float *rstd, int N, int C) {
    rmsnorm_backward_kernel<A, W><<<N, ROW_THREADS>>>((A *)dinp, (const A *)dout, (const A *)inp,
                                                      (const W *)weight, rstd, C);
    CUDA_CHECK_LAUNCH();
    if (!dweight) return;  // frozen gain
    int chunks = (N + DWEIGHT_ROWS - 1) / DWEIGHT_ROWS;
    float *partial = (float *)cuda_scratch((size_t)chunks * C * sizeof(float));
    dim3 grid(column_blocks(C), chunks);
    rmsnorm_dweight_partial_kernel<A>
        <<<grid, ROW_THREADS>>>(partial, (const A *)dout, (const A *)inp, rstd, N, C);
    CUDA_CHECK_LAUNCH();
    add_column_sums_kernel<<<column_blocks(C), ROW_THREADS>>>(dweight, partial, chunks, C);
    CUDA_CHECK_LAUNCH();
}

template <typename A>
void cuda_bias_backward(float *dbias, const void *dout, int N, int C) {
    int chunks = (N + DWEIGHT_ROWS - 1) / DWEIGHT_ROWS;
    float *partial = (float *)cuda_scratch((size_t)chunks * C * sizeof(float));
    dim3 grid(column_blocks(C), chunks);
    column_sum_partial_kernel<A><<<grid, ROW_THREADS>>>(partial, (const A *)dout, N, C);
    CUDA_CHECK_LAUNCH();
    add_column_sums_kernel<<<column_blocks(C), ROW_THREADS>>>(dbias, partial, chunks, C);
    CUDA_CHECK_LAUNCH();
}

template <typename A>
void cuda_cross_entropy_forward(float *losses, const void *logits, const int *targets, int N,
                                int V) {
    cross_entropy_forward_kernel<A><<<N, ROW_THREADS>>>(losses, (const A *)logits, targets, V);
    CUDA_CHECK_LAUNCH();
}

template <typename A>
void cuda_cross_entropy_fused(float *losses, void *dlogits, const void *logits, const int *targets,
                              const float *weights, int N, int V) {
    cross_entropy_fused_kernel<A>
        <<<N, ROW_THREADS>>>(losses, (A *)dlogits, (const A *)logits, targets, weights, V);
    CUDA_CHECK_LAUNCH();
}

template <typename A, typename W>
void cuda_embedding_forward(void *out, const int *tokens, const float *table, int N, int C) {
    embedding_forward_kernel<A, W><<<N, ROW_THREADS>>>((A *)out, tokens, (const W *)table, C);
    CUDA_CHECK_LAUNCH();
}

template <typename A>
void cuda_embedding_backward(float *dtable, const void *dout, const int *tokens, int N, int C,
                             int V) {
    unsigned blocks = (unsigned)((V + EMBEDDING_ROWS - 1) / EMBEDDING_ROWS);
    embedding_backward_kernel<A><<<blocks, ROW_THREADS>>>(dtable, (const A *)dout, tokens, N, C);
    CUDA_CHECK_LAUNCH();
}

template void cuda_floats_to_act<bf16>(void *, const float *, size_t);
template void cuda_act_to_device<float>(void *, const float *, size_t);
template void cuda_act_to_device<bf16>(void *, const float *, size_t);
template void cuda_act_to_host<float>(float *, const void *, size_t);
template void cuda_act_to_host<bf16>(float *, const void *, size_t);
template void cuda_rmsnorm_forward<float>(void *, float *, const void *, const float *, int, int,
                                          float);
template void cuda_rmsnorm_forward<bf16>(void *, float *, const void *, const float *, int, int,
                                         float);
template void cuda_rmsnorm_forward<bf16, bf16>(void *, float *, const void *, const float *, int,
                                               int, float);
template void cuda_rmsnorm_backward<float>(void *, float *, const void *, const void *,
                                           const float *, const float *, int, int);
template void cuda_rmsnorm_backward<bf16>(void *, float *, const void *, const void *,
                                          const float *, const float *, int, int);
template void cuda_rmsnorm_backward<bf16, bf16>(void *, float *, const void *, const void *,
                                                const float *, const float *, int, int);
template void cuda_bias_backward<float>(float *, const void *, int, int);
template void cuda_bias_backward<bf16>(float *, const void *, int, int);
template void cuda_cross_entropy_forward<float>(float *, const void *, const int *, int, int);
template void cuda_cross_entropy_forward<bf16>(float *, const void *, const int *, int, int);
template void cuda_cross_entropy_fused<float>(float *, void *, const void *, const int *,
                                              const float *, int, int);
template void cuda_cross_entropy_fused<bf16>(float *, void *, const void *, const int *,
                                             const float *, int, int);
template void cuda_embedding_forward<float>(void *, const int *, const float *, int, int);
template void cuda_embedding_forward<bf16>(void *, const int *, const float *, int, int);
template void cuda_embedding_forward<bf16, bf16>(void *, const int *, const float *, int, int);
template void cuda_embedding_backward<float>(float *, const void *, const int *, int, int, int);
template void cuda_embedding_backward<bf16>(float *, const void *, const int *, int, int, int);

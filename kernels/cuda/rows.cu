// Row ops, one thread block per row: RMSNorm, the cross-entropy loss, and the token embedding.
// Column sums (RMSNorm's dweight, the embedding gradient) run in a fixed order, no atomics:
// RMSNorm's in two passes (each thread sums one column over a chunk of rows, then one thread
// per column adds the chunks in order), the embedding's by blocks that each own a range of
// table rows and add their positions in order.
#include <cuda_runtime.h>
#include <math.h>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/reduce.cuh"

#define ROW_THREADS 256

__global__ void rmsnorm_forward_kernel(float *out, float *rstd, const float *inp,
                                       const float *weight, int C, float eps) {
    const float *x = inp + (size_t)blockIdx.x * C;
    float *y = out + (size_t)blockIdx.x * C;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) ss += x[i] * x[i];
    float r = rsqrtf(block_sum(ss) / C + eps);
    for (int i = threadIdx.x; i < C; i += blockDim.x) y[i] = x[i] * r * weight[i];
    if (threadIdx.x == 0) rstd[blockIdx.x] = r;
}

__global__ void rmsnorm_backward_kernel(float *dinp, const float *dout, const float *inp,
                                        const float *weight, const float *rstd, int C) {
    size_t row = (size_t)blockIdx.x * C;
    float r = rstd[blockIdx.x], dot = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) dot += weight[i] * dout[row + i] * inp[row + i];
    float coef = r * r * block_sum(dot) / C;
    for (int i = threadIdx.x; i < C; i += blockDim.x)
        dinp[row + i] += r * (weight[i] * dout[row + i] - inp[row + i] * coef);
}

#define DWEIGHT_ROWS 128  // rows per partial column sum

// partial[chunk, i] = sum over the chunk's rows n of dout[n, i] * inp[n, i] * rstd[n]
__global__ void rmsnorm_dweight_partial_kernel(float *partial, const float *dout,
                                               const float *inp, const float *rstd, int N,
                                               int C) {
    int i = blockIdx.x * blockDim.x + threadIdx.x, chunk = blockIdx.y;
    if (i >= C) return;
    int end = min((chunk + 1) * DWEIGHT_ROWS, N);
    float s = 0.0f;
    for (int n = chunk * DWEIGHT_ROWS; n < end; n++)
        s += dout[(size_t)n * C + i] * inp[(size_t)n * C + i] * rstd[n];
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

__global__ void cross_entropy_forward_kernel(float *losses, const float *logits,
                                             const int *targets, int V) {
    const float *x = logits + (size_t)blockIdx.x * V;
    float m = -INFINITY;
    for (int i = threadIdx.x; i < V; i += blockDim.x) m = fmaxf(m, x[i]);
    m = block_max(m);
    float sum = 0.0f;
    for (int i = threadIdx.x; i < V; i += blockDim.x) sum += expf(x[i] - m);
    sum = block_sum(sum);
    if (threadIdx.x == 0) losses[blockIdx.x] = logf(sum) + m - x[targets[blockIdx.x]];
}

// Loss and gradient of a row in one pass, never storing probabilities. In place when
// dlogits == logits: every thread reads an element before it writes it, and x[target] is
// read by all before the first barrier.
__global__ void cross_entropy_fused_kernel(float *losses, float *dlogits, const float *logits,
                                           const int *targets, const float *weights, int V) {
    const float *x = logits + (size_t)blockIdx.x * V;
    float *dx = dlogits + (size_t)blockIdx.x * V;
    int target = targets[blockIdx.x];
    float w = weights[blockIdx.x], x_target = x[target];
    float m = -INFINITY;
    for (int i = threadIdx.x; i < V; i += blockDim.x) m = fmaxf(m, x[i]);
    m = block_max(m);
    float sum = 0.0f;
    for (int i = threadIdx.x; i < V; i += blockDim.x) sum += expf(x[i] - m);
    sum = block_sum(sum);
    if (threadIdx.x == 0) losses[blockIdx.x] = logf(sum) + m - x_target;
    float coef = w / sum;
    for (int i = threadIdx.x; i < V; i += blockDim.x)
        dx[i] = w == 0.0f ? 0.0f : coef * expf(x[i] - m) - (i == target ? w : 0.0f);
}

__global__ void embedding_forward_kernel(float *out, const int *tokens, const float *table, int C) {
    const float *src = table + (size_t)tokens[blockIdx.x] * C;
    float *dst = out + (size_t)blockIdx.x * C;
    for (int i = threadIdx.x; i < C; i += blockDim.x) dst[i] = src[i];
}

#define EMBEDDING_ROWS 64  // table rows owned by one block

// Each block owns EMBEDDING_ROWS rows of the table and walks the tokens in order, a chunk at a
// time: the chunk's positions holding one of its rows are listed in order, then every thread
// adds its columns of those positions' gradient rows. Each table element is updated by one
// thread, position by position: no atomics, and the CPU twin's order.
__global__ void embedding_backward_kernel(float *dtable, const float *dout, const int *tokens,
                                          int N, int C) {
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
            for (int c = threadIdx.x; c < C; c += blockDim.x) row[c] += dout[(size_t)m * C + c];
        }
        __syncthreads();  // hits is rewritten by the next chunk
    }
}

static unsigned column_blocks(int C) { return (unsigned)((C + ROW_THREADS - 1) / ROW_THREADS); }

extern "C" void cuda_rmsnorm_forward(float *out, float *rstd, const float *inp,
                                     const float *weight, int N, int C, float eps) {
    rmsnorm_forward_kernel<<<N, ROW_THREADS>>>(out, rstd, inp, weight, C, eps);
    CUDA_CHECK_LAUNCH();
}

extern "C" void cuda_rmsnorm_backward(float *dinp, float *dweight, const float *dout,
                                      const float *inp, const float *weight, const float *rstd,
                                      int N, int C) {
    rmsnorm_backward_kernel<<<N, ROW_THREADS>>>(dinp, dout, inp, weight, rstd, C);
    CUDA_CHECK_LAUNCH();
    int chunks = (N + DWEIGHT_ROWS - 1) / DWEIGHT_ROWS;
    float *partial = (float *)cuda_scratch((size_t)chunks * C * sizeof(float));
    dim3 grid(column_blocks(C), chunks);
    rmsnorm_dweight_partial_kernel<<<grid, ROW_THREADS>>>(partial, dout, inp, rstd, N, C);
    CUDA_CHECK_LAUNCH();
    add_column_sums_kernel<<<column_blocks(C), ROW_THREADS>>>(dweight, partial, chunks, C);
    CUDA_CHECK_LAUNCH();
}

extern "C" void cuda_cross_entropy_forward(float *losses, const float *logits, const int *targets,
                                           int N, int V) {
    cross_entropy_forward_kernel<<<N, ROW_THREADS>>>(losses, logits, targets, V);
    CUDA_CHECK_LAUNCH();
}

extern "C" void cuda_cross_entropy_fused(float *losses, float *dlogits, const float *logits,
                                         const int *targets, const float *weights, int N, int V) {
    cross_entropy_fused_kernel<<<N, ROW_THREADS>>>(losses, dlogits, logits, targets, weights, V);
    CUDA_CHECK_LAUNCH();
}

extern "C" void cuda_embedding_forward(float *out, const int *tokens, const float *table, int N,
                                       int C) {
    embedding_forward_kernel<<<N, ROW_THREADS>>>(out, tokens, table, C);
    CUDA_CHECK_LAUNCH();
}

extern "C" void cuda_embedding_backward(float *dtable, const float *dout, const int *tokens,
                                        int N, int C, int V) {
    unsigned blocks = (unsigned)((V + EMBEDDING_ROWS - 1) / EMBEDDING_ROWS);
    embedding_backward_kernel<<<blocks, ROW_THREADS>>>(dtable, dout, tokens, N, C);
    CUDA_CHECK_LAUNCH();
}

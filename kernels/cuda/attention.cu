// Attention, the first correct version: one thread block per (query row, head, sequence) with
// the row's scores in shared memory, probabilities written out as the interface asks.
// Memory is O(T^2) per head like the CPU twin; a fused flash-style kernel is the next step.
#include <cuda_runtime.h>
#include <math.h>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/reduce.cuh"

#define ATT_THREADS 128

// Offset of head h of position t of sequence b in a [B, T, H, head_dim] tensor.
__device__ inline size_t head_offset(int b, int t, int h, int T, int H, int head_dim) {
    return (((size_t)b * T + t) * H + h) * head_dim;
}

__global__ void attention_forward_kernel(float *out, float *probs, const float *q, const float *k,
                                         const float *v, const int *key_start, int Tq, int Tk,
                                         int q_pos0, int H, int head_dim, int causal) {
    extern __shared__ float scores[];  // Tk
    int t = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const float *qt = q + head_offset(b, t, h, Tq, H, head_dim);
    float *p = probs + (((size_t)b * H + h) * Tq + t) * Tk;
    int first = key_start ? key_start[b] : 0;
    int n_keys = causal ? min(q_pos0 + t + 1, Tk) : Tk;
    float scale = rsqrtf((float)head_dim);

    float maxv = -INFINITY;
    for (int j = threadIdx.x; j < Tk; j += blockDim.x) {
        float s = -INFINITY;
        if (j >= first && j < n_keys) {
            const float *kj = k + head_offset(b, j, h, Tk, H, head_dim);
            s = 0.0f;
            for (int i = 0; i < head_dim; i++) s += qt[i] * kj[i];
            s *= scale;
        }
        scores[j] = s;
        maxv = fmaxf(maxv, s);
    }
    maxv = block_max(maxv);
    float sum = 0.0f;
    for (int j = threadIdx.x; j < Tk; j += blockDim.x) {
        float e = scores[j] == -INFINITY ? 0.0f : expf(scores[j] - maxv);
        scores[j] = e;
        sum += e;
    }
    sum = block_sum(sum);  // also the barrier before scores is read across threads
    float inv = sum > 0.0f ? 1.0f / sum : 0.0f;  // no visible key: zeros
    for (int j = threadIdx.x; j < Tk; j += blockDim.x) p[j] = scores[j] * inv;
    float *o = out + head_offset(b, t, h, Tq, H, head_dim);
    for (int i = threadIdx.x; i < head_dim; i += blockDim.x) {
        float acc = 0.0f;
        for (int j = first; j < n_keys; j++)
            acc += scores[j] * v[head_offset(b, j, h, Tk, H, head_dim) + i];
        o[i] = acc * inv;
    }
}

// Per query row: dP = dout . v, dS = P * (dP - sum(P * dP)) (stored for the key pass),
// dq += scale * dS @ k.
__global__ void attention_backward_query_kernel(float *dq, float *dscores, const float *dout,
                                                const float *probs, const float *k,
                                                const float *v, int T, int H, int head_dim) {
    extern __shared__ float ds[];  // T
    int t = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const float *p = probs + (((size_t)b * H + h) * T + t) * T;
    float *dsrow = dscores + (((size_t)b * H + h) * T + t) * T;
    const float *dot = dout + head_offset(b, t, h, T, H, head_dim);
    float weighted = 0.0f;
    for (int j = threadIdx.x; j < T; j += blockDim.x) {
        float dp = 0.0f;
        if (p[j] != 0.0f) {
            const float *vj = v + head_offset(b, j, h, T, H, head_dim);
            for (int i = 0; i < head_dim; i++) dp += dot[i] * vj[i];
        }
        ds[j] = dp;
        weighted += p[j] * dp;
    }
    weighted = block_sum(weighted);
    for (int j = threadIdx.x; j < T; j += blockDim.x) {
        ds[j] = p[j] * (ds[j] - weighted);
        dsrow[j] = ds[j];
    }
    __syncthreads();
    float scale = rsqrtf((float)head_dim);
    float *dqt = dq + head_offset(b, t, h, T, H, head_dim);
    for (int i = threadIdx.x; i < head_dim; i += blockDim.x) {
        float acc = 0.0f;
        for (int j = 0; j < T; j++) acc += ds[j] * k[head_offset(b, j, h, T, H, head_dim) + i];
        dqt[i] += scale * acc;
    }
}

// Per key row j: dk += scale * dS[:, j] @ q, dv += P[:, j] @ dout.
__global__ void attention_backward_key_kernel(float *dk, float *dv, const float *dscores,
                                              const float *probs, const float *q,
                                              const float *dout, int T, int H, int head_dim) {
    int j = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    size_t base = ((size_t)b * H + h) * T * T;
    float scale = rsqrtf((float)head_dim);
    float *dkj = dk + head_offset(b, j, h, T, H, head_dim);
    float *dvj = dv + head_offset(b, j, h, T, H, head_dim);
    for (int i = threadIdx.x; i < head_dim; i += blockDim.x) {
        float acc_k = 0.0f, acc_v = 0.0f;
        for (int t = 0; t < T; t++) {
            size_t row = head_offset(b, t, h, T, H, head_dim) + i;
            acc_k += dscores[base + (size_t)t * T + j] * q[row];
            acc_v += probs[base + (size_t)t * T + j] * dout[row];
        }
        dkj[i] += scale * acc_k;
        dvj[i] += acc_v;
    }
}

extern "C" void cuda_attention_forward(float *out, float *probs, const float *q, const float *k,
                                       const float *v, const int *key_start, int B, int Tq,
                                       int Tk, int q_pos0, int H, int head_dim, int causal) {
    dim3 grid(Tq, H, B);
    size_t shared = (size_t)Tk * sizeof(float);
    attention_forward_kernel<<<grid, ATT_THREADS, shared>>>(out, probs, q, k, v, key_start, Tq, Tk,
                                                            q_pos0, H, head_dim, causal);
    CUDA_CHECK_LAUNCH();
}

extern "C" void cuda_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                                        const float *probs, const float *q, const float *k,
                                        const float *v, int B, int T, int H, int head_dim) {
    float *dscores = (float *)cuda_scratch((size_t)B * H * T * T * sizeof(float));
    dim3 grid(T, H, B);
    attention_backward_query_kernel<<<grid, ATT_THREADS, (size_t)T * sizeof(float)>>>(
        dq, dscores, dout, probs, k, v, T, H, head_dim);
    CUDA_CHECK_LAUNCH();
    attention_backward_key_kernel<<<grid, ATT_THREADS>>>(dk, dv, dscores, probs, q, dout, T, H,
                                                         head_dim);
    CUDA_CHECK_LAUNCH();
}

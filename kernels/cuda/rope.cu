// Rotary position embedding, in place: one thread per rotated pair (the CPU twin's formula).
#include <cuda_runtime.h>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/cuda_ops.h"

__global__ void rope_kernel(float *x, const float *cos, const float *sin, int T, int pos0, int H,
                            int head_dim, float direction, size_t n_pairs) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= n_pairs) return;
    int half = head_dim / 2;
    int i = (int)(idx % half);
    size_t head = idx / half;  // (b * T + t) * H + h
    int t = (int)((head / H) % T);
    float *v = x + head * head_dim;
    float c = cos[(size_t)(pos0 + t) * half + i], s = direction * sin[(size_t)(pos0 + t) * half + i];
    float x0 = v[i], x1 = v[i + half];
    v[i] = x0 * c - x1 * s;
    v[i + half] = x0 * s + x1 * c;
}

static void rotate(float *x, const float *cos, const float *sin, int B, int T, int pos0, int H,
                   int head_dim, float direction) {
    size_t n_pairs = (size_t)B * T * H * (head_dim / 2);
    rope_kernel<<<(unsigned)((n_pairs + 255) / 256), 256>>>(x, cos, sin, T, pos0, H, head_dim,
                                                           direction, n_pairs);
    CUDA_CHECK_LAUNCH();
}

extern "C" void cuda_rope_forward(float *x, const float *cos, const float *sin, int B, int T,
                                  int pos0, int H, int head_dim) {
    rotate(x, cos, sin, B, T, pos0, H, head_dim, 1.0f);
}

extern "C" void cuda_rope_backward(float *dx, const float *cos, const float *sin, int B, int T,
                                   int pos0, int H, int head_dim) {
    rotate(dx, cos, sin, B, T, pos0, H, head_dim, -1.0f);
}

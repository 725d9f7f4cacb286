// Rotary position embedding, in place: one thread per rotated pair (the CPU twin's formula);
// the first `rot` values of each head rotate, the rest pass.
#include <cuda_runtime.h>

#include "kernels/cuda/act.cuh"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/cuda_ops.h"

template <typename A>
__global__ void rope_kernel(A *x, const float *cos, const float *sin, int T, int pos0, int H,
                            int head_dim, int rot, float direction, size_t n_pairs) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= n_pairs) return;
    int half = rot / 2;
    int i = (int)(idx % half);
    size_t head = idx / half;  // (b * T + t) * H + h
    int t = (int)((head / H) % T);
    A *v = x + head * head_dim;
    float c = cos[(size_t)(pos0 + t) * half + i],
          s = direction * sin[(size_t)(pos0 + t) * half + i];
    float x0 = to_float(v[i]), x1 = to_float(v[i + half]);
    v[i] = from_float<A>(x0 * c - x1 * s);
    v[i + half] = from_float<A>(x0 * s + x1 * c);
}

template <typename A>
static void rotate(void *x, const float *cos, const float *sin, int B, int T, int pos0, int H,
                   int head_dim, int rot, float direction) {
    size_t n_pairs = (size_t)B * T * H * (rot / 2);
    rope_kernel<A><<<blocks_for(n_pairs, 256), 256>>>((A *)x, cos, sin, T, pos0, H, head_dim,
                                                      rot, direction, n_pairs);
    CUDA_CHECK_LAUNCH();
}

template <typename A>
void cuda_rope_forward(void *x, const float *cos, const float *sin, int B, int T, int pos0, int H,
                       int head_dim, int rot) {
    rotate<A>(x, cos, sin, B, T, pos0, H, head_dim, rot, 1.0f);
}

template <typename A>
void cuda_rope_backward(void *dx, const float *cos, const float *sin, int B, int T, int pos0, int H,
                        int head_dim, int rot) {
    rotate<A>(dx, cos, sin, B, T, pos0, H, head_dim, rot, -1.0f);
}

template void cuda_rope_forward<float>(void *, const float *, const float *, int, int, int, int,
                                       int, int);
template void cuda_rope_forward<bf16>(void *, const float *, const float *, int, int, int, int,
                                      int, int);
template void cuda_rope_backward<float>(void *, const float *, const float *, int, int, int, int,
                                        int, int);
template void cuda_rope_backward<bf16>(void *, const float *, const float *, int, int, int, int,
                                       int, int);

// Elementwise ops: SwiGLU, residual add, scale, and the AdamW update (the same float formulas
// as the CPU twins in kernels/cpu/elementwise.c and adamw.c).
#include <cuda_runtime.h>
#include <math.h>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/cuda_ops.h"

static unsigned blocks_for(size_t n, int threads) { return (unsigned)((n + threads - 1) / threads); }

__global__ void swiglu_forward_kernel(float *out, const float *gate, const float *up, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
}

__global__ void swiglu_backward_kernel(float *dgate, float *dup, const float *dout,
                                       const float *gate, const float *up, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = gate[i], s = 1.0f / (1.0f + expf(-g));
    dgate[i] += dout[i] * up[i] * s * (1.0f + g * (1.0f - s));
    dup[i] += dout[i] * g * s;
}

__global__ void add_kernel(float *out, const float *a, const float *b, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = a[i] + b[i];
}

__global__ void scale_kernel(float *x, size_t n, float s) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] *= s;
}

__global__ void adamw_kernel(float *params, const float *grads, float *m, float *v, size_t n,
                             float lr, float beta1, float beta2, float eps, float weight_decay,
                             float bc1, float bc2) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = grads[i];
    float mi = beta1 * m[i] + (1.0f - beta1) * g;
    float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    float mhat = mi / bc1, vhat = vi / bc2;
    params[i] -= lr * (mhat / (sqrtf(vhat) + eps) + weight_decay * params[i]);
}

extern "C" void cuda_swiglu_forward(float *out, const float *gate, const float *up, size_t n) {
    swiglu_forward_kernel<<<blocks_for(n, 256), 256>>>(out, gate, up, n);
    CUDA_CHECK_LAUNCH();
}

extern "C" void cuda_swiglu_backward(float *dgate, float *dup, const float *dout,
                                     const float *gate, const float *up, size_t n) {
    swiglu_backward_kernel<<<blocks_for(n, 256), 256>>>(dgate, dup, dout, gate, up, n);
    CUDA_CHECK_LAUNCH();
}

extern "C" void cuda_add(float *out, const float *a, const float *b, size_t n) {
    add_kernel<<<blocks_for(n, 256), 256>>>(out, a, b, n);
    CUDA_CHECK_LAUNCH();
}

extern "C" void cuda_scale(float *x, size_t n, float s) {
    scale_kernel<<<blocks_for(n, 256), 256>>>(x, n, s);
    CUDA_CHECK_LAUNCH();
}

extern "C" void cuda_adamw_update(float *params, const float *grads, float *m, float *v, size_t n,
                                  float lr, float beta1, float beta2, float eps,
                                  float weight_decay, long t) {
    // the bias corrections on the host, as the CPU twin computes them
    float bc1 = 1.0f - powf(beta1, (float)t), bc2 = 1.0f - powf(beta2, (float)t);
    adamw_kernel<<<blocks_for(n, 256), 256>>>(params, grads, m, v, n, lr, beta1, beta2, eps,
                                              weight_decay, bc1, bc2);
    CUDA_CHECK_LAUNCH();
}

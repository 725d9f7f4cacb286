// Elementwise ops: SwiGLU, residual add, guidance on activations; scale and the AdamW update
// on fp32 parameters and gradients (the same float formulas as the CPU twins in
// kernels/cpu/elementwise.c and adamw.c).
#include <cuda_runtime.h>
#include <math.h>

#include "kernels/cuda/act.cuh"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/cuda_ops.h"

template <typename A>
__global__ void swiglu_forward_kernel(A *out, const A *gate, const A *up, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = to_float(gate[i]);
    out[i] = from_float<A>(g / (1.0f + expf(-g)) * to_float(up[i]));
}

template <typename A>
__global__ void swiglu_backward_kernel(A *dgate, A *dup, const A *dout, const A *gate, const A *up,
                                       size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = to_float(gate[i]), s = 1.0f / (1.0f + expf(-g)), d = to_float(dout[i]);
    dgate[i] =
        from_float<A>(to_float(dgate[i]) + d * to_float(up[i]) * s * (1.0f + g * (1.0f - s)));
    dup[i] = from_float<A>(to_float(dup[i]) + d * g * s);
}

template <typename A>
__global__ void add_kernel(A *out, const A *a, const A *b, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = from_float<A>(to_float(a[i]) + to_float(b[i]));
}

template <typename A, typename W>
__global__ void bias_forward_kernel(A *x, const W *bias, size_t n, int C) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = from_float<A>(to_float(x[i]) + to_float(bias[i % C]));
}

template <typename A>
__global__ void guide_kernel(A *cond, const A *uncond, float w, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float u = to_float(uncond[i]);
    cond[i] = from_float<A>(u + w * (to_float(cond[i]) - u));
}

__global__ void scale_kernel(float *x, size_t n, float s) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] *= s;
}

__global__ void accumulate_kernel(float *dst, const float *src, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] += src[i];
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

template <typename A>
void cuda_swiglu_forward(void *out, const void *gate, const void *up, size_t n) {
    swiglu_forward_kernel<A>
        <<<blocks_for(n, 256), 256>>>((A *)out, (const A *)gate, (const A *)up, n);
    CUDA_CHECK_LAUNCH();
}

template <typename A>
void cuda_swiglu_backward(void *dgate, void *dup, const void *dout, const void *gate,
                          const void *up, size_t n) {
    swiglu_backward_kernel<A><<<blocks_for(n, 256), 256>>>((A *)dgate, (A *)dup, (const A *)dout,
                                                           (const A *)gate, (const A *)up, n);
    CUDA_CHECK_LAUNCH();
}

template <typename A>
__global__ void add_scaled_kernel(A *out, const A *x, float s, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = from_float<A>(to_float(out[i]) + s * to_float(x[i]));
}

template <typename A>
void cuda_add_scaled(void *out, const void *x, float s, size_t n) {
    add_scaled_kernel<A><<<blocks_for(n, 256), 256>>>((A *)out, (const A *)x, s, n);
    CUDA_CHECK_LAUNCH();
}

template <typename A>
void cuda_add(void *out, const void *a, const void *b, size_t n) {
    add_kernel<A><<<blocks_for(n, 256), 256>>>((A *)out, (const A *)a, (const A *)b, n);
    CUDA_CHECK_LAUNCH();
}

template <typename A, typename W>
void cuda_bias_forward(void *x, const float *bias, int N, int C) {
    size_t n = (size_t)N * C;
    bias_forward_kernel<A, W><<<blocks_for(n, 256), 256>>>((A *)x, (const W *)bias, n, C);
    CUDA_CHECK_LAUNCH();
}

template <typename A>
void cuda_guide(void *cond, const void *uncond, float w, size_t n) {
    guide_kernel<A><<<blocks_for(n, 256), 256>>>((A *)cond, (const A *)uncond, w, n);
    CUDA_CHECK_LAUNCH();
}

void cuda_scale(float *x, size_t n, float s) {
    scale_kernel<<<blocks_for(n, 256), 256>>>(x, n, s);
    CUDA_CHECK_LAUNCH();
}

void cuda_accumulate(float *dst, const float *src, size_t n) {
    accumulate_kernel<<<blocks_for(n, 256), 256>>>(dst, src, n);
    CUDA_CHECK_LAUNCH();
}

void cuda_adamw_update(float *params, const float *grads, float *m, float *v, size_t n, float lr,
                       float beta1, float beta2, float eps, float weight_decay, long t) {
    // the bias corrections on the host, as the CPU twin computes them
    float bc1 = 1.0f - powf(beta1, (float)t), bc2 = 1.0f - powf(beta2, (float)t);
    adamw_kernel<<<blocks_for(n, 256), 256>>>(params, grads, m, v, n, lr, beta1, beta2, eps,
                                              weight_decay, bc1, bc2);
    CUDA_CHECK_LAUNCH();
}

template void cuda_swiglu_forward<float>(void *, const void *, const void *, size_t);
template void cuda_swiglu_forward<bf16>(void *, const void *, const void *, size_t);
template void cuda_swiglu_backward<float>(void *, void *, const void *, const void *, const void *,
                                          size_t);
template void cuda_swiglu_backward<bf16>(void *, void *, const void *, const void *, const void *,
                                         size_t);
template void cuda_add<float>(void *, const void *, const void *, size_t);
template void cuda_add<bf16>(void *, const void *, const void *, size_t);
template void cuda_add_scaled<float>(void *, const void *, float, size_t);
template void cuda_add_scaled<bf16>(void *, const void *, float, size_t);
template void cuda_bias_forward<float>(void *, const float *, int, int);
template void cuda_bias_forward<bf16>(void *, const float *, int, int);
template void cuda_bias_forward<bf16, bf16>(void *, const float *, int, int);
template void cuda_guide<float>(void *, const void *, float, size_t);
template void cuda_guide<bf16>(void *, const void *, float, size_t);

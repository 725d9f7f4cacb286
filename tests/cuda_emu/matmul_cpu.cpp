// cuBLASLt is not emulated: the emulated backends' matmuls are the CPU's. With bf16
// activations the weight is rounded to bf16 first and the outputs are stored as bf16 (what
// the real matmul.cu does); the arithmetic is fp32 either way.
#include <cuda_runtime.h>

#include <vector>

#include "kernels/cuda/cuda_ops.h"
extern "C" {
#include "kernels/cpu/cpu_ops.h"
}

typedef __nv_bfloat16 bf16;

static float value(float x) { return x; }
static float value(bf16 x) { return __bfloat162float(x); }
static void store(float *p, float x) { *p = x; }
static void store(bf16 *p, float x) { *p = __float2bfloat16(x); }

// n activations as floats
template <typename A>
static std::vector<float> floats(const void *x, size_t n) {
    std::vector<float> out(n);
    for (size_t i = 0; i < n; i++) out[i] = value(((const A *)x)[i]);
    return out;
}

// the weight as the GEMM would read it
template <typename A>
static std::vector<float> weight(const float *w, size_t n) {
    std::vector<float> out(w, w + n);
    if (sizeof(A) != sizeof(float))
        for (float &x : out) x = __bfloat162float(__float2bfloat16(x));
    return out;
}

template <typename A>
static void write(void *dst, const std::vector<float> &src) {
    for (size_t i = 0; i < src.size(); i++) store(&((A *)dst)[i], src[i]);
}

template <typename A>
void cuda_matmul_forward(void *out, const void *inp, const float *w, int N, int C_in, int C_out) {
    std::vector<float> o((size_t)N * C_out), x = floats<A>(inp, (size_t)N * C_in);
    std::vector<float> wr = weight<A>(w, (size_t)C_out * C_in);
    cpu_matmul_forward(o.data(), x.data(), wr.data(), N, C_in, C_out);
    write<A>(out, o);
}

void cuda_matmul_forward_w16(void *out, const void *inp, const float *w, int N, int C_in,
                             int C_out) {
    std::vector<float> o((size_t)N * C_out), x = floats<bf16>(inp, (size_t)N * C_in);
    std::vector<float> wr = floats<bf16>(w, (size_t)C_out * C_in);  // bf16 as stored
    cpu_matmul_forward(o.data(), x.data(), wr.data(), N, C_in, C_out);
    write<bf16>(out, o);
}

template <typename A>
void cuda_matmul_backward(void *dinp, float *dweight, const void *dout, const void *inp,
                          const float *w, int N, int C_in, int C_out) {
    std::vector<float> di = floats<A>(dinp, (size_t)N * C_in),
                       d = floats<A>(dout, (size_t)N * C_out);
    std::vector<float> x = floats<A>(inp, (size_t)N * C_in);
    std::vector<float> wr = weight<A>(w, (size_t)C_out * C_in);
    cpu_matmul_backward(di.data(), dweight, d.data(), x.data(), wr.data(), N, C_in, C_out);
    write<A>(dinp, di);
}

void cuda_matmul_backward_w16(void *dinp, float *dweight, const void *dout, const void *inp,
                              const float *w, int N, int C_in, int C_out) {
    (void)dweight, (void)inp;  // a frozen base: the input gradient alone
    std::vector<float> di = floats<bf16>(dinp, (size_t)N * C_in),
                       d = floats<bf16>(dout, (size_t)N * C_out);
    std::vector<float> wr = floats<bf16>(w, (size_t)C_out * C_in);  // bf16 as stored
    cpu_matmul_backward(di.data(), NULL, d.data(), NULL, wr.data(), N, C_in, C_out);
    write<bf16>(dinp, di);
}

template void cuda_matmul_forward<float>(void *, const void *, const float *, int, int, int);
template void cuda_matmul_forward<bf16>(void *, const void *, const float *, int, int, int);
template void cuda_matmul_backward<float>(void *, float *, const void *, const void *,
                                          const float *, int, int, int);
template void cuda_matmul_backward<bf16>(void *, float *, const void *, const void *, const float *,
                                         int, int, int);

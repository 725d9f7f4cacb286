// cuBLASLt is not emulated: the emulated backend's matmuls are the CPU's, on operands rounded
// to bf16 first when bf16 mode is on (what the real matmul.cu multiplies).
#include <cuda_runtime.h>

#include <vector>

extern "C" {
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cuda/cuda_ops.h"
}

// x itself in fp32 mode, else a bf16-rounded copy held by keep.
static const float *operand(const float *x, size_t n, std::vector<float> &keep) {
    if (!cuda_bf16()) return x;
    keep.resize(n);
    for (size_t i = 0; i < n; i++) keep[i] = __bfloat162float(__float2bfloat16(x[i]));
    return keep.data();
}

extern "C" void cuda_matmul_forward(float *out, const float *inp, const float *weight, int N,
                                    int C_in, int C_out) {
    std::vector<float> a, b;
    cpu_matmul_forward(out, operand(inp, (size_t)N * C_in, a),
                       operand(weight, (size_t)C_out * C_in, b), N, C_in, C_out);
}

extern "C" void cuda_matmul_backward(float *dinp, float *dweight, const float *dout,
                                     const float *inp, const float *weight, int N, int C_in,
                                     int C_out) {
    std::vector<float> a, b, c;
    cpu_matmul_backward(dinp, dweight, operand(dout, (size_t)N * C_out, a),
                        operand(inp, (size_t)N * C_in, b),
                        operand(weight, (size_t)C_out * C_in, c), N, C_in, C_out);
}

// Elementwise ops: the SwiGLU gate and the residual add.
#include <math.h>

#include "kernels/cpu/cpu_ops.h"

static float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

void cpu_swiglu_forward(float *out, const float *gate, const float *up, size_t n) {
#pragma omp parallel for
    for (size_t i = 0; i < n; i++) out[i] = gate[i] * sigmoid(gate[i]) * up[i];
}

void cpu_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                         const float *up, size_t n) {
    // silu(g) = g * s(g), silu'(g) = s(g) * (1 + g * (1 - s(g)))
#pragma omp parallel for
    for (size_t i = 0; i < n; i++) {
        float s = sigmoid(gate[i]);
        float silu = gate[i] * s;
        dgate[i] += dout[i] * up[i] * s * (1.0f + gate[i] * (1.0f - s));
        dup[i] += dout[i] * silu;
    }
}

void cpu_add(float *out, const float *a, const float *b, size_t n) {
#pragma omp parallel for
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void cpu_guide(float *cond, const float *uncond, float w, size_t n) {
#pragma omp parallel for
    for (size_t i = 0; i < n; i++) cond[i] = uncond[i] + w * (cond[i] - uncond[i]);
}

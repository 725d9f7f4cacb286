// Elementwise ops: the SwiGLU gate, the residual add (plain, and scaled: a LoRA branch) and the
// projection biases.
#include <math.h>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/exp_simd.h"

static inline float sigmoid(float x) { return 1.0f / (1.0f + exp_simd(-x)); }

// Every loop goes to threads in chunks with a plain vector loop inside each: GCC's
// `parallel for simd` compiled the SwiGLU loop to scalar code 12x slower, and a plain
// `parallel for` left the residual add scalar (out may alias an input).
enum { CHUNK = 4096 };

static size_t chunk_end(size_t c, size_t n) { return c + CHUNK < n ? c + CHUNK : n; }

void cpu_swiglu_forward(Act *out_act, const Act *gate_act, const Act *up_act, size_t n) {
    float *out = out_act;
    const float *gate = gate_act;
    const float *up = up_act;
#pragma omp parallel for if (worth_threads(10.0 * n))
    for (size_t c = 0; c < n; c += CHUNK)
#pragma omp simd
        for (size_t i = c; i < chunk_end(c, n); i++) out[i] = gate[i] * sigmoid(gate[i]) * up[i];
}

void cpu_swiglu_backward(Act *dgate_act, Act *dup_act, const Act *dout_act, const Act *gate_act,
                         const Act *up_act, size_t n) {
    float *dgate = dgate_act;
    float *dup = dup_act;
    const float *dout = dout_act;
    const float *gate = gate_act;
    const float *up = up_act;
    // silu(g) = g * s(g), silu'(g) = s(g) * (1 + g * (1 - s(g)))
#pragma omp parallel for if (worth_threads(10.0 * n))
    for (size_t c = 0; c < n; c += CHUNK)
#pragma omp simd
        for (size_t i = c; i < chunk_end(c, n); i++) {
            float s = sigmoid(gate[i]);
            float silu = gate[i] * s;
            dgate[i] += dout[i] * up[i] * s * (1.0f + gate[i] * (1.0f - s));
            dup[i] += dout[i] * silu;
        }
}

void cpu_add(Act *out_act, const Act *a_act, const Act *b_act, size_t n) {
    float *out = out_act;
    const float *a = a_act;
    const float *b = b_act;
#pragma omp parallel for if (worth_threads(n))
    for (size_t c = 0; c < n; c += CHUNK)
#pragma omp simd
        for (size_t i = c; i < chunk_end(c, n); i++) out[i] = a[i] + b[i];
}

void cpu_add_scaled(Act *out_act, const Act *x_act, float s, size_t n) {
    float *out = out_act;
    const float *x = x_act;
#pragma omp parallel for if (worth_threads(n))
    for (size_t c = 0; c < n; c += CHUNK)
#pragma omp simd
        for (size_t i = c; i < chunk_end(c, n); i++) out[i] += s * x[i];
}

void cpu_guide(Act *cond_act, const Act *uncond_act, float w, size_t n) {
    float *cond = cond_act;
    const float *uncond = uncond_act;
#pragma omp parallel for if (worth_threads(n))
    for (size_t c = 0; c < n; c += CHUNK)
#pragma omp simd
        for (size_t i = c; i < chunk_end(c, n); i++)
            cond[i] = uncond[i] + w * (cond[i] - uncond[i]);
}

void cpu_bias_forward(Act *x_act, const float *bias, int N, int C) {
    float *x = x_act;
#pragma omp parallel for if (worth_threads((double)N * C))
    for (int n = 0; n < N; n++)
        for (int i = 0; i < C; i++) x[(size_t)n * C + i] += bias[i];
}

void cpu_bias_backward(float *dbias, const Act *dout_act, int N, int C) {
    const float *dout = dout_act;
    // split by column so each sum has one owner, rows in order
#pragma omp parallel for if (worth_threads((double)N * C))
    for (int i = 0; i < C; i++) {
        float s = 0.0f;
        for (int n = 0; n < N; n++) s += dout[(size_t)n * C + i];
        dbias[i] += s;
    }
}

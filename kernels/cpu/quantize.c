// BitNet b1.58's quantisers, the reference: a weight matrix to {-s, 0, +s} (s its mean absolute
// value), and activations to 8-bit integers per row (the row's largest magnitude maps to 127),
// both returned dequantised so the matmuls run unchanged.
#include <math.h>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/ternary.h"

void cpu_ternarize(float *dst, const float *src, size_t n) {
    float s = ternary_scale(src, n);  // the packed format's scale too: the same bits
#pragma omp parallel for if (worth_threads((double)n))
    for (size_t i = 0; i < n; i++) dst[i] = s * fminf(fmaxf(rintf(src[i] / s), -1.0f), 1.0f);
}

float cpu_row_multiplier(const float *row, int C) {
    float m = 0.0f;
    for (int i = 0; i < C; i++) m = fmaxf(m, fabsf(row[i]));
    return 127.0f / fmaxf(m, 1e-5f);
}

void cpu_quantize_rows(Act *out_act, const Act *x_act, int N, int C) {
    float *out = out_act;
    const float *x = x_act;
#pragma omp parallel for if (worth_threads(2.0 * N * C))
    for (int n = 0; n < N; n++) {
        const float *row = x + (size_t)n * C;
        float q = cpu_row_multiplier(row, C);
        for (int i = 0; i < C; i++) out[(size_t)n * C + i] = quantize_level(row[i], q) / q;
    }
}

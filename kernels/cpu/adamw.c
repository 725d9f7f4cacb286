// Optimizer ops: the squared norm for gradient clipping, a scale, and the AdamW update.
#include <math.h>
#include <stdlib.h>

#include "kernels/cpu/cpu_ops.h"

// Fixed-size chunks summed in double, then the chunk sums in order: the same bits for
// any thread count, which bit-exact resumes rely on (and for any split into whole chunks,
// which data-parallel ranks rely on).
void cpu_sum_squares_chunks(double *partials, const float *x, size_t n) {
    size_t n_chunks = (n + SUM_SQUARES_CHUNK - 1) / SUM_SQUARES_CHUNK;
#pragma omp parallel for if (worth_threads(n))
    for (size_t c = 0; c < n_chunks; c++) {
        size_t end = (c + 1) * SUM_SQUARES_CHUNK < n ? (c + 1) * SUM_SQUARES_CHUNK : n;
        double s = 0.0;
        for (size_t i = c * SUM_SQUARES_CHUNK; i < end; i++) s += (double)x[i] * x[i];
        partials[c] = s;
    }
}

double cpu_sum_squares(const float *x, size_t n) {
    size_t n_chunks = (n + SUM_SQUARES_CHUNK - 1) / SUM_SQUARES_CHUNK;
    double *partial = malloc((n_chunks ? n_chunks : 1) * sizeof(double));
    cpu_sum_squares_chunks(partial, x, n);
    double total = 0.0;
    for (size_t c = 0; c < n_chunks; c++) total += partial[c];
    free(partial);
    return total;
}

void cpu_scale(float *x, size_t n, float s) {
#pragma omp parallel for if (worth_threads(n))
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

void cpu_accumulate(float *dst, const float *src, size_t n) {
#pragma omp parallel for if (worth_threads(n))
    for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

void cpu_adamw_update(float *params, const float *grads, float *m, float *v, size_t n, float lr,
                      float beta1, float beta2, float eps, float weight_decay, long t) {
    float bc1 = 1.0f - powf(beta1, (float)t);
    float bc2 = 1.0f - powf(beta2, (float)t);
#pragma omp parallel for if (worth_threads(10.0 * n))
    for (size_t i = 0; i < n; i++) {
        float g = grads[i];
        m[i] = beta1 * m[i] + (1.0f - beta1) * g;
        v[i] = beta2 * v[i] + (1.0f - beta2) * g * g;
        float mhat = m[i] / bc1;
        float vhat = v[i] / bc2;
        // decoupled weight decay: shrinks the weight directly, not through the gradient
        params[i] -= lr * (mhat / (sqrtf(vhat) + eps) + weight_decay * params[i]);
    }
}

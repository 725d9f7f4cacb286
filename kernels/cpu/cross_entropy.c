// Cross-entropy of a softmax over the vocabulary, per position. The objective (MDM or AR)
// decides which positions count and how much, through the per-position weights.
#include <math.h>

#include "kernels/cpu/cpu_ops.h"

static float row_max(const float *x, int V) {
    float m = -INFINITY;
    for (int i = 0; i < V; i++)
        if (x[i] > m) m = x[i];
    return m;
}

// sum_i exp(x[i] - max) of one row, and the max through *maxv.
static float row_exp_sum(const float *x, int V, float *maxv) {
    float m = row_max(x, V), sum = 0.0f;
    for (int i = 0; i < V; i++) sum += expf(x[i] - m);
    *maxv = m;
    return sum;
}

void cpu_cross_entropy_forward(float *losses, const float *logits, const int *targets, int N,
                               int V) {
#pragma omp parallel for if (worth_threads(2.0 * N * V))
    for (int n = 0; n < N; n++) {
        const float *x = logits + (size_t)n * V;
        float m, sum = row_exp_sum(x, V, &m);
        losses[n] = logf(sum) + m - x[targets[n]];
    }
}

void cpu_cross_entropy_fused(float *losses, float *dlogits, const float *logits,
                             const int *targets, const float *weights, int N, int V) {
#pragma omp parallel for if (worth_threads(3.0 * N * V))
    for (int n = 0; n < N; n++) {
        const float *x = logits + (size_t)n * V;
        float *dx = dlogits + (size_t)n * V;  // may be x: each x[i] is read before dx[i] is written
        float m, sum = row_exp_sum(x, V, &m), w = weights[n];
        losses[n] = logf(sum) + m - x[targets[n]];
        float coef = w / sum;
        for (int i = 0; i < V; i++) dx[i] = w == 0.0f ? 0.0f : coef * expf(x[i] - m);
        dx[targets[n]] -= w;
    }
}

// Cross-entropy of a softmax over the vocabulary, per position. The objective (MDM or AR)
// decides which positions count and how much, through the per-position weights.
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/exp_simd.h"

static float row_max(const float *x, int V) {
    float m = -INFINITY;
    for (int i = 0; i < V; i++)
        if (x[i] > m) m = x[i];
    return m;
}

// sum_i exp(x[i] - max) of one row, and the max through *maxv.
static float row_exp_sum(const float *x, int V, float *maxv) {
    float m = row_max(x, V), sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < V; i++) sum += exp_simd(x[i] - m);
    *maxv = m;
    return sum;
}

void cpu_cross_entropy_forward(float *losses, const Act *logits_act, const int *targets, int N,
                               int V) {
    const float *logits = logits_act;
#pragma omp parallel for if (worth_threads(2.0 * N * V))
    for (int n = 0; n < N; n++) {
        const float *x = logits + (size_t)n * V;
        float m, sum = row_exp_sum(x, V, &m);
        losses[n] = logf(sum) + m - x[targets[n]];
    }
}

void cpu_cross_entropy_fused(float *losses, Act *dlogits_act, const Act *logits_act,
                             const int *targets, const float *weights, int N, int V) {
    float *dlogits = dlogits_act;
    const float *logits = logits_act;
#pragma omp parallel for if (worth_threads(3.0 * N * V))
    for (int n = 0; n < N; n++) {
        const float *x = logits + (size_t)n * V;
        float *dx = dlogits + (size_t)n * V;  // may be x: each x[i] is read before dx[i] is written
        float m, sum = row_exp_sum(x, V, &m), w = weights[n];
        losses[n] = logf(sum) + m - x[targets[n]];
        float coef = w / sum;
        if (w == 0.0f)
            memset(dx, 0, (size_t)V * sizeof(float));
        else
#pragma omp simd
            for (int i = 0; i < V; i++) dx[i] = coef * exp_simd(x[i] - m);
        dx[targets[n]] -= w;
    }
}

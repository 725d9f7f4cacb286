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

void cpu_cross_entropy_forward(float *losses, const float *logits, const int *targets, int N,
                               int V) {
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *x = logits + (size_t)n * V;
        float m = row_max(x, V);
        float sum = 0.0f;
        for (int i = 0; i < V; i++) sum += expf(x[i] - m);
        losses[n] = logf(sum) + m - x[targets[n]];
    }
}

void cpu_cross_entropy_backward(float *dlogits, const float *logits, const int *targets,
                                const float *weights, int N, int V) {
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        float w = weights[n];
        if (w == 0.0f) continue;
        const float *x = logits + (size_t)n * V;
        float *dx = dlogits + (size_t)n * V;
        float m = row_max(x, V);
        float sum = 0.0f;
        for (int i = 0; i < V; i++) sum += expf(x[i] - m);
        float inv = 1.0f / sum;
        for (int i = 0; i < V; i++) dx[i] += w * expf(x[i] - m) * inv;
        dx[targets[n]] -= w;
    }
}

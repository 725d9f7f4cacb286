// Token embedding: a row lookup forward, a scatter-add backward.
#include <string.h>

#include "kernels/cpu/cpu_ops.h"

void cpu_embedding_forward(Act *out_act, const int *tokens, const float *table, int N, int C) {
    float *out = out_act;
#pragma omp parallel for if (worth_threads((double)N * C))
    for (int n = 0; n < N; n++) memcpy(out + (size_t)n * C, table + (size_t)tokens[n] * C,
                                       (size_t)C * sizeof(float));
}

void cpu_embedding_backward(float *dtable, const Act *dout_act, const int *tokens, int N, int C,
                            int V) {
    const float *dout = dout_act;
    // Tokens repeat, so rows of dtable collide; threads split the columns instead of the
    // rows, which keeps every sum in the same order (by position) whatever the thread count.
    (void)V;
#pragma omp parallel for if (worth_threads((double)N * C))
    for (int c = 0; c < C; c++)
        for (int n = 0; n < N; n++) dtable[(size_t)tokens[n] * C + c] += dout[(size_t)n * C + c];
}

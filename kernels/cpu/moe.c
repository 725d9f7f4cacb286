// Mixture-of-experts ops: routing (kernels/moe_route.h, row by row), and moving rows between
// token order and expert order: a gather, and the weighted combine of each token's experts.
#include "kernels/cpu/cpu_ops.h"
#include "kernels/moe_route.h"

void cpu_moe_route(int *pick, float *weight, float *probs, const Act *logits_act,
                   const float *bias, int N, int E, int k, int router, int n_groups,
                   int topk_groups, float routed_scale) {
    const float *logits = logits_act;
#pragma omp parallel for if (worth_threads(20.0 * N * E))
    for (int n = 0; n < N; n++) {
        unsigned char eligible[ROUTE_MAX_EXPERTS];
        route_row(pick + (size_t)n * k, weight + (size_t)n * k, probs + (size_t)n * E, eligible,
                  logits + (size_t)n * E, bias, E, k, router, n_groups, topk_groups,
                  routed_scale);
    }
}

void cpu_moe_route_backward(Act *dlogits_act, const float *dweight, const int *pick,
                            const float *probs, const float *aux, int N, int E, int k,
                            int router, float routed_scale) {
    float *dlogits = dlogits_act;
#pragma omp parallel for if (worth_threads(10.0 * N * E))
    for (int n = 0; n < N; n++)
        route_row_backward(dlogits + (size_t)n * E, dweight + (size_t)n * k,
                           pick + (size_t)n * k, probs + (size_t)n * E, aux, E, k, router,
                           routed_scale);
}

void cpu_gather_rows(Act *dst_act, const Act *src_act, const int *rows, int n, int C) {
    float *dst = dst_act;
    const float *src = src_act;
#pragma omp parallel for if (worth_threads((double)n * C))
    for (int i = 0; i < n; i++)
        for (int c = 0; c < C; c++) dst[(size_t)i * C + c] = src[(size_t)rows[i] * C + c];
}

void cpu_moe_combine(Act *out_act, const Act *ys_act, const int *slot, const float *weight,
                     int N, int k, int C) {
    float *out = out_act;
    const float *ys = ys_act;
#pragma omp parallel for if (worth_threads(2.0 * N * k * C))
    for (int t = 0; t < N; t++)
        for (int j = 0; j < k; j++) {
            size_t s = (size_t)t * k + j;
            float w = weight ? weight[s] : 1.0f;
            const float *y = ys + (size_t)slot[s] * C;
            for (int c = 0; c < C; c++) out[(size_t)t * C + c] += w * y[c];
        }
}

void cpu_moe_combine_backward(Act *dys_act, float *dweight, const Act *dout_act,
                              const Act *ys_act, const int *slot, const float *weight, int N,
                              int k, int C) {
    float *dys = dys_act;
    const float *dout = dout_act, *ys = ys_act;
#pragma omp parallel for if (worth_threads(4.0 * N * k * C))
    for (int t = 0; t < N; t++)
        for (int j = 0; j < k; j++) {
            size_t s = (size_t)t * k + j;
            const float *d = dout + (size_t)t * C, *y = ys + (size_t)slot[s] * C;
            float *dy = dys + (size_t)slot[s] * C;
            float dot = 0.0f;
            for (int c = 0; c < C; c++) {
                dy[c] = weight[s] * d[c];
                dot += d[c] * y[c];
            }
            dweight[s] = dot;
        }
}

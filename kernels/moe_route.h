// One row's routing of a mixture of experts, the same code on both backends (included by C and
// CUDA sources alike): the CPU op and the CUDA kernel each call these per row, so their picks
// agree exactly given the same logits. The routers are described in model/config.h.
#ifndef DLLM_MOE_ROUTE_H
#define DLLM_MOE_ROUTE_H

#include <math.h>

#ifdef __CUDACC__
#define ROUTE_FN static inline __host__ __device__
#else
#define ROUTE_FN static inline
#endif

enum { ROUTE_SOFTMAX = 0, ROUTE_SIGMOID_GROUPED = 1 };  // = ROUTER_* of model/config.h
enum { ROUTE_MAX_EXPERTS = 512 };  // a row's scratch on the GPU is this many floats

// The index of the largest of n values v[i] + (bias ? bias[i] : 0) whose eligible[i] is set
// (NULL: all), ties to the lower index; -1 when none is eligible.
ROUTE_FN int route_best(const float *v, const float *bias, const unsigned char *eligible, int n) {
    int best = -1;
    float best_v = 0.0f;
    for (int i = 0; i < n; i++) {
        if (eligible && !eligible[i]) continue;
        float x = v[i] + (bias ? bias[i] : 0.0f);
        if (best < 0 || x > best_v) best = i, best_v = x;
    }
    return best;
}

// Routes one row: probs[E] from the row's logits (softmax, or sigmoid scores), then k picks
// (best first) and their weights. eligible is scratch of E bytes.
ROUTE_FN void route_row(int *pick, float *weight, float *probs, unsigned char *eligible,
                        const float *logits, const float *bias, int E, int k, int router,
                        int n_groups, int topk_groups, float routed_scale) {
    if (router == ROUTE_SOFTMAX) {
        float mx = logits[0];
        for (int e = 1; e < E; e++) mx = logits[e] > mx ? logits[e] : mx;
        double sum = 0.0;
        for (int e = 0; e < E; e++) sum += exp((double)(logits[e] - mx));
        for (int e = 0; e < E; e++) probs[e] = (float)(exp((double)(logits[e] - mx)) / sum);
        for (int e = 0; e < E; e++) eligible[e] = 1;
    } else {
        for (int e = 0; e < E; e++) probs[e] = 1.0f / (1.0f + expf(-logits[e]));
        // a group's score: the sum of its two best biased scores; the best topk_groups stay
        int size = E / n_groups;
        for (int e = 0; e < E; e++) eligible[e] = 0;
        for (int round = 0; round < topk_groups; round++) {
            int best_g = -1;
            float best_s = 0.0f;
            for (int g = 0; g < n_groups; g++) {
                if (eligible[g * size]) continue;  // already kept
                int a = route_best(probs + g * size, bias ? bias + g * size : 0, 0, size);
                float first = probs[g * size + a] + (bias ? bias[g * size + a] : 0.0f);
                float second = 0.0f;
                int have = 0;
                for (int i = 0; i < size; i++) {
                    if (i == a) continue;
                    float x = probs[g * size + i] + (bias ? bias[g * size + i] : 0.0f);
                    if (!have || x > second) second = x, have = 1;
                }
                float s = first + second;
                if (best_g < 0 || s > best_s) best_g = g, best_s = s;
            }
            for (int i = 0; i < size; i++) eligible[best_g * size + i] = 1;
        }
    }
    float sum = 0.0f;
    for (int j = 0; j < k; j++) {
        int e = route_best(probs, bias, eligible, E);
        eligible[e] = 0;
        pick[j] = e;
        weight[j] = router == ROUTE_SOFTMAX ? probs[e] + (bias ? bias[e] : 0.0f) : probs[e];
        sum += weight[j];
    }
    if (router == ROUTE_SIGMOID_GROUPED)
        for (int j = 0; j < k; j++)
            weight[j] = (k > 1 ? weight[j] / (sum + 1e-20f) : weight[j]) * routed_scale;
}

// The backward of route_row for one row: dlogits[E] (written) from the weights' gradient
// dweight[k] and, for the load-balancing loss, a gradient aux[E] (NULL: none) on every
// probability of the row.
ROUTE_FN void route_row_backward(float *dlogits, const float *dweight, const int *pick,
                                 const float *probs, const float *aux, int E, int k, int router,
                                 float routed_scale) {
    for (int e = 0; e < E; e++) dlogits[e] = aux ? aux[e] : 0.0f;  // d loss / d probs first
    if (router == ROUTE_SOFTMAX) {
        for (int j = 0; j < k; j++) dlogits[pick[j]] += dweight[j];
        double dot = 0.0;  // softmax: dl = p (dp - sum p dp)
        for (int e = 0; e < E; e++) dot += (double)probs[e] * dlogits[e];
        for (int e = 0; e < E; e++) dlogits[e] = probs[e] * (dlogits[e] - (float)dot);
        return;
    }
    // w_j = scale s_j / (S + 1e-20), S = sum of the picked s: dS_j = scale (dw_j - sum dw w / scale) / S
    if (k > 1) {
        float S = 0.0f, dot = 0.0f;
        for (int j = 0; j < k; j++) S += probs[pick[j]];
        S += 1e-20f;
        for (int j = 0; j < k; j++) dot += dweight[j] * probs[pick[j]];
        for (int j = 0; j < k; j++)
            dlogits[pick[j]] += routed_scale * (dweight[j] / S - dot / (S * S));
    } else {
        dlogits[pick[0]] += routed_scale * dweight[0];
    }
    for (int e = 0; e < E; e++) dlogits[e] *= probs[e] * (1.0f - probs[e]);  // sigmoid
}

#endif

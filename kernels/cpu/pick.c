// The sampler's per-position pick: guidance, Gumbel-max token choice and its confidence,
// row by row (the twin of kernels/cuda/pick.cu).
#include <math.h>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/exp_simd.h"
#include "kernels/noise.h"

// Logit v of the row, guided when uncond is given.
static float guided(const float *cond, const float *uncond, float w, int v) {
    return uncond ? uncond[v] + w * (cond[v] - uncond[v]) : cond[v];
}

void cpu_pick_tokens(int *tokens, double *confidence, const float *logits, int B,
                     int rows_per_seq, int first, int count, int V, float cfg, float temperature,
                     uint64_t seed, int banned) {
    size_t uncond_offset = (size_t)B * rows_per_seq * V;
    float w = cfg + 1.0f;
#pragma omp parallel for collapse(2) if (worth_threads(4.0 * B * count * V))
    for (int b = 0; b < B; b++)
        for (int i = 0; i < count; i++) {
            const float *cond = logits + ((size_t)b * rows_per_seq + first + i) * V;
            const float *uncond = cfg > 0.0f ? cond + uncond_offset : NULL;
            size_t out = (size_t)b * count + i;
            float maxv = -INFINITY;
#pragma omp simd reduction(max : maxv)
            for (int v = 0; v < V; v++) {
                float l = guided(cond, uncond, w, v);
                maxv = v != banned && l > maxv ? l : maxv;
            }
            int best = -1;
            if (temperature > 0.0f) {
                double best_score = -INFINITY;
                for (int v = 0; v < V; v++) {
                    if (v == banned) continue;
                    double score = guided(cond, uncond, w, v) +
                                   (double)temperature * noise_gumbel(seed, out * V + v);
                    if (best < 0 || score > best_score) best = v, best_score = score;
                }
            } else {  // greedy: the first token at the maximum
                for (int v = 0; v < V && best < 0; v++)
                    if (v != banned && guided(cond, uncond, w, v) == maxv) best = v;
                if (best < 0) best = banned == 0 ? 1 : 0;  // every logit NaN
            }
            double sum = 0.0;
#pragma omp simd reduction(+ : sum)
            for (int v = 0; v < V; v++) {
                double e = exp_simd_double((double)guided(cond, uncond, w, v) - maxv);
                sum += v == banned ? 0.0 : e;
            }
            tokens[out] = best;
            confidence[out] = exp((double)guided(cond, uncond, w, best) - maxv) / sum;
        }
}

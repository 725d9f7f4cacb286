#include "train/objective.h"

#include <math.h>
#include <string.h>

void mdm_noise_batch(const int *tokens, int B, int T, int from, int mask_id, float eps,
                     TSampling ts, Rng *rng, int *inputs, int *targets, float *weights,
                     float *t_out) {
    float norm = 1.0f / ((float)B * (T - from));
    double u0 = ts == T_STRATIFIED ? rng_uniform(rng) : 0.0;
    for (int b = 0; b < B; b++) {
        double u = ts == T_STRATIFIED ? fmod(u0 + (double)b / B, 1.0) : rng_uniform(rng);
        // LLaDA's p_mask = (1 - eps) t + eps: t never reaches 0, so 1/t stays bounded
        float t = (1.0f - eps) * (float)u + eps;
        if (t_out) t_out[b] = t;
        for (int i = 0; i < T; i++) {
            size_t n = (size_t)b * T + i;
            int masked = rng_uniform(rng) < t && i >= from;
            inputs[n] = masked ? mask_id : tokens[n];
            targets[n] = tokens[n];
            weights[n] = masked ? norm / t : 0.0f;
        }
    }
}

void bd3_noise_batch(const int *tokens, int B, int T, int L, int mask_id, float eps, float t_max,
                     TSampling ts, Rng *rng, int *inputs, int *targets, float *weights) {
    float norm = 1.0f / ((float)B * T);
    int blocks = T / L, n_blocks = B * blocks;
    double u0 = ts == T_STRATIFIED ? rng_uniform(rng) : 0.0;
    for (int b = 0; b < B; b++) {
        const int *x = tokens + (size_t)b * T;
        int *in = inputs + (size_t)b * 2 * T, *tg = targets + (size_t)b * 2 * T;
        float *w = weights + (size_t)b * 2 * T;
        memcpy(in, x, (size_t)T * sizeof(int));  // the clean copy: context, never scored
        memcpy(tg, x, (size_t)T * sizeof(int));
        memset(w, 0, (size_t)T * sizeof(float));
        for (int k = 0; k < blocks; k++) {
            int index = b * blocks + k;
            double u = ts == T_STRATIFIED ? fmod(u0 + (double)index / n_blocks, 1.0)
                                          : rng_uniform(rng);
            float t = (t_max - eps) * (float)u + eps;
            for (int i = k * L; i < (k + 1) * L; i++) {
                int masked = rng_uniform(rng) < t;
                in[T + i] = masked ? mask_id : x[i];
                tg[T + i] = x[i];
                w[T + i] = masked ? norm / t : 0.0f;
            }
        }
    }
}

void ar_shift_batch(const int *windows, int B, int T, int *inputs, int *targets, float *weights) {
    float w = 1.0f / ((float)B * T);
    for (int b = 0; b < B; b++) {
        const int *win = windows + (size_t)b * (T + 1);
        memcpy(inputs + (size_t)b * T, win, (size_t)T * sizeof(int));
        memcpy(targets + (size_t)b * T, win + 1, (size_t)T * sizeof(int));
        for (int i = 0; i < T; i++) weights[(size_t)b * T + i] = w;
    }
}

void sft_mdm_batch(const int *rows, const int *prompt_len, int B, int T, int mask_id, float eps,
                   float cfg_drop, Rng *rng, int *inputs, int *targets, float *weights,
                   float *t_out) {
    for (int b = 0; b < B; b++) {
        const int *row = rows + (size_t)b * T;
        int *in = inputs + (size_t)b * T;
        float *w = weights + (size_t)b * T;
        int p = prompt_len[b];
        float t = (1.0f - eps) * rng_uniform(rng) + eps;
        if (t_out) t_out[b] = t;
        float norm = 1.0f / (t * (float)(T - p) * B);
        int drop_prompt = cfg_drop > 0.0f && rng_uniform(rng) < cfg_drop;
        memcpy(targets + (size_t)b * T, row, (size_t)T * sizeof(int));
        for (int i = 0; i < T; i++) {
            int masked = i < p ? drop_prompt : rng_uniform(rng) < t;
            in[i] = masked ? mask_id : row[i];
            w[i] = masked && i >= p ? norm : 0.0f;
        }
    }
}

void sft_ar_batch(const int *rows, const int *prompt_len, const int *answer_len, int B, int T,
                  int *inputs, int *targets, float *weights) {
    int n = T - 1;  // positions per row
    for (int b = 0; b < B; b++) {
        const int *row = rows + (size_t)b * T;
        memcpy(inputs + (size_t)b * n, row, (size_t)n * sizeof(int));
        memcpy(targets + (size_t)b * n, row + 1, (size_t)n * sizeof(int));
        // position i predicts token i + 1: the answer is tokens p .. p + answer_len - 1
        int first = prompt_len[b] - 1, last = first + answer_len[b];
        for (int i = 0; i < n; i++)
            weights[(size_t)b * n + i] =
                i >= first && i < last ? 1.0f / ((float)answer_len[b] * B) : 0.0f;
    }
}

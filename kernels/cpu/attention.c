// Multi-head scaled dot-product attention, one query row at a time. With grouped-query
// attention (Hkv < H) the H / Hkv query heads of a group share one key/value head.
// Which keys a query sees is the mask's (kernels/attn_mask.h): every key for the MDM, the ones
// before it for the AR baseline, block-causal and BD3-LM's two-copy layout for block diffusion.
// Only the log-sum-exp of each row's scores is kept for the backward pass, which recomputes
// the probabilities from q and k: memory O(T) per head, the same contract as the CUDA
// flash-style kernels.
#include <math.h>
#include <stdlib.h>

#include "kernels/cpu/cpu_ops.h"

static float dot(const float *a, const float *b, int n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

void cpu_attention_forward(float *out, float *lse, const float *q, const float *k,
                           const float *v, const int *key_start, int B, int Tq, int Tk, int q_pos0,
                           int H, int Hkv, int head_dim, int mask) {
    float scale = 1.0f / sqrtf((float)head_dim);
    int group = H / Hkv;
#pragma omp parallel if (worth_threads(2.0 * B * H * Tq * Tk * head_dim))
    {
        float *p = malloc((size_t)Tk * sizeof(float));
#pragma omp for collapse(3)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int t = 0; t < Tq; t++) {
                    const float *qt = q + attention_offset(b, t, h, Tq, H, head_dim);
                    int first = key_start ? key_start[b] : 0;
                    int end = attn_keys_end(mask, q_pos0 + t, Tk);
                    float maxv = -INFINITY;
                    for (int j = first; j < end; j++) {
                        p[j] = -INFINITY;
                        if (!attn_sees(mask, q_pos0 + t, j, Tk)) continue;
                        const float *kj = k + attention_offset(b, j, h / group, Tk, Hkv, head_dim);
                        p[j] = dot(qt, kj, head_dim) * scale;
                        if (p[j] > maxv) maxv = p[j];
                    }
                    float sum = 0.0f;
                    for (int j = first; j < end; j++) {
                        p[j] = p[j] == -INFINITY ? 0.0f : expf(p[j] - maxv);
                        sum += p[j];
                    }
                    float *o = out + attention_offset(b, t, h, Tq, H, head_dim);
                    for (int i = 0; i < head_dim; i++) o[i] = 0.0f;
                    // a row with no visible key: zeros, and -inf marks it for the backward
                    lse[((size_t)b * H + h) * Tq + t] = sum > 0.0f ? maxv + logf(sum) : -INFINITY;
                    if (sum == 0.0f) continue;
                    for (int j = first; j < end; j++) {
                        const float *vj = v + attention_offset(b, j, h / group, Tk, Hkv, head_dim);
                        float pj = p[j] / sum;
#pragma omp simd
                        for (int i = 0; i < head_dim; i++) o[i] += pj * vj[i];
                    }
                }
        free(p);
    }
}

void cpu_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *out,
                            const float *lse, const float *q, const float *k, const float *v,
                            int B, int T, int H, int Hkv, int head_dim, int mask) {
    // One (b, key/value head) per thread, because every query of the head's group adds into
    // its dk and dv (the group's heads in order, so the sums do not depend on threads).
    // With P = softmax(S): dS = P * (dO . v - D), D = dO . out (= sum_j P_j dO . v_j).
    float scale = 1.0f / sqrtf((float)head_dim);
    int group = H / Hkv;
#pragma omp parallel for collapse(2) if (worth_threads(4.0 * B * H * T * T * head_dim))
    for (int b = 0; b < B; b++)
        for (int g = 0; g < Hkv; g++)
            for (int h = g * group; h < (g + 1) * group; h++)
                for (int t = 0; t < T; t++) {
                    float row_lse = lse[((size_t)b * H + h) * T + t];
                    if (row_lse == -INFINITY) continue;  // saw no key: passes no gradient
                    size_t row = attention_offset(b, t, h, T, H, head_dim);
                    const float *qt = q + row, *dot_row = dout + row;
                    float *dqt = dq + row;
                    float D = dot(dot_row, out + row, head_dim);
                    int end = attn_keys_end(mask, t, T);
                    for (int j = 0; j < end; j++) {
                        if (!attn_sees(mask, t, j, T)) continue;
                        size_t key = attention_offset(b, j, g, T, Hkv, head_dim);
                        float p = expf(dot(qt, k + key, head_dim) * scale - row_lse);
                        float ds = p * (dot(dot_row, v + key, head_dim) - D) * scale;
                        const float *kj = k + key;
                        float *dkj = dk + key, *dvj = dv + key;
#pragma omp simd
                        for (int i = 0; i < head_dim; i++) {
                            dvj[i] += p * dot_row[i];
                            dqt[i] += ds * kj[i];
                            dkj[i] += ds * qt[i];
                        }
                    }
                }
}

// Multi-head scaled dot-product attention, one query row at a time.
// Bidirectional for the MDM (every position sees every other), causal for the AR baseline.
#include <math.h>
#include <stdlib.h>

#include "kernels/cpu/cpu_ops.h"

// Offset of head h of position t of sequence b in a [B, T, H, head_dim] tensor.
static size_t head_offset(int b, int t, int h, int T, int H, int head_dim) {
    return (((size_t)b * T + t) * H + h) * head_dim;
}

void cpu_attention_forward(float *out, float *probs, const float *q, const float *k,
                           const float *v, const int *key_start, int B, int Tq, int Tk, int q_pos0,
                           int H, int head_dim, int causal) {
    float scale = 1.0f / sqrtf((float)head_dim);
#pragma omp parallel for collapse(3)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < Tq; t++) {
                const float *qt = q + head_offset(b, t, h, Tq, H, head_dim);
                float *p = probs + (((size_t)b * H + h) * Tq + t) * Tk;
                int first = key_start ? key_start[b] : 0;
                int n_keys = causal ? q_pos0 + t + 1 : Tk;
                if (n_keys > Tk) n_keys = Tk;
                for (int t2 = 0; t2 < first && t2 < Tk; t2++) p[t2] = 0.0f;
                float maxv = -INFINITY;
                for (int t2 = first; t2 < n_keys; t2++) {
                    const float *kt = k + head_offset(b, t2, h, Tk, H, head_dim);
                    float s = 0.0f;
#pragma omp simd reduction(+ : s)
                    for (int i = 0; i < head_dim; i++) s += qt[i] * kt[i];
                    p[t2] = s * scale;
                    if (p[t2] > maxv) maxv = p[t2];
                }
                float sum = 0.0f;
                for (int t2 = first; t2 < n_keys; t2++) {
                    p[t2] = expf(p[t2] - maxv);
                    sum += p[t2];
                }
                for (int t2 = first; t2 < n_keys; t2++) p[t2] /= sum;
                for (int t2 = n_keys > first ? n_keys : first; t2 < Tk; t2++) p[t2] = 0.0f;

                float *o = out + head_offset(b, t, h, Tq, H, head_dim);
                for (int i = 0; i < head_dim; i++) o[i] = 0.0f;
                for (int t2 = first; t2 < n_keys; t2++) {
                    const float *vt = v + head_offset(b, t2, h, Tk, H, head_dim);
#pragma omp simd
                    for (int i = 0; i < head_dim; i++) o[i] += p[t2] * vt[i];
                }
            }
}

void cpu_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *probs,
                            const float *q, const float *k, const float *v, int B, int T, int H,
                            int head_dim) {
    // Causal masking needs no flag here: masked probabilities are 0, so they pass no gradient.
    // One (b, h) per thread, because every query of a head adds into that head's dk and dv.
    float scale = 1.0f / sqrtf((float)head_dim);
#pragma omp parallel
    {
        float *dp = malloc((size_t)T * sizeof(float));
#pragma omp for collapse(2)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int t = 0; t < T; t++) {
                    const float *p = probs + (((size_t)b * H + h) * T + t) * T;
                    const float *dot = dout + head_offset(b, t, h, T, H, head_dim);
                    // dp = dout . v ; dv += p * dout
                    float p_dot_dp = 0.0f;
                    for (int t2 = 0; t2 < T; t2++) {
                        const float *vt = v + head_offset(b, t2, h, T, H, head_dim);
                        float *dvt = dv + head_offset(b, t2, h, T, H, head_dim);
                        float s = 0.0f;
#pragma omp simd reduction(+ : s)
                        for (int i = 0; i < head_dim; i++) {
                            s += dot[i] * vt[i];
                            dvt[i] += p[t2] * dot[i];
                        }
                        dp[t2] = s;
                        p_dot_dp += p[t2] * s;
                    }
                    // softmax backward, then through the scaled scores q . k
                    const float *qt = q + head_offset(b, t, h, T, H, head_dim);
                    float *dqt = dq + head_offset(b, t, h, T, H, head_dim);
                    for (int t2 = 0; t2 < T; t2++) {
                        float ds = p[t2] * (dp[t2] - p_dot_dp) * scale;
                        if (ds == 0.0f) continue;
                        const float *kt = k + head_offset(b, t2, h, T, H, head_dim);
                        float *dkt = dk + head_offset(b, t2, h, T, H, head_dim);
#pragma omp simd
                        for (int i = 0; i < head_dim; i++) {
                            dqt[i] += ds * kt[i];
                            dkt[i] += ds * qt[i];
                        }
                    }
                }
        free(dp);
    }
}

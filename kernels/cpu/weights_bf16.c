// The ops that read weights, on bf16 weights: what a model holding a bf16 checkpoint's weights
// as they are (half the memory of fp32) runs on: an inference model, or the frozen base under
// LoRA adapters, whose backward needs the input gradients (never the weights'). Each weight is
// widened to fp32 exactly, then the arithmetic is the fp32 reference's.
#include <stdlib.h>

#include "common/bf16.h"
#include "kernels/cpu/cpu_ops.h"

// The table types every weight float *; on the bf16-weight table the bytes there are bf16.
static const uint16_t *bf16_weights(const float *weights) {
    return (const uint16_t *)(const void *)weights;
}

void cpu_embedding_forward_w16(Act *out_act, const int *tokens, const float *table_bf16, int N,
                               int C) {
    float *out = out_act;
    const uint16_t *table = bf16_weights(table_bf16);
#pragma omp parallel for if (worth_threads((double)N * C))
    for (int n = 0; n < N; n++)
        for (int i = 0; i < C; i++)
            out[(size_t)n * C + i] = bf16_to_float(table[(size_t)tokens[n] * C + i]);
}

// The C gains widened once, then the fp32 op (as the backward below).
void cpu_rmsnorm_forward_w16(Act *out, float *rstd, const Act *inp, const float *weight_bf16,
                             int N, int C, float eps) {
    const uint16_t *weight = bf16_weights(weight_bf16);
    float *w = malloc((size_t)C * sizeof(float));
    for (int i = 0; i < C; i++) w[i] = bf16_to_float(weight[i]);
    cpu_rmsnorm_forward(out, rstd, inp, w, N, C, eps);
    free(w);
}

void cpu_matmul_forward_w16(Act *out_act, const Act *inp_act, const float *weight_bf16, int N,
                            int C_in, int C_out) {
    float *out = out_act;
    const float *inp = inp_act;
    // from 6 rows (a sampler's block, a verify, a training batch) the tiled kernel, which
    // widens each weight as it broadcasts it across up to 32 rows
    if (N >= 6) {
        cpu_matmul_forward_rows_w16(out, inp, weight_bf16, N, C_in, C_out);
        return;
    }
    const uint16_t *weight = bf16_weights(weight_bf16);
    // each thread widens one weight row at a time and runs every input row against it
#pragma omp parallel if (worth_threads((double)N * C_in * C_out))
    {
        float *w = malloc((size_t)C_in * sizeof(float));
#pragma omp for
        for (int o = 0; o < C_out; o++) {
            for (int i = 0; i < C_in; i++) w[i] = bf16_to_float(weight[(size_t)o * C_in + i]);
            for (int n = 0; n < N; n++) {
                const float *x = inp + (size_t)n * C_in;
                float s = 0.0f;
#pragma omp simd reduction(+ : s)
                for (int i = 0; i < C_in; i++) s += x[i] * w[i];
                out[(size_t)n * C_out + o] = s;
            }
        }
        free(w);
    }
}

// (a frozen base's backward: dweight is always NULL there)
void cpu_rmsnorm_backward_w16(Act *dinp, float *dweight, const Act *dout, const Act *inp,
                              const float *weight_bf16, const float *rstd, int N, int C) {
    (void)dweight;
    const uint16_t *weight = bf16_weights(weight_bf16);
    float *w = malloc((size_t)C * sizeof(float));
    for (int i = 0; i < C; i++) w[i] = bf16_to_float(weight[i]);
    cpu_rmsnorm_backward(dinp, NULL, dout, inp, w, rstd, N, C);
    free(w);
}

void cpu_matmul_backward_w16(Act *dinp, float *dweight, const Act *dout, const Act *inp,
                             const float *weight_bf16, int N, int C_in, int C_out) {
    (void)dweight, (void)inp;
    const uint16_t *weight = bf16_weights(weight_bf16);
    // widened whole: O(C_in C_out) beside the product's O(N C_in C_out), and then the input
    // gradient is exactly the fp32 reference's on the widened weights
    size_t n = (size_t)C_out * C_in;
    float *w = malloc(n * sizeof(float));
#pragma omp parallel for if (worth_threads((double)n))
    for (size_t i = 0; i < n; i++) w[i] = bf16_to_float(weight[i]);
    cpu_matmul_backward_blas(dinp, NULL, dout, NULL, w, N, C_in, C_out);
    free(w);
}

void cpu_bias_forward_w16(Act *x_act, const float *bias_bf16, int N, int C) {
    float *x = x_act;
    const uint16_t *bias = bf16_weights(bias_bf16);
#pragma omp parallel for if (worth_threads((double)N * C))
    for (int n = 0; n < N; n++)
        for (int i = 0; i < C; i++) x[(size_t)n * C + i] += bf16_to_float(bias[i]);
}

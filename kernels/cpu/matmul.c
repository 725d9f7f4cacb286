// Linear layer without bias: out[N, C_out] = inp[N, C_in] @ weight[C_out, C_in]^T.
#include "kernels/cpu/cpu_ops.h"

// Rows of inp handled together, so each weight row is read once per tile rather than per row.
#define ROW_TILE 4

void cpu_matmul_forward(float *out, const float *inp, const float *weight, int N, int C_in,
                        int C_out) {
    int n_tiles = (N + ROW_TILE - 1) / ROW_TILE;
#pragma omp parallel for collapse(2) if (worth_threads((double)N * C_in * C_out))
    for (int tile = 0; tile < n_tiles; tile++) {
        for (int o = 0; o < C_out; o++) {
            const float *w = weight + (size_t)o * C_in;
            int n0 = tile * ROW_TILE;
            if (n0 + ROW_TILE <= N) {
                const float *x0 = inp + (size_t)n0 * C_in;
                const float *x1 = x0 + C_in, *x2 = x1 + C_in, *x3 = x2 + C_in;
                float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
                for (int i = 0; i < C_in; i++) {
                    s0 += x0[i] * w[i];
                    s1 += x1[i] * w[i];
                    s2 += x2[i] * w[i];
                    s3 += x3[i] * w[i];
                }
                out[(size_t)n0 * C_out + o] = s0;
                out[(size_t)(n0 + 1) * C_out + o] = s1;
                out[(size_t)(n0 + 2) * C_out + o] = s2;
                out[(size_t)(n0 + 3) * C_out + o] = s3;
            } else {
                for (int n = n0; n < N; n++) {
                    const float *x = inp + (size_t)n * C_in;
                    float s = 0.0f;
#pragma omp simd reduction(+ : s)
                    for (int i = 0; i < C_in; i++) s += x[i] * w[i];
                    out[(size_t)n * C_out + o] = s;
                }
            }
        }
    }
}

void cpu_matmul_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                         const float *weight, int N, int C_in, int C_out) {
    // dinp[n, :] += sum_o dout[n, o] * weight[o, :], four weight rows per pass over dinp[n]
#pragma omp parallel for if (worth_threads((double)N * C_in * C_out))
    for (int n = 0; n < N; n++) {
        float *dx = dinp + (size_t)n * C_in;
        const float *dy = dout + (size_t)n * C_out;
        int o = 0;
        for (; o + ROW_TILE <= C_out; o += ROW_TILE) {
            const float *w0 = weight + (size_t)o * C_in;
            const float *w1 = w0 + C_in, *w2 = w1 + C_in, *w3 = w2 + C_in;
            float d0 = dy[o], d1 = dy[o + 1], d2 = dy[o + 2], d3 = dy[o + 3];
#pragma omp simd
            for (int i = 0; i < C_in; i++) dx[i] += d0 * w0[i] + d1 * w1[i] + d2 * w2[i] + d3 * w3[i];
        }
        for (; o < C_out; o++) {
            const float *w = weight + (size_t)o * C_in;
            float d = dy[o];
#pragma omp simd
            for (int i = 0; i < C_in; i++) dx[i] += d * w[i];
        }
    }
    if (!dweight) return;  // frozen weights
    // dweight[o, :] += sum_n dout[n, o] * inp[n, :], four input rows per pass over dweight[o]
#pragma omp parallel for if (worth_threads((double)N * C_in * C_out))
    for (int o = 0; o < C_out; o++) {
        float *dw = dweight + (size_t)o * C_in;
        int n = 0;
        for (; n + ROW_TILE <= N; n += ROW_TILE) {
            const float *x0 = inp + (size_t)n * C_in;
            const float *x1 = x0 + C_in, *x2 = x1 + C_in, *x3 = x2 + C_in;
            float d0 = dout[(size_t)n * C_out + o], d1 = dout[(size_t)(n + 1) * C_out + o];
            float d2 = dout[(size_t)(n + 2) * C_out + o], d3 = dout[(size_t)(n + 3) * C_out + o];
#pragma omp simd
            for (int i = 0; i < C_in; i++) dw[i] += d0 * x0[i] + d1 * x1[i] + d2 * x2[i] + d3 * x3[i];
        }
        for (; n < N; n++) {
            const float *x = inp + (size_t)n * C_in;
            float d = dout[(size_t)n * C_out + o];
#pragma omp simd
            for (int i = 0; i < C_in; i++) dw[i] += d * x[i];
        }
    }
}

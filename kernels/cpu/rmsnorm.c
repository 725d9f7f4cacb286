// RMSNorm: y = x * rstd * w with rstd = 1 / sqrt(mean(x^2) + eps), per row.
#include <math.h>

#include "kernels/cpu/cpu_ops.h"

float cpu_rmsnorm_rstd(const float *x, int C, float eps) {
    float ss = 0.0f;
    for (int i = 0; i < C; i++) ss += x[i] * x[i];
    return 1.0f / sqrtf(ss / C + eps);
}

// rstd of rows [n0, n0 + RSTD_ROWS) (fewer at the end of N): each row's sum of squares is one
// chain in index order, cpu_rmsnorm_rstd's bits, but eight rows' chains interleave so their
// additions overlap (a row at a time, each addition waits for the last: a sampler's norms took
// a tenth of its pass).
void cpu_rmsnorm_rstd_rows(float *rstd, const float *x, int n0, int N, int C, float eps) {
    if (N - n0 < RSTD_ROWS) {
        for (int n = n0; n < N; n++) rstd[n] = cpu_rmsnorm_rstd(x + (size_t)n * C, C, eps);
        return;
    }
    const float *row = x + (size_t)n0 * C;
    float ss[RSTD_ROWS] = {0};
    for (int i = 0; i < C; i++)
#pragma GCC unroll 8
        for (int r = 0; r < RSTD_ROWS; r++) ss[r] += row[(size_t)r * C + i] * row[(size_t)r * C + i];
    for (int r = 0; r < RSTD_ROWS; r++) rstd[n0 + r] = 1.0f / sqrtf(ss[r] / C + eps);
}

void cpu_rmsnorm_forward(Act *out_act, float *rstd, const Act *inp_act, const float *weight, int N,
                         int C, float eps) {
    float *out = out_act;
    const float *inp = inp_act;
#pragma omp parallel for if (worth_threads(3.0 * N * C))
    for (int n0 = 0; n0 < N; n0 += RSTD_ROWS) {
        cpu_rmsnorm_rstd_rows(rstd, inp, n0, N, C, eps);
        for (int n = n0; n < N && n < n0 + RSTD_ROWS; n++) {
            const float *x = inp + (size_t)n * C;
            float *y = out + (size_t)n * C;
            float r = rstd[n];
            for (int i = 0; i < C; i++) y[i] = x[i] * r * weight[i];
        }
    }
}

void cpu_rmsnorm_backward(Act *dinp_act, float *dweight, const Act *dout_act, const Act *inp_act,
                          const float *weight, const float *rstd, int N, int C) {
    float *dinp = dinp_act;
    const float *dout = dout_act;
    const float *inp = inp_act;
    // dx_j = r * (w_j dy_j - x_j * r^2 * mean_i(w_i dy_i x_i))
#pragma omp parallel for if (worth_threads(5.0 * N * C))
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        const float *dy = dout + (size_t)n * C;
        float *dx = dinp + (size_t)n * C;
        float r = rstd[n];
        float dot = 0.0f;
        for (int i = 0; i < C; i++) dot += weight[i] * dy[i] * x[i];
        float coef = r * r * dot / C;
        for (int i = 0; i < C; i++) dx[i] += r * (weight[i] * dy[i] - x[i] * coef);
    }
    if (!dweight) return;  // frozen gain
    // dweight sums over rows: split by column so each sum has one owner
#pragma omp parallel for if (worth_threads(3.0 * N * C))
    for (int i = 0; i < C; i++) {
        float s = 0.0f;
        for (int n = 0; n < N; n++) s += dout[(size_t)n * C + i] * inp[(size_t)n * C + i] * rstd[n];
        dweight[i] += s;
    }
}

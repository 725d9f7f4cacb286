// Attention through sgemm: what the CPU backend runs; attention.c's row-at-a-time loops stay the
// reference the tests compare it with. Same contract (only the log-sum-exp of each row is kept;
// the backward recomputes the probabilities), computed a tile of query rows at a time: scores
// S = Q K^T, a softmax per row, O = P V, each a matrix product, instead of one dot product per
// (query, key) pair. Work units are (sequence, head, tile) forward and (sequence, key/value
// head) backward, each done by one thread in a fixed order: the bits do not depend on threads.
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/blas_threads.h"
#include "kernels/cpu/exp_simd.h"

enum { TILE = 64 };  // query rows per tile: each thread's scratch is TILE x Tk floats

static int min_int(int a, int b) { return a < b ? a : b; }

// Scores s[0..n) of keys first .. first + n - 1 in [from, to) become -inf.
static void hide_keys(float *s, int n, int first, int from, int to) {
    for (int j = from - first > 0 ? from - first : 0; j < n && j < to - first; j++)
        s[j] = -INFINITY;
}

// Scores of keys query q does not see (the mask's; keys first .. first + n - 1) become -inf:
// those between and after the ranges attn_keys gives.
static void mask_row(float *s, int n, int first, int mask, int q, int Tk) {
    int end0, start1, end1;
    attn_keys(mask, q, Tk, &end0, &start1, &end1);
    hide_keys(s, n, first, end0, start1);
    hide_keys(s, n, first, end1, Tk);
}

// Row s of n scores (-inf where hidden) becomes softmax probabilities (hidden ones 0: exp_simd
// of -inf is 0); returns the log-sum-exp, -inf for a row that sees no key (all 0: output 0).
// Every loop a vector loop, kept out of line (inlined into the OpenMP region GCC left them
// scalar, a seventh of a sampler's pass).
__attribute__((noinline)) static float softmax_row(float *s, int n) {
    float maxv = -INFINITY, sum = 0.0f;
#pragma omp simd reduction(max : maxv)
    for (int j = 0; j < n; j++) maxv = s[j] > maxv ? s[j] : maxv;
    if (maxv == -INFINITY) {
        memset(s, 0, (size_t)(n > 0 ? n : 0) * sizeof(float));
        return -INFINITY;
    }
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < n; j++) {
        s[j] = exp_simd(s[j] - maxv);
        sum += s[j];
    }
#pragma omp simd
    for (int j = 0; j < n; j++) s[j] /= sum;
    return maxv + logf(sum);
}

void cpu_attention_forward_blas(Act *out_act, float *lse, const Act *q_act, const Act *k_act,
                                const Act *v_act, const int *key_start, int B, int Tq, int Tk,
                                int q_pos0, int H, int Hkv, int head_dim, int mask) {
    float *out = out_act;
    const float *q = q_act;
    const float *k = k_act;
    const float *v = v_act;
    float scale = 1.0f / sqrtf((float)head_dim);
    int group = H / Hkv, tiles = (Tq + TILE - 1) / TILE, qs = H * head_dim, ks = Hkv * head_dim;
    // per score: the two sgemms' 2 head_dim multiply-adds, and the softmax (its exp and
    // division took twice the sgemms' time at head_dim 32: perf of a sampler's pass)
    int saved, threads = blas_threads((double)B * H * Tq * Tk * (2.0 * head_dim + 128.0), &saved);
#pragma omp parallel num_threads(threads)
    {
        // score rows padded to 16 with -inf (probability 0): the softmax's vector loops then
        // run no scalar tail, which at a sampler's ~70 keys was a third of their time
        int ld = (Tk + 15) / 16 * 16;
        float *S = malloc((size_t)TILE * ld * sizeof(float));
#pragma omp for collapse(3)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int tile = 0; tile < tiles; tile++) {
                    int t0 = tile * TILE, rows = min_int(TILE, Tq - t0), g = h / group;
                    int first = key_start ? key_start[b] : 0;
                    // keys [first, end): what the tile's last row sees, the most of any row
                    int n = attn_keys_end(mask, q_pos0 + t0 + rows - 1, Tk) - first;
                    float *o = out + attention_offset(b, t0, h, Tq, H, head_dim);
                    float *row_lse = lse + ((size_t)b * H + h) * Tq + t0;
                    if (n <= 0) {
                        for (int r = 0; r < rows; r++) {
                            memset(o + (size_t)r * qs, 0, (size_t)head_dim * sizeof(float));
                            row_lse[r] = -INFINITY;
                        }
                        continue;
                    }
                    size_t qrow = attention_offset(b, t0, h, Tq, H, head_dim);
                    size_t krow = attention_offset(b, first, g, Tk, Hkv, head_dim);
                    int n16 = (n + 15) / 16 * 16;
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n, head_dim, scale,
                                q + qrow, qs, k + krow, ks, 0.0f, S, ld);
                    for (int r = 0; r < rows; r++) {
                        float *s = S + (size_t)r * ld;
                        mask_row(s, n, first, mask, q_pos0 + t0 + r, Tk);
                        for (int j = n; j < n16; j++) s[j] = -INFINITY;
                        row_lse[r] = softmax_row(s, n16);
                    }
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, head_dim, n,
                                1.0f, S, ld, v + krow, ks, 0.0f, o, qs);
                }
        free(S);
    }
    blas_restore_threads(saved);
}

// One tile of the backward pass: rows [t0, t0 + rows) of head h, keys [0, n) of its key/value
// head g. With P = softmax(S): dS = P * (dO V^T - D), D = dO . O per row; then dQ += dS K,
// dK += dS^T Q, dV += P^T dO.
static void backward_tile(float *dq, float *dk, float *dv, const float *dout, const float *out,
                          const float *lse, const float *q, const float *k, const float *v,
                          int b, int h, int g, int t0, int rows, int n, int T, int H, int Hkv,
                          int head_dim, int mask, float *P, float *dP) {
    float scale = 1.0f / sqrtf((float)head_dim);
    int qs = H * head_dim, ks = Hkv * head_dim;
    size_t qrow = attention_offset(b, t0, h, T, H, head_dim);
    size_t krow = attention_offset(b, 0, g, T, Hkv, head_dim);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n, head_dim, scale, q + qrow, qs,
                k + krow, ks, 0.0f, P, n);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n, head_dim, 1.0f, dout + qrow, qs,
                v + krow, ks, 0.0f, dP, n);
    for (int r = 0; r < rows; r++) {
        float row_lse = lse[((size_t)b * H + h) * T + t0 + r], D = 0.0f;
        const float *dor = dout + qrow + (size_t)r * qs, *orow = out + qrow + (size_t)r * qs;
#pragma omp simd reduction(+ : D)
        for (int i = 0; i < head_dim; i++) D += dor[i] * orow[i];
        // a row that saw no key (lse -inf) passes no gradient; hidden keys get none either
        float *p = P + (size_t)r * n, *dp = dP + (size_t)r * n;
        if (row_lse == -INFINITY)
            for (int j = 0; j < n; j++) p[j] = -INFINITY;
        else
            mask_row(p, n, 0, mask, t0 + r, T);
#pragma omp simd
        for (int j = 0; j < n; j++) {
            float pj = p[j] == -INFINITY ? 0.0f : exp_simd(p[j] - row_lse);
            p[j] = pj;
            dp[j] = pj * (dp[j] - D) * scale;
        }
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, head_dim, n, 1.0f, dP, n,
                k + krow, ks, 1.0f, dq + qrow, qs);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, head_dim, rows, 1.0f, dP, n,
                q + qrow, qs, 1.0f, dk + krow, ks);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, head_dim, rows, 1.0f, P, n,
                dout + qrow, qs, 1.0f, dv + krow, ks);
}

void cpu_attention_backward_blas(Act *dq_act, Act *dk_act, Act *dv_act, const Act *dout_act,
                                 const Act *out_act, const float *lse, const Act *q_act,
                                 const Act *k_act, const Act *v_act, int B, int T, int H, int Hkv,
                                 int head_dim, int mask) {
    float *dq = dq_act;
    float *dk = dk_act;
    float *dv = dv_act;
    const float *dout = dout_act;
    const float *out = out_act;
    const float *q = q_act;
    const float *k = k_act;
    const float *v = v_act;
    // one (b, key/value head) per thread: every query head of the group adds into its dk and dv,
    // in order, so the sums do not depend on threads
    int group = H / Hkv, tiles = (T + TILE - 1) / TILE;
    int saved, threads = blas_threads(4.0 * B * H * T * T * head_dim, &saved);
#pragma omp parallel num_threads(threads)
    {
        float *P = malloc((size_t)TILE * T * sizeof(float));
        float *dP = malloc((size_t)TILE * T * sizeof(float));
#pragma omp for collapse(2)
        for (int b = 0; b < B; b++)
            for (int g = 0; g < Hkv; g++)
                for (int h = g * group; h < (g + 1) * group; h++)
                    for (int tile = 0; tile < tiles; tile++) {
                        int t0 = tile * TILE, rows = min_int(TILE, T - t0);
                        int n = attn_keys_end(mask, t0 + rows - 1, T);
                        backward_tile(dq, dk, dv, dout, out, lse, q, k, v, b, h, g, t0, rows, n,
                                      T, H, Hkv, head_dim, mask, P, dP);
                    }
        free(P);
        free(dP);
    }
    blas_restore_threads(saved);
}

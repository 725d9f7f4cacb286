// The sampler's per-position pick: guidance, Gumbel-max token choice and its confidence,
// row by row (the twin of kernels/cuda/pick.cu).
#include <math.h>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/exp_simd.h"
#include "kernels/noise.h"

// A row is read in chunks of PICK_CHUNK logits: guided into a stack buffer when CFG is on
// (uncond + w (cond - uncond), as LLaDA), read in place otherwise. The chunk loops below are
// plain loops over one array, kept out of line: inlined into the OpenMP region, or with the
// guidance test inside, GCC left them scalar and a pass spent a quarter of its time here.
enum { PICK_CHUNK = 2048 };

static const float *row_chunk(float *buf, const float *cond, const float *uncond, float w,
                              int v0, int n) {
    if (!uncond) return cond + v0;
#pragma omp simd
    for (int i = 0; i < n; i++)
        buf[i] = uncond[v0 + i] + w * (cond[v0 + i] - uncond[v0 + i]);
    return buf;
}

// The largest of l[0..n), index `banned` left out.
__attribute__((noinline)) static float chunk_max(const float *l, int n, int banned) {
    float maxv = -INFINITY;
#pragma omp simd reduction(max : maxv)
    for (int v = 0; v < n; v++) maxv = v != banned && l[v] > maxv ? l[v] : maxv;
    return maxv;
}

// sum of exp(l[v] - maxv) over v != banned, summed in double as LLaDA's softmax; each term's
// exp in float (within 2 ulp, sixteen at a time: in double it was a fifth of a sampler's pass).
// Terms below e^-87 count as 0: 4096 of them add less than 1e-34 to a sum of at least 1.
__attribute__((noinline)) static double chunk_exp_sum(const float *l, int n, int banned,
                                                      float maxv) {
    float e[PICK_CHUNK];  // two plain loops: GCC leaves one that mixes the widths scalar
#pragma omp simd
    for (int v = 0; v < n; v++) e[v] = exp_simd(l[v] - maxv);
    if (banned >= 0 && banned < n) e[banned] = 0.0f;
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (int v = 0; v < n; v++) sum += e[v];
    return sum;
}

// Greedy: the first index at the maximum, -1 if none. Sixteen logits are tested at a time, a
// vector loop (one at a time it was most of pick_row's own time).
__attribute__((noinline)) static int chunk_first_at(const float *l, int n, int banned,
                                                    float maxv) {
    for (int v0 = 0; v0 < n; v0 += 16) {
        int end = n - v0 < 16 ? n : v0 + 16, hit = 0;
#pragma omp simd reduction(| : hit)
        for (int v = v0; v < end; v++) hit |= (l[v] == maxv) & (v != banned);
        if (!hit) continue;
        for (int v = v0; v < end; v++)
            if (v != banned && l[v] == maxv) return v;
    }
    return -1;
}

// noise_gumbel (kernels/noise.h) with the vectorisable log: the same draws to within a few
// ulp, so only an exact near-tie could pick differently from the CUDA twin.
#pragma omp declare simd notinbranch
static inline double gumbel_simd(uint64_t seed, uint64_t index) {
    double u = ((double)(noise_mix(seed ^ noise_mix(index)) >> 11) + 0.5) / 9007199254740992.0;
    return -log_simd_double(-log_simd_double(u));
}

// Gumbel-max over a chunk starting at token v0: updates the best token and score so far.
// The scores are computed as a vector loop first (two logs per token were half a pass).
__attribute__((noinline)) static void chunk_gumbel_max(const float *l, int n, int v0, int banned,
                                                       float temperature, uint64_t seed,
                                                       uint64_t index0, int *best,
                                                       double *best_score) {
    double score[PICK_CHUNK];
#pragma omp simd
    for (int v = 0; v < n; v++)
        score[v] = l[v] + (double)temperature * gumbel_simd(seed, index0 + v0 + v);
    for (int v = 0; v < n; v++) {
        if (v0 + v == banned) continue;
        if (*best < 0 || score[v] > *best_score) *best = v0 + v, *best_score = score[v];
    }
}

// One position: its token (Gumbel-max, or greedy at temperature 0) and the softmax
// probability of that token. Noise index = index0 + token, as the CUDA twin.
static void pick_row(int *token, double *confidence, const float *cond, const float *uncond,
                     float w, int V, int banned, float temperature, uint64_t seed,
                     uint64_t index0) {
    float buf[PICK_CHUNK];
    float maxv = -INFINITY;
    for (int v0 = 0; v0 < V; v0 += PICK_CHUNK) {
        int n = V - v0 < PICK_CHUNK ? V - v0 : PICK_CHUNK;
        float m = chunk_max(row_chunk(buf, cond, uncond, w, v0, n), n, banned - v0);
        maxv = m > maxv ? m : maxv;
    }
    int best = -1;
    double best_score = -INFINITY, sum = 0.0;
    for (int v0 = 0; v0 < V; v0 += PICK_CHUNK) {
        int n = V - v0 < PICK_CHUNK ? V - v0 : PICK_CHUNK;
        const float *l = row_chunk(buf, cond, uncond, w, v0, n);
        if (temperature > 0.0f) {
            chunk_gumbel_max(l, n, v0, banned, temperature, seed, index0, &best, &best_score);
        } else if (best < 0) {
            int i = chunk_first_at(l, n, banned - v0, maxv);
            best = i < 0 ? -1 : v0 + i;
        }
        sum += chunk_exp_sum(l, n, banned - v0, maxv);
    }
    if (best < 0) best = banned == 0 ? 1 : 0;  // every logit NaN
    float lbest = uncond ? uncond[best] + w * (cond[best] - uncond[best]) : cond[best];
    *token = best;
    *confidence = exp((double)lbest - maxv) / sum;
}

void cpu_pick_tokens(int *tokens, double *confidence, const Act *logits_act, int B,
                     int rows_per_seq, int first, int count, int V, float cfg, float temperature,
                     uint64_t seed, int banned) {
    const float *logits = logits_act;
    size_t uncond_offset = (size_t)B * rows_per_seq * V;
    float w = cfg + 1.0f;
#pragma omp parallel for collapse(2) if (worth_threads(4.0 * B * count * V))
    for (int b = 0; b < B; b++)
        for (int i = 0; i < count; i++) {
            const float *cond = logits + ((size_t)b * rows_per_seq + first + i) * V;
            size_t out = (size_t)b * count + i;
            pick_row(&tokens[out], &confidence[out], cond, cfg > 0.0f ? cond + uncond_offset : NULL,
                     w, V, banned, temperature, seed, out * V);
        }
}

#include "sampler/pick.h"

#include <math.h>
#include <stdlib.h>

int picks_alloc(Picks *p, const Backend *be, int n) {
    p->dev_tokens = be->alloc((size_t)n * sizeof(int));
    p->dev_confidence = be->alloc((size_t)n * sizeof(double));
    p->tokens = malloc((size_t)n * sizeof(int));
    p->confidence = malloc((size_t)n * sizeof(double));
    return p->dev_tokens && p->dev_confidence && p->tokens && p->confidence ? 0 : -1;
}

void picks_free(Picks *p, const Backend *be) {
    if (p->dev_tokens) be->free(p->dev_tokens);
    if (p->dev_confidence) be->free(p->dev_confidence);
    free(p->tokens), free(p->confidence);
}

int logits_not_finite(Error *err, const char *which) {
    return error_set(err, "the %s's " PICK_NOT_FINITE ": its weights or activations are not "
                          "finite", which);
}

int picks_run(Picks *p, const Model *m, int B, int rows_per_seq, int first, int count, float cfg,
              float temperature, uint64_t seed, int banned, Error *err) {
    const Backend *be = m->be;
    size_t n = (size_t)B * count;
    be->pick_tokens(p->dev_tokens, p->dev_confidence, m->acts.logits, B, rows_per_seq, first,
                    count, m->cfg.vocab_size, cfg, temperature, seed, banned);
    be->to_host(p->tokens, p->dev_tokens, n * sizeof(int));
    be->to_host(p->confidence, p->dev_confidence, n * sizeof(double));
    for (size_t i = 0; i < n; i++)  // one NaN or infinite logit makes its row's sum so
        if (!isfinite(p->confidence[i])) return logits_not_finite(err, "model");
    return 0;
}

int logits_check_finite(const float *logits, size_t n, Error *err) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(logits[i])) return logits_not_finite(err, "model");
    return 0;
}

double uniform_open(Rng *rng) { return ((double)(rng_next(rng) >> 11) + 0.5) / 9007199254740992.0; }

static int argmax(const float *x, int V) {
    int best = 0;
    for (int i = 1; i < V; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

float softmax_prob(const float *logits, int V, int token) {
    float m = logits[argmax(logits, V)];
    double sum = 0.0;
    for (int i = 0; i < V; i++) sum += exp((double)logits[i] - m);
    return (float)(exp((double)logits[token] - m) / sum);
}

static int by_score_desc(const void *a, const void *b) {
    const Scored *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    return x->index - y->index;
}

void sort_by_score(Scored *items, int n) { qsort(items, (size_t)n, sizeof *items, by_score_desc); }

int pick_top_k_top_p(const float *logits, int V, float temperature, int top_k, float top_p,
                     Rng *rng, Scored *tp) {
    if (temperature == 0.0f) return argmax(logits, V);
    float m = logits[argmax(logits, V)];
    for (int i = 0; i < V; i++) tp[i] = (Scored){expf((logits[i] - m) / temperature), i, i};
    sort_by_score(tp, V);
    int keep = (top_k > 0 && top_k < V) ? top_k : V;
    double total = 0.0;
    for (int i = 0; i < keep; i++) total += tp[i].score;
    if (top_p < 1.0f) {
        // the nucleus: the most likely tokens until their share reaches top_p
        double cum = 0.0;
        for (int i = 0; i < keep; i++) {
            cum += tp[i].score;
            if (cum >= top_p * total) {
                keep = i + 1;
                break;
            }
        }
        total = 0.0;
        for (int i = 0; i < keep; i++) total += tp[i].score;
    }
    double r = uniform_open(rng) * total;
    for (int i = 0; i < keep; i++) {
        r -= tp[i].score;
        if (r <= 0.0) return tp[i].index;
    }
    return tp[keep - 1].index;
}

// Choosing tokens: on the device for a batch of logit rows (the backend's pick_tokens, what the
// samplers use), and on the host for one row (top-k / top-p, ranking helpers).
#ifndef DLLM_PICK_H
#define DLLM_PICK_H

#include "model/model.h"
#include "common/rng.h"

// The device's picks for `count` positions of each of B sequences, and their host copies.
typedef struct {
    int *dev_tokens, *tokens;
    double *dev_confidence, *confidence;
} Picks;

// Room for n picks; -1 when out of memory (picks_free still applies).
int picks_alloc(Picks *p, const Backend *be, int n);
void picks_free(Picks *p, const Backend *be);
// Picks tokens from the model's last logits (rows first .. first + count - 1 of each sequence's
// rows_per_seq, guided when cfg > 0; see Backend.pick_tokens; token `banned` is never picked,
// -1 bans none) into p->tokens / p->confidence [B, count]. Returns -1 with PICK_NOT_FINITE
// when a confidence is NaN or infinite: some logit of its row was (a NaN or infinite weight or
// activation), and no token may be chosen from such a row.
int picks_run(Picks *p, const Model *m, int B, int rows_per_seq, int first, int count, float cfg,
              float temperature, uint64_t seed, int banned, Error *err);
#define PICK_NOT_FINITE "logits are NaN or infinite"
// 0 when the n logits are finite, else -1 with PICK_NOT_FINITE (the host-side samplers' check).
int logits_check_finite(const float *logits, size_t n, Error *err);
// The error both report, naming `which` model ("model", "draft model"); returns -1.
int logits_not_finite(Error *err, const char *which);

// softmax(logits)[token]
float softmax_prob(const float *logits, int V, int token);
// A value with the position (or token id) it belongs to, for ranking.
typedef struct {
    double score;
    int index;
    int token;
} Scored;

// Sorts by descending score; ties put the lower index first (deterministic, unlike topk).
void sort_by_score(Scored *items, int n);

// A draw from softmax(logits / temperature) restricted to the top_k most likely tokens (0: all)
// and then to the smallest set whose probability reaches top_p (1: all); greedy at temperature 0.
// scratch holds V Scored entries.
int pick_top_k_top_p(const float *logits, int V, float temperature, int top_k, float top_p,
                     Rng *rng, Scored *scratch);
// A uniform draw in the open interval (0, 1).
double uniform_open(Rng *rng);

#endif

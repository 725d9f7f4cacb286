// Choosing a token from one row of logits: the per-position step of every sampler.
#ifndef DLLM_PICK_H
#define DLLM_PICK_H

#include "train/rng.h"

// softmax(logits)[token]
float softmax_prob(const float *logits, int V, int token);
// A value with the position (or token id) it belongs to, for ranking.
typedef struct {
    float score;
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

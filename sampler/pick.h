// Choosing a token from one row of logits: the per-position step of every sampler.
#ifndef DLLM_PICK_H
#define DLLM_PICK_H

#include "train/rng.h"

// argmax of logits, or with temperature > 0 the argmax of LLaDA's Gumbel-max form
// exp(logit) / (-log u)^temperature with u ~ U(0, 1), in double precision.
int pick_gumbel_argmax(const float *logits, int V, float temperature, Rng *rng);
// softmax(logits)[token]
float softmax_prob(const float *logits, int V, int token);
// A draw from softmax(logits / temperature) restricted to the top_k most likely tokens (0: all)
// and then to the smallest set whose probability reaches top_p (1: all); greedy at temperature 0.
// scratch holds 2 * V floats (V (probability, id) pairs).
int pick_top_k_top_p(const float *logits, int V, float temperature, int top_k, float top_p,
                     Rng *rng, float *scratch);
// A uniform draw in the open interval (0, 1).
double uniform_open(Rng *rng);

#endif

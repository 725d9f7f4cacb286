// Likelihood evaluation in nats per token, in the same units for both objectives so that MDM
// and AR runs line up in one table:
//   AR  - exact next-token cross-entropy (perplexity = exp of it);
//   MDM - the negative ELBO, an upper bound on -log p (so exp of it bounds the perplexity),
//         estimated by Monte Carlo over mask counts drawn from a fixed seed, stratified so that
//         a handful of draws already covers light and heavy masking. The same seed gives the
//         same masks, so numbers compare across steps and across runs.
#ifndef DLLM_EVAL_H
#define DLLM_EVAL_H

#include <stdint.h>

#include "common/error.h"
#include "model/model.h"
#include "dataset/data.h"
#include "dataset/sft.h"

typedef struct {
    double nats_per_token;  // AR: exact; MDM: the ELBO bound
    double ppl;             // exp(nats_per_token): AR exact, MDM an upper bound
    double std_error;       // of nats_per_token over the windows (or examples) scored, each
                            // its own estimate (MDM: the mean of its mc draws); NAN for one
    int64_t tokens;         // tokens scored
    int windows;            // windows (or examples) scored,
    size_t available;       // of this many
    int mc;                 // mask draws per window (1 for AR)
} EvalResult;

// Scores the first `max_windows` (or as many as fit) non-overlapping windows of seq_len + 1
// tokens of data; every objective scores tokens 1..seq_len of each window (AR predicts them from
// the tokens before, MDM from the rest of the window, block diffusion each block from the rest
// of it and the clean blocks before). MDM and block diffusion draw mc masks per window.
int eval_heldout(Model *m, const TokenData *data, int max_windows, int mc, uint64_t seed,
                 EvalResult *r, Error *err);

// SFT validation: -log p(answer | prompt) per answer token (the response and its EOS) over the
// first max_examples examples (0: all), by score_continuation. An MDM scores the row it trained
// on and would generate: the answer and the EOS padding after it, up to seq_len.
int eval_sft(Model *m, const SftData *d, int max_examples, int mc, uint64_t seed, EvalResult *r,
             Error *err);

// Estimated -log p(tokens[from..len) | tokens[0..from)) in nats, the score of a continuation
// given a prompt. AR (causal model): exact, needs from >= 1. MDM: LLaDA's Monte-Carlo bound
// with mc stratified mask counts over the continuation (the prompt is never masked); cfg > 0
// applies classifier-free guidance, the unconditional pass seeing the prompt fully masked.
int score_continuation(Model *m, const int *tokens, int len, int from, int mc, float cfg,
                       uint64_t seed, double *nll, Error *err);

// -log p(tokens[from..len) | tokens[0..from)) decoded left to right: each token predicted with
// itself and every later position masked (an MDM's likelihood of that decoding order; what
// dllm serve's echo + logprobs give every token, so lm-evaluation-harness's scores match). AR:
// the exact likelihood, as score_continuation. Needs from >= 1.
int score_left_to_right(Model *m, const int *tokens, int len, int from, double *nll,
                        Error *err);

// The k-th of mc stratified mask counts for a span of n tokens: ceil(n * (k + u) / mc) with
// u uniform in [0, 1) from rng, so counts are uniform over 1..n overall and each stratum of
// masking ratios gets exactly one draw.
int stratified_mask_count(int n, int k, int mc, Rng *rng);
// Masks exactly `count` of the positions [from, len) of one row, chosen uniformly without
// replacement: inputs there become mask_id and weights there become w. The other positions are
// left as they are. The mask-count form of the ELBO (LLaDA's likelihood evaluation) draws the
// count instead of a ratio, which removes one source of variance.
void mask_exact_count(int *inputs, float *weights, int from, int len, int count, int mask_id,
                      float w, Rng *rng);

#endif

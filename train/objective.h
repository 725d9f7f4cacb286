// The two training objectives, as ways of turning token windows into (inputs, targets,
// per-position loss weights) for model_loss. The model itself is the same for both.
#ifndef DLLM_OBJECTIVE_H
#define DLLM_OBJECTIVE_H

#include "common/rng.h"
#include "store/train_config.h"


// Masked diffusion (LLaDA pretraining): for each of the B sequences of T tokens draw
// t ~ U(eps, 1), replace each of positions from..T-1 by mask_id independently with probability
// t, and weight each masked position by 1 / (t * B * (T - from)); unmasked positions weigh 0.
// The weighted loss is then LLaDA's: the sum over masked tokens of CE / t, divided by the
// positions that could be masked (nats per token). from is 0, or 1 for a model with a logit
// shift (Dream, an adapted AR model): nothing predicts position 0, it stays as context.
// t_out[B], if not NULL, receives the drawn t.
void mdm_noise_batch(const int *tokens, int B, int T, int from, int mask_id, float eps,
                     TSampling ts, Rng *rng, int *inputs, int *targets, float *weights,
                     float *t_out);

// Block diffusion (BD3-LM) for a model with blocks of L positions (L divides T): each
// sequence becomes 2T inputs, the clean tokens then a noisy copy (model_forward_pairs). Every
// block of every sequence draws its own t in [eps, t_max) (independently, or stratified over
// the batch's B * T / L blocks) and each of its positions in the noisy copy becomes mask_id with
// probability t, weighing 1 / (t * B * T); the clean copy weighs 0. The loss is then the sum
// over blocks of their MDM losses given the clean blocks before them, in nats per token.
// t_max < 1 is BD3-LM's clipped schedule. inputs, targets and weights hold B * 2T.
void bd3_noise_batch(const int *tokens, int B, int T, int L, int mask_id, float eps, float t_max,
                     TSampling ts, Rng *rng, int *inputs, int *targets, float *weights);

// Autoregressive: windows of T + 1 tokens; inputs are tokens 0..T-1, targets 1..T,
// every position weighted 1 / (B * T), so the loss is the mean next-token CE.
void ar_shift_batch(const int *windows, int B, int T, int *inputs, int *targets, float *weights);

// LLaDA SFT: rows[B, T] whose first prompt_len[b] tokens are the prompt. Per row t ~ U(eps, 1)
// and each position after the prompt (the response and its EOS padding) is masked with
// probability t; the prompt never is. A masked position weighs 1 / (t * (T - prompt_len) * B):
// the loss of each example is normalised by its answer length, then averaged over the batch.
// With probability cfg_drop a row's prompt is masked too (inputs only, still no loss), which
// teaches the unconditional model classifier-free guidance needs.
// t_out[B], if not NULL, receives the drawn t.
void sft_mdm_batch(const int *rows, const int *prompt_len, int B, int T, int mask_id, float eps,
                   float cfg_drop, Rng *rng, int *inputs, int *targets, float *weights,
                   float *t_out);

// AR SFT: inputs are row tokens 0..T-2, targets 1..T-1; only predictions of the response and
// its first EOS (answer_len[b] positions after the prompt) count, each example normalised by
// its answer length and the batch averaged, as in sft_mdm_batch.
void sft_ar_batch(const int *rows, const int *prompt_len, const int *answer_len, int B, int T,
                  int *inputs, int *targets, float *weights);

#endif

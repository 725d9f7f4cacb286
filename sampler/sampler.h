// Text generation from a trained model: the LLaDA denoising sampler (with Fast-dLLM's
// confidence-threshold decoding and block caches) for masked-diffusion models, and
// temperature / top-k / top-p sampling with a KV cache for the AR baseline.
#ifndef DLLM_SAMPLER_H
#define DLLM_SAMPLER_H

#include <stdint.h>

#include "common/error.h"
#include "model/model.h"

typedef enum { REMASK_LOW_CONFIDENCE = 0, REMASK_RANDOM = 1 } Remasking;
// LLaDA: none (exact), or Fast-dLLM's approximate prefix / dual block caches. Block diffusion:
// none recomputes from position 0 every step, any other its exact cache of committed blocks.
// auto: LLaDA none, block diffusion its cache.
typedef enum { CACHE_NONE = 0, CACHE_PREFIX = 1, CACHE_DUAL = 2, CACHE_AUTO = 3 } CacheMode;

typedef struct {
    int gen_length;      // tokens to generate after the prompt
    // diffusion (LLaDA) sampling
    int block_length;    // gen_length is decoded in gen_length / block_length blocks, left to right
    int steps;           // denoising steps over all blocks (reference schedule)
    Remasking remasking; // which masked positions to commit: most confident, or random
    float cfg_scale;     // classifier-free guidance; 0 is off
    float threshold;     // > 0: commit every masked position of the block at or above it (at least
                         // one per step) until the block is done; steps is then not used
    float factor;        // > 0: Fast-dLLM's dynamic threshold instead (fastdllm_factor_count);
                         // steps is not used either
    int allow_mask;      // 1: exact LLaDA: [MASK] may be picked (a position that gets it stays
                         // masked); 0 (default): it is banned, confidence renormalised without it
    CacheMode cache;     // reuse keys/values outside the recomputed rows within a block
    // speculative decoding (an AR target with a drafter)
    int draft_length;    // tokens each row drafts per target pass
    int draft_steps;     // a diffusion drafter's denoising passes per draft
    int draft_context;   // a diffusion drafter sees each row's last this many tokens (0: all)
    // all
    float temperature;   // 0: greedy / argmax
    int top_k;           // AR only; 0 is off
    float top_p;         // AR only; 1 is off
    int eos_id;          // generated text ends at the first one (-1: none)
    int pad_id;          // fills the left of shorter prompts (never attended)
    uint64_t seed;
} SamplerConfig;

SamplerConfig sampler_config_default(void);

// What one denoising (or AR) step did, for --show and --trace. Host arrays of B * T.
typedef struct {
    int step;             // 0-based, over the whole generation
    int block;            // current block (AR: 0)
    int B, T;
    const int *tokens;    // the sequences after this step
    const char *committed;     // 1 where a token was committed at this step
    const float *confidence;   // confidence of every position a token was proposed for at this
                               // step (committed or not); NaN elsewhere
    long drafted, accepted;    // speculative decoding: drafts this target pass scored and
                               // accepted, over the rows (-1 for the other samplers)
} StepEvent;

// Called after every step; a non-zero return stops the generation there (the sampler then
// returns -1 with "stopped by the caller": a server whose client went away, a time limit).
typedef int (*StepCallback)(void *user, const StepEvent *ev);
#define SAMPLER_STOPPED "stopped by the caller"

typedef struct {
    int nfe;              // forward passes of the model (a CFG step counts one: both halves
                          // run as one batch)
    int steps;            // sampler steps taken
    // speculative decoding: draft passes, and over the rows of every target pass the drafts
    // scored, those accepted, and how many rows were verified
    int draft_nfe;
    long drafted, accepted, verified_rows;
} SampleStats;

// NFE per token, one definition for every sampler: the forward passes of the model each
// sequence went through (a batched pass counts once for each sequence in it), over the tokens
// the sequences generated (each up to its first EOS), both summed over the sequences. A
// drafter's passes are counted apart, by the same rule. NAN when nothing was generated.
double nfe_per_token(long passes, int sequences, long generated);

// Fast-dLLM's factor (dynamic threshold) rule: of n masked positions whose confidences sorted
// in descending order are c[0..n), how many to commit: with thresholds t_0 = -1 and
// t_j = 1 - factor / (j + 2), k = the first j with c[j] < t_j (n - 1 when none); then k + 1
// when k is 0 or n - 1, as the reference's loop does (so failing only at the last position
// still commits all n).
int fastdllm_factor_count(const double *sorted, int n, double factor);

// LLaDA's transfer schedule: how many of `masked` tokens to commit at each of `steps` steps:
// masked / steps each, and the first masked % steps steps one more.
void llada_transfer_counts(int masked, int steps, int *counts);

// Generates one sequence for each of the B prompts (prompts[b] of prompt_lens[b] tokens; the
// same prompt may repeat). Prompts are right-aligned at P = the longest prompt length, shorter
// ones left-padded with pad_id and hidden from attention, so each row gives what it would
// alone. out[B * (P + gen_length)] receives the rows; row b's generated tokens start at P,
// and lengths[b] counts them up to (not including) the first EOS. The model needs room for B
// rows (2B with cfg_scale > 0) and the sampler's attention: llada bidirectional, ar causal.
int llada_generate(Model *m, const SamplerConfig *sc, const int *const *prompts,
                   const int *prompt_lens, int B, int *out, int *lengths, SampleStats *stats,
                   StepCallback cb, void *user, Error *err);
int ar_generate(Model *m, const SamplerConfig *sc, const int *const *prompts,
                const int *prompt_lens, int B, int *out, int *lengths, SampleStats *stats,
                StepCallback cb, void *user, Error *err);

// Speculative decoding (sampler/speculative.c): `draft` (AR, MDM or block diffusion, the
// target's tokenizer) proposes sc->draft_length tokens per row, the AR `target` scores them in
// one pass and keeps the longest prefix it agrees with plus one of its own. The output is the
// target's: its greedy output at temperature 0, its distribution at temperature > 0. Each step
// event is one target pass (committed: the tokens it accepted or gave).
int speculative_generate(Model *target, Model *draft, const SamplerConfig *sc,
                         const int *const *prompts, const int *prompt_lens, int B, int *out,
                         int *lengths, SampleStats *stats, StepCallback cb, void *user,
                         Error *err);

// Which sampler generates: SAMPLER_AUTO picks by the model (sampler_for_model); speculative
// decoding is an AR target verifying a drafter's proposals.
typedef enum { SAMPLER_AUTO, SAMPLER_LLADA, SAMPLER_AR, SAMPLER_SPECULATIVE } SamplerKind;
extern const char *const SAMPLER_NAMES[4];  // "auto", "llada", "ar", "speculative"

// The sampler of a model's own kind: ar for a causal model, else llada (which decodes a block
// diffusion model block by block).
SamplerKind sampler_for_model(const Model *m);
// Generates with the kind's sampler (SAMPLER_AUTO: the model's own): llada_generate,
// ar_generate, or speculative_generate with draft as the drafter (NULL for the others). The
// arguments are theirs.
int sampler_run(SamplerKind kind, Model *m, Model *draft, const SamplerConfig *sc,
                const int *const *prompts, const int *prompt_lens, int B, int *out, int *lengths,
                SampleStats *stats, StepCallback cb, void *user, Error *err);

// The longest of the B prompt lengths: where generation starts in every row.
int max_prompt_length(const int *prompt_lens, int B);
// Lays out the B rows of T = P + gen_length tokens: pad_id, then the prompt ending at P, then
// fill (the [MASK] token) to the end; key_start[b] = where row b's prompt begins.
void layout_rows(const SamplerConfig *sc, const int *const *prompts, const int *prompt_lens,
                 int B, int T, int P, int fill, int *out, int *key_start);

// Checks what every sampler needs: a generation that fits the context, room for `rows`
// sequences in the model, a valid temperature.
int sampler_check_config(const Model *m, const SamplerConfig *sc, const int *prompt_lens, int B,
                         int rows, Error *err);
// Generated length of each row: up to the first eos_id (or all of gen_length).
void trim_at_eos(const int *out, int B, int T, int prompt_len, int eos_id, int *lengths);

#endif

// The LLaDA denoising sampler (semantics of LLaDA's generate()), with Fast-dLLM's
// confidence-threshold and factor decoding and prefix / dual block caches as options; and the
// same denoising rules block by block for block diffusion models (BD3-LM), whose committed
// blocks stay in an exact key/value cache.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sampler/pick.h"
#include "sampler/sampler.h"

int fastdllm_factor_count(const double *sorted, int n, double factor) {
    if (n <= 0) return 0;
    int k;
    for (k = 0; k < n; k++)
        if (sorted[k] < (k == 0 ? -1.0 : 1.0 - factor / (k + 2))) break;
    if (k == n) k = n - 1;  // no position failed: the reference's loop variable ends at n - 1
    if (k == 0 || k == n - 1) k++;
    return k;
}

void llada_transfer_counts(int masked, int steps, int *counts) {
    for (int i = 0; i < steps; i++) counts[i] = masked / steps + (i < masked % steps ? 1 : 0);
}

// Working memory of one generation.
typedef struct {
    const SamplerConfig *sc;
    Model *m;
    int B, rows, T, P, V;
    int *x;            // [B, T] the sequences being denoised (the caller's out)
    int *key_start;    // [rows] where each row's prompt begins (left padding before it)
    int *input;        // [rows, T] what the model sees: x, then x with the prompt masked (CFG)
    Picks picks;       // [B, block_length] each block position's proposed token and confidence
    char *committed;   // [B, T]
    float *confidence; // [B, T]
    Scored *cands;     // [block_length] proposals: confidence, position, token
    double *sorted;    // [block_length] their confidences, in descending order (factor mode)
    Rng rng;
} Denoiser;

// One forward pass over rows [start, end) of every sequence, with logits (left on the device)
// for positions [hs, he) alone: rows hs..he-1, or one earlier for a model with logit_shift
// (Dream), where position t is predicted at row t - 1.
static void run_model(Denoiser *d, int start, int end, int hs, int he) {
    int mask = d->m->cfg.mask_token_id;
    size_t n = (size_t)d->B * d->T;
    memcpy(d->input, d->x, n * sizeof(int));
    if (d->rows > d->B) {  // the unconditional half: the same sequences without their prompt
        memcpy(d->input + n, d->x, n * sizeof(int));
        for (int b = 0; b < d->B; b++)
            for (int i = d->key_start[b]; i < d->P; i++) d->input[n + (size_t)b * d->T + i] = mask;
    }
    int shift = d->m->cfg.logit_shift;
    model_infer_rows(d->m, d->input, d->key_start, d->rows, d->T, start, end, hs - shift,
                     he - shift);
}

// Where the candidates of a pass begin: the block's start, or in the exact-LLaDA mode, on a
// pass that recomputes every row, the first position (LLaDA's generate(), and Fast-dLLM's at a
// block's first, full pass, keep every still-masked position before the block's end a
// candidate: a position that got [MASK] in an earlier block competes again). A shifted model's
// position 0 has no row before it (and is always the prompt's).
static int candidates_start(const Denoiser *d, int bs, int q_start) {
    int exact = d->sc->allow_mask && d->m->cfg.block_size == 0 && q_start == 0;
    return exact ? d->m->cfg.logit_shift : bs;
}

// The positions of [bs, be) still [MASK] in some sequence lie in [*hs, *he): only their
// logits and picks are read (a committed position never is), so the LM head, the sampler's
// largest matmul, and the pick skip the rest (a 32-position block's span averaged 19 positions
// over its 32 steps in bench/vs_llada.py). At least one position.
static void masked_span(const Denoiser *d, int bs, int be, int *hs, int *he) {
    int mask = d->m->cfg.mask_token_id, lo = be, hi = bs;
    for (int b = 0; b < d->B; b++)
        for (int pos = bs; pos < be; pos++)
            if (d->x[(size_t)b * d->T + pos] == mask) {
                lo = pos < lo ? pos : lo;
                hi = pos + 1 > hi ? pos + 1 : hi;
            }
    if (lo >= hi) lo = bs, hi = bs + 1;
    *hs = lo, *he = hi;
}

// A token and its confidence for every position of [hs, he) of every sequence, picked on the
// device from those logit rows (run_model). [MASK] is banned unless the exact-LLaDA mode
// allows it: a committed [MASK] reads as still masked.
static int pick_span(Denoiser *d, int hs, int he, Error *err) {
    float cfg = d->rows > d->B ? d->sc->cfg_scale : 0.0f;
    return picks_run(&d->picks, d->m, d->B, he - hs, 0, he - hs, cfg, d->sc->temperature,
                     rng_next(&d->rng), d->sc->allow_mask ? -1 : d->m->cfg.mask_token_id, err);
}

// How many of the n candidates (sorted by descending confidence) to commit: `count`
// (reference schedule), or with count < 0 by threshold (all at or above it, at least one) or
// by Fast-dLLM's factor rule.
static int commit_count(Denoiser *d, int n, int count) {
    if (count >= 0) return count;
    if (d->sc->factor > 0.0f) {
        for (int i = 0; i < n; i++) d->sorted[i] = d->cands[i].score;
        return fastdllm_factor_count(d->sorted, n, d->sc->factor);
    }
    int k = 1;
    while (k < n && d->cands[k].score >= d->sc->threshold) k++;
    return k;
}

// Commits tokens of [cs, be) (the block, or more: candidates_start) in every sequence
// (commit_count of its masked positions, the most confident first; ties to the earlier
// position), from the picks of the span [hs, he) that holds them. Returns 0, or -1 when the
// model's logits were not finite.
static int denoise_step(Denoiser *d, int cs, int be, int hs, int he, int count, Error *err) {
    const SamplerConfig *sc = d->sc;
    int mask = d->m->cfg.mask_token_id;
    memset(d->committed, 0, (size_t)d->B * d->T);
    for (size_t i = 0; i < (size_t)d->B * d->T; i++) d->confidence[i] = NAN;
    if (pick_span(d, hs, he, err)) return -1;
    for (int b = 0; b < d->B; b++) {
        int *x = d->x + (size_t)b * d->T, n = 0;
        for (int pos = cs; pos < be; pos++) {
            if (x[pos] != mask) continue;
            size_t at = (size_t)b * (he - hs) + (pos - hs);
            double conf = sc->remasking == REMASK_LOW_CONFIDENCE ? d->picks.confidence[at]
                                                                  : uniform_open(&d->rng);
            d->cands[n++] = (Scored){conf, pos, d->picks.tokens[at]};
            d->confidence[(size_t)b * d->T + pos] = (float)conf;
        }
        if (n == 0) continue;
        sort_by_score(d->cands, n);
        int k = commit_count(d, n, count);
        for (int i = 0; i < k && i < n; i++) {
            const Scored *c = &d->cands[i];
            x[c->index] = c->token;
            d->committed[(size_t)b * d->T + c->index] = 1;
        }
    }
    return 0;
}

static void denoiser_free(Denoiser *d) {
    free(d->input), free(d->committed), free(d->confidence), free(d->cands), free(d->sorted);
    free(d->key_start);
    picks_free(&d->picks, d->m->be);
}

// 1 when every sequence has an EOS among its generated positions before `end`.
static int all_ended(const Denoiser *d, int end) {
    for (int b = 0; b < d->B; b++) {
        const int *x = d->x + (size_t)b * d->T;
        int pos = d->P;
        while (pos < end && x[pos] != d->sc->eos_id) pos++;
        if (pos == end) return 0;
    }
    return 1;
}

// Block k of a generation: the positions it generates [*bs, *be) and the rows a pass over it
// must recompute [*gs, *be). LLaDA: gen_length / block_length blocks from the prompt's end.
// Block diffusion: the model's own grid of block_size positions, from the block holding the
// prompt's end (its prompt part is clean context inside the block) to the end of the context.
static void block_bounds(const Denoiser *d, int k, int *gs, int *bs, int *be) {
    int L = d->m->cfg.block_size;
    if (L > 0) {
        *gs = (d->P / L + k) * L;
        *bs = *gs > d->P ? *gs : d->P;
        *be = *gs + L < d->T ? *gs + L : d->T;
    } else {
        *gs = *bs = d->P + k * d->sc->block_length;
        *be = *bs + d->sc->block_length;
    }
}

// The rows step i of block k recomputes. LLaDA: every row, or with a cache only the block (dual)
// or the block and what follows (prefix) after the block's first step, and a shifted model
// also the row before the block, which predicts its first token. Block diffusion: rows past the
// block never matter (block-causal); with the cache a block's first step recomputes the block
// before it (now committed: its exact keys and values for the rest of the generation) and later
// steps the block alone; without it every step recomputes from position 0.
static void pass_rows(const Denoiser *d, int k, int i, int gs, int be, int *start, int *end) {
    const SamplerConfig *sc = d->sc;
    int L = d->m->cfg.block_size;
    if (L > 0) {
        *end = be;
        *start = sc->cache == CACHE_NONE || (i == 0 && k == 0) ? 0 : i == 0 ? gs - L : gs;
        return;
    }
    *start = 0, *end = d->T;
    if (i > 0 && (sc->cache == CACHE_PREFIX || sc->cache == CACHE_DUAL)) {
        *start = gs - d->m->cfg.logit_shift;
        *end = sc->cache == CACHE_DUAL ? be : d->T;
    }
}

// Steps of a block diffusion block of n masked positions: ceil(n steps / gen_length), the
// generation's tokens per step.
static int block_steps(const SamplerConfig *sc, int n) {
    return (int)(((int64_t)n * sc->steps + sc->gen_length - 1) / sc->gen_length);
}

static int block_has_mask(const Denoiser *d, int bs, int be) {
    int mask = d->m->cfg.mask_token_id;
    for (int b = 0; b < d->B; b++)
        for (int pos = bs; pos < be; pos++)
            if (d->x[(size_t)b * d->T + pos] == mask) return 1;
    return 0;
}

int llada_generate(Model *m, const SamplerConfig *sc, const int *const *prompts,
                   const int *prompt_lens, int B, int *out, int *lengths, SampleStats *stats,
                   StepCallback cb, void *user, Error *err) {
    if (m->cfg.causal)
        return error_set(err, "the diffusion sampler needs a masked-diffusion model; this one is "
                         "autoregressive (use --sampler ar)");
    int rows = sc->cfg_scale > 0.0f ? 2 * B : B;
    if (sampler_check_config(m, sc, prompt_lens, B, rows, err)) return -1;
    int prompt_len = max_prompt_length(prompt_lens, B);
    if (m->cfg.logit_shift && prompt_len < 1)
        return error_set(err, "this model reads each position's logits one row back (Dream): "
                         "give a prompt of at least one token");
    int L = m->cfg.block_size, T = prompt_len + sc->gen_length;
    if (!L && (sc->block_length < 1 || sc->gen_length % sc->block_length != 0))
        return error_set(err, "--gen-length %d is not a multiple of --block-length %d",
                         sc->gen_length, sc->block_length);
    // a block diffusion model's blocks are its own; gen_length is then the most it generates
    int n_blocks = L ? (T + L - 1) / L - prompt_len / L : sc->gen_length / sc->block_length;
    int block_cap = L ? L : sc->block_length;
    // the most positions a step considers: a block, or in the exact-LLaDA mode the whole row
    int span_cap = !L && sc->allow_mask ? T : block_cap;
    if (sc->threshold > 0.0f && sc->factor > 0.0f)
        return error_set(err, "--threshold and --factor are two decoding rules: give one");
    if (sc->threshold < 0.0f || sc->factor < 0.0f)
        return error_set(err, "--threshold and --factor must be >= 0");
    // threshold and factor decoding run a block until it has no [MASK] left
    int adaptive = sc->threshold > 0.0f || sc->factor > 0.0f;
    if (!adaptive && (sc->steps < 1 || (!L && sc->steps % n_blocks != 0)))
        return error_set(err, "--steps %d must be a positive multiple of the %d blocks",
                         sc->steps, n_blocks);
    if (sc->cfg_scale < 0.0f) return error_set(err, "--cfg must be >= 0");
    // block diffusion: a block of n masked positions gets ceil(n steps / gen_length) steps, the
    // same tokens per step as the whole generation (steps_per_block: the most, a whole block)
    int steps_per_block = adaptive ? 0 : L ? block_steps(sc, L) : sc->steps / n_blocks;

    Denoiser d = {.sc = sc, .m = m, .B = B, .rows = rows, .P = prompt_len, .x = out};
    d.T = T;
    d.V = m->cfg.vocab_size;
    d.input = malloc((size_t)rows * d.T * sizeof(int));
    int no_picks = picks_alloc(&d.picks, m->be, B * span_cap);
    d.committed = malloc((size_t)B * d.T);
    d.confidence = malloc((size_t)B * d.T * sizeof(float));
    d.cands = malloc((size_t)span_cap * sizeof(Scored));
    d.sorted = malloc((size_t)span_cap * sizeof(double));
    d.key_start = malloc((size_t)rows * sizeof(int));
    int *counts = malloc((size_t)(steps_per_block + 1) * sizeof(int));
    if (!d.input || no_picks || !d.committed || !d.confidence || !d.cands || !d.sorted ||
        !d.key_start || !counts) {
        denoiser_free(&d);
        free(counts);
        return error_set(err, "out of memory for the sampler");
    }
    rng_seed(&d.rng, sc->seed);
    layout_rows(sc, prompts, prompt_lens, B, d.T, prompt_len, m->cfg.mask_token_id, out,
                d.key_start);
    if (rows > B) memcpy(d.key_start + B, d.key_start, (size_t)B * sizeof(int));

    SampleStats st = {0};
    int status = 0;
    // every LLaDA pass without a cache runs all rows: no layer's keys and values are read again
    int uncached = L == 0 && sc->cache == CACHE_NONE;
    if (uncached) model_keep_kv(m, 0);
    for (int k = 0; k < n_blocks && status == 0; k++) {
        int gs, bs, be;
        block_bounds(&d, k, &gs, &bs, &be);
        int n_steps = L ? block_steps(sc, be - bs) : steps_per_block;
        if (!adaptive)  // every sequence starts the block fully masked: one schedule
            llada_transfer_counts(be - bs, n_steps, counts);
        for (int i = 0; adaptive ? block_has_mask(&d, bs, be) : i < n_steps; i++) {
            // with [MASK] allowed, an adaptive step may commit only [MASK]s: no progress
            if (adaptive && i == 4 * block_cap) {
                status = error_set(err, "block %d still has [MASK] after %d steps: the model "
                                        "keeps predicting [MASK] (--allow-mask 0 bans it)", k, i);
                break;
            }
            int q_start, q_end, hs, he;
            pass_rows(&d, k, i, gs, be, &q_start, &q_end);
            int cs = candidates_start(&d, bs, q_start);
            masked_span(&d, cs, be, &hs, &he);
            run_model(&d, q_start, q_end, hs, he);
            st.nfe++;
            if (denoise_step(&d, cs, be, hs, he, adaptive ? -1 : counts[i], err)) {
                status = -1;
                break;
            }
            if (cb) {
                StepEvent ev = {st.steps, k, B, d.T, out, d.committed, d.confidence, -1, -1};
                if (cb(user, &ev)) {
                    status = error_set(err, SAMPLER_STOPPED);
                    break;
                }
            }
            st.steps++;
        }
        if (L && sc->eos_id >= 0 && all_ended(&d, be)) break;  // every row has its EOS
    }
    if (uncached) model_keep_kv(m, 1);
    if (status == 0) status = m->be->device_error(err);
    if (status == 0) trim_at_eos(out, B, d.T, prompt_len, sc->eos_id, lengths);
    if (stats) *stats = st;
    denoiser_free(&d);
    free(counts);
    return status;
}

// The LLaDA denoising sampler (semantics of LLaDA's generate()), with Fast-dLLM's
// confidence-threshold decoding and prefix / dual block caches as options.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sampler/pick.h"
#include "sampler/sampler.h"

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
    float *logits;     // [rows, T, V] host copy of the rows the model computed
    float *guided;     // [V] one position's logits after guidance
    char *committed;   // [B, T]
    float *confidence; // [B, T]
    Scored *cands;     // [block_length] proposals: confidence, position, token
    Rng rng;
} Denoiser;

// One forward pass over rows [start, end) of every sequence; logits to the host.
static void run_model(Denoiser *d, int start, int end) {
    int mask = d->m->cfg.mask_token_id;
    size_t n = (size_t)d->B * d->T;
    memcpy(d->input, d->x, n * sizeof(int));
    if (d->rows > d->B) {  // the unconditional half: the same sequences without their prompt
        memcpy(d->input + n, d->x, n * sizeof(int));
        for (int b = 0; b < d->B; b++)
            for (int i = d->key_start[b]; i < d->P; i++) d->input[n + (size_t)b * d->T + i] = mask;
    }
    model_infer(d->m, d->input, d->key_start, d->rows, d->T, start, end);
    size_t count = (size_t)d->rows * (end - start) * d->V;
    d->m->be->to_host(d->logits, d->m->acts.logits, count * sizeof(float));
}

// Logits of sequence b at position pos (computed rows start at q_start), with guidance.
// [MASK] is never a candidate: a committed [MASK] would read as still masked.
static const float *position_logits(Denoiser *d, int b, int pos, int q_start, int q_len) {
    float *cond = d->logits + ((size_t)b * q_len + (pos - q_start)) * d->V;
    float *lg = cond;
    if (d->rows > d->B) {
        const float *uncond = cond + (size_t)d->B * q_len * d->V;
        float w = d->sc->cfg_scale + 1.0f;
        for (int v = 0; v < d->V; v++) d->guided[v] = uncond[v] + w * (cond[v] - uncond[v]);
        lg = d->guided;
    }
    lg[d->m->cfg.mask_token_id] = -INFINITY;
    return lg;
}

// Commits tokens of block [bs, be) in every sequence: the `count` most confident masked
// positions (reference), or with count < 0 all at or above the threshold and at least one.
// Returns the number of tokens committed.
static int denoise_step(Denoiser *d, int bs, int be, int q_start, int q_len, int count) {
    const SamplerConfig *sc = d->sc;
    int mask = d->m->cfg.mask_token_id, total = 0;
    memset(d->committed, 0, (size_t)d->B * d->T);
    for (size_t i = 0; i < (size_t)d->B * d->T; i++) d->confidence[i] = NAN;
    for (int b = 0; b < d->B; b++) {
        int *x = d->x + (size_t)b * d->T, n = 0;
        for (int pos = bs; pos < be; pos++) {
            if (x[pos] != mask) continue;
            const float *lg = position_logits(d, b, pos, q_start, q_len);
            int token = pick_gumbel_argmax(lg, d->V, sc->temperature, &d->rng);
            float conf = sc->remasking == REMASK_LOW_CONFIDENCE ? softmax_prob(lg, d->V, token)
                                                                 : (float)uniform_open(&d->rng);
            d->cands[n++] = (Scored){conf, pos, token};
            d->confidence[(size_t)b * d->T + pos] = conf;
        }
        if (n == 0) continue;
        sort_by_score(d->cands, n);
        int k = count >= 0 ? count : 1;
        if (count < 0)
            while (k < n && d->cands[k].score >= sc->threshold) k++;
        for (int i = 0; i < k && i < n; i++) {
            const Scored *c = &d->cands[i];
            x[c->index] = c->token;
            d->committed[(size_t)b * d->T + c->index] = 1;
            total++;
        }
    }
    return total;
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
    if (sc->block_length < 1 || sc->gen_length % sc->block_length != 0)
        return error_set(err, "--gen-length %d is not a multiple of --block-length %d",
                         sc->gen_length, sc->block_length);
    int n_blocks = sc->gen_length / sc->block_length;
    int threshold_mode = sc->threshold > 0.0f;
    if (!threshold_mode && (sc->steps < 1 || sc->steps % n_blocks != 0))
        return error_set(err, "--steps %d must be a positive multiple of the %d blocks",
                         sc->steps, n_blocks);
    if (sc->cfg_scale < 0.0f) return error_set(err, "--cfg must be >= 0");
    int steps_per_block = threshold_mode ? 0 : sc->steps / n_blocks;

    Denoiser d = {.sc = sc, .m = m, .B = B, .rows = rows, .P = prompt_len, .x = out};
    d.T = prompt_len + sc->gen_length;
    d.V = m->cfg.vocab_size;
    d.input = malloc((size_t)rows * d.T * sizeof(int));
    d.logits = malloc((size_t)rows * d.T * d.V * sizeof(float));
    d.guided = malloc((size_t)d.V * sizeof(float));
    d.committed = malloc((size_t)B * d.T);
    d.confidence = malloc((size_t)B * d.T * sizeof(float));
    d.cands = malloc((size_t)sc->block_length * sizeof(Scored));
    d.key_start = malloc((size_t)rows * sizeof(int));
    int *counts = malloc((size_t)(steps_per_block + 1) * sizeof(int));
    if (!d.input || !d.logits || !d.guided || !d.committed || !d.confidence || !d.cands ||
        !d.key_start || !counts) {
        free(d.input), free(d.logits), free(d.guided), free(d.committed), free(d.confidence);
        free(d.cands), free(d.key_start), free(counts);
        return error_set(err, "out of memory for the sampler");
    }
    rng_seed(&d.rng, sc->seed);
    layout_rows(sc, prompts, prompt_lens, B, d.T, prompt_len, m->cfg.mask_token_id, out,
                d.key_start);
    if (rows > B) memcpy(d.key_start + B, d.key_start, (size_t)B * sizeof(int));

    SampleStats st = {0, 0};
    for (int k = 0; k < n_blocks; k++) {
        int bs = prompt_len + k * sc->block_length, be = bs + sc->block_length;
        if (!threshold_mode)  // every sequence starts the block fully masked: one schedule
            llada_transfer_counts(sc->block_length, steps_per_block, counts);
        for (int i = 0; threshold_mode ? block_has_mask(&d, bs, be) : i < steps_per_block; i++) {
            // the block's first step refreshes every cached key and value; later steps of a
            // cached run recompute only the block (dual) or the block and what follows (prefix)
            int q_start = 0, q_end = d.T;
            if (i > 0 && sc->cache != CACHE_NONE) {
                q_start = bs;
                q_end = sc->cache == CACHE_DUAL ? be : d.T;
            }
            run_model(&d, q_start, q_end);
            st.nfe++;
            denoise_step(&d, bs, be, q_start, q_end - q_start, threshold_mode ? -1 : counts[i]);
            if (cb) {
                StepEvent ev = {st.steps, k, B, d.T, out, d.committed, d.confidence};
                cb(user, &ev);
            }
            st.steps++;
        }
    }
    trim_at_eos(out, B, d.T, prompt_len, sc->eos_id, lengths);
    if (stats) *stats = st;
    free(d.input), free(d.logits), free(d.guided), free(d.committed), free(d.confidence);
    free(d.cands), free(d.key_start), free(counts);
    return 0;
}

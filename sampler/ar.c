// Sampling the AR baseline: one token at a time, each step running only the newest row
// against the KV cache of the earlier ones. Plain temperature sampling (and greedy) picks on
// the device like the diffusion sampler (Gumbel-max is a draw from softmax(logits / T));
// top-k / top-p need a sort, so those copy each sequence's logit row to the host.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sampler/pick.h"
#include "sampler/sampler.h"

int ar_generate(Model *m, const SamplerConfig *sc, const int *const *prompts,
                const int *prompt_lens, int B, int *out, int *lengths, SampleStats *stats,
                StepCallback cb, void *user, Error *err) {
    if (!m->cfg.causal)
        return error_set(err,
                         "the AR sampler needs a causal model; this one is a "
                         "masked-diffusion model (use --sampler llada)");
    if (sampler_check_config(m, sc, prompt_lens, B, B, err)) return -1;
    for (int b = 0; b < B; b++)
        if (prompt_lens[b] < 1)
            return error_set(err, "the AR sampler needs a prompt of at least one token");
    int prompt_len = max_prompt_length(prompt_lens, B);
    if (sc->top_k < 0 || !(sc->top_p > 0.0f && sc->top_p <= 1.0f))
        return error_set(err, "--top-k must be >= 0 and --top-p in (0, 1]");
    int T = prompt_len + sc->gen_length, V = m->cfg.vocab_size;
    float *logits = malloc((size_t)V * sizeof(float));
    Scored *scratch = malloc((size_t)V * sizeof(Scored));
    char *committed = malloc((size_t)B * T), *done = calloc(B, 1);
    int *key_start = malloc((size_t)B * sizeof(int));
    float *confidence = malloc((size_t)B * T * sizeof(float));
    int device_pick = sc->top_k == 0 && sc->top_p >= 1.0f;
    Picks picks = {0};
    if (!logits || !scratch || !committed || !done || !confidence || !key_start ||
        (device_pick && picks_alloc(&picks, m->be, B))) {
        free(logits), free(scratch), free(committed), free(done), free(confidence), free(key_start);
        picks_free(&picks, m->be);
        return error_set(err, "out of memory for the sampler");
    }
    Rng rng;
    rng_seed(&rng, sc->seed);
    // not generated yet: shown as masked, never attended (causal)
    layout_rows(sc, prompts, prompt_lens, B, T, prompt_len, m->cfg.mask_token_id, out, key_start);
    SampleStats st = {0};
    int start = 0, status = 0;  // the first step runs the whole prompt, later ones the newest
    for (int pos = prompt_len; pos < T && status == 0; pos++) {
        model_infer(m, out, key_start, B, T, start, pos);
        st.nfe++;
        int rows = pos - start, all_done = 1;
        memset(committed, 0, (size_t)B * T);
        for (size_t i = 0; i < (size_t)B * T; i++) confidence[i] = NAN;
        // [MASK] is never generated (both paths): it marks "not yet"
        if (device_pick && picks_run(&picks, m, B, rows, rows - 1, 1, 0.0f, sc->temperature,
                                     rng_next(&rng), m->cfg.mask_token_id, err)) {
            status = -1;
            break;
        }
        for (int b = 0; b < B; b++) {
            if (done[b]) continue;
            int token;
            double conf;
            if (device_pick) {
                token = picks.tokens[b], conf = picks.confidence[b];
            } else {
                m->be->act_to_host(logits,
                                   act_at(m, m->acts.logits, ((size_t)b * rows + rows - 1) * V),
                                   (size_t)V);
                if (logits_check_finite(logits, (size_t)V, err)) {
                    status = -1;
                    break;
                }
                logits[m->cfg.mask_token_id] = -INFINITY;
                token = pick_top_k_top_p(logits, V, sc->temperature, sc->top_k, sc->top_p, &rng,
                                         scratch);
                conf = softmax_prob(logits, V, token);
            }
            out[(size_t)b * T + pos] = token;
            committed[(size_t)b * T + pos] = 1;
            confidence[(size_t)b * T + pos] = conf;
            done[b] = token == sc->eos_id;
            all_done &= done[b];
        }
        if (status) break;
        if (cb) {
            StepEvent ev = {st.steps, 0, B, T, out, committed, confidence, -1, -1};
            if (cb(user, &ev)) status = error_set(err, SAMPLER_STOPPED);
        }
        st.steps++;
        start = pos;
        if (all_done) break;
    }
    trim_at_eos(out, B, T, prompt_len, sc->eos_id, lengths);
    if (stats) *stats = st;
    free(logits), free(scratch), free(committed), free(done), free(confidence), free(key_start);
    picks_free(&picks, m->be);
    return status ? status : m->be->device_error(err);
}

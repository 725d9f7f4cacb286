// What both samplers share: defaults, the checks of a request against the model, EOS trimming.
#include "sampler/sampler.h"

#include <math.h>

SamplerConfig sampler_config_default(void) {
    SamplerConfig sc = {
        .gen_length = 64,
        .block_length = 32,
        .steps = 64,
        .remasking = REMASK_LOW_CONFIDENCE,
        .cfg_scale = 0.0f,
        .threshold = 0.0f,
        .factor = 0.0f,
        .allow_mask = 0,
        .cache = CACHE_AUTO,
        .draft_length = 4,
        .draft_steps = 1,
        .temperature = 0.0f,
        .top_k = 0,
        .top_p = 1.0f,
        .eos_id = -1,
        .pad_id = 0,
        .seed = 1234,
    };
    return sc;
}

int sampler_check_config(const Model *m, const SamplerConfig *sc, const int *prompt_lens, int B,
                         int rows, Error *err) {
    if (B < 1) return error_set(err, "--batch must be >= 1");
    for (int b = 0; b < B; b++)
        if (prompt_lens[b] < 0) return error_set(err, "negative prompt length");
    int prompt_len = max_prompt_length(prompt_lens, B);
    int T = prompt_len + sc->gen_length;
    if (sc->gen_length < 1) return error_set(err, "--gen-length must be >= 1");
    if (T > m->cfg.seq_len)
        return error_set(err, "prompt (%d tokens) + gen length (%d) = %d exceeds the model's "
                         "context of %d tokens", prompt_len, sc->gen_length, T, m->cfg.seq_len);
    if (rows > m->max_batch)
        return error_set(err, "%d sequences exceed the model's batch room of %d", rows,
                         m->max_batch);
    if (!(sc->temperature >= 0.0f)) return error_set(err, "--temperature must be >= 0");
    return 0;
}

void trim_at_eos(const int *out, int B, int T, int prompt_len, int eos_id, int *lengths) {
    for (int b = 0; b < B; b++) {
        int n = 0;
        while (prompt_len + n < T && out[(size_t)b * T + prompt_len + n] != eos_id) n++;
        lengths[b] = n;
    }
}

int max_prompt_length(const int *prompt_lens, int B) {
    int P = 0;
    for (int b = 0; b < B; b++)
        if (prompt_lens[b] > P) P = prompt_lens[b];
    return P;
}

void layout_rows(const SamplerConfig *sc, const int *const *prompts, const int *prompt_lens,
                 int B, int T, int P, int fill, int *out, int *key_start) {
    for (int b = 0; b < B; b++) {
        int *row = out + (size_t)b * T;
        key_start[b] = P - prompt_lens[b];
        for (int i = 0; i < key_start[b]; i++) row[i] = sc->pad_id;
        for (int i = 0; i < prompt_lens[b]; i++) row[key_start[b] + i] = prompts[b][i];
        for (int i = P; i < T; i++) row[i] = fill;
    }
}

double nfe_per_token(long passes, int sequences, long generated) {
    return generated > 0 ? (double)passes * sequences / (double)generated : NAN;
}

const char *const SAMPLER_NAMES[4] = {"auto", "llada", "ar", "speculative"};

SamplerKind sampler_for_model(const Model *m) {
    return m->cfg.causal ? SAMPLER_AR : SAMPLER_LLADA;
}

int sampler_run(SamplerKind kind, Model *m, Model *draft, const SamplerConfig *sc,
                const int *const *prompts, const int *prompt_lens, int B, int *out, int *lengths,
                SampleStats *stats, StepCallback cb, void *user, Error *err) {
    if (kind == SAMPLER_AUTO) kind = sampler_for_model(m);
    if (kind == SAMPLER_SPECULATIVE)
        return speculative_generate(m, draft, sc, prompts, prompt_lens, B, out, lengths, stats, cb,
                                    user, err);
    return (kind == SAMPLER_AR ? ar_generate : llada_generate)(m, sc, prompts, prompt_lens, B, out,
                                                               lengths, stats, cb, user, err);
}

// The samplers: LLaDA's schedule, the invariants of denoising (prompt kept, commits final,
// blocks in order, nothing left masked), determinism, guidance, threshold decoding, block
// caches, AR sampling with its KV cache, bad requests, and regenerating a memorised text.
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "sampler/pick.h"
#include "sampler/sampler.h"
#include "tests/testutil.h"
#include "tokenizer/bytes.h"
#include "train/trainer.h"

// The samplers on B copies of one prompt.
static int generate_copies(int ar, Model *m, const SamplerConfig *sc, const int *prompt, int len,
                           int B, int *out, int *lengths, SampleStats *st, StepCallback cb,
                           void *user, Error *err) {
    const int *prompts[8];
    int lens[8];
    for (int b = 0; b < B; b++) prompts[b] = prompt, lens[b] = len;
    return (ar ? ar_generate : llada_generate)(m, sc, prompts, lens, B, out, lengths, st, cb, user,
                                               err);
}

static ModelConfig small_config(int causal) {
    ModelConfig c = model_config_default();
    c.n_layer = 2, c.n_head = 2, c.d_model = 32, c.d_ff = 64, c.seq_len = 48;
    c.causal = causal;
    return c;
}

// A model with random weights, large enough that its predictions vary by position.
static Model random_model(int causal, int max_batch) {
    ModelConfig cfg = small_config(causal);
    Model m;
    Error err;
    ck_assert_msg(model_create(&m, &cfg, &backend_cpu, max_batch, 0, &err) == 0, "%s", err.msg);
    fill_normal(m.params, m.n_params, 5, 0.3f);
    return m;
}

START_TEST(test_transfer_counts) {
    for (int masked = 0; masked <= 70; masked++)
        for (int steps = 1; steps <= 40; steps++) {
            int counts[40], sum = 0;
            llada_transfer_counts(masked, steps, counts);
            for (int i = 0; i < steps; i++) {
                // LLaDA: base = masked // steps, the first masked % steps steps get one more
                int want = masked / steps + (i < masked % steps);
                ck_assert_int_eq(counts[i], want);
                sum += counts[i];
            }
            ck_assert_int_eq(sum, masked);
        }
    int counts[4];
    llada_transfer_counts(10, 4, counts);  // 10 over 4 steps: 3 3 2 2
    ck_assert(counts[0] == 3 && counts[1] == 3 && counts[2] == 2 && counts[3] == 2);
}
END_TEST

// Checks every step of a diffusion run against the previous state.
typedef struct {
    int *prev;            // [B, T] tokens before the step
    int P, block_length, steps_per_block;
    float threshold;
    int bad;              // first violation, as a code
    int step_commits[64];
    int n_events;
} Watch;

static int watch_step(void *user, const StepEvent *ev) {
    Watch *w = user;
    int bs = w->P + ev->block * w->block_length, be = bs + w->block_length;
    for (int b = 0; b < ev->B; b++) {
        int commits = 0, masked_before = 0;
        float best = -1.0f;
        for (int t = 0; t < ev->T; t++) {
            size_t i = (size_t)b * ev->T + t;
            int before = w->prev[i], now = ev->tokens[i];
            if (before == BYTE_MASK && (t >= bs && t < be)) masked_before++;
            if (t < w->P && now != before) w->bad = w->bad ? w->bad : 1;  // prompt changed
            if (before != BYTE_MASK && now != before) w->bad = w->bad ? w->bad : 2;  // remasked
            if (ev->committed[i]) {
                commits++;
                if (t < bs || t >= be) w->bad = w->bad ? w->bad : 3;  // outside the block
                if (before != BYTE_MASK || now == BYTE_MASK) w->bad = w->bad ? w->bad : 4;
            }
            if (t >= be && now != BYTE_MASK) w->bad = w->bad ? w->bad : 5;  // a later block early
            if (!isnan(ev->confidence[i]) && ev->confidence[i] > best) best = ev->confidence[i];
            // threshold decoding: everything at or above the threshold is committed
            if (w->threshold > 0.0f && !isnan(ev->confidence[i]) &&
                ev->confidence[i] >= w->threshold && !ev->committed[i])
                w->bad = w->bad ? w->bad : 6;
        }
        if (masked_before > 0 && commits < 1) w->bad = w->bad ? w->bad : 7;
        if (b == 0 && ev->step < 64) w->step_commits[ev->step] = commits;
    }
    memcpy(w->prev, ev->tokens, (size_t)ev->B * ev->T * sizeof(int));
    w->n_events++;
    return 0;
}

static const int prompt[] = {'H', 'e', 'l', 'l', 'o', ' '};
enum { P = 6 };

static void run_watched(Model *m, SamplerConfig *sc, int B, int *out, Watch *w, SampleStats *st) {
    int T = P + sc->gen_length;
    memset(w, 0, sizeof *w);
    w->prev = malloc((size_t)B * T * sizeof(int));
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) w->prev[b * T + t] = t < P ? prompt[t] : BYTE_MASK;
    w->P = P, w->block_length = sc->block_length, w->threshold = sc->threshold;
    w->steps_per_block = sc->steps / (sc->gen_length / sc->block_length);
    int lengths[8];
    Error err;
    ck_assert_msg(generate_copies(0, m, sc, prompt, P, B, out, lengths, st, watch_step, w, &err) == 0,
                  "%s", err.msg);
    free(w->prev);
    for (int i = 0; i < B * T; i++) ck_assert_int_ne(out[i], BYTE_MASK);  // nothing left masked
}

START_TEST(test_llada_invariants_and_schedule) {
    Model m = random_model(0, 4);
    SamplerConfig sc = sampler_config_default();
    sc.gen_length = 30, sc.block_length = 10, sc.steps = 12;  // 4 steps per block: 3 3 2 2
    int out[3 * 36];
    Watch w;
    SampleStats st;
    run_watched(&m, &sc, 3, out, &w, &st);
    ck_assert_msg(w.bad == 0, "invariant %d broken", w.bad);
    ck_assert_int_eq(st.steps, 12);
    ck_assert_int_eq(st.nfe, 12);
    int want[12] = {3, 3, 2, 2, 3, 3, 2, 2, 3, 3, 2, 2};
    ck_assert_mem_eq(w.step_commits, want, sizeof want);
    for (int b = 0; b < 3; b++) ck_assert_mem_eq(out + b * 36, prompt, sizeof prompt);
    // random remasking keeps the same schedule and invariants
    sc.remasking = REMASK_RANDOM, sc.temperature = 1.0f;
    run_watched(&m, &sc, 3, out, &w, &st);
    ck_assert_msg(w.bad == 0, "invariant %d broken (random remasking)", w.bad);
    ck_assert_mem_eq(w.step_commits, want, sizeof want);
    // more steps than masked tokens: one per step, then steps that commit nothing
    sc.gen_length = 8, sc.block_length = 8, sc.steps = 12;
    run_watched(&m, &sc, 1, out, &w, &st);
    ck_assert_msg(w.bad == 0, "invariant %d broken (steps > tokens)", w.bad);
    int sparse[12] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0};
    ck_assert_mem_eq(w.step_commits, sparse, sizeof sparse);
    model_free(&m);
}
END_TEST

// Sampling at temperature > 0 with sc: the same seed gives the same two copies, which differ
// from each other, and the next seed gives other samples. The first draw is left in out.
static void check_seeded_sampling(int causal, Model *m, SamplerConfig sc, int out[2 * 22]) {
    int again[2 * 22], lengths[2];
    SampleStats st;
    Error err;
    ck_assert(generate_copies(causal, m, &sc, prompt, P, 2, out, lengths, &st, NULL, NULL,
                              &err) == 0);
    ck_assert(generate_copies(causal, m, &sc, prompt, P, 2, again, lengths, &st, NULL, NULL,
                              &err) == 0);
    ck_assert_mem_eq(out, again, sizeof again);  // same seed, same samples
    ck_assert(memcmp(out, out + 22, 22 * sizeof(int)) != 0);  // the two copies differ
    sc.seed++;
    ck_assert(generate_copies(causal, m, &sc, prompt, P, 2, again, lengths, &st, NULL, NULL,
                              &err) == 0);
    ck_assert(memcmp(out, again, sizeof again) != 0);
}

START_TEST(test_llada_determinism) {
    Model m = random_model(0, 2);
    SamplerConfig sc = sampler_config_default();
    sc.gen_length = 16, sc.block_length = 8, sc.steps = 8;
    int a[2 * 22], b[2 * 22], lengths[2];
    SampleStats st;
    Error err;
    ck_assert(generate_copies(0, &m, &sc, prompt, P, 2, a, lengths, &st, NULL, NULL, &err) == 0);
    sc.seed = 999;  // greedy ignores the seed
    ck_assert(generate_copies(0, &m, &sc, prompt, P, 2, b, lengths, &st, NULL, NULL, &err) == 0);
    ck_assert_mem_eq(a, b, sizeof a);
    ck_assert_mem_eq(a, a + 22, 22 * sizeof(int));  // greedy: every sample the same
    sc.temperature = 1.0f;
    check_seeded_sampling(0, &m, sc, a);
    model_free(&m);
}
END_TEST

START_TEST(test_llada_guidance) {
    Model m = random_model(0, 2);
    SamplerConfig sc = sampler_config_default();
    sc.gen_length = 16, sc.block_length = 16, sc.steps = 8;
    int plain[22], guided[22], lengths[1];
    SampleStats st;
    Error err;
    ck_assert(generate_copies(0, &m, &sc, prompt, P, 1, plain, lengths, &st, NULL, NULL, &err) == 0);
    sc.cfg_scale = 0.0f;  // 0 is off: exactly the plain result
    ck_assert(generate_copies(0, &m, &sc, prompt, P, 1, guided, lengths, &st, NULL, NULL, &err) == 0);
    ck_assert_mem_eq(plain, guided, sizeof plain);
    // with guidance the prompt pulls harder, so the text changes
    sc.cfg_scale = 3.0f;
    ck_assert(generate_copies(0, &m, &sc, prompt, P, 1, guided, lengths, &st, NULL, NULL, &err) == 0);
    ck_assert_int_eq(st.nfe, 8);
    ck_assert(memcmp(plain, guided, sizeof plain) != 0);
    // without a prompt the unconditional half equals the conditional one: guidance is a no-op
    ck_assert(generate_copies(0, &m, &sc, NULL, 0, 1, guided, lengths, &st, NULL, NULL, &err) == 0);
    sc.cfg_scale = 0.0f;
    ck_assert(generate_copies(0, &m, &sc, NULL, 0, 1, plain, lengths, &st, NULL, NULL, &err) == 0);
    ck_assert_mem_eq(plain, guided, 16 * sizeof(int));
    model_free(&m);
}
END_TEST

// Threshold or factor decoding of 24 tokens in blocks of 8 for two sequences, with the
// denoising invariants checked.
static void run_adaptive(Model *m, float threshold, float factor, Watch *w, SampleStats *st) {
    SamplerConfig sc = sampler_config_default();
    sc.gen_length = 24, sc.block_length = 8, sc.steps = 24;
    sc.threshold = threshold, sc.factor = factor;
    int out[2 * 30];
    run_watched(m, &sc, 2, out, w, st);
    ck_assert_msg(w->bad == 0, "invariant %d broken", w->bad);
}

START_TEST(test_threshold_decoding) {
    Model m = random_model(0, 2);
    Watch w;
    SampleStats st;
    run_adaptive(&m, 0.05f, 0.0f, &w, &st);
    ck_assert(st.nfe <= 24);
    // an unreachable threshold commits exactly one token per step
    run_adaptive(&m, 1.01f, 0.0f, &w, &st);
    ck_assert_int_eq(st.nfe, 24);
    for (int i = 0; i < 24; i++) ck_assert_int_eq(w.step_commits[i], 1);
    model_free(&m);
}
END_TEST

// Fast-dLLM's factor rule against its reference loop (llada/generate.py,
// get_transfer_index_dynamic); the expected counts are what that loop returns.
START_TEST(test_factor_rule) {
    static const struct {
        double c[6];
        int n;
        double factor;
        int want;
    } cases[] = {
        {{0.9}, 1, 1.0, 1},
        {{0.9, 0.8}, 2, 1.0, 2},
        {{0.9, 0.2}, 2, 1.0, 2},  // fails only at the last position: the reference commits all
        {{0.99, 0.95, 0.9, 0.5, 0.4}, 5, 1.0, 3},
        {{0.99, 0.95, 0.9, 0.85, 0.8}, 5, 1.0, 5},
        {{0.99, 0.7, 0.6, 0.5}, 4, 1.0, 2},
        {{0.99, 0.97, 0.95, 0.3}, 4, 1.0, 4},
        {{0.5, 0.4, 0.3}, 3, 0.5, 1},
        {{0.99, 0.9, 0.8, 0.1, 0.05, 0.01}, 6, 2.0, 3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_int_eq(fastdllm_factor_count(cases[i].c, cases[i].n, cases[i].factor),
                         cases[i].want);
    ck_assert_int_eq(fastdllm_factor_count(NULL, 0, 1.0), 0);
}
END_TEST

START_TEST(test_factor_decoding) {
    Model m = random_model(0, 2);
    Watch w;
    SampleStats st;
    run_adaptive(&m, 0.0f, 1.0f, &w, &st);
    ck_assert_int_le(st.nfe, 24);
    // a tiny factor asks near-certainty of all but the first: one token a step, as LLaDA with
    // 24 steps (the last position of a block is committed with the one before it)
    run_adaptive(&m, 0.0f, 1e-6f, &w, &st);
    ck_assert_int_eq(st.nfe, 3 * 7);
    // threshold and factor together are refused
    SamplerConfig sc = sampler_config_default();
    sc.gen_length = 24, sc.block_length = 8, sc.threshold = 0.5f, sc.factor = 1.0f;
    int out[2 * 30], lengths[2];
    Error err;
    ck_assert_int_eq(generate_copies(0, &m, &sc, prompt, P, 2, out, lengths, &st, NULL, NULL,
                                     &err), -1);
    ck_assert_msg(strstr(err.msg, "--threshold and --factor"), "%s", err.msg);
    model_free(&m);
}
END_TEST

// Exact LLaDA (allow_mask): [MASK] competes like any token, and a position that gets it stays
// masked; by default it is banned. The model's [MASK] output row is made large so it often wins.
START_TEST(test_allow_mask_is_exact_llada) {
    Model m = random_model(0, 2);
    float *row = m.p.lm_head + (size_t)BYTE_MASK * m.cfg.d_model;
    for (int i = 0; i < m.cfg.d_model; i++) row[i] *= 4.0f;
    SamplerConfig sc = sampler_config_default();
    sc.gen_length = 16, sc.block_length = 16, sc.steps = 16;
    int out[2 * 22], lengths[2];
    SampleStats st;
    Error err;
    ck_assert(generate_copies(0, &m, &sc, prompt, P, 2, out, lengths, &st, NULL, NULL, &err) == 0);
    int masks = 0;
    for (int i = 0; i < 2 * 22; i++) masks += out[i] == BYTE_MASK;
    ck_assert_int_eq(masks, 0);
    sc.allow_mask = 1;
    ck_assert(generate_copies(0, &m, &sc, prompt, P, 2, out, lengths, &st, NULL, NULL, &err) == 0);
    for (int i = 0; i < 2 * 22; i++) masks += out[i] == BYTE_MASK;
    printf("  allow_mask: %d of 32 generated positions ended as [MASK]\n", masks);
    ck_assert_int_gt(masks, 0);
    model_free(&m);
}
END_TEST

// A NaN weight makes every logit NaN: each sampler stops with an error instead of committing
// token 0 (the first-at-max search finds no maximum among NaNs). With the sanitizer build this
// also runs the vector exp on NaN, which once shifted a negative exponent.
START_TEST(test_nan_weights_are_an_error) {
    for (int mode = 0; mode < 4; mode++) {  // llada, llada + CFG, ar on the device, ar top-k
        int ar = mode >= 2;
        Model m = random_model(ar, 4);
        m.p.lm_head[7] = NAN;
        SamplerConfig sc = sampler_config_default();
        sc.gen_length = 8, sc.block_length = 8, sc.steps = 8;
        sc.cfg_scale = mode == 1 ? 1.0f : 0.0f;
        sc.temperature = mode == 3 ? 1.0f : 0.0f;
        sc.top_k = mode == 3 ? 5 : 0;
        int out[2 * 14], lengths[2];
        SampleStats st;
        Error err;
        ck_assert_int_eq(generate_copies(ar, &m, &sc, prompt, P, 2, out, lengths, &st, NULL, NULL,
                                         &err), -1);
        ck_assert_msg(strstr(err.msg, PICK_NOT_FINITE), "mode %d: %s", mode, err.msg);
        model_free(&m);
    }
}
END_TEST

START_TEST(test_block_caches) {
    Model m = random_model(0, 2);
    // A partial pass after a full one, with nothing changed, reproduces the full pass's rows.
    int tokens[2 * 20];
    for (int i = 0; i < 40; i++) tokens[i] = (i * 37) % 256;
    int V = m.cfg.vocab_size;
    model_infer(&m, tokens, NULL, 2, 20, 0, 20);
    float *full = malloc(2 * 20 * V * sizeof(float));
    memcpy(full, m.acts.logits, 2 * 20 * V * sizeof(float));
    model_infer(&m, tokens, NULL, 2, 20, 8, 14);
    for (int b = 0; b < 2; b++)
        for (int t = 8; t < 14; t++)
            for (int v = 0; v < V; v++)
                ck_assert_float_eq_tol(((float *)m.acts.logits)[((b * 6) + t - 8) * V + v],
                                       full[((b * 20) + t) * V + v], 1e-4f);
    // the LM head over some rows only (what the sampler reads): those rows' logits
    model_infer_rows(&m, tokens, NULL, 2, 20, 4, 18, 9, 13);
    for (int b = 0; b < 2; b++)
        for (int t = 9; t < 13; t++)
            for (int v = 0; v < V; v++)
                ck_assert_float_eq_tol(((float *)m.acts.logits)[((b * 4) + t - 9) * V + v],
                                       full[((b * 20) + t) * V + v], 1e-4f);
    // the full inference pass is the training forward pass
    model_forward(&m, tokens, 2, 20);
    ck_assert_mem_eq(m.acts.logits, full, 2 * 20 * V * sizeof(float));
    free(full);

    // cached generation keeps every invariant, with fewer rows per pass
    SamplerConfig sc = sampler_config_default();
    sc.gen_length = 24, sc.block_length = 8, sc.steps = 12;
    int out[2 * 30];
    Watch w;
    SampleStats st;
    for (int mode = CACHE_PREFIX; mode <= CACHE_DUAL; mode++) {
        sc.cache = (CacheMode)mode;
        run_watched(&m, &sc, 2, out, &w, &st);
        ck_assert_msg(w.bad == 0, "cache %d: invariant %d broken", mode, w.bad);
        ck_assert_int_eq(st.nfe, 12);
    }
    model_free(&m);
}
END_TEST

START_TEST(test_ar_cache_matches_full_recompute) {
    Model m = random_model(1, 2);
    SamplerConfig sc = sampler_config_default();
    sc.gen_length = 20;
    int out[26], lengths[1];
    SampleStats st;
    Error err;
    ck_assert(generate_copies(1, &m, &sc, prompt, P, 1, out, lengths, &st, NULL, NULL, &err) == 0);
    ck_assert_int_eq(st.nfe, 20);
    ck_assert_int_eq(lengths[0], 20);
    // greedy decoding by re-running the whole sequence for every token
    int seq[26];
    memcpy(seq, prompt, sizeof prompt);
    int V = m.cfg.vocab_size;
    for (int pos = P; pos < 26; pos++) {
        model_forward(&m, seq, 1, pos);
        const float *last = (const float *)m.acts.logits + (size_t)(pos - 1) * V;
        int best = 0;
        for (int v = 1; v < V; v++)
            if (v != BYTE_MASK && last[v] > last[best]) best = v;
        seq[pos] = best;
    }
    ck_assert_mem_eq(out, seq, sizeof seq);
    model_free(&m);
}
END_TEST

START_TEST(test_ar_temperature_sampling) {
    // plain temperature picks on the device, top-k on the host: both seeded, both varied
    Model m = random_model(1, 2);
    SamplerConfig sc = sampler_config_default();
    sc.gen_length = 16, sc.temperature = 1.0f;
    int a[2 * 22];
    for (int top_k = 0; top_k <= 3; top_k += 3) {
        sc.top_k = top_k, sc.seed = 5;
        check_seeded_sampling(1, &m, sc, a);
        for (int i = 0; i < 2 * 22; i++) ck_assert_int_ne(a[i], BYTE_MASK);  // never generated
    }
    model_free(&m);
}
END_TEST

START_TEST(test_ar_sampling_filters) {
    float logits[6] = {2.0f, 1.0f, 0.5f, 0.0f, -1.0f, 3.0f};
    Scored scratch[6];
    Rng rng;
    rng_seed(&rng, 3);
    int seen[6] = {0};
    for (int i = 0; i < 4000; i++) seen[pick_top_k_top_p(logits, 6, 1.0f, 2, 1.0f, &rng, scratch)]++;
    ck_assert(seen[5] > 0 && seen[0] > 0);  // top-2: only tokens 5 and 0
    ck_assert(seen[1] + seen[2] + seen[3] + seen[4] == 0);
    // p(5) = 0.63 of the total: top-p 0.5 keeps it alone
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(pick_top_k_top_p(logits, 6, 1.0f, 0, 0.5f, &rng, scratch), 5);
    ck_assert_int_eq(pick_top_k_top_p(logits, 6, 0.0f, 0, 1.0f, &rng, scratch), 5);  // greedy
    // EOS ends a row: a model whose every prediction is EOS generates nothing
    Model m = random_model(1, 1);
    memset(m.p.lm_head, 0, (size_t)m.cfg.vocab_size * m.cfg.d_model * sizeof(float));
    for (int c = 0; c < m.cfg.d_model; c++) m.p.lm_head[BYTE_EOS * m.cfg.d_model + c] = 5.0f;
    m.p.final_norm[0] = 1.0f;
    SamplerConfig sc = sampler_config_default();
    sc.eos_id = BYTE_EOS, sc.gen_length = 40;
    int out[6 + 40], lengths[1];
    SampleStats st;
    Error err;
    // rmsnorm output has mean square 1, so some row has a positive sum and predicts EOS;
    // check the generated length stops at the first EOS whatever the tokens were
    ck_assert(generate_copies(1, &m, &sc, prompt, P, 1, out, lengths, &st, NULL, NULL, &err) == 0);
    int first_eos = 0;
    while (first_eos < 40 && out[P + first_eos] != BYTE_EOS) first_eos++;
    ck_assert_int_eq(lengths[0], first_eos);
    if (first_eos < 40) ck_assert_int_eq(st.steps, first_eos + 1);  // stopped right there
    model_free(&m);
}
END_TEST

START_TEST(test_mixed_prompt_lengths) {
    // Prompts of different lengths share a batch (left-padded, padding unseen) and each row
    // comes out exactly as the prompt gives alone, for both samplers and with guidance.
    static const int longer[] = {'A', ' ', 'l', 'o', 'n', 'g', 'e', 'r', ' ', 'o', 'n', 'e'};
    const int *prompts[2] = {prompt, longer};
    int lens[2] = {P, 12};
    for (int ar = 0; ar <= 1; ar++) {
        Model m = random_model(ar, 4);
        SamplerConfig sc = sampler_config_default();
        sc.gen_length = 16, sc.block_length = 8, sc.steps = 8, sc.cfg_scale = ar ? 0.0f : 1.5f;
        int both[2 * 28], alone[28], lengths[2];
        SampleStats st;
        Error err;
        ck_assert_msg((ar ? ar_generate : llada_generate)(&m, &sc, prompts, lens, 2, both,
                                                          lengths, &st, NULL, NULL, &err) == 0,
                      "%s", err.msg);
        for (int b = 0; b < 2; b++) {
            ck_assert(generate_copies(ar, &m, &sc, prompts[b], lens[b], 1, alone, lengths, &st,
                                      NULL, NULL, &err) == 0);
            // generated tokens start at the longest prompt's end (12) in the batch
            for (int i = 0; i < 16; i++)
                ck_assert_int_eq(both[b * 28 + 12 + i], alone[lens[b] + i]);
        }
        ck_assert_mem_eq(both + 28, longer, sizeof longer);  // row 1: its prompt, unpadded
        ck_assert_mem_eq(both + 6, prompt, sizeof prompt);   // row 0: 6 pads, then the prompt
        model_free(&m);
    }
}
END_TEST

// Confidences of every step, recorded for comparing two runs bit for bit.
typedef struct {
    float conf[64][2 * 48];
    int tokens[64][2 * 48];
    int steps;
} StepLog;

static int log_step(void *user, const StepEvent *ev) {
    StepLog *l = user;
    if (l->steps >= 64) return 0;
    memcpy(l->conf[l->steps], ev->confidence, (size_t)ev->B * ev->T * sizeof(float));
    memcpy(l->tokens[l->steps], ev->tokens, (size_t)ev->B * ev->T * sizeof(int));
    l->steps++;
    return 0;
}

// A block diffusion model samples block by block on its own grid: prompts of two lengths (the
// first block partly prompt), greedy and at temperature 1 with CFG and by threshold, and the
// exact cache of committed blocks gives every step's tokens bit for bit as recomputing from
// position 0 at every step does, with fewer rows per pass. EOS stops it.
START_TEST(test_bd3_cache_is_exact) {
    ModelConfig cfg = small_config(0);
    cfg.block_size = 8;
    Model m;
    Error err;
    ck_assert_msg(model_create(&m, &cfg, &backend_cpu, 4, 0, &err) == 0, "%s", err.msg);
    fill_normal(m.params, m.n_params, 5, 0.3f);
    static const int longer[] = {'A', ' ', 'l', 'o', 'n', 'g', 'e', 'r', ' ', 'o', 'n', 'e'};
    const int *prompts[2] = {prompt, longer};
    int lens[2] = {P, 12};
    static StepLog cached, plain;
    for (int variant = 0; variant < 3; variant++) {
        SamplerConfig sc = sampler_config_default();
        sc.gen_length = 30, sc.steps = 15;  // 2 tokens per step; blocks 8..15 (4 of them
                                            // generated) up to 40, then 40..41
        if (variant == 1) sc.temperature = 1.0f, sc.cfg_scale = 1.0f;
        if (variant == 2) sc.threshold = 0.05f;
        int a[2 * 42], b[2 * 42], la[2], lb[2];
        SampleStats sa, sb;
        memset(&cached, 0, sizeof cached);
        memset(&plain, 0, sizeof plain);
        sc.cache = CACHE_AUTO;
        ck_assert_msg(llada_generate(&m, &sc, prompts, lens, 2, a, la, &sa, log_step, &cached,
                                     &err) == 0, "%s", err.msg);
        sc.cache = CACHE_NONE;
        ck_assert(llada_generate(&m, &sc, prompts, lens, 2, b, lb, &sb, log_step, &plain,
                                 &err) == 0);
        ck_assert_mem_eq(a, b, sizeof a);
        ck_assert_int_eq(sa.nfe, sb.nfe);
        ck_assert_int_eq(cached.steps, plain.steps);
        // every step commits the same tokens; the confidences agree to rounding: OpenBLAS
        // takes another kernel for another number of rows (its small-matrix path), so a value
        // may differ in its last bits between a 40-row and an 8-row pass
        double worst = 0.0;
        for (int st = 0; st < cached.steps; st++) {
            ck_assert_mem_eq(cached.tokens[st], plain.tokens[st], 2 * 42 * sizeof(int));
            for (int i = 0; i < 2 * 42; i++) {
                float x = cached.conf[st][i], y = plain.conf[st][i];
                ck_assert(isnan(x) == isnan(y));
                if (!isnan(x)) worst = fmax(worst, fabs(x - y) / fmax(fabs(y), 1e-30));
            }
        }
        ck_assert(worst < 1e-5);
        for (int i = 0; i < 2 * 42; i++) ck_assert_int_ne(a[i], cfg.mask_token_id);
        ck_assert_mem_eq(a + 42, longer, sizeof longer);  // prompts kept
        printf("  bd3 variant %d: %d steps, %d passes; cache vs none: same tokens at every step, "
               "confidences within %.1e\n", variant, sa.steps, sa.nfe, worst);
        if (variant == 0) {
            // the first block holds prompt positions 8..11: 4 masked, 2 steps; then 16..23,
            // 24..31, 32..39 (4 steps each), 40..41 (1 step): 15 steps
            ck_assert_int_eq(sa.steps, 15);
        }
    }
    // EOS: stop after the block where every row has one (row 0's first generated token)
    SamplerConfig sc = sampler_config_default();
    sc.gen_length = 30, sc.steps = 15;
    int a[42], la[1];
    SampleStats sa;
    ck_assert(generate_copies(0, &m, &sc, longer, 12, 1, a, la, &sa, NULL, NULL, &err) == 0);
    sc.eos_id = a[12];
    ck_assert(generate_copies(0, &m, &sc, longer, 12, 1, a, la, &sa, NULL, NULL, &err) == 0);
    printf("  bd3 with EOS = the first generated token: %d steps, length %d\n", sa.steps, la[0]);
    ck_assert_int_eq(la[0], 0);
    ck_assert_int_lt(sa.steps, 15);
    model_free(&m);
}
END_TEST

// A callback that returns non-zero stops the generation after that step (a server's client
// gone, a time limit): the sampler returns -1 with "stopped by the caller".
static int stop_after_two(void *user, const StepEvent *ev) {
    int *calls = user;
    (void)ev;
    return ++*calls >= 2;
}

START_TEST(test_callback_stops_generation) {
    for (int ar = 0; ar <= 1; ar++) {
        Model m = random_model(ar, 1);
        SamplerConfig sc = sampler_config_default();
        sc.gen_length = 16, sc.block_length = 16, sc.steps = 16;
        int out[P + 16], lengths[1], calls = 0;
        SampleStats st;
        Error err;
        ck_assert_int_eq(generate_copies(ar, &m, &sc, prompt, P, 1, out, lengths, &st,
                                         stop_after_two, &calls, &err), -1);
        ck_assert_str_eq(err.msg, "stopped by the caller");
        ck_assert_int_eq(calls, 2);
        model_free(&m);
    }
}
END_TEST

START_TEST(test_bad_requests) {
    Model mdm = random_model(0, 2), ar = random_model(1, 2);
    SamplerConfig sc = sampler_config_default();
    int out[2 * 64], lengths[2];
    Error err;
    sc.gen_length = 48;  // 6 + 48 > seq_len 48
    ck_assert_int_eq(generate_copies(0, &mdm, &sc, prompt, P, 1, out, lengths, NULL, NULL, NULL, &err), -1);
    ck_assert_msg(strstr(err.msg, "exceeds the model's context of 48") != NULL, "%s", err.msg);
    ck_assert_int_eq(generate_copies(1, &ar, &sc, prompt, P, 1, out, lengths, NULL, NULL, NULL, &err), -1);
    ck_assert_msg(strstr(err.msg, "exceeds the model's context") != NULL, "%s", err.msg);
    sc.gen_length = 30, sc.block_length = 8;
    ck_assert_int_eq(generate_copies(0, &mdm, &sc, prompt, P, 1, out, lengths, NULL, NULL, NULL, &err), -1);
    ck_assert_msg(strstr(err.msg, "not a multiple of --block-length") != NULL, "%s", err.msg);
    sc.gen_length = 32, sc.steps = 6;  // 4 blocks
    ck_assert_int_eq(generate_copies(0, &mdm, &sc, prompt, P, 1, out, lengths, NULL, NULL, NULL, &err), -1);
    ck_assert_msg(strstr(err.msg, "multiple of the 4 blocks") != NULL, "%s", err.msg);
    sc.steps = 8, sc.cfg_scale = 1.0f;  // 2 sequences need 4 rows
    ck_assert_int_eq(generate_copies(0, &mdm, &sc, prompt, P, 2, out, lengths, NULL, NULL, NULL, &err), -1);
    ck_assert_msg(strstr(err.msg, "batch room") != NULL, "%s", err.msg);
    sc.cfg_scale = 0.0f;
    ck_assert_int_eq(generate_copies(0, &ar, &sc, prompt, P, 1, out, lengths, NULL, NULL, NULL, &err), -1);
    ck_assert_msg(strstr(err.msg, "this one is autoregressive") != NULL, "%s", err.msg);
    ck_assert_int_eq(generate_copies(1, &mdm, &sc, prompt, P, 1, out, lengths, NULL, NULL, NULL, &err), -1);
    ck_assert_msg(strstr(err.msg, "masked-diffusion model") != NULL, "%s", err.msg);
    model_free(&mdm);
    model_free(&ar);
}
END_TEST

// ---- a memorised text, regenerated ----
static void train_on_verse(Model *m, Objective objective, int steps) {
    TokenData data = verse_data();
    Trainer tr;
    tiny_verse_run(m, &tr, objective, 16, steps, &data);
    for (int s = 0; s < steps; s++) trainer_step(&tr);
    trainer_free(&tr);
    data_free(&data);
}

static void check_regenerates(Objective objective) {
    Model m;
    train_on_verse(&m, objective, objective == OBJECTIVE_MDM ? 600 : 300);
    const char *start = "the quick brown ";
    int p_len = (int)strlen(start), ids[32], out[32], lengths[1];
    bytes_encode((const unsigned char *)start, p_len, ids);
    SamplerConfig sc = sampler_config_default();
    sc.gen_length = 16, sc.block_length = 8, sc.steps = 16;
    SampleStats st;
    Error err;
    int rc = objective == OBJECTIVE_MDM
                 ? generate_copies(0, &m, &sc, ids, p_len, 1, out, lengths, &st, NULL, NULL, &err)
                 : generate_copies(1, &m, &sc, ids, p_len, 1, out, lengths, &st, NULL, NULL, &err);
    ck_assert_msg(rc == 0, "%s", err.msg);
    char text[33];
    for (int i = 0; i < p_len + 16; i++) text[i] = (char)out[i];
    text[p_len + 16] = '\0';
    printf("  %s regenerates: '%s'\n", objective == OBJECTIVE_MDM ? "MDM" : "AR ", text);
    ck_assert_str_eq(text, "the quick brown fox jumps over t");
    model_free(&m);
}

START_TEST(test_mdm_regenerates_memorised_text) { check_regenerates(OBJECTIVE_MDM); }
END_TEST

START_TEST(test_ar_regenerates_memorised_text) { check_regenerates(OBJECTIVE_AR); }
END_TEST

int main(void) {
    Suite *s = suite_create("sampler");
    TCase *tc = tcase_create("sampling");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_transfer_counts);
    tcase_add_test(tc, test_llada_invariants_and_schedule);
    tcase_add_test(tc, test_llada_determinism);
    tcase_add_test(tc, test_llada_guidance);
    tcase_add_test(tc, test_threshold_decoding);
    tcase_add_test(tc, test_factor_rule);
    tcase_add_test(tc, test_factor_decoding);
    tcase_add_test(tc, test_allow_mask_is_exact_llada);
    tcase_add_test(tc, test_nan_weights_are_an_error);
    tcase_add_test(tc, test_block_caches);
    tcase_add_test(tc, test_ar_cache_matches_full_recompute);
    tcase_add_test(tc, test_ar_temperature_sampling);
    tcase_add_test(tc, test_ar_sampling_filters);
    tcase_add_test(tc, test_mixed_prompt_lengths);
    tcase_add_test(tc, test_bd3_cache_is_exact);
    tcase_add_test(tc, test_callback_stops_generation);
    tcase_add_test(tc, test_bad_requests);
    tcase_add_test(tc, test_mdm_regenerates_memorised_text);
    tcase_add_test(tc, test_ar_regenerates_memorised_text);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

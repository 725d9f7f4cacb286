// Speculative decoding: greedy, the output is the target's own greedy output token for token
// (AR, MDM and block diffusion drafters, mixed prompt lengths, several draft lengths); at
// temperature 1 the first two generated tokens follow the target's exact distribution
// (chi-square over many seeds); a drafter equal to the target has every draft accepted; bad
// requests are refused by name.
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "sampler/pick.h"
#include "sampler/sampler.h"
#include "tests/testutil.h"

enum { MAX_ROWS = 64 };

// A random model: AR (causal), MDM or, with block > 0, block diffusion.
static Model random_model(int causal, int block, int vocab, int d_model, uint64_t seed) {
    ModelConfig c = model_config_default();
    c.n_layer = 2, c.n_head = 2, c.d_model = d_model, c.d_ff = 2 * d_model, c.seq_len = 48;
    c.causal = causal, c.block_size = block;
    if (vocab) c.vocab_size = vocab, c.mask_token_id = vocab - 1;
    Model m;
    Error err;
    ck_assert_msg(model_create(&m, &c, &backend_cpu, MAX_ROWS, 0, &err) == 0, "%s", err.msg);
    fill_normal(m.params, m.n_params, seed, 0.3f);
    return m;
}

// Six prompts of different lengths (left padding in one batch).
typedef struct {
    int ids[6][8], lens[6];
    const int *ptrs[6];
} Prompts;

static void six_prompts(Prompts *p) {
    for (int b = 0; b < 6; b++) {
        p->lens[b] = 2 + b;
        for (int i = 0; i < p->lens[b]; i++) p->ids[b][i] = 32 + (b * 37 + i * 11) % 90;
        p->ptrs[b] = p->ids[b];
    }
}

// Greedy speculative decoding against the target alone: the same tokens and lengths.
static void check_greedy(Model *target, Model *draft, const char *name) {
    Prompts p;
    six_prompts(&p);
    SamplerConfig sc = sampler_config_default();
    sc.gen_length = 41;  // rows as long as the models' context: windows must fit it
    int T = 7 + sc.gen_length, want[6 * 48], got[6 * 48], want_len[6], got_len[6];
    Error err;
    SampleStats alone, spec;
    ck_assert_msg(ar_generate(target, &sc, p.ptrs, p.lens, 6, want, want_len, &alone, NULL, NULL,
                              &err) == 0, "%s", err.msg);
    int ks[] = {1, 3, 5};
    for (int i = 0; i < 3; i++) {
        sc.draft_length = ks[i];
        sc.draft_context = !draft->cfg.causal && i == 1 ? 3 : 0;  // a short diffusion window
        ck_assert_msg(speculative_generate(target, draft, &sc, p.ptrs, p.lens, 6, got, got_len,
                                           &spec, NULL, NULL, &err) == 0, "%s", err.msg);
        int same = 0;
        for (int j = 0; j < 6 * T; j++) same += got[j] == want[j];
        printf("  %s drafter, k %d: %d/%d tokens equal to the target alone; %d target passes "
               "(alone %d), acceptance length %.2f\n", name, ks[i], same, 6 * T, spec.nfe,
               alone.nfe, (double)(spec.accepted + spec.verified_rows) / spec.verified_rows);
        ck_assert_int_eq(same, 6 * T);
        for (int b = 0; b < 6; b++) ck_assert_int_eq(got_len[b], want_len[b]);
        ck_assert(spec.accepted <= spec.drafted);
    }
}

// The target's weights plus noise, as an AR model or (reading position t at row t - 1, as an
// AR model adapted to diffusion does) an MDM: drafters that agree with the target often but
// not always, so rows accept different lengths.
static Model noisy_twin(const Model *target, int causal, uint64_t seed) {
    ModelConfig c = target->cfg;
    c.causal = causal, c.logit_shift = !causal;
    Model m;
    Error err;
    ck_assert_msg(model_create(&m, &c, &backend_cpu, MAX_ROWS, 0, &err) == 0, "%s", err.msg);
    fill_normal(m.params, m.n_params, seed, 0.005f);
    for (size_t i = 0; i < m.n_params; i++) m.params[i] += target->params[i];
    return m;
}

START_TEST(test_greedy_equals_target) {
    Model target = random_model(1, 0, 0, 32, 5);
    Model ar = noisy_twin(&target, 1, 6), mdm = noisy_twin(&target, 0, 7),
          small_ar = random_model(1, 0, 0, 16, 6), small_mdm = random_model(0, 0, 0, 16, 7),
          bd3 = random_model(0, 4, 0, 16, 8);
    check_greedy(&target, &ar, "noisy AR");
    check_greedy(&target, &mdm, "noisy MDM");
    check_greedy(&target, &small_ar, "small AR");
    check_greedy(&target, &small_mdm, "small MDM");
    check_greedy(&target, &bd3, "bd3");
    model_free(&target), model_free(&ar), model_free(&mdm), model_free(&small_ar);
    model_free(&small_mdm), model_free(&bd3);
}
END_TEST

// A NaN weight in either model is an error naming which, never tokens from NaN logits: the
// target (AR drafter), the AR drafter, the diffusion drafter (its device picks).
START_TEST(test_nan_weights_are_an_error) {
    const char *which[] = {"target", "draft", "draft"};
    for (int k = 0; k < 3; k++) {
        Model target = random_model(1, 0, 0, 32, 5), draft = random_model(k < 2, 0, 0, 16, 6);
        (k == 0 ? &target : &draft)->p.lm_head[3] = NAN;
        Prompts p;
        six_prompts(&p);
        SamplerConfig sc = sampler_config_default();
        sc.gen_length = 8, sc.draft_length = 3;
        int out[6 * 15], lens[6];
        Error err;
        ck_assert_int_eq(speculative_generate(&target, &draft, &sc, p.ptrs, p.lens, 6, out, lens,
                                              NULL, NULL, NULL, &err), -1);
        char want[64];
        snprintf(want, sizeof want, "the %s model's " PICK_NOT_FINITE, which[k]);
        ck_assert_msg(strstr(err.msg, want), "%d: %s", k, err.msg);
        model_free(&target), model_free(&draft);
    }
}
END_TEST

// A drafter with the target's own weights: every draft is accepted, so each target pass
// gives k + 1 tokens.
START_TEST(test_drafter_equal_to_target_accepts_all) {
    Model target = random_model(1, 0, 0, 32, 5), twin = random_model(1, 0, 0, 32, 5);
    Prompts p;
    six_prompts(&p);
    SamplerConfig sc = sampler_config_default();
    sc.gen_length = 24;
    sc.draft_length = 3;
    int out[6 * 31], lens[6];
    SampleStats st;
    Error err;
    ck_assert_msg(speculative_generate(&target, &twin, &sc, p.ptrs, p.lens, 6, out, lens, &st,
                                       NULL, NULL, &err) == 0, "%s", err.msg);
    printf("  twin drafter: %ld of %ld drafts accepted, %d target passes for 24 tokens\n",
           st.accepted, st.drafted, st.nfe);
    ck_assert_int_eq(st.accepted, st.drafted);
    ck_assert_int_eq(st.nfe, 6);  // 24 tokens, 4 per pass
    model_free(&target), model_free(&twin);
}
END_TEST

// softmax of a logit row with [MASK] (the last id) left out, in double.
static void target_probs(const Model *m, int row, int rows, double *probs) {
    int V = m->cfg.vocab_size;
    const float *l = (const float *)m->acts.logits + (size_t)row * V;
    double mx = -INFINITY, sum = 0.0;
    for (int v = 0; v < V - 1; v++) mx = fmax(mx, l[v]);
    for (int v = 0; v < V - 1; v++) sum += probs[v] = exp(l[v] - mx);
    for (int v = 0; v < V - 1; v++) probs[v] /= sum;
    probs[V - 1] = 0.0;
    (void)rows;
}

// At temperature 1, on a vocabulary of 6 ([MASK] banned: 5 tokens), the pairs of the first two
// generated tokens over 4,000 samples against the target's exact p(x1) p(x2 | x1): chi-square
// with 24 degrees of freedom (0.1% critical value 51.2). The drafter alone is far from it.
static void check_distribution(Model *target, Model *draft, const char *name) {
    enum { V = 6, N_CALLS = 80, B = 50 };
    int prompt[2] = {1, 2}, T = 4;
    double p1[V], p2[V][V];
    int rows[T];
    memcpy(rows, prompt, sizeof prompt);
    rows[2] = 0, rows[3] = 0;
    model_infer(target, rows, NULL, 1, T, 0, T);
    target_probs(target, 1, T, p1);
    for (int x = 0; x < V - 1; x++) {
        rows[2] = x;
        model_infer(target, rows, NULL, 1, T, 0, T);
        target_probs(target, 2, T, p2[x]);
    }
    const int *prompts[B];
    int lens[B], out[B * 4], got_lens[B];
    for (int b = 0; b < B; b++) prompts[b] = prompt, lens[b] = 2;
    SamplerConfig sc = sampler_config_default();
    sc.gen_length = 2, sc.temperature = 1.0f, sc.draft_length = 2;
    long counts[V][V] = {{0}}, accepted = 0, drafted = 0;
    Error err;
    for (int call = 0; call < N_CALLS; call++) {
        SampleStats st;
        sc.seed = 1000 + call;
        ck_assert_msg(speculative_generate(target, draft, &sc, prompts, lens, B, out, got_lens,
                                           &st, NULL, NULL, &err) == 0, "%s", err.msg);
        for (int b = 0; b < B; b++) counts[out[b * 4 + 2]][out[b * 4 + 3]]++;
        accepted += st.accepted, drafted += st.drafted;
    }
    double chi2 = 0.0, n = (double)N_CALLS * B;
    for (int a = 0; a < V - 1; a++)
        for (int c = 0; c < V - 1; c++) {
            double e = n * p1[a] * p2[a][c];
            chi2 += (counts[a][c] - e) * (counts[a][c] - e) / e;
        }
    printf("  %s drafter at temperature 1: chi-square %.1f (24 dof), %ld of %ld drafts "
           "accepted\n", name, chi2, accepted, drafted);
    ck_assert(chi2 < 51.2);
    ck_assert(accepted < drafted);  // rejections happened: the rule was exercised
}

START_TEST(test_temperature_keeps_target_distribution) {
    Model target = random_model(1, 0, 6, 32, 11), ar = random_model(1, 0, 6, 16, 12),
          mdm = random_model(0, 0, 6, 16, 13);
    check_distribution(&target, &ar, "AR");
    check_distribution(&target, &mdm, "MDM");
    model_free(&target), model_free(&ar), model_free(&mdm);
}
END_TEST

START_TEST(test_bad_requests) {
    Model target = random_model(1, 0, 0, 32, 5), mdm = random_model(0, 0, 0, 16, 7),
          other_vocab = random_model(1, 0, 6, 16, 9);
    Prompts p;
    six_prompts(&p);
    SamplerConfig sc = sampler_config_default();
    sc.gen_length = 8;
    int out[6 * 15], lens[6];
    Error err;
    ck_assert_int_ne(speculative_generate(&mdm, &target, &sc, p.ptrs, p.lens, 6, out, lens, NULL,
                                          NULL, NULL, &err), 0);
    ck_assert_msg(strstr(err.msg, "AR target"), "%s", err.msg);
    ck_assert_int_ne(speculative_generate(&target, &other_vocab, &sc, p.ptrs, p.lens, 6, out,
                                          lens, NULL, NULL, NULL, &err), 0);
    ck_assert_msg(strstr(err.msg, "vocabulary"), "%s", err.msg);
    sc.draft_length = 0;
    ck_assert_int_ne(speculative_generate(&target, &mdm, &sc, p.ptrs, p.lens, 6, out, lens, NULL,
                                          NULL, NULL, &err), 0);
    ck_assert_msg(strstr(err.msg, "--draft-length"), "%s", err.msg);
    sc.draft_length = 4, sc.top_k = 5;
    ck_assert_int_ne(speculative_generate(&target, &mdm, &sc, p.ptrs, p.lens, 6, out, lens, NULL,
                                          NULL, NULL, &err), 0);
    ck_assert_msg(strstr(err.msg, "--top-k"), "%s", err.msg);
    sc.top_k = 0, sc.gen_length = 60;
    ck_assert_int_ne(speculative_generate(&target, &mdm, &sc, p.ptrs, p.lens, 6, out, lens, NULL,
                                          NULL, NULL, &err), 0);
    ck_assert_msg(strstr(err.msg, "context"), "%s", err.msg);
    model_free(&target), model_free(&mdm), model_free(&other_vocab);
}
END_TEST

int main(void) {
    Suite *s = suite_create("speculative");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_greedy_equals_target);
    tcase_add_test(tc, test_nan_weights_are_an_error);
    tcase_add_test(tc, test_drafter_equal_to_target_accepts_all);
    tcase_add_test(tc, test_temperature_keeps_target_distribution);
    tcase_add_test(tc, test_bad_requests);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

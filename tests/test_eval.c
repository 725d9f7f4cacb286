// Likelihood evaluation: the held-out ELBO / exact perplexity and the Monte-Carlo score of a
// continuation. A model that predicts uniformly must score log(vocab) per token; the MDM
// estimate must be a pure function of its seed and settle as the number of draws grows.
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "tests/testutil.h"
#include "eval/eval.h"
#include "common/rng.h"
#include "common/stats.h"

enum { VOCAB = 20, MASK = 19, SEQ = 16, N_TOKENS = 2000 };

static Model make_model(int causal, float init_std) {
    ModelConfig c = model_config_default();
    c.n_layer = 2, c.n_head = 2, c.d_model = 16, c.d_ff = 32;
    c.vocab_size = VOCAB, c.mask_token_id = MASK, c.seq_len = SEQ, c.causal = causal;
    Model m;
    Error err;
    ck_assert_msg(model_create(&m, &c, &backend_cpu, 8, 0, &err) == 0, "%s", err.msg);
    if (init_std > 0.0f) fill_normal(m.params, m.n_params, 5, init_std);
    return m;
}

// Tokens 0..MASK-1 with some structure (runs), so a random model is far from uniform on it.
static TokenData sample_data(int *ids) {
    Rng rng;
    rng_seed(&rng, 3);
    for (int i = 0; i < N_TOKENS; i++)
        ids[i] = i % 4 ? ids[i - 1] : (int)rng_below(&rng, MASK);
    TokenData d;
    ck_assert(data_from_ids(&d, ids, N_TOKENS, NULL) == 0);
    return d;
}

static EvalResult heldout(Model *m, const TokenData *d, int windows, int mc, uint64_t seed) {
    EvalResult r;
    Error err;
    ck_assert_msg(eval_heldout(m, d, windows, mc, seed, &r, &err) == 0, "%s", err.msg);
    return r;
}

START_TEST(test_uniform_model_scores_log_vocab) {
    static int ids[N_TOKENS];
    TokenData d = sample_data(ids);
    for (int causal = 0; causal <= 1; causal++) {
        Model m = make_model(causal, 0.0f);  // all weights 0: every logit 0
        EvalResult r = heldout(&m, &d, 10, 5, 1);
        printf("  uniform %s: %.6f nats/token over %lld tokens, log(%d) = %.6f\n",
               causal ? "AR " : "MDM", r.nats_per_token, (long long)r.tokens, VOCAB, log(VOCAB));
        ck_assert_double_eq_tol(r.nats_per_token, log(VOCAB), 1e-5);
        ck_assert_int_eq(r.tokens, 10 * SEQ);
        ck_assert_int_eq(r.mc, causal ? 1 : 5);
        // a continuation of 5 tokens: 5 log(vocab), whatever the mask counts drawn
        int seq[12];
        for (int i = 0; i < 12; i++) seq[i] = ids[i];
        double nll;
        Error err;
        ck_assert_msg(score_continuation(&m, seq, 12, 7, 6, 0.0f, 9, &nll, &err) == 0, "%s",
                      err.msg);
        ck_assert_double_eq_tol(nll, 5 * log(VOCAB), 1e-4);
        model_free(&m);
    }
    data_free(&d);
}
END_TEST

START_TEST(test_mdm_estimate_is_seeded) {
    static int ids[N_TOKENS];
    TokenData d = sample_data(ids);
    Model m = make_model(0, 0.3f);
    double a = heldout(&m, &d, 6, 4, 11).nats_per_token;
    double b = heldout(&m, &d, 6, 4, 11).nats_per_token;
    double c = heldout(&m, &d, 6, 4, 12).nats_per_token;
    printf("  seed 11: %.6f twice (%.6f), seed 12: %.6f\n", a, b, c);
    ck_assert(a == b);
    ck_assert(a != c);
    model_free(&m);
    data_free(&d);
}
END_TEST

// Spread (max - min) of the estimate over 8 seeds.
static double spread_over_seeds(Model *m, const TokenData *d, int mc, double *mean) {
    double lo = INFINITY, hi = -INFINITY, sum = 0.0;
    for (uint64_t seed = 1; seed <= 8; seed++) {
        double x = heldout(m, d, 4, mc, seed).nats_per_token;
        lo = fmin(lo, x), hi = fmax(hi, x), sum += x;
    }
    *mean = sum / 8;
    return hi - lo;
}

START_TEST(test_mdm_estimate_converges) {
    static int ids[N_TOKENS];
    TokenData d = sample_data(ids);
    Model m = make_model(0, 0.3f);
    int mcs[] = {1, 8, 64};
    double spreads[3], means[3];
    for (int i = 0; i < 3; i++) {
        spreads[i] = spread_over_seeds(&m, &d, mcs[i], &means[i]);
        printf("  mc %2d: mean %.4f, spread over 8 seeds %.4f\n", mcs[i], means[i], spreads[i]);
    }
    ck_assert(spreads[1] < 0.6 * spreads[0]);
    ck_assert(spreads[2] < 0.6 * spreads[1]);
    // the means agree to within the spread of the noisiest estimate
    ck_assert(fabs(means[2] - means[1]) < spreads[1]);
    model_free(&m);
    data_free(&d);
}
END_TEST

// The standard error holds the Monte-Carlo noise: over 16 seeds of the mask draws the estimate
// moves by about its reported standard error or less (the rest of the error is the windows'
// own spread, which no seed changes); a model that scores every window alike has none.
START_TEST(test_standard_error) {
    double x[4] = {1, 2, 3, 4}, ones[4] = {1, 1, 1, 1}, y[4] = {1, 2, 1, 2};
    ck_assert_double_eq_tol(stats_std(x, 4), sqrt(5.0 / 3.0), 1e-12);
    ck_assert_double_eq_tol(stats_ratio_se(x, ones, 4), sqrt(5.0 / 3.0) / 2.0, 1e-12);
    // R = 10 / 6; residuals x - R y = -2/3, -4/3, 4/3, 2/3: sum of squares 40/9
    ck_assert_double_eq_tol(stats_ratio_se(x, y, 4), sqrt(40.0 / 9.0 / 12.0) / 1.5, 1e-12);
    ck_assert_double_eq_tol(stats_proportion_se(0.75, 12), 0.125, 1e-12);
    ck_assert(isnan(stats_std(x, 1)));
    static int ids[N_TOKENS];
    TokenData d = sample_data(ids);
    Model m = make_model(0, 0.3f);
    double estimates[16], se = 0.0;
    for (int seed = 0; seed < 16; seed++) {
        EvalResult r = heldout(&m, &d, 12, 2, 100 + seed);
        estimates[seed] = r.nats_per_token;
        se += r.std_error / 16;
    }
    double moved = stats_std(estimates, 16);
    printf("  12 windows x 2 draws: standard error %.4f (mean of 16 seeds), the seeds' own "
           "spread %.4f\n", se, moved);
    ck_assert(se > 0.0 && moved < 1.5 * se);
    model_free(&m);
    Model flat = make_model(0, 0.0f);
    EvalResult r = heldout(&flat, &d, 12, 2, 1);
    ck_assert(r.std_error < 1e-6);
    model_free(&flat);
    data_free(&d);
}
END_TEST

START_TEST(test_stratified_counts) {
    Rng rng;
    rng_seed(&rng, 4);
    // one draw per stratum: mc = n gives every count 1..n exactly once
    for (int k = 0; k < 10; k++) ck_assert_int_eq(stratified_mask_count(10, k, 10, &rng), k + 1);
    // a single stratum: uniform over 1..n
    int hist[11] = {0};
    for (int i = 0; i < 100000; i++) hist[stratified_mask_count(10, 0, 1, &rng)]++;
    ck_assert_int_eq(hist[0], 0);
    for (int c = 1; c <= 10; c++) ck_assert_msg(abs(hist[c] - 10000) < 500, "count %d: %d", c, hist[c]);
}
END_TEST

// The prompt is never masked, so a model must score the same continuation the same whatever
// follows it in the ids array, and a prompt change (seen by the MDM) must change the score.
START_TEST(test_continuation_sees_prompt) {
    for (int causal = 0; causal <= 1; causal++) {
        Model m = make_model(causal, 0.3f);
        int a[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, b[10] = {11, 12, 13, 4, 5, 6, 7, 8, 9, 10};
        double nll_a, nll_a2, nll_b;
        Error err;
        ck_assert(score_continuation(&m, a, 10, 3, 16, 0.0f, 7, &nll_a, &err) == 0);
        ck_assert(score_continuation(&m, a, 10, 3, 16, 0.0f, 7, &nll_a2, &err) == 0);
        ck_assert(score_continuation(&m, b, 10, 3, 16, 0.0f, 7, &nll_b, &err) == 0);
        printf("  %s: -log p(cont | prompt a) %.4f, | prompt b %.4f\n", causal ? "AR " : "MDM",
               nll_a, nll_b);
        ck_assert(nll_a == nll_a2);
        ck_assert(fabs(nll_a - nll_b) > 1e-3);
        ck_assert(nll_a > 0.0);
        model_free(&m);
    }
}
END_TEST

// Guidance with scale w scores with (1 + w) cond - w uncond: it must change the score of a
// model that reads its prompt, and leave a uniform model (cond = uncond) at log(vocab).
START_TEST(test_guidance) {
    Model m = make_model(0, 0.3f);
    int seq[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    double plain, guided;
    Error err;
    ck_assert(score_continuation(&m, seq, 10, 3, 8, 0.0f, 7, &plain, &err) == 0);
    ck_assert(score_continuation(&m, seq, 10, 3, 8, 1.5f, 7, &guided, &err) == 0);
    printf("  MDM: nll %.4f without guidance, %.4f with cfg 1.5\n", plain, guided);
    ck_assert(isfinite(guided) && guided != plain);
    model_free(&m);
    Model u = make_model(0, 0.0f);
    ck_assert(score_continuation(&u, seq, 10, 3, 8, 1.5f, 7, &guided, &err) == 0);
    ck_assert_double_eq_tol(guided, 7 * log(VOCAB), 1e-4);
    model_free(&u);
}
END_TEST

START_TEST(test_bad_requests) {
    Model mdm = make_model(0, 0.3f), ar = make_model(1, 0.3f);
    int seq[SEQ + 2] = {0};
    double nll;
    Error err;
    ck_assert(score_continuation(&mdm, seq, SEQ + 1, 3, 4, 0.0f, 1, &nll, &err) == -1);
    ck_assert_msg(strstr(err.msg, "do not fit the context"), "%s", err.msg);
    ck_assert(score_continuation(&ar, seq, 5, 0, 4, 0.0f, 1, &nll, &err) == -1);
    ck_assert(score_continuation(&ar, seq, 5, 5, 4, 0.0f, 1, &nll, &err) == -1);
    ck_assert_msg(strstr(err.msg, "nothing to score"), "%s", err.msg);
    TokenData d;
    ck_assert(data_from_ids(&d, seq, SEQ, NULL) == 0);
    EvalResult r;
    ck_assert(eval_heldout(&mdm, &d, 4, 4, 1, &r, &err) == -1);
    ck_assert_msg(strstr(err.msg, "fewer than one window"), "%s", err.msg);
    data_free(&d);
    model_free(&mdm);
    model_free(&ar);
}
END_TEST

int main(void) {
    Suite *s = suite_create("eval");
    TCase *tc = tcase_create("likelihood");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_uniform_model_scores_log_vocab);
    tcase_add_test(tc, test_mdm_estimate_is_seeded);
    tcase_add_test(tc, test_mdm_estimate_converges);
    tcase_add_test(tc, test_stratified_counts);
    tcase_add_test(tc, test_standard_error);
    tcase_add_test(tc, test_continuation_sees_prompt);
    tcase_add_test(tc, test_guidance);
    tcase_add_test(tc, test_bad_requests);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

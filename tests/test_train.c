// Training: MDM masking statistics and its 1/t weighting, the AR shift, the learning-rate
// schedules, and tiny models that must overfit a short repeated text under both objectives.
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "tests/testutil.h"
#include "tokenizer/bytes.h"
#include "dataset/data.h"
#include "train/objective.h"
#include "common/rng.h"
#include "eval/eval.h"
#include "train/trainer.h"

START_TEST(test_mdm_mask_statistics) {
    // Masked counts follow Binomial(T, t) for each drawn t, and t is uniform on [eps, 1).
    int B = 4000, T = 64, mask_id = 999;
    float eps = 1e-3f;
    int *tokens = malloc((size_t)B * T * sizeof(int)), *inputs = malloc((size_t)B * T * sizeof(int));
    int *targets = malloc((size_t)B * T * sizeof(int));
    float *weights = malloc((size_t)B * T * sizeof(float)), *t = malloc(B * sizeof(float));
    for (int i = 0; i < B * T; i++) tokens[i] = i % 251;
    Rng rng;
    rng_seed(&rng, 1);
    mdm_noise_batch(tokens, B, T, 0, mask_id, eps, T_UNIFORM, &rng, inputs, targets, weights, t);
    double excess = 0.0, variance = 0.0, t_sum = 0.0;
    int histogram[10] = {0};
    for (int b = 0; b < B; b++) {
        ck_assert(t[b] >= eps && t[b] < 1.0f);
        t_sum += t[b];
        histogram[(int)(t[b] * 10)]++;
        int masked = 0;
        for (int i = 0; i < T; i++) {
            size_t n = (size_t)b * T + i;
            ck_assert_int_eq(targets[n], tokens[n]);
            if (inputs[n] == mask_id) {
                masked++;
                // the LLaDA weighting: 1/t, over B*T
                ck_assert_float_eq(weights[n], 1.0f / ((float)B * T) / t[b]);
            } else {
                ck_assert_int_eq(inputs[n], tokens[n]);
                ck_assert_float_eq(weights[n], 0.0f);
            }
        }
        excess += masked - T * t[b];
        variance += T * t[b] * (1.0 - t[b]);
    }
    double z = excess / sqrt(variance);
    double mean_t = t_sum / B;
    printf("  masked fraction vs t: z = %.2f over %d sequences; mean t %.4f (expect %.4f)\n", z, B,
           mean_t, (1.0 + eps) / 2);
    ck_assert_msg(fabs(z) < 4.0, "masked counts off their expectation by %.1f sigma", z);
    ck_assert_double_eq_tol(mean_t, (1.0 + eps) / 2, 4 * sqrt(1.0 / 12 / B));
    for (int k = 0; k < 10; k++)  // each tenth holds B/10 +- 5 sigma
        ck_assert_msg(abs(histogram[k] - B / 10) < 5 * sqrt(B * 0.09), "bin %d: %d", k,
                      histogram[k]);
    free(tokens), free(inputs), free(targets), free(weights), free(t);
}
END_TEST

// A shifted model's batch (from = 1): position 0 is never masked (nothing predicts it) and the
// weights are normalised over the T - 1 positions that can be.
START_TEST(test_mdm_batch_keeps_first_position_for_shifted_models) {
    enum { B = 200, T = 16 };
    int tokens[B * T], inputs[B * T], targets[B * T];
    float weights[B * T], t[B];
    for (int i = 0; i < B * T; i++) tokens[i] = i % 97;
    Rng rng;
    rng_seed(&rng, 3);
    mdm_noise_batch(tokens, B, T, 1, 999, 1e-3f, T_STRATIFIED, &rng, inputs, targets, weights, t);
    int masked = 0;
    for (int b = 0; b < B; b++) {
        ck_assert_int_eq(inputs[b * T], tokens[b * T]);
        ck_assert_float_eq(weights[b * T], 0.0f);
        for (int i = 1; i < T; i++)
            if (inputs[b * T + i] == 999) {
                masked++;
                ck_assert_float_eq(weights[b * T + i], 1.0f / ((float)B * (T - 1)) / t[b]);
            }
    }
    ck_assert_int_gt(masked, B * (T - 1) / 4);
}
END_TEST

// Stratified t (MDLM's low-discrepancy sampler): the B rates of a batch fall one in each of B
// equal slices of [eps, 1), each batch with its own offset.
START_TEST(test_mdm_stratified_t) {
    enum { B = 10, T = 8 };
    float eps = 1e-3f, t[B], w[B * T];
    int tokens[B * T] = {0}, inputs[B * T], targets[B * T];
    Rng rng;
    rng_seed(&rng, 3);
    float first[2];
    for (int batch = 0; batch < 2; batch++) {
        mdm_noise_batch(tokens, B, T, 0, 99, eps, T_STRATIFIED, &rng, inputs, targets, w, t);
        int per_slice[B] = {0};
        for (int b = 0; b < B; b++) per_slice[(int)((t[b] - eps) / (1.0f - eps) * B)]++;
        for (int k = 0; k < B; k++) ck_assert_int_eq(per_slice[k], 1);
        first[batch] = t[0];
    }
    ck_assert(first[0] != first[1]);
}
END_TEST

START_TEST(test_mdm_weighting_is_unbiased) {
    // With 1/t weights, the expected weighted loss equals the plain per-token loss. A model whose
    // LM head is zero predicts uniformly, so every token costs ln V, and so must the MDM loss
    // on average over draws of t and masks.
    ModelConfig cfg = model_config_default();
    cfg.n_layer = 1, cfg.d_model = 16, cfg.n_head = 2, cfg.d_ff = 16, cfg.seq_len = 32;
    int B = 8, T = cfg.seq_len, draws = 3000;
    Model m;
    Error err;
    ck_assert(model_create(&m, &cfg, &backend_cpu, B, 0, &err) == 0);
    ck_assert(model_init_params(&m, 1, NULL) == 0);
    memset(m.p.lm_head, 0, (size_t)cfg.vocab_size * cfg.d_model * sizeof(float));
    int tokens[8 * 32], inputs[8 * 32], targets[8 * 32];
    float weights[8 * 32];
    for (int i = 0; i < B * T; i++) tokens[i] = (i * 7) % 256;
    Rng rng;
    rng_seed(&rng, 2);
    double sum = 0.0, sum_sq = 0.0;
    for (int d = 0; d < draws; d++) {
        mdm_noise_batch(tokens, B, T, 0, cfg.mask_token_id, 1e-3f, T_UNIFORM, &rng, inputs, targets,
                        weights,
                        NULL);
        model_forward(&m, inputs, B, T);
        double loss = model_loss(&m, targets, weights);
        sum += loss;
        sum_sq += loss * loss;
    }
    double mean = sum / draws, sem = sqrt((sum_sq / draws - mean * mean) / draws);
    printf("  MDM loss of a uniform predictor: %.4f +- %.4f (ln V = %.4f)\n", mean, sem,
           log(cfg.vocab_size));
    ck_assert_msg(fabs(mean - log(cfg.vocab_size)) < 4 * sem, "mean %g, sem %g", mean, sem);
    model_free(&m);
}
END_TEST

START_TEST(test_ar_shift) {
    int windows[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};  // two windows of T + 1 = 5
    int inputs[8], targets[8];
    float weights[8];
    ar_shift_batch(windows, 2, 4, inputs, targets, weights);
    int want_in[] = {1, 2, 3, 4, 6, 7, 8, 9}, want_tg[] = {2, 3, 4, 5, 7, 8, 9, 10};
    ck_assert_mem_eq(inputs, want_in, sizeof want_in);
    ck_assert_mem_eq(targets, want_tg, sizeof want_tg);
    for (int i = 0; i < 8; i++) ck_assert_float_eq(weights[i], 1.0f / 8);
}
END_TEST

START_TEST(test_lr_schedules) {
    TrainConfig tc = train_config_default();
    tc.steps = 1000, tc.warmup_steps = 100, tc.lr = 1e-3f, tc.min_lr = 1e-4f;
    ck_assert_float_eq_tol(lr_at(&tc, 0), 1e-5f, 1e-9f);
    ck_assert_float_eq_tol(lr_at(&tc, 49), 5e-4f, 1e-9f);
    ck_assert_float_eq_tol(lr_at(&tc, 100), 1e-3f, 1e-9f);
    ck_assert_float_eq_tol(lr_at(&tc, 550), 5.5e-4f, 1e-8f);  // cosine midpoint
    ck_assert_float_eq_tol(lr_at(&tc, 1000), 1e-4f, 1e-9f);
    for (int s = 101; s < 1000; s++) ck_assert(lr_at(&tc, s) <= lr_at(&tc, s - 1));
    tc.schedule = SCHEDULE_WSD;
    tc.decay_frac = 0.2f;  // flat until step 800, then linear to min_lr at 1000
    ck_assert_float_eq_tol(lr_at(&tc, 500), 1e-3f, 1e-9f);
    ck_assert_float_eq_tol(lr_at(&tc, 800), 1e-3f, 1e-9f);
    ck_assert_float_eq_tol(lr_at(&tc, 900), 5.5e-4f, 1e-8f);
    ck_assert_float_eq_tol(lr_at(&tc, 1000), 1e-4f, 1e-9f);
}
END_TEST

// ---- overfitting a short repeated text ----
// The same 8 windows (and the same masks) every time: losses compare before and after.
static float heldout_loss(Model *m, const TokenData *data) {
    EvalResult r;
    Error err;
    ck_assert_msg(eval_heldout(m, data, 8, 4, 77, &r, &err) == 0, "%s", err.msg);
    return (float)r.nats_per_token;
}

static float overfit(Objective objective) {
    TokenData data = verse_data();
    Model m;
    Trainer tr;
    tiny_verse_run(&m, &tr, objective, 8, 400, &data);
    float before = heldout_loss(&m, &data);
    StepStats st = {0};
    for (int s = 0; s < tr.tc.steps; s++) {
        st = trainer_step(&tr);
        ck_assert(isfinite(st.loss));
    }
    float after = heldout_loss(&m, &data);
    float drop = 1.0f - after / before;
    printf("  %s overfit: loss %.4f -> %.4f after %lld steps (%.1f%% lower; last step %.4f)\n",
           objective == OBJECTIVE_MDM ? "MDM" : "AR ", before, after, (long long)tr.tc.steps,
           100 * drop, st.loss);
    trainer_free(&tr);
    model_free(&m);
    data_free(&data);
    return drop;
}

START_TEST(test_mdm_overfits) { ck_assert(overfit(OBJECTIVE_MDM) > 0.8f); }
END_TEST

START_TEST(test_ar_overfits) { ck_assert(overfit(OBJECTIVE_AR) > 0.8f); }
END_TEST

START_TEST(test_trainer_refuses_mismatch) {
    ModelConfig cfg = model_config_default();
    cfg.n_layer = 1, cfg.d_model = 16, cfg.n_head = 2, cfg.d_ff = 16, cfg.seq_len = 16;
    Model m;
    Trainer tr;
    Error err;
    ck_assert(model_create(&m, &cfg, &backend_cpu, 4, 0, &err) == 0);
    int tokens[64] = {0};
    TokenData data;
    ck_assert(data_from_ids(&data, tokens, 64, NULL) == 0);
    TrainConfig tc = train_config_default();
    tc.batch_size = 4;
    tc.objective = OBJECTIVE_AR;  // on a bidirectional model
    ck_assert_int_eq(trainer_init(&tr, &m, &tc, &data, &err), -1);
    ck_assert_msg(strstr(err.msg, "causal") != NULL, "%s", err.msg);
    tc.objective = OBJECTIVE_MDM;
    data_free(&data);
    ck_assert(data_from_ids(&data, tokens, 10, NULL) == 0);  // shorter than one window
    ck_assert_int_eq(trainer_init(&tr, &m, &tc, &data, &err), -1);
    ck_assert_msg(strstr(err.msg, "fewer than seq_len") != NULL, "%s", err.msg);
    data_free(&data);
    model_free(&m);
}
END_TEST

int main(void) {
    Suite *s = suite_create("train");
    TCase *tc = tcase_create("objectives and training");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_mdm_mask_statistics);
    tcase_add_test(tc, test_mdm_batch_keeps_first_position_for_shifted_models);
    tcase_add_test(tc, test_mdm_stratified_t);
    tcase_add_test(tc, test_mdm_weighting_is_unbiased);
    tcase_add_test(tc, test_ar_shift);
    tcase_add_test(tc, test_lr_schedules);
    tcase_add_test(tc, test_mdm_overfits);
    tcase_add_test(tc, test_ar_overfits);
    tcase_add_test(tc, test_trainer_refuses_mismatch);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

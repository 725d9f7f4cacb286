// Ternary (BitNet b1.58) models: the quantisers against their definitions, a ternary
// projection equal to the dequantised reference exactly on integer inputs, and
// quantisation-aware training that learns while the layers read ternary weights.
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "kernels/backend.h"
#include "model/model.h"
#include "tests/testutil.h"
#include "train/trainer.h"

START_TEST(test_ternarize_is_absmean_rounding) {
    size_t n = 4099;
    float *w = malloc(n * sizeof(float)), *t = malloc(n * sizeof(float));
    fill_normal(w, n, 3, 0.7f);
    backend_cpu.ternarize(t, w, n);
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) sum += fabs((double)w[i]);
    float s = (float)(sum / n);
    size_t counts[3] = {0};
    for (size_t i = 0; i < n; i++) {
        float want = w[i] / s >= 0.5f ? s : w[i] / s <= -0.5f ? -s : 0.0f;
        if (fabsf(w[i] / s) == 0.5f) continue;  // a tie: rint's even choice, 0
        ck_assert_msg(t[i] == want, "w %g -> %g, expected %g", w[i], t[i], want);
        counts[t[i] > 0 ? 2 : t[i] < 0 ? 0 : 1]++;
    }
    printf("  ternarised %zu weights (scale %.4f): %zu -s, %zu zero, %zu +s\n", n, s, counts[0],
           counts[1], counts[2]);
    ck_assert(counts[0] > n / 4 && counts[1] > n / 8 && counts[2] > n / 4);
    free(w), free(t);
}
END_TEST

START_TEST(test_quantize_rows_is_8_bit_absmax) {
    int N = 5, C = 300;
    float *x = malloc((size_t)N * C * sizeof(float)), *q = malloc((size_t)N * C * sizeof(float));
    fill_normal(x, (size_t)N * C, 4, 2.0f);
    backend_cpu.quantize_rows(q, x, N, C);
    for (int n = 0; n < N; n++) {
        float m = 0.0f;
        for (int i = 0; i < C; i++) m = fmaxf(m, fabsf(x[n * C + i]));
        float scale = 127.0f / m;
        for (int i = 0; i < C; i++) {
            float level = q[n * C + i] * scale;  // an integer in [-128, 127], up to rounding
            ck_assert(fabsf(level - rintf(level)) < 1e-3f && fabsf(level) <= 127.001f);
            ck_assert(fabsf(q[n * C + i] - x[n * C + i]) <= 0.5f / scale * 1.0001f);
        }
    }
    // integer rows whose largest magnitude is 127 are their own quantisation, exactly
    for (int i = 0; i < N * C; i++) x[i] = (float)((i * 37) % 255 - 127);
    backend_cpu.quantize_rows(q, x, 1, 255);
    ck_assert_mem_eq(q, x, 255 * sizeof(float));
    free(x), free(q);
}
END_TEST

START_TEST(test_ternary_projection_equals_dequantised_reference) {
    // A projection as a ternary model runs it: the input quantised to 8 bits, the weight
    // ternarised, then the matmul. On integer inputs (largest magnitude 127: the quantiser
    // keeps them) and weights whose absmean is a power of two, every product and partial sum is
    // exact in fp32, so the result must equal the dequantised reference computed in double,
    // bit for bit, whatever the summation order.
    int N = 7, C = 96, K = 40;
    float *x = malloc((size_t)N * C * sizeof(float)), *w = malloc((size_t)K * C * sizeof(float));
    float *xq = malloc((size_t)N * C * sizeof(float)), *wt = malloc((size_t)K * C * sizeof(float));
    float *out = malloc((size_t)N * K * sizeof(float));
    Rng rng;
    rng_seed(&rng, 9);
    for (int i = 0; i < N * C; i++) x[i] = (float)((int)rng_below(&rng, 255) - 127);
    for (int n = 0; n < N; n++) x[n * C] = 127.0f;  // each row's largest magnitude
    // half the weights 0, half +-0.25 (three sizes): absmean 0.125, so they ternarise to
    // +-0.125 or 0
    for (int i = 0; i < K * C; i++)
        w[i] = i % 2 ? 0.0f : (rng_below(&rng, 2) ? 0.25f : -0.25f);
    backend_cpu.quantize_rows(xq, x, N, C);
    backend_cpu.ternarize(wt, w, (size_t)K * C);
    backend_cpu.matmul_forward(out, xq, wt, N, C, K);
    size_t exact = 0;
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
            double ref = 0.0;
            for (int i = 0; i < C; i++) {
                int sign = w[k * C + i] > 0 ? 1 : w[k * C + i] < 0 ? -1 : 0;
                ref += (double)x[n * C + i] * sign * 0.125;
            }
            exact += out[n * K + k] == (float)ref;
        }
    printf("  ternary projection on integer inputs: %zu of %d outputs equal the dequantised "
           "reference exactly\n", exact, N * K);
    ck_assert_int_eq(exact, N * K);
    free(x), free(w), free(xq), free(wt), free(out);
}
END_TEST

START_TEST(test_ternary_training_learns_and_reads_ternary_weights) {
    // quantisation-aware training of an AR model on the verse: the loss falls, the stored
    // weights stay fp32 and move, and what the layers read is ternary per matrix
    TokenData data = verse_data();
    Model m;
    Trainer tr;
    ModelConfig cfg = model_config_default();
    cfg.n_layer = 2, cfg.n_head = 4, cfg.d_model = 64, cfg.d_ff = 176, cfg.seq_len = 32;
    cfg.causal = 1, cfg.ternary = 1;
    TrainConfig tc = train_config_default();
    tc.objective = OBJECTIVE_AR, tc.batch_size = 4, tc.steps = 60, tc.warmup_steps = 10;
    tc.lr = 3e-3f, tc.min_lr = 3e-4f;
    Error err;
    ck_assert_msg(model_create(&m, &cfg, &backend_cpu, 4, 0, &err) == 0, "%s", err.msg);
    ck_assert(model_init_params(&m, seed_for_init(tc.seed), NULL) == 0);
    ck_assert_msg(trainer_init(&tr, &m, &tc, &data, &err) == 0, "%s", err.msg);
    float first = 0.0f, last = 0.0f;
    for (int s = 0; s < 60; s++) {
        StepStats st = trainer_step(&tr);
        if (s == 0) first = st.loss;
        last = st.loss;
    }
    model_forward(&m, tr.inputs, 4, cfg.seq_len);  // refreshes the ternary copy
    int distinct_max = 0;
    for (int l = 0; l < cfg.n_layer; l++) {
        LayerWeights q = layer_weights(&m.q, &cfg, l, sizeof(float));
        const float *mats[N_PROJECTIONS] = {q.wq, q.wk, q.wv, q.wo, q.w_gate, q.w_up, q.w_down};
        for (int t = 0; t < N_PROJECTIONS; t++) {
            int in, out;
            projection_shape(&cfg, t, &in, &out);
            float s = 0.0f;
            int distinct = 0;
            for (int i = 0; i < in * out; i++) {
                float v = fabsf(mats[t][i]);
                if (v != 0.0f && v != s) s = v, distinct++;
            }
            distinct_max = distinct > distinct_max ? distinct : distinct_max;
        }
    }
    printf("  ternary AR, 60 steps: loss %.3f -> %.3f; every projection reads {-s, 0, +s} "
           "(%d nonzero magnitude per matrix)\n", first, last, distinct_max);
    ck_assert_int_eq(distinct_max, 1);
    ck_assert(last < first - 1.0f);
    trainer_free(&tr);
    model_free(&m);
    data_free(&data);
}
END_TEST

START_TEST(test_ternary_refusals) {
    ModelConfig cfg = model_config_default();
    cfg.ternary = 1;
    Model m;
    Error err;
    ck_assert_int_eq(model_create(&m, &cfg, backend_cpu_bf16_weights(), 2, MODEL_INFERENCE,
                                  &err), -1);
    ck_assert_msg(strstr(err.msg, "ternary"), "%s", err.msg);
    cfg.ternary = 2;
    ck_assert_int_eq(model_config_validate(&cfg, &err), -1);
}
END_TEST

int main(void) {
    Suite *s = suite_create("ternary");
    TCase *tc = tcase_create("bitnet b1.58");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_ternarize_is_absmean_rounding);
    tcase_add_test(tc, test_quantize_rows_is_8_bit_absmax);
    tcase_add_test(tc, test_ternary_projection_equals_dequantised_reference);
    tcase_add_test(tc, test_ternary_training_learns_and_reads_ternary_weights);
    tcase_add_test(tc, test_ternary_refusals);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

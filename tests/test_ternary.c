// Ternary (BitNet b1.58) models: the quantisers against their definitions, a ternary
// projection equal to the dequantised reference exactly on integer inputs,
// quantisation-aware training that learns while the layers read ternary weights, and packed
// inference: the 2-bit layout, the integer matmul against its plain loop and the float one,
// a packed model's logits against the trained model's, the packed file.
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>
#include <unistd.h>

#include "common/rng.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/ternary.h"
#include "model/model.h"
#include "model/packed.h"
#include "tests/testutil.h"
#include "store/checkpoint.h"
#include "store/packed_file.h"
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
        LayerWeights q = layer_weights(&m.lin.q, &cfg, l, sizeof(float));
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

START_TEST(test_packed_matmul_matches_reference) {
    // odd shapes: inputs not a multiple of 4, outputs not of 16, rows not of the kernel's 6,
    // and fewer rows than 6 (the kernel's path for a few rows)
    int shapes[][3] = {{1, 5, 3}, {3, 130, 40}, {7, 250, 701}, {13, 64, 48}, {6, 128, 352}, {20, 704, 256}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        int N = shapes[k][0], C = shapes[k][1], K = shapes[k][2], P = ternary_padded(C);
        float *x = malloc((size_t)N * C * sizeof(float)), *w = malloc((size_t)K * C * 4);
        float *xd = malloc((size_t)N * C * 4), *wt = malloc((size_t)K * C * 4);
        float *wu = malloc((size_t)K * C * 4), *q = malloc((size_t)N * 4);
        float *ref = malloc((size_t)N * K * 4), *out = malloc((size_t)N * K * 4);
        float *two = malloc((size_t)N * K * 4), *qat = malloc((size_t)N * K * 4);
        int8_t *xq = malloc((size_t)N * P);
        uint8_t *packed = malloc(ternary_matrix_bytes(K, C));
        fill_normal(x, (size_t)N * C, 11 + k, 1.5f);
        fill_normal(w, (size_t)K * C, 21 + k, 0.05f);
        float s = ternary_scale(w, (size_t)K * C);
        ternary_pack(packed, w, s, K, C);
        ternary_unpack(wu, packed, s, K, C);
        backend_cpu.ternarize(wt, w, (size_t)K * C);
        for (int i = 0; i < K * C; i++) ck_assert_float_eq(wu[i], wt[i]);
        backend_cpu.quantize_rows_int8(xq, q, x, N, C);
        backend_cpu.quantize_rows(xd, x, N, C);
        for (int n = 0; n < N; n++)
            for (int i = 0; i < P; i++)
                ck_assert(i < C ? (float)xq[n * P + i] / q[n] == xd[n * C + i] : xq[n * P + i] == 0);
        cpu_matmul_ternary_ref(ref, xq, q, packed, s, N, C, K);
        omp_set_num_threads(1);
        backend_cpu.matmul_ternary(out, xq, q, packed, s, N, C, K);
        omp_set_num_threads(2);
        backend_cpu.matmul_ternary(two, xq, q, packed, s, N, C, K);
        ck_assert_mem_eq(out, ref, (size_t)N * K * 4);
        ck_assert_mem_eq(two, ref, (size_t)N * K * 4);
        backend_cpu.matmul_forward(qat, xd, wt, N, C, K);
        double top = 0.0, diff = 0.0;
        for (int i = 0; i < N * K; i++) {
            top = fmax(top, fabs(qat[i]));
            diff = fmax(diff, fabs(qat[i] - out[i]));
        }
        printf("  packed matmul %dx%d -> %d: the plain loop's bits at 1 and 2 threads; "
               "max |float matmul - packed| %.2g (max |y| %.2g)\n", N, C, K, diff, top);
        ck_assert(diff <= 1e-5 * top);
        free(x), free(w), free(xd), free(wt), free(wu), free(q), free(ref), free(out);
        free(two), free(qat), free(xq), free(packed);
    }
}
END_TEST

// A small ternary model with weights large enough that attention is not uniform.
static ModelConfig packed_test_config(int causal) {
    ModelConfig cfg = model_config_default();
    cfg.n_layer = 2, cfg.n_head = 4, cfg.d_model = 64, cfg.d_ff = 176, cfg.seq_len = 24;
    cfg.vocab_size = 300, cfg.mask_token_id = causal ? -1 : 256, cfg.causal = causal;
    cfg.ternary = 1, cfg.qkv_bias = 1, cfg.init_std = 0.3f;
    return cfg;
}

// Logits of rows [start, T) of 2 sequences from a packed model and the QAT model it came from.
static void compare_logits(const ModelConfig *cfg, int start, double *diff, double *top,
                           int *same_argmax, int *rows_compared) {
    Model qat, packed;
    Error err;
    size_t n = param_count(cfg);
    float *params = malloc(n * sizeof(float)), *dense = malloc(n * sizeof(float));
    float *scales = malloc((size_t)packed_scale_count(cfg) * sizeof(float));
    uint8_t *codes = malloc(packed_bytes(cfg));
    params_init(params, cfg, 5);
    packed_from_params(cfg, params, dense, scales, codes);
    ck_assert_msg(model_create(&qat, cfg, &backend_cpu, 2, MODEL_INFERENCE, &err) == 0, "%s",
                  err.msg);
    ck_assert_msg(model_create(&packed, cfg, &backend_cpu, 2, MODEL_PACKED, &err) == 0, "%s",
                  err.msg);
    ck_assert(model_set_weights(&qat, params, &err) == 0);
    linear_upload_packed(&packed, dense, scales, codes);
    int T = cfg->seq_len, tokens[2 * 24];
    for (int i = 0; i < 2 * T; i++) tokens[i] = (i * 37 + 11) % 299;
    Model *models[2] = {&qat, &packed};
    for (int i = 0; i < 2; i++) {
        model_infer(models[i], tokens, NULL, 2, T, 0, T);
        if (start > 0) model_infer(models[i], tokens, NULL, 2, T, start, T);  // cached rows
    }
    int V = cfg->vocab_size;
    *rows_compared = 2 * (T - start);
    *diff = *top = 0.0;
    *same_argmax = 0;
    for (int r = 0; r < *rows_compared; r++) {
        const float *a = (float *)qat.acts.logits + (size_t)r * V;
        const float *b = (float *)packed.acts.logits + (size_t)r * V;
        int best_a = 0, best_b = 0;
        for (int v = 0; v < V; v++) {
            *top = fmax(*top, fabs(a[v]));
            *diff = fmax(*diff, fabs(a[v] - b[v]));
            best_a = a[v] > a[best_a] ? v : best_a;
            best_b = b[v] > b[best_b] ? v : best_b;
        }
        *same_argmax += best_a == best_b;
    }
    model_free(&qat);
    model_free(&packed);
    free(params), free(dense), free(scales), free(codes);
}

START_TEST(test_packed_model_gives_qat_logits) {
    // The same logits up to the activation quantiser's rounding: the float matmul's sums
    // differ from the exact integer ones in their last bits, which now and then tips an input
    // of the next projection to the neighbouring 8-bit level (1/127 of its row's largest
    // value). An MDM over whole sequences, and an AR model rerunning rows over its KV cache.
    for (int causal = 0; causal < 2; causal++) {
        ModelConfig cfg = packed_test_config(causal);
        double diff, top;
        int same, rows;
        compare_logits(&cfg, causal ? 17 : 0, &diff, &top, &same, &rows);
        printf("  packed %s model vs the QAT model: max |logit difference| %.2g (max |logit| "
               "%.3g), the same top token in %d of %d rows\n",
               causal ? "AR (rows 17..23 over the cache)" : "MDM", diff, top, same, rows);
        ck_assert(diff <= 1e-2 * top);
        ck_assert(same == rows);
    }
}
END_TEST

START_TEST(test_packed_file_round_trip_and_refusals) {
    ModelConfig cfg = packed_test_config(0);
    size_t n = param_count(&cfg);
    float *params = malloc(n * sizeof(float));
    params_init(params, &cfg, 6);
    Tokenizer tok;
    tokenizer_init_bytes(&tok);
    char path[64], cmd[200];
    snprintf(path, sizeof path, "/tmp/dllm_packed_%d.tern", (int)getpid());
    Error err;
    ck_assert_msg(packed_file_save(path, &cfg, 42, params, &tok, &err) == 0, "%s", err.msg);
    ModelSource ck;
    ck_assert_msg(checkpoint_load(path, &ck, &err) == 0, "%s", err.msg);
    float *back = malloc(n * sizeof(float)), *want = malloc(n * sizeof(float));
    float *dense = malloc(n * sizeof(float));
    float *scales = malloc((size_t)packed_scale_count(&cfg) * sizeof(float));
    uint8_t *codes = malloc(packed_bytes(&cfg));
    packed_from_params(&cfg, params, dense, scales, codes);
    packed_to_params(&cfg, dense, scales, codes, want);
    packed_to_params(&cfg, ck.params, ck.packed_scales, ck.packed_codes, back);
    ck_assert_mem_eq(back, want, n * sizeof(float));
    ck_assert(ck.header.step == 42 && ck.header.model.ternary && !ck.adam_m);
    model_source_free(&ck);
    // one flipped byte, a cut file, another version: each refused by name
    snprintf(cmd, sizeof cmd, "printf '\\001' | dd of=%s bs=1 seek=9000 conv=notrunc "
             "2>/dev/null", path);
    ck_assert(system(cmd) == 0);
    ck_assert_int_eq(checkpoint_load(path, &ck, &err), -1);
    ck_assert_msg(strstr(err.msg, "checksum"), "%s", err.msg);
    snprintf(cmd, sizeof cmd, "truncate -s 5000 %s", path);
    ck_assert(system(cmd) == 0);
    ck_assert_int_eq(checkpoint_load(path, &ck, &err), -1);
    ck_assert_msg(strstr(err.msg, "truncated"), "%s", err.msg);
    snprintf(cmd, sizeof cmd, "printf '\\007' | dd of=%s bs=1 seek=8 conv=notrunc 2>/dev/null",
             path);
    ck_assert(system(cmd) == 0);
    ck_assert_int_eq(checkpoint_load(path, &ck, &err), -1);
    ck_assert_msg(strstr(err.msg, "unsupported packed ternary version 7"), "%s", err.msg);
    unlink(path);
    free(params), free(back), free(want), free(dense), free(scales), free(codes);
    tokenizer_free(&tok);
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
    tcase_add_test(tc, test_packed_matmul_matches_reference);
    tcase_add_test(tc, test_packed_model_gives_qat_logits);
    tcase_add_test(tc, test_packed_file_round_trip_and_refusals);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

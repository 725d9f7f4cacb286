#include "tests/testutil.h"

#include "model/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tokenizer/bytes.h"

#include "common/rng.h"
#include "train/objective.h"

void fill_normal(float *x, size_t n, uint64_t seed, float std) {
    Rng rng;
    rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++) x[i] = std * rng_normal(&rng);
}

double dot_double(const float *a, const float *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

// Central difference of f along x[i] with step h, using the step actually taken after
// x[i] +- h is rounded to float.
static double central_difference(ScalarFn f, void *ctx, float *x, size_t i, float h) {
    float saved = x[i];
    x[i] = saved + h;
    double up = f(ctx);
    x[i] = saved - h;
    double down = f(ctx);
    x[i] = saved;
    return (up - down) / ((double)(saved + h) - (double)(saved - h));
}

double grad_check(ScalarFn f, void *ctx, float *x, const float *analytic, size_t n, float h,
                  size_t max_checks) {
    size_t stride = (max_checks && n > max_checks) ? n / max_checks : 1;
    double max_diff = 0.0, max_num = 0.0;
    for (size_t i = 0; i < n; i += stride) {
        // Richardson extrapolation cancels the h^2 error term of the central difference, so h
        // can stay large enough that fp32 rounding in f does not swamp the difference.
        double coarse = central_difference(f, ctx, x, i, h);
        double fine = central_difference(f, ctx, x, i, h / 2);
        double numeric = (4.0 * fine - coarse) / 3.0;
        double diff = fabs(numeric - analytic[i]);
        if (diff > max_diff) max_diff = diff;
        if (fabs(numeric) > max_num) max_num = fabs(numeric);
    }
    return max_num > 0.0 ? max_diff / max_num : max_diff;
}

const char *write_temp_file(const char *name, const void *data, size_t n) {
    static char path[512];
    snprintf(path, sizeof path, "/tmp/dllm_test_%d_%s", (int)getpid(), name);
    FILE *f = fopen(path, "wb");
    if (!f) return NULL;
    fwrite(data, 1, n, f);
    fclose(f);
    return path;
}

pid_t spawn_shell(const char *cmd) {
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

int wait_exit(pid_t pid) {
    int st;
    ck_assert(waitpid(pid, &st, 0) == pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int run_suite(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

TokenData verse_data(void) {
    static const char *const verse = "the quick brown fox jumps over the lazy dog. ";
    char text[3000] = "";
    while (strlen(text) + strlen(verse) < sizeof text) strcat(text, verse);
    size_t n = strlen(text);
    int *ids = malloc(n * sizeof(int));
    bytes_encode((const unsigned char *)text, n, ids);
    TokenData data;
    ck_assert(data_from_ids(&data, ids, n, NULL) == 0);
    data.owned = ids;
    return data;
}

void tiny_verse_run(Model *m, Trainer *tr, Objective objective, int batch_size, int steps,
                    const TokenData *data) {
    ModelConfig cfg = model_config_default();
    cfg.n_layer = 2, cfg.n_head = 4, cfg.d_model = 64, cfg.d_ff = 176, cfg.seq_len = 32;
    cfg.causal = objective == OBJECTIVE_AR;
    TrainConfig tc = train_config_default();
    tc.objective = objective;
    tc.batch_size = batch_size, tc.steps = steps, tc.warmup_steps = 20;
    tc.lr = 3e-3f, tc.min_lr = 3e-4f;
    Error err;
    ck_assert_msg(model_create(m, &cfg, &backend_cpu, batch_size, 0, &err) == 0, "%s", err.msg);
    ck_assert(model_init_params(m, seed_for_init(tc.seed), NULL) == 0);
    ck_assert_msg(trainer_init(tr, m, &tc, data, &err) == 0, "%s", err.msg);
}

void tiny_sft_run(Model *m, Trainer *tr, SftData *d, const char *path, Objective objective,
                  int seq_len, int steps) {
    Tokenizer t;
    tokenizer_init_bytes(&t);
    ModelConfig c = model_config_default();
    c.n_layer = 2, c.n_head = 4, c.d_model = 64, c.d_ff = 176, c.seq_len = seq_len;
    c.causal = objective == OBJECTIVE_AR;
    TrainConfig tc = train_config_default();
    tc.objective = objective, tc.sft = 1, tc.batch_size = 8, tc.steps = steps;
    tc.warmup_steps = 20, tc.lr = 3e-3f, tc.min_lr = 3e-4f;
    Error err;
    ck_assert_msg(sft_load(d, path, &t, c.seq_len, &err) == 0, "%s", err.msg);
    ck_assert_msg(model_create(m, &c, &backend_cpu, 16, 0, &err) == 0, "%s", err.msg);
    ck_assert(model_init_params(m, seed_for_init(tc.seed), NULL) == 0);
    ck_assert_msg(trainer_init_sft(tr, m, &tc, d, &err) == 0, "%s", err.msg);
}

void tiny_sft_free(Model *m, Trainer *tr, SftData *d) {
    trainer_free(tr);
    model_free(m);
    sft_free(d);
}

// ---- block diffusion reductions ----

enum { RED_T = 16, RED_B = 2, RED_V = 40, RED_MASK = 39 };

static ModelConfig reduction_config(int block_size) {
    ModelConfig c = model_config_default();
    c.n_layer = 2, c.n_head = 2, c.d_model = 32, c.d_ff = 48, c.vocab_size = RED_V;
    c.seq_len = RED_T, c.mask_token_id = RED_MASK, c.causal = 0, c.block_size = block_size;
    return c;
}

// A model of config c on be with the seeded random weights every reduction uses.
static void reduction_model(Model *m, const ModelConfig *c, const Backend *be, int max_batch) {
    Error err;
    ck_assert_msg(model_create(m, c, be, max_batch, MODEL_TRAINING, &err) == 0, "%s", err.msg);
    float *w = malloc(m->n_params * sizeof(float));
    fill_normal(w, m->n_params, 7, 0.3f);
    ck_assert(model_set_weights(m, w, &err) == 0);
    free(w);
}

static double rel_diff(double a, double b) { return fabs(a - b) / fmax(fabs(a), fabs(b)); }

// Largest |a - b| over the largest |b| of two gradient buffers on the device.
static double grads_diff(const Model *a, const Model *b) {
    size_t n = a->n_params;
    float *ga = malloc(n * sizeof(float)), *gb = malloc(n * sizeof(float));
    a->be->to_host(ga, a->grads, n * sizeof(float));
    b->be->to_host(gb, b->grads, n * sizeof(float));
    double err = 0.0, scale = 0.0;
    for (size_t i = 0; i < n; i++) {
        err = fmax(err, fabs(ga[i] - gb[i]));
        scale = fmax(scale, fabs(gb[i]));
    }
    free(ga), free(gb);
    return err / scale;
}

double bd3_mdm_reduction_error(const Backend *be) {
    ModelConfig mdm_cfg = reduction_config(0), bd3_cfg = reduction_config(RED_T);
    Model mdm, bd3;
    reduction_model(&mdm, &mdm_cfg, be, RED_B);
    reduction_model(&bd3, &bd3_cfg, be, 2 * RED_B);
    int x[RED_B * RED_T], in[RED_B * 2 * RED_T], tg[RED_B * 2 * RED_T];
    float w[RED_B * 2 * RED_T];
    double worst = 0.0;
    Rng rng;
    rng_seed(&rng, 5);
    for (int draw = 0; draw < 3; draw++) {
        for (int i = 0; i < RED_B * RED_T; i++) x[i] = (int)rng_below(&rng, RED_V - 1);
        bd3_noise_batch(x, RED_B, RED_T, RED_T, RED_MASK, 1e-3f, 1.0f, T_UNIFORM, &rng, in, tg,
                        w);
        // the MDM sees the noisy copies alone, with the same targets and weights
        int mdm_in[RED_B * RED_T], mdm_tg[RED_B * RED_T];
        float mdm_w[RED_B * RED_T];
        for (int b = 0; b < RED_B; b++)
            for (int i = 0; i < RED_T; i++) {
                int from = b * 2 * RED_T + RED_T + i, to = b * RED_T + i;
                mdm_in[to] = in[from], mdm_tg[to] = tg[from], mdm_w[to] = w[from];
            }
        model_zero_grad(&mdm);
        model_zero_grad(&bd3);
        model_forward(&mdm, mdm_in, RED_B, RED_T);
        double l_mdm = model_loss_backward(&mdm, mdm_tg, mdm_w);
        model_forward_pairs(&bd3, in, RED_B, RED_T);
        double l_bd3 = model_loss_backward(&bd3, tg, w);
        worst = fmax(worst, fmax(rel_diff(l_bd3, l_mdm), grads_diff(&bd3, &mdm)));
    }
    model_free(&mdm);
    model_free(&bd3);
    return worst;
}

double bd3_ar_reduction_error(const Backend *be) {
    ModelConfig cfg = reduction_config(1);
    Model bd3, ref;
    reduction_model(&bd3, &cfg, be, 2);
    reduction_model(&ref, &cfg, be, 1);
    int x[RED_T], in[2 * RED_T], tg[2 * RED_T], y[RED_T];
    float w[2 * RED_T], wr[RED_T];
    double worst = 0.0;
    Rng rng;
    rng_seed(&rng, 6);
    for (int draw = 0; draw < 3; draw++) {
        for (int i = 0; i < RED_T; i++) x[i] = (int)rng_below(&rng, RED_V - 1);
        for (int i = 0; i < RED_T; i++) {  // clean copy, then every position masked (t = 1)
            in[i] = tg[i] = tg[RED_T + i] = x[i];
            in[RED_T + i] = RED_MASK;
            w[i] = 0.0f;
            w[RED_T + i] = 1.0f / RED_T;
        }
        model_forward_pairs(&bd3, in, 1, RED_T);
        double l_bd3 = model_loss(&bd3, tg, w);
        // the AR reading: x_<i then [MASK] at i, block-causal with blocks of 1 = causal
        double l_ar = 0.0;
        for (int i = 0; i < RED_T; i++) {
            for (int j = 0; j < RED_T; j++) y[j] = j < i ? x[j] : RED_MASK;
            for (int j = 0; j < RED_T; j++) wr[j] = j == i ? 1.0f / RED_T : 0.0f;
            model_forward(&ref, y, 1, RED_T);
            l_ar += model_loss(&ref, x, wr);
        }
        worst = fmax(worst, rel_diff(l_bd3, l_ar));
    }
    model_free(&bd3);
    model_free(&ref);
    return worst;
}

Reference reference_read(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/reference.safetensors", dir);
    Safetensors st;
    Error err;
    ck_assert_msg(safetensors_open(&st, path, &err) == 0, "%s", err.msg);
    const SafetensorsTensor *tok = safetensors_find(&st, "tokens");
    const SafetensorsTensor *log = safetensors_find(&st, "logits");
    ck_assert(tok && log && tok->ndim == 2 && log->ndim == 3);
    Reference r = {(int)tok->shape[0], (int)tok->shape[1], (int)log->shape[2], NULL, NULL};
    size_t n = (size_t)r.B * r.T;
    float *ids = malloc(n * sizeof(float));
    r.tokens = malloc(n * sizeof(int));
    r.logits = malloc(n * r.V * sizeof(float));
    ck_assert(safetensors_read(&st, "tokens", tok->shape, 2, ids, &err) == 0);
    ck_assert(safetensors_read(&st, "logits", log->shape, 3, r.logits, &err) == 0);
    for (size_t i = 0; i < n; i++) r.tokens[i] = (int)ids[i];
    free(ids);
    safetensors_close(&st);
    return r;
}

// max |a - b| / max |b|
double max_relative_error(const float *a, const float *b, size_t n) {
    double diff = 0.0, scale = 0.0;
    for (size_t i = 0; i < n; i++) {
        diff = fmax(diff, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs((double)b[i]));
    }
    return diff / scale;
}

size_t argmax_row(const float *x, int n) {
    size_t best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = (size_t)i;
    return best;
}

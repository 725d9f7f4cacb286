// Checkpoints: bit-exact round trips, resumes that reproduce an uninterrupted run exactly,
// and a clear error for every kind of bad file.
#include <check.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/model.h"
#include "tests/testutil.h"
#include "store/checkpoint.h"
#include "train/trainer.h"

#define RESUME_STEPS 12

typedef struct {
    Model model;
    Trainer trainer;
    TokenData data;
} Run;

static Tokenizer bytes_tokenizer;
static int resume_text[4000];

static void run_start(Run *r, Objective objective) {
    tokenizer_init_bytes(&bytes_tokenizer);
    for (int i = 0; i < 4000; i++) resume_text[i] = (i * 31 + i / 7) % 97 + 32;
    ck_assert(data_from_ids(&r->data, resume_text, 4000, NULL) == 0);
    ModelConfig cfg = model_config_default();
    cfg.n_layer = 2, cfg.n_head = 2, cfg.d_model = 32, cfg.d_ff = 64, cfg.seq_len = 24;
    cfg.causal = objective == OBJECTIVE_AR;
    TrainConfig tc = train_config_default();
    tc.objective = objective;
    tc.batch_size = 4, tc.grad_accum = 2, tc.steps = RESUME_STEPS, tc.warmup_steps = 3;
    tc.random_length_prob = objective == OBJECTIVE_MDM ? 0.3f : 0.0f;  // exercise that stream too
    // AR reads the data in order, so its resume also depends on the stored data position
    tc.order = objective == OBJECTIVE_AR ? ORDER_SEQUENTIAL : ORDER_RANDOM;
    Error err;
    ck_assert_msg(model_create(&r->model, &cfg, &backend_cpu, tc.batch_size, 0, &err) == 0, "%s",
                  err.msg);
    ck_assert(model_init_params(&r->model, seed_for_init(tc.seed), NULL) == 0);
    ck_assert_msg(trainer_init(&r->trainer, &r->model, &tc, &r->data, &err) == 0, "%s", err.msg);
}

static void run_free(Run *r) {
    data_free(&r->data);
    trainer_free(&r->trainer);
    model_free(&r->model);
}

static const char *temp_path(const char *name) {
    static char path[256];
    snprintf(path, sizeof path, "/tmp/dllm_ckpt_%d_%s", (int)getpid(), name);
    return path;
}

START_TEST(test_round_trip_is_bit_exact) {
    Run r;
    run_start(&r, OBJECTIVE_MDM);
    for (int i = 0; i < 3; i++) trainer_step(&r.trainer);
    const char *path = temp_path("roundtrip");
    Error err;
    ck_assert_msg(trainer_save(path, &r.trainer, &bytes_tokenizer, &err) == 0, "%s", err.msg);
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    ck_assert_msg(access(tmp, F_OK) != 0, "the temp file must be renamed away");
    ModelSource ck;
    ck_assert_msg(checkpoint_load(path, &ck, &err) == 0, "%s", err.msg);
    size_t bytes = r.model.n_params * sizeof(float);
    ck_assert_mem_eq(ck.params, r.model.params, bytes);
    ck_assert_mem_eq(ck.adam_m, r.model.adam_m, bytes);
    ck_assert_mem_eq(ck.adam_v, r.model.adam_v, bytes);
    ck_assert_mem_eq(&ck.header.model, &r.model.cfg, sizeof(ModelConfig));
    ck_assert_mem_eq(&ck.header.train, &r.trainer.tc, sizeof(TrainConfig));
    ck_assert_mem_eq(&ck.header.rng_data, &r.trainer.rng_data, sizeof(Rng));
    ck_assert_mem_eq(&ck.header.rng_mask, &r.trainer.rng_mask, sizeof(Rng));
    ck_assert_int_eq(ck.header.step, 3);
    model_source_free(&ck);
    remove(path);
    run_free(&r);
}
END_TEST

// Losses of an uninterrupted run against one saved at step `cut`, reloaded into a fresh
// model and trainer, and finished: every loss and the final weights must match bit for bit.
static void check_resume(Objective objective, int cut) {
    float straight[RESUME_STEPS], resumed[RESUME_STEPS];
    Run a;
    run_start(&a, objective);
    for (int s = 0; s < RESUME_STEPS; s++) straight[s] = trainer_step(&a.trainer).loss;

    Run b;
    run_start(&b, objective);
    for (int s = 0; s < cut; s++) resumed[s] = trainer_step(&b.trainer).loss;
    const char *path = temp_path("resume");
    Error err;
    ck_assert_msg(trainer_save(path, &b.trainer, &bytes_tokenizer, &err) == 0, "%s", err.msg);
    run_free(&b);

    ModelSource ck;
    ck_assert_msg(checkpoint_load(path, &ck, &err) == 0, "%s", err.msg);
    Run c;
    ck_assert(data_from_ids(&c.data, resume_text, 4000, NULL) == 0);
    ck_assert(model_create(&c.model, &ck.header.model, &backend_cpu, ck.header.train.batch_size, 0,
                           &err) == 0);
    ck_assert(trainer_init(&c.trainer, &c.model, &ck.header.train, &c.data, &err) == 0);
    trainer_restore(&c.trainer, &ck);
    model_source_free(&ck);
    for (int s = cut; s < RESUME_STEPS; s++) resumed[s] = trainer_step(&c.trainer).loss;
    printf("  %s resume at step %d: final loss %.6f straight, %.6f resumed\n",
           objective == OBJECTIVE_MDM ? "MDM" : "AR ", cut, straight[RESUME_STEPS - 1],
           resumed[RESUME_STEPS - 1]);
    ck_assert_mem_eq(straight, resumed, sizeof straight);
    ck_assert_mem_eq(a.model.params, c.model.params, a.model.n_params * sizeof(float));
    remove(path);
    run_free(&a);
    run_free(&c);
}

START_TEST(test_resume_mdm_matches_uninterrupted) { check_resume(OBJECTIVE_MDM, 5); }
END_TEST

START_TEST(test_resume_ar_matches_uninterrupted) { check_resume(OBJECTIVE_AR, 7); }
END_TEST

// ---- bad files ----
static char *saved_bytes(size_t *n) {
    Run r;
    run_start(&r, OBJECTIVE_AR);
    trainer_step(&r.trainer);
    const char *path = temp_path("good");
    Error err;
    ck_assert(trainer_save(path, &r.trainer, &bytes_tokenizer, &err) == 0);
    run_free(&r);
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    rewind(f);
    char *bytes = malloc(*n);
    ck_assert(fread(bytes, 1, *n, f) == *n);
    fclose(f);
    remove(path);
    return bytes;
}

// Loading these bytes must fail with a message containing `expect`, allocating nothing.
static void expect_load_error(const char *name, const char *bytes, size_t n, const char *expect) {
    const char *path = write_temp_file(name, bytes, n);
    ModelSource ck;
    Error err;
    ck_assert_int_eq(checkpoint_load(path, &ck, &err), -1);
    printf("  %-10s -> %s\n", name, err.msg);
    ck_assert_msg(strstr(err.msg, expect) != NULL, "%s: got '%s'", name, err.msg);
    ck_assert_msg(strstr(err.msg, path) != NULL, "the message names the file: '%s'", err.msg);
    ck_assert_ptr_null(ck.params);
    remove(path);
}

START_TEST(test_bad_files_give_clear_errors) {
    size_t n;
    char *good = saved_bytes(&n);
    char *bad = malloc(n + 16);

    memcpy(bad, good, n);
    memcpy(bad, "GGUF\0\0\0\0", 8);
    expect_load_error("magic", bad, n, "not a dllm checkpoint");

    memcpy(bad, good, n);
    uint32_t version = 99;
    memcpy(bad + offsetof(CheckpointHeader, version), &version, sizeof version);
    expect_load_error("version", bad, n, "unsupported checkpoint version 99");

    expect_load_error("truncated", good, n - 1000, "truncated");
    expect_load_error("header", good, 20, "truncated");
    expect_load_error("empty", good, 0, "truncated");

    memcpy(bad, good, n);
    memset(bad + n, 0, 16);
    expect_load_error("trailing", bad, n + 16, "trailing bytes");

    memcpy(bad, good, n);
    bad[n - 5] ^= 0x10;  // one bit of AdamW v
    expect_load_error("corrupt", bad, n, "checksum mismatch");

    memcpy(bad, good, n);
    int layers = 0;  // a config no model can have
    memcpy(bad + offsetof(CheckpointHeader, model) + offsetof(ModelConfig, n_layer), &layers,
           sizeof layers);
    expect_load_error("config", bad, n, "bad model config");

    ModelSource ck;
    Error err;
    ck_assert_int_eq(checkpoint_load("/nonexistent/dir/x.ckpt", &ck, &err), -1);
    ck_assert_msg(strstr(err.msg, "No such file") != NULL, "%s", err.msg);
    free(good);
    free(bad);
}
END_TEST

START_TEST(test_failed_save_leaves_nothing) {
    Run r;
    run_start(&r, OBJECTIVE_MDM);
    Error err;
    ck_assert_int_eq(trainer_save("/nonexistent/dir/x.ckpt", &r.trainer, &bytes_tokenizer, &err), -1);
    ck_assert_msg(strstr(err.msg, "/nonexistent/dir/x.ckpt") != NULL, "%s", err.msg);
    run_free(&r);
}
END_TEST

// The fuzz_checkpoint seeds are checkpoints of this version: a stale seed only ever tests the
// version check (the fuzzer's coverage fell from 371 to 7 edges that way once).
START_TEST(test_fuzz_seeds_are_current) {
    const char *seeds[] = {"tests/fuzz/corpus/fuzz_checkpoint/bytes_tokenizer",
                           "tests/fuzz/corpus/fuzz_checkpoint/hf_tokenizer",
                           "tests/fuzz/corpus/fuzz_checkpoint/bd3_block4",
                           "tests/fuzz/corpus/fuzz_checkpoint/lora_adapters",
                           "tests/fuzz/corpus/fuzz_checkpoint/packed_ternary",
                           "tests/fuzz/corpus/fuzz_checkpoint/mixture_of_experts"};
    for (int i = 0; i < 6; i++) {
        ModelSource ck;
        Error err;
        ck_assert_msg(checkpoint_load(seeds[i], &ck, &err) == 0,
                      "%s (regenerate: bash scripts/make_fuzz_seeds.sh)", err.msg);
        model_source_free(&ck);
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("save, load, resume");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_round_trip_is_bit_exact);
    tcase_add_test(tc, test_resume_mdm_matches_uninterrupted);
    tcase_add_test(tc, test_resume_ar_matches_uninterrupted);
    tcase_add_test(tc, test_bad_files_give_clear_errors);
    tcase_add_test(tc, test_failed_save_leaves_nothing);
    tcase_add_test(tc, test_fuzz_seeds_are_current);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

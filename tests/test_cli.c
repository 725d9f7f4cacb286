// The dllm program as a user meets it: help, training runs, resumes, and one clear error
// line (and no output file) for each kind of bad input. Runs ./dllm from the project root.
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/json.h"
#include "kernels/backend.h"
#include "tests/testutil.h"

typedef struct {
    int status;
    char out[65536];
    char err[4096];
} Result;

static char dir[128];

static void slurp(const char *path, char *buf, size_t size) {
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, size - 1, f) : 0;
    buf[n] = '\0';
    if (f) fclose(f);
}

// Runs `./dllm <args>` and captures its exit status, stdout and stderr.
static Result *dllm(const char *args) {
    static Result r;
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "./dllm %s >%s/out 2>%s/err", args, dir, dir);
    int st = system(cmd);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    char path[300];
    snprintf(path, sizeof path, "%s/out", dir);
    slurp(path, r.out, sizeof r.out);
    snprintf(path, sizeof path, "%s/err", dir);
    slurp(path, r.err, sizeof r.err);
    return &r;
}

// Shards of the fixture's Genesis in dir/out, tokenised by `tokenizer` (a fifth held out).
static void prepare_genesis(const char *tokenizer, const char *out) {
    char args[1024];
    snprintf(args, sizeof args, "prepare --tokenizer %s --input tests/fixtures/genesis.txt "
             "--val-fraction 0.2 --out %s/%s", tokenizer, dir, out);
    Result *r = dllm(args);
    ck_assert_msg(r->status == 0, "prepare with %s: %s", tokenizer, r->err);
}

// A failure: non-zero exit, exactly one stderr line, starting "dllm: " and containing `what`.
static void assert_one_error(const Result *r, const char *what) {
    ck_assert_msg(r->status != 0, "expected failure, got exit 0");
    ck_assert_msg(strncmp(r->err, "dllm: ", 6) == 0, "stderr: '%s'", r->err);
    char *nl = strchr(r->err, '\n');
    ck_assert_msg(nl && nl[1] == '\0', "expected one line, got '%s'", r->err);
    ck_assert_msg(strstr(r->err, what) != NULL, "'%s' not in '%s'", what, r->err);
}

static int exists(const char *name) {
    char path[300];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

// Writes n bytes of repeated English text to dir/name.
static void write_text(const char *name, size_t n) {
    static const char *line = "In the beginning was the word, and the word was with the text. ";
    char path[300];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    for (size_t i = 0; i < n; i++) fputc(line[i % strlen(line)], f);
    fclose(f);
}

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/dllm_cli_%d", (int)getpid());
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", dir, dir);
    ck_assert(system(cmd) == 0);
    write_text("text.txt", 6000);
}

static void teardown(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

static const char *tiny = "--n-layer 1 --n-head 2 --d-model 32 --d-ff 64 --seq-len 32 "
                          "--batch-size 4 --warmup 5 --lr 3e-3 --log-every 1 --eval-every 0";

START_TEST(test_help) {
    Result *r = dllm("--help");
    ck_assert_int_eq(r->status, 0);
    ck_assert(strstr(r->out, "train") != NULL);
    r = dllm("train --help");
    ck_assert_int_eq(r->status, 0);
    ck_assert(strstr(r->out, "--data") && strstr(r->out, "--objective") &&
              strstr(r->out, "[mdm]"));
}
END_TEST

START_TEST(test_bad_flags) {
    char args[1024];
    assert_one_error(dllm("bogus"), "unknown command 'bogus'");
    snprintf(args, sizeof args, "train --data %s/text.txt --bogus 1", dir);
    assert_one_error(dllm(args), "unknown flag '--bogus'");
    snprintf(args, sizeof args, "train --data %s/text.txt --n-layer abc", dir);
    assert_one_error(dllm(args), "--n-layer: expected an integer, got 'abc'");
    snprintf(args, sizeof args, "train --data %s/text.txt --objective bert", dir);
    assert_one_error(dllm(args), "--objective: 'bert' is not one of mdm|ar");
    snprintf(args, sizeof args, "train --data %s/text.txt --t-sampling sobol", dir);
    assert_one_error(dllm(args), "--t-sampling: 'sobol' is not one of uniform|stratified");
    snprintf(args, sizeof args, "train --data %s/text.txt --init-std -1 --run %s/x", dir, dir);
    assert_one_error(dllm(args), "init_std must be in [0, 10) (got -1)");
    snprintf(args, sizeof args, "train --data %s/text.txt --lr", dir);
    assert_one_error(dllm(args), "--lr: missing value");
    snprintf(args, sizeof args, "train --data %s/text.txt --device tpu", dir);
    assert_one_error(dllm(args), "unknown device");
    if (!backend_cuda_available()) {  // CI: no GPU, so cuda is refused in one line
        snprintf(args, sizeof args, "train --data %s/text.txt --device cuda", dir);
        assert_one_error(dllm(args), "--device cuda: ");
    }
    snprintf(args, sizeof args, "train --data %s/text.txt --d-model 30 --run %s/x", dir, dir);
    assert_one_error(dllm(args), "multiple of n_head");
    assert_one_error(dllm("train"), "give --data FILE (pretraining) or --sft FILE");
    ck_assert(!exists("x"));
}
END_TEST

START_TEST(test_bad_data) {
    char args[1024];
    snprintf(args, sizeof args, "train --data %s/missing.txt --run %s/x", dir, dir);
    assert_one_error(dllm(args), "missing.txt: No such file or directory");
    write_text("short.txt", 20);
    snprintf(args, sizeof args, "train %s --data %s/short.txt --run %s/x", tiny, dir, dir);
    assert_one_error(dllm(args), "fewer than seq_len + 1");
    snprintf(args, sizeof args, "train %s --data %s/text.txt --val-frac 0.001 --eval-every 5 "
             "--run %s/x", tiny, dir, dir);
    assert_one_error(dllm(args), "6 validation tokens, fewer than seq_len + 1");
    ck_assert(!exists("x"));
}
END_TEST

// "memory (...): ... | activations X GB | total Y GB" of a dry run, in GB.
static void memory_plan_of(const char *out, double *activations, double *total) {
    const char *a = strstr(out, "activations "), *t = strstr(out, "| total ");
    ck_assert_msg(a && t && strstr(out, "one allocation each"), "no memory plan in '%s'", out);
    ck_assert(sscanf(a, "activations %lf GB", activations) == 1);
    ck_assert(sscanf(t, "| total %lf GB", total) == 1);
}

START_TEST(test_dry_run_memory_plan) {
    // A 1.1B-parameter model (TinyLlama's shape) at 8 x 2048 tokens: the plan without
    // allocating anything, and with recomputation it fits one 80 GB GPU with room to spare.
    char args[1024];
    double acts[2], total[2];
    for (int recompute = 0; recompute <= 1; recompute++) {
        snprintf(args, sizeof args, "train --data %s/text.txt --dry-run 1 --n-layer 22 "
                 "--d-model 2048 --n-head 32 --d-ff 5632 --seq-len 2048 --batch-size 8 "
                 "--eval-every 0 --recompute %d --run %s/big", dir, recompute, dir);
        Result *r = dllm(args);
        ck_assert_msg(r->status == 0, "%s", r->err);
        ck_assert(strstr(r->out, "params: 1131530240"));
        memory_plan_of(r->out, &acts[recompute], &total[recompute]);
        printf("  1.13B params, 8 x 2048, recompute %d: activations %.2f GB, total %.2f GB\n",
               recompute, acts[recompute], total[recompute]);
    }
    ck_assert(!exists("big"));  // a dry run writes nothing
    ck_assert(acts[1] < acts[0] / 5.0);
    ck_assert(total[1] < 40.0);
}
END_TEST

// First and last "loss X" of a training log.
static void first_last_loss(const char *log, float *first, float *last) {
    const char *p = log;
    *first = *last = -1.0f;
    while ((p = strstr(p, "| loss ")) != NULL) {
        float v = strtof(p + 7, NULL);
        if (*first < 0.0f) *first = v;
        *last = v;
        p += 7;
    }
}

static void check_training(const char *objective) {
    char args[1024];
    snprintf(args, sizeof args, "train %s --objective %s --steps 60 --eval-every 30 --data %s/text.txt "
             "--run %s/m", tiny, objective, dir, dir);
    Result *r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    float first, last;
    first_last_loss(r->out, &first, &last);
    printf("  dllm train --objective %s: loss %.4f -> %.4f over 60 steps\n", objective, first,
           last);
    ck_assert(first > 0.0f && last < 0.7f * first);
    ck_assert(exists("m/step_00000060.ckpt") && exists("m/best.ckpt") && exists("m/log.jsonl"));

    // resume to 70 steps; the checkpoint fixes everything but --steps
    snprintf(args, sizeof args, "train --resume %s/m --steps 70 --data %s/text.txt "
             "--log-every 1 --eval-every 0", dir, dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    ck_assert(strstr(r->out, "resumed") && strstr(r->out, "at step 60"));
    ck_assert(strstr(r->out, "step     61/70") && strstr(r->out, "step     70/70"));
    ck_assert(exists("m/step_00000070.ckpt"));
}

START_TEST(test_train_mdm) { check_training("mdm"); }
END_TEST

START_TEST(test_train_ar) { check_training("ar"); }
END_TEST

START_TEST(test_bad_resume) {
    char args[1024];
    snprintf(args, sizeof args, "train %s --steps 2 --data %s/text.txt --run %s/m", tiny, dir,
             dir);
    ck_assert(dllm(args)->status == 0);
    snprintf(args, sizeof args, "train --resume %s/m --lr 1 --data %s/text.txt --run %s/y",
             dir, dir, dir);
    assert_one_error(dllm(args), "--lr cannot be combined with --resume");
    // a truncated checkpoint
    char cmd[600];
    snprintf(cmd, sizeof cmd, "head -c 1000 %s/m/step_00000002.ckpt > %s/cut.ckpt", dir, dir);
    ck_assert(system(cmd) == 0);
    snprintf(args, sizeof args, "train --resume %s/cut.ckpt --data %s/text.txt --run %s/y",
             dir, dir, dir);
    assert_one_error(dllm(args), "cut.ckpt: truncated");
    // a text file is not a checkpoint
    snprintf(args, sizeof args, "train --resume %s/text.txt --data %s/text.txt --run %s/y",
             dir, dir, dir);
    assert_one_error(dllm(args), "not a dllm checkpoint");
    ck_assert(!exists("y"));
}
END_TEST

// Trains a tiny run of each kind into dir/mdm and dir/ar.
static void train_both(void) {
    char args[1024];
    const char *objectives[] = {"mdm", "ar"};
    for (int i = 0; i < 2; i++) {
        snprintf(args, sizeof args, "train %s --objective %s --steps 20 --data %s/text.txt "
                 "--run %s/%s", tiny, objectives[i], dir, dir, objectives[i]);
        Result *r = dllm(args);
        ck_assert_msg(r->status == 0, "%s", r->err);
    }
}

// An MDM and an AR model scored side by side, fine-tuned, plotted.
START_TEST(test_eval_sft_plot) {
    train_both();
    char args[1024];
    snprintf(args, sizeof args, "eval --model %s/mdm,%s/ar --data %s/text.txt --mc 4", dir, dir,
             dir);
    Result *r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    printf("%s", r->out);
    ck_assert(strstr(r->out, "nats/tok") && strstr(r->out, " mdm ") && strstr(r->out, " ar "));
    // fine-tune the MDM on prompt/response pairs, then score them and multiple-choice items
    char path[300];
    snprintf(path, sizeof path, "%s/qa.jsonl", dir);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 20; i++) fprintf(f, "{\"prompt\": \"%d+1\", \"response\": \"%d\"}\n", i, i + 1);
    fclose(f);
    snprintf(path, sizeof path, "%s/mc.jsonl", dir);
    f = fopen(path, "w");
    fprintf(f, "{\"prompt\": \"3+1\", \"choices\": [\"4\", \"9\"], \"answer\": 0}\n");
    fclose(f);
    snprintf(args, sizeof args, "train --sft %s/qa.jsonl --init %s/mdm --steps 10 --eval-every 5 "
             "--batch-size 4 --run %s/sft --cfg-drop 0.1", dir, dir, dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    ck_assert(strstr(r->out, "initialised from") && strstr(r->out, "19 train + 1 val examples"));
    snprintf(args, sizeof args, "eval --model %s/sft --sft %s/qa.jsonl --choices %s/mc.jsonl "
             "--mc 4", dir, dir, dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    ck_assert(strstr(r->out, "sft nats/tok") && strstr(r->out, "/1"));
    snprintf(args, sizeof args, "plot %s/mdm %s/ar %s/sft --out %s/p.png", dir, dir, dir, dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    ck_assert(exists("p.png"));
    // bad input: one line each
    assert_one_error(dllm("eval --data x"), "--model is required");
    snprintf(args, sizeof args, "eval --model %s/mdm", dir);
    assert_one_error(dllm(args), "give --data, --sft, --choices and/or --exact");
    snprintf(args, sizeof args, "plot %s/nothing", dir);
    assert_one_error(dllm(args), "nothing/log.jsonl: No such file");
    snprintf(args, sizeof args, "train --sft %s/qa.jsonl --init %s/mdm --objective ar --run %s/x",
             dir, dir, dir);
    assert_one_error(dllm(args), "is a diffusion model");
    snprintf(args, sizeof args, "train --sft %s/qa.jsonl --run %s/x", dir, dir);
    assert_one_error(dllm(args), "--sft without --init needs --tokenizer");
    snprintf(args, sizeof args, "train --data %s/text.txt --sft %s/qa.jsonl", dir, dir);
    assert_one_error(dllm(args), "give --data FILE (pretraining) or --sft FILE");
    ck_assert(!exists("x"));
}
END_TEST

// Last "val X nats/token" of a training log.
static float last_val(const char *log) {
    float v = -1.0f;
    for (const char *p = log; (p = strstr(p, "| val ")) != NULL; p += 6) v = strtof(p + 6, NULL);
    return v;
}

// Training's validation line and `dllm eval` of the checkpoint it scored give the same number
// for the same windows and mask draws; eval scores every window unless --windows cuts it, and
// then says how many of how many.
static void check_eval_matches_training(const char *objective) {
    char args[1024];
    snprintf(args, sizeof args, "train %s --objective %s --steps 10 --eval-every 10 "
             "--eval-windows 5 --eval-mc 3 --data %s/text.txt --run %s/%s",
             tiny, objective, dir, dir, objective);
    Result *r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    ck_assert_msg(strstr(r->out, "5 windows x"), "%s", r->out);
    char trained[32], evaluated[32];
    snprintf(trained, sizeof trained, "%.4f", last_val(r->out));
    snprintf(args, sizeof args, "eval --model %s/%s/step_00000010.ckpt --data %s/text.txt "
             "--windows 5 --mc 3", dir, objective, dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    printf("%s", r->out);
    snprintf(evaluated, sizeof evaluated, "%.4f", atof(strrchr(r->out, '|') + 1));
    ck_assert_str_eq(trained, evaluated);
    ck_assert_msg(strstr(r->out, strcmp(objective, "ar") ? " 5/9 x 3" : " 5/9 x 1"), "%s",
                  r->out);
    // by default: all 9 windows of the held-out tail, no cut shown
    snprintf(args, sizeof args, "eval --model %s/%s --data %s/text.txt --mc 3", dir, objective,
             dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    ck_assert_msg(strstr(r->out, strcmp(objective, "ar") ? " 9 x 3" : " 9 x 1") &&
                  !strstr(r->out, "/9"), "%s", r->out);
}

// A pretrained (not fine-tuned) model answers plain-text questions: the prompt is the start of
// a line, the answer the rest of it (dllm task reversal --text scores this way).
START_TEST(test_exact_match_plain_text) {
    char path[300], args[1024];
    snprintf(path, sizeof path, "%s/facts.txt", dir);
    FILE *f = fopen(path, "w");
    static const char *const facts[4][2] = {
        {"Bodeka's parent is", " Rimasu."}, {"Zalama's parent is", " Vekimu."},
        {"Titoza's parent is", " Lomoni."}, {"Sebuda's parent is", " Pezava."}};
    for (int r = 0; r < 60; r++)
        for (int i = 0; i < 4; i++) fprintf(f, "%s%s\n", facts[(i + r) % 4][0], facts[(i + r) % 4][1]);
    fclose(f);
    snprintf(path, sizeof path, "%s/facts.jsonl", dir);
    f = fopen(path, "w");
    for (int i = 0; i < 4; i++)
        fprintf(f, "{\"prompt\": \"%s\", \"response\": \"%s\"}\n", facts[i][0], facts[i][1]);
    fclose(f);
    snprintf(args, sizeof args, "train --n-layer 2 --n-head 2 --d-model 64 --d-ff 128 "
             "--seq-len 32 --batch-size 8 --warmup 5 --lr 3e-3 --eval-every 0 --objective ar "
             "--steps 300 --data %s/facts.txt --val-frac 0 --run %s/facts", dir, dir);
    Result *r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    snprintf(args, sizeof args, "eval --model %s/facts --exact %s", dir, path);
    r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    printf("%s", r->out);
    ck_assert_msg(strstr(r->out, "4/4"), "%s", r->out);
}
END_TEST

START_TEST(test_eval_matches_training) {
    check_eval_matches_training("mdm");
    check_eval_matches_training("ar");
}
END_TEST

// dir/run evaluates (nats/token) and samples from 'In the' with sample_flags; the sample's
// result, checked to have succeeded and to hold the prompt.
static Result *eval_and_sample(const char *run, const char *sample_flags) {
    char args[1024];
    snprintf(args, sizeof args, "eval --model %s/%s --data %s/text.txt --mc 4", dir, run, dir);
    Result *r = dllm(args);
    ck_assert_msg(r->status == 0 && strstr(r->out, "nats/tok"), "%s", r->err);
    snprintf(args, sizeof args, "sample --model %s/%s --prompt 'In the' %s --temperature 0",
             dir, run, sample_flags);
    r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    printf("  %s sample: %s", run, r->out);
    ck_assert(strstr(r->out, "In the"));
    return r;
}

// AR-to-diffusion adaptation: an AR run continued as an MDM (bidirectional attention, Dream's
// logit shift) keeps what it learned: after the same MDM steps it scores a far lower ELBO
// than an MDM trained from scratch, and it samples and evaluates as a shifted model.
START_TEST(test_adapt_ar_to_mdm) {
    char args[1024];
    snprintf(args, sizeof args, "train %s --objective ar --steps 60 --data %s/text.txt "
             "--run %s/ar", tiny, dir, dir);
    ck_assert(dllm(args)->status == 0);
    const char *mdm_steps = "--steps 20 --eval-every 20 --eval-mc 4 --batch-size 4 --warmup 5 "
                            "--lr 3e-3 --log-every 1";
    snprintf(args, sizeof args, "train --init %s/ar --objective mdm %s --anneal-steps 10 "
             "--data %s/text.txt --run %s/adapted", dir, mdm_steps, dir, dir);
    Result *r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    ck_assert(strstr(r->out, "adapting") && strstr(r->out, "logit shift 1"));
    ck_assert(strstr(r->out, "causal to bidirectional over the first 10 steps"));
    float adapted = last_val(r->out);
    snprintf(args, sizeof args, "train %s --objective mdm %s --data %s/text.txt --run %s/fresh",
             tiny, mdm_steps, dir, dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    float fresh = last_val(r->out);
    printf("  after 20 mdm steps: adapted from ar %.4f, from scratch %.4f nats/token (ELBO)\n",
           adapted, fresh);
    ck_assert(adapted > 0.0f && fresh > 0.0f && adapted < 0.75f * fresh);
    // the checkpoint carries the shift: eval and the sampler read row i - 1
    eval_and_sample("adapted", "--gen-length 16 --block-length 8 --steps 8");
    // bad flags: one line each
    snprintf(args, sizeof args, "train --init %s/ar --objective mdm --logit-shift 2 --data "
             "%s/text.txt --run %s/x", dir, dir, dir);
    assert_one_error(dllm(args), "--logit-shift must be 0 or 1");
    snprintf(args, sizeof args, "train --init %s/ar --logit-shift 1 --data %s/text.txt "
             "--run %s/x", dir, dir, dir);
    assert_one_error(dllm(args), "--logit-shift is for mdm models");
    // model flags may repeat the checkpoint's shape (a sweep's shared Base), never change it
    snprintf(args, sizeof args, "train --init %s/ar --objective mdm --d-model 64 --data "
             "%s/text.txt --run %s/x", dir, dir, dir);
    assert_one_error(dllm(args), "--d-model 64, but");
    snprintf(args, sizeof args, "train --init %s/ar --objective mdm %s --steps 2 --data "
             "%s/text.txt --run %s/same", dir, tiny, dir, dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    ck_assert(!exists("x"));
}
END_TEST

// Block diffusion from the command line: train (the loss falls, validation is the bd3 ELBO),
// evaluate, sample up to --max-length block by block, adapt an AR run to it; bad flags.
START_TEST(test_bd3_train_eval_sample) {
    char args[1024];
    snprintf(args, sizeof args, "train %s --objective bd3 --block-size 8 --steps 60 "
             "--eval-every 30 --eval-mc 4 --data %s/text.txt --run %s/bd3", tiny, dir, dir);
    Result *r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    float first, last;
    first_last_loss(r->out, &first, &last);
    printf("  dllm train --objective bd3 --block-size 8: loss %.4f -> %.4f, val %.4f\n", first,
           last, last_val(r->out));
    ck_assert(strstr(r->out, "objective bd3") && strstr(r->out, "blocks: 8 positions each"));
    // the per-step loss is noisy (a few masked blocks per step): the held-out ELBO falls
    ck_assert(first > 0.0f && last_val(r->out) < 0.7f * first && strstr(r->out, "(ELBO)"));
    r = eval_and_sample("bd3", "--max-length 20 --steps 20");
    ck_assert(strstr(r->err, "20 forward passes"));
    // an AR run adapted to block diffusion
    snprintf(args, sizeof args, "train %s --objective ar --steps 20 --data %s/text.txt "
             "--run %s/ar", tiny, dir, dir);
    ck_assert(dllm(args)->status == 0);
    snprintf(args, sizeof args, "train --init %s/ar --objective bd3 --block-size 4 --steps 5 "
             "--eval-every 0 --batch-size 4 --data %s/text.txt --run %s/ar_bd3", dir, dir, dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    ck_assert(strstr(r->out, "adapting") && strstr(r->out, "to bd3: block-causal attention"));
    // bad flags: one line each, nothing written
    snprintf(args, sizeof args, "train %s --objective bd3 --block-size 5 --data %s/text.txt "
             "--run %s/x", tiny, dir, dir);
    assert_one_error(dllm(args), "block_size 5 must divide seq_len 32");
    snprintf(args, sizeof args, "train %s --block-size 4 --data %s/text.txt --run %s/x", tiny,
             dir, dir);
    assert_one_error(dllm(args), "--block-size is for the bd3 objective");
    snprintf(args, sizeof args, "sample --model %s/bd3 --max-length 8 --gen-length 8", dir);
    assert_one_error(dllm(args), "give --max-length (> 0) or --gen-length, not both");
    snprintf(args, sizeof args, "export %s/bd3 --out %s/x", dir, dir);
    assert_one_error(dllm(args), "has no Hugging Face layout");
    char path[300];
    snprintf(path, sizeof path, "%s/mc.jsonl", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"prompt\": \"In the\", \"choices\": [\" word\", \" text\"], \"answer\": 0}\n");
    fclose(f);
    snprintf(args, sizeof args, "eval --model %s/bd3 --choices %s", dir, path);
    assert_one_error(dllm(args), "not built for block diffusion models");
    ck_assert(!exists("x"));
}
END_TEST

START_TEST(test_sample) {
    train_both();
    char args[1024];
    // the diffusion sampler, traced: one JSON line per step, 8 steps of 2 tokens each
    snprintf(args, sizeof args, "sample --model %s/mdm --prompt 'In the' --gen-length 16 "
             "--block-length 8 --steps 8 --trace %s/trace.jsonl", dir, dir);
    Result *r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    ck_assert(strncmp(r->out, "In the", 6) == 0);
    ck_assert_msg(strstr(r->err, "llada sampler: 8 steps, 8 forward passes") != NULL, "%s", r->err);
    char path[300], trace[65536];
    snprintf(path, sizeof path, "%s/trace.jsonl", dir);
    slurp(path, trace, sizeof trace);
    int lines = 0, commits = 0;
    for (const char *p = trace; (p = strchr(p, '\n')) != NULL; p++) lines++;
    for (const char *p = trace; (p = strstr(p, "\"pos\"")) != NULL; p++) commits++;
    ck_assert_int_eq(lines, 8);
    ck_assert_int_eq(commits, 16);
    ck_assert(strncmp(trace, "{\"step\": 0, \"block\": 0, \"committed\": [{\"seq\": 0", 45) == 0);
    ck_assert(!exists("trace.jsonl.tmp"));

    // --show draws a frame per step; threshold decoding takes at most as many passes
    snprintf(args, sizeof args, "sample --model %s/mdm --prompt 'In the' --gen-length 16 "
             "--block-length 8 --threshold 0.5 --cache dual --show 1", dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    ck_assert(strstr(r->out, "step 1 (block 0)") != NULL && strstr(r->out, "_") != NULL);

    // the AR sampler, chosen from the checkpoint
    snprintf(args, sizeof args, "sample --model %s/ar --prompt 'In the' --gen-length 10 "
             "--temperature 0.8 --top-k 20 --top-p 0.9 --batch 2", dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    ck_assert(strstr(r->out, "--- prompt 0, sample 1") != NULL);
    ck_assert_msg(strstr(r->err, "ar sampler: 10 steps, 10 forward passes") != NULL, "%s", r->err);

    // prompts of different lengths from a file, generated together
    char cmd[600];
    snprintf(cmd, sizeof cmd, "printf 'In\\nthe word was\\n' > %s/prompts.txt", dir);
    ck_assert(system(cmd) == 0);
    snprintf(args, sizeof args, "sample --model %s/mdm --prompt-file %s/prompts.txt "
             "--gen-length 8 --block-length 8 --steps 4", dir, dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    ck_assert(strstr(r->out, "--- prompt 0, sample 0\nIn") != NULL);
    ck_assert(strstr(r->out, "--- prompt 1, sample 0\nthe word was") != NULL);
    ck_assert_msg(strstr(r->err, "in 2 sequences") != NULL, "%s", r->err);

    // speculative decoding: the AR model drafting for itself gives its own greedy text, every
    // draft accepted (4 + 1 tokens per target pass); an MDM drafter gives the same text
    snprintf(args, sizeof args, "sample --model %s/ar --prompt 'In the' --gen-length 10 "
             "--temperature 0", dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    char *alone = strdup(r->out);
    snprintf(args, sizeof args, "sample --model %s/ar --prompt 'In the' --gen-length 10 "
             "--temperature 0 --draft %s/ar --draft-length 4 --trace %s/spec.jsonl", dir, dir, dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    ck_assert_str_eq(r->out, alone);
    ck_assert_msg(strstr(r->err, "speculative sampler: 2 target passes") &&
                  strstr(r->err, "acceptance length 5.00"), "%s", r->err);
    snprintf(path, sizeof path, "%s/spec.jsonl", dir);
    slurp(path, trace, sizeof trace);
    commits = 0;
    for (const char *p = trace; (p = strstr(p, "\"pos\"")) != NULL; p++) commits++;
    ck_assert_int_eq(commits, 10);
    ck_assert_msg(strstr(trace, "], \"drafted\": 4, \"accepted\": 4}\n"), "%s", trace);
    snprintf(args, sizeof args, "sample --model %s/ar --prompt 'In the' --gen-length 10 "
             "--temperature 0 --draft %s/mdm --draft-length 3 --draft-steps 2", dir, dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    ck_assert_str_eq(r->out, alone);
    free(alone);
}
END_TEST

START_TEST(test_sample_bad_input) {
    train_both();
    char args[1024];
    snprintf(args, sizeof args, "sample --model %s/none.ckpt", dir);
    assert_one_error(dllm(args), "none.ckpt: No such file or directory");
    snprintf(args, sizeof args, "sample --model %s/text.txt", dir);
    assert_one_error(dllm(args), "not a dllm checkpoint");
    snprintf(args, sizeof args, "sample --model %s/mdm --prompt '%s' --gen-length 8 "
             "--block-length 8 --steps 8", dir, "a prompt that is longer than the context");
    assert_one_error(dllm(args), "exceeds the model's context of 32 tokens");
    snprintf(args, sizeof args, "sample --model %s/mdm --gen-length 12 --block-length 8", dir);
    assert_one_error(dllm(args), "--gen-length 12 is not a multiple of --block-length 8");
    snprintf(args, sizeof args, "sample --model %s/ar --sampler llada --prompt x", dir);
    assert_one_error(dllm(args), "this one is autoregressive");
    snprintf(args, sizeof args, "sample --model %s/mdm --sampler ar --prompt x", dir);
    assert_one_error(dllm(args), "this one is a masked-diffusion model");
    snprintf(args, sizeof args, "sample --model %s/mdm --prompt-file %s/none.txt", dir, dir);
    assert_one_error(dllm(args), "none.txt: No such file or directory");
    snprintf(args, sizeof args, "sample --model %s/mdm --draft %s/ar --prompt x", dir, dir);
    assert_one_error(dllm(args), "needs an AR --model to verify");
    snprintf(args, sizeof args, "sample --model %s/ar --draft %s/none --prompt x", dir, dir);
    assert_one_error(dllm(args), "none: No such file or directory");
    snprintf(args, sizeof args, "sample --model %s/ar --draft %s/mdm --prompt x --top-p 0.9 "
             "--gen-length 8", dir, dir);
    assert_one_error(dllm(args), "temperature alone");
    snprintf(args, sizeof args, "sample --model %s/mdm --remasking sometimes", dir);
    assert_one_error(dllm(args), "'sometimes' is not one of low_confidence|random");
    snprintf(args, sizeof args, "sample --model %s/mdm --gen-length 16 --block-length 8 "
             "--steps 8 --trace %s/t.jsonl --prompt '%s'", dir, dir,
             "a prompt that is longer than the context");
    assert_one_error(dllm(args), "exceeds");
    ck_assert(!exists("t.jsonl") && !exists("t.jsonl.tmp"));
}
END_TEST

// The path from text to samples: tokenizer train -> prepare -> train -> sample, on the
// Genesis fixture with a SentencePiece BPE.
START_TEST(test_tokenizer_prepare_train_sample) {
    char args[1024];
    snprintf(args, sizeof args, "tokenizer train --input tests/fixtures/genesis.txt --vocab 600 "
             "--out %s/tok.model", dir);
    Result *r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    ck_assert_msg(strstr(r->out, "600 pieces") && strstr(r->out, "[MASK] 4"), "%s", r->out);
    snprintf(args, sizeof args, "tokenizer encode --tokenizer %s/tok.model --text 'And God said'",
             dir);
    r = dllm(args);
    ck_assert_int_eq(r->status, 0);
    char ids[256];
    snprintf(ids, sizeof ids, "%.250s", r->out);
    ids[strcspn(ids, "\n")] = '\0';
    snprintf(args, sizeof args, "tokenizer decode --tokenizer %s/tok.model --ids '%s'", dir, ids);
    r = dllm(args);
    ck_assert_str_eq(r->out, "And God said\n");

    snprintf(args, sizeof args, "prepare --tokenizer %s/tok.model --input "
             "tests/fixtures/genesis.txt --val-fraction 0 --out %s/shards", dir, dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    ck_assert_msg(strstr(r->out, "6912 train tokens (6 documents") &&
                  exists("shards/train_000000.bin") && exists("shards/tokenizer.model"), "%s",
                  r->out);
    // training picks up the tokenizer beside the shards; sampling reads it from the checkpoint
    snprintf(args, sizeof args, "train %s --data %s/shards --steps 4 --eval-every 2 --run %s/m",
             tiny, dir, dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    ck_assert_msg(strstr(r->out, "tokenizer: sentencepiece, 600 tokens"), "%s", r->out);
    snprintf(args, sizeof args, "sample --model %s/m --prompt 'And God' --gen-length 8 "
             "--block-length 8 --steps 4", dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    ck_assert_msg(strncmp(r->out, "And God", 7) == 0, "%s", r->out);
    // exported to LLaDA's layout (tokenizer.model beside it), the directory samples the same
    char text[512];
    snprintf(text, sizeof text, "%.500s", r->out);
    snprintf(args, sizeof args, "export %s/m --out %s/m_hf", dir, dir);
    ck_assert_msg(dllm(args)->status == 0, "export");
    snprintf(args, sizeof args, "sample --model %s/m_hf --prompt 'And God' --gen-length 8 "
             "--block-length 8 --steps 4", dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    ck_assert_str_eq(r->out, text);
    // a shard directory without its tokenizer, and shards from another tokenizer
    snprintf(args, sizeof args, "rm %s/shards/tokenizer.model", dir);
    ck_assert(system(args) == 0);
    snprintf(args, sizeof args, "train %s --data %s/shards --steps 1 --run %s/x", tiny, dir, dir);
    assert_one_error(dllm(args), "no tokenizer (tokenizer.model or tokenizer.json): pass --tokenizer");
    snprintf(args, sizeof args, "train %s --data %s/shards --tokenizer bytes --steps 1 --run %s/x",
             tiny, dir, dir);
    assert_one_error(dllm(args), "train_000000.bin: tokenized with a different tokenizer");
    snprintf(args, sizeof args, "prepare --tokenizer %s/none.model --input x --out %s/s2", dir, dir);
    assert_one_error(dllm(args), "none.model: No such file");
    ck_assert(!exists("x") && !exists("s2"));
}
END_TEST

// The same path with a Hugging Face tokenizer: encode/decode, prepare (its files copied beside
// the shards), SFT in its chat template, sampling with --chat 1, and its errors.
START_TEST(test_hf_tokenizer_prepare_sft_sample) {
    char args[1024];
    Result *r = dllm("tokenizer encode --tokenizer tests/fixtures/hf/qwen2 --text 'Ångström 12'");
    ck_assert_msg(r->status == 0, "%s", r->err);
    char ids[256];
    snprintf(ids, sizeof ids, "%.250s", r->out);
    ids[strcspn(ids, "\n")] = '\0';
    snprintf(args, sizeof args, "tokenizer decode --tokenizer tests/fixtures/hf/qwen2/tokenizer.json "
             "--ids '%s'", ids);
    r = dllm(args);
    ck_assert_str_eq(r->out, "Ångström 12\n");
    snprintf(args, sizeof args, "prepare --tokenizer tests/fixtures/hf/llama3 --input "
             "tests/fixtures/genesis.txt --val-fraction 0 --out %s/hf", dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    ck_assert(exists("hf/train_000000.bin") && exists("hf/tokenizer.json") &&
              exists("hf/tokenizer_config.json"));
    snprintf(args, sizeof args, "train %s --data %s/hf --steps 2 --run %s/hfm", tiny, dir, dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    ck_assert_msg(strstr(r->out, "tokenizer: tokenizer.json, 1009 tokens"), "%s", r->out);
    // SFT in the template's layout, then a chat prompt in the same layout
    FILE *f = fopen(strcat(strcpy(args, dir), "/qa.jsonl"), "w");
    fputs("{\"prompt\": \"What is 2+2?\", \"response\": \"4\"}\n", f);
    fclose(f);
    snprintf(args, sizeof args, "train %s --sft %s/qa.jsonl --tokenizer tests/fixtures/hf/llama3 "
             "--steps 2 --val-frac 0 --run %s/hfsft", tiny, dir, dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    snprintf(args, sizeof args, "sample --model %s/hfsft --prompt 'What is 2+2?' --chat 1 "
             "--gen-length 0 --show 1", dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    ck_assert_msg(strstr(r->out, "<|start_header_id|>assistant<|end_header_id|>"), "%s", r->out);
    // errors: a tokenizer with no chat template, a broken tokenizer.json
    snprintf(args, sizeof args, "mkdir %s/plain && cp tests/fixtures/hf/llama3/tokenizer.json "
             "%s/plain/ && echo '{\"eos_token\": \"<|eot_id|>\"}' > %s/plain/tokenizer_config.json",
             dir, dir, dir);
    ck_assert(system(args) == 0);
    snprintf(args, sizeof args, "train %s --sft %s/qa.jsonl --tokenizer %s/plain --steps 1 "
             "--run %s/nochat", tiny, dir, dir, dir);
    assert_one_error(dllm(args), "no chat_template");
    ck_assert(!exists("nochat"));
    snprintf(args, sizeof args, "printf '{\"model\": [' > %s/tokenizer.json", dir);
    ck_assert(system(args) == 0);
    snprintf(args, sizeof args, "tokenizer encode --tokenizer %s/tokenizer.json --text hi", dir);
    assert_one_error(dllm(args), "tokenizer.json: not JSON: line 1");
}
END_TEST

// An imported model through every command: sample (diffusion and AR), eval, the memory plan
// without weights, fine-tuning from it, export (and the refusals), logits.
// A GGUF file through the commands: sample (its tokenizer from the file), the same text as the
// model directory it was written from, fine-tuning from it, export to a directory that samples
// the same; a type dllm does not read refused by name.
START_TEST(test_gguf_models) {
    char args[1024];
    static char want[sizeof ((Result *)0)->out];
    const char *flags = "--prompt \"Hello world\" --gen-length 8 --steps 8 --block-length 8 "
                        "--temperature 0";
    snprintf(args, sizeof args, "sample --model tests/fixtures/hf_models/llada %s", flags);
    Result *r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    snprintf(want, sizeof want, "%s", r->out);
    snprintf(args, sizeof args, "sample --model tests/fixtures/gguf/llada.f32.gguf %s", flags);
    r = dllm(args);
    ck_assert_msg(r->status == 0 && strcmp(r->out, want) == 0, "%s | %s", r->out, want);
    snprintf(args, sizeof args, "export tests/fixtures/gguf/llama.q4_0.gguf --out %s/from_gguf",
             dir);
    ck_assert_msg(dllm(args)->status == 0, "export");
    snprintf(args, sizeof args, "sample --model tests/fixtures/gguf/llama.q4_0.gguf %s", flags);
    r = dllm(args);
    ck_assert_msg(r->status == 0 && strstr(r->err, "ar sampler"), "%s", r->err);
    snprintf(want, sizeof want, "%s", r->out);
    snprintf(args, sizeof args, "sample --model %s/from_gguf %s", dir, flags);
    r = dllm(args);
    ck_assert_msg(r->status == 0 && strcmp(r->out, want) == 0, "%s | %s", r->out, want);
    // shards prepared with the file's tokenizer (a tokenizer.json made from its vocabulary)
    prepare_genesis("tests/fixtures/gguf/llama.q8_0.gguf", "sh");
    snprintf(args, sizeof args, "train --init tests/fixtures/gguf/llama.q8_0.gguf --data %s/sh "
             "--steps 2 --batch-size 2 --seq-len 16 --run %s/ft", dir, dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    assert_one_error(dllm("sample --model tests/fixtures/gguf/iq2_xs.gguf --prompt hi"),
                     "tensor token_embd.weight is IQ2_XS");
    // a Q4_0 file whose matrices are whole blocks runs in 4 bits unless told otherwise; eval
    // takes --weights too
    const char *blocks = "sample --model tests/fixtures/gguf/llada_blocks.q4_0.gguf --device cpu";
    snprintf(args, sizeof args, "%s %s --dry-run 1", blocks, flags);
    r = dllm(args);
    ck_assert_msg(r->status == 0 && strstr(r->out, "4-bit weights"), "%s%s", r->out, r->err);
    snprintf(args, sizeof args, "%s %s --weights fp32 --dry-run 1", blocks, flags);
    r = dllm(args);
    ck_assert_msg(r->status == 0 && strstr(r->out, "fp32 weights"), "%s%s", r->out, r->err);
    snprintf(args, sizeof args, "%s %s", blocks, flags);
    r = dllm(args);
    ck_assert_msg(r->status == 0 && strstr(r->err, "llada sampler: 8 steps"), "%s", r->err);
    prepare_genesis("tests/fixtures/gguf/llada_blocks.q8_0.gguf", "sh8");
    snprintf(args, sizeof args, "eval --model tests/fixtures/gguf/llada_blocks.q8_0.gguf --data "
             "%s/sh8 --windows 2 --device cpu --weights q8", dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0 && strstr(r->out, "llada_blocks.q8_0.gguf mdm"), "%s%s", r->out,
                  r->err);
    snprintf(args, sizeof args, "sample --model tests/fixtures/gguf/llama.bf16.gguf %s --device "
             "cpu --weights bf16 --dry-run 1", flags);
    r = dllm(args);
    ck_assert_msg(r->status == 0 && strstr(r->out, "bf16 (bf16 projection inputs) weights"),
                  "%s%s", r->out, r->err);
    snprintf(args, sizeof args, "sample --model tests/fixtures/gguf/llama.bf16.gguf %s --device "
             "cpu --weights bf16", flags);
    r = dllm(args);
    ck_assert_msg(r->status == 0 && strstr(r->err, "ar sampler"), "%s", r->err);
    assert_one_error(dllm("sample --model tests/fixtures/gguf/llada.f32.gguf --prompt hi "
                          "--device cpu --weights q8"),
                     "d_ff 48 must be multiples of it");
    assert_one_error(dllm("sample --model tests/fixtures/gguf/llada.f32.gguf --prompt hi "
                          "--device cpu --weights int4"),
                     "--weights: unknown kind 'int4' (auto, fp32, bf16, q8, q4)");
    // dllm quantize writes the Q4_0 file gguf-py wrote: the same samples
    snprintf(args, sizeof args, "quantize tests/fixtures/gguf/llada.f32.gguf --format q4 --out "
             "%s/llada.q4.gguf", dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0 && strstr(r->out, "tensors in Q4_0"), "%s%s", r->out, r->err);
    snprintf(args, sizeof args, "sample --model tests/fixtures/gguf/llada.q4_0.gguf %s", flags);
    r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    snprintf(want, sizeof want, "%s", r->out);
    snprintf(args, sizeof args, "sample --model %s/llada.q4.gguf %s", dir, flags);
    r = dllm(args);
    ck_assert_msg(r->status == 0 && strcmp(r->out, want) == 0, "%s | %s", r->out, want);
    snprintf(args, sizeof args, "quantize tests/fixtures/gguf/llada.f32.gguf --format q5 --out "
             "%s/q5.gguf", dir);
    assert_one_error(dllm(args), "--format: 'q5' is not one of q8|q4");
    snprintf(args, sizeof args, "quantize tests/fixtures/hf_models/llada --format q8 --out "
             "%s/hf.gguf", dir);
    assert_one_error(dllm(args), "MODEL must be a GGUF file");
    snprintf(args, sizeof args, "quantize %s/llada.q4.gguf --format q8 --out %s/twice.gguf", dir,
             dir);
    assert_one_error(dllm(args), "in Q4_0 already");
    snprintf(args, sizeof args, "%s/twice.gguf", dir);
    ck_assert(access(args, F_OK) != 0);  // no partial output
    snprintf(args, sizeof args, "%s/twice.gguf.tmp", dir);
    ck_assert(access(args, F_OK) != 0);
}
END_TEST

START_TEST(test_imported_models) {
    char args[1024];
    Result *r = dllm("sample --model tests/fixtures/hf_models/dream --prompt hello --gen-length 8 "
                     "--block-length 4 --steps 4 --cache dual");
    ck_assert_msg(r->status == 0, "%s", r->err);
    ck_assert_msg(strstr(r->err, "llada sampler: 4 steps"), "%s", r->err);  // stats: stderr
    r = dllm("sample --model tests/fixtures/hf_models/qwen2 --prompt hello --gen-length 8");
    ck_assert_msg(r->status == 0 && strstr(r->err, "ar sampler"), "%s", r->err);
    // qwen2's 1024 logits, 1005 tokens: an id the tokenizer lacks is left out of the text
    r = dllm("sample --model tests/fixtures/hf_models/qwen2 --prompt hello --gen-length 60 "
             "--temperature 1.5 --seed 1");
    ck_assert_msg(r->status == 0 && strstr(r->err, "past the tokenizer's 1005 tokens"), "%s",
                  r->err);
    r = dllm("sample --model tests/fixtures/hf_models/llada_bf16 --prompt hello --gen-length 8 "
             "--block-length 8 --steps 8 --dry-run 1 --device cpu");
    ck_assert_msg(r->status == 0, "%s", r->err);
    ck_assert_msg(strstr(r->out, "1 rows of") && strstr(r->out, "bf16 weights") &&
                  strstr(r->out, "grads 0 KB | optimizer 0 KB"), "%s", r->out);
    prepare_genesis("tests/fixtures/hf_models/llama", "sh");
    snprintf(args, sizeof args, "eval --model tests/fixtures/hf_models/llada,"
             "tests/fixtures/hf_models/llama --data %s/sh --windows 2", dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0 && strstr(r->out, "hf_models/llama ar"), "%s%s", r->out, r->err);
    snprintf(args, sizeof args, "train --init tests/fixtures/hf_models/llama --data %s/sh "
             "--steps 2 --batch-size 2 --seq-len 16 --run %s/ft", dir, dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    // a Qwen3 base (q/k norms) adapted to diffusion (Dream's recipe: its tokenizer's <|mask|> as
    // [MASK]), then sampled with LLaDA's sampler
    prepare_genesis("tests/fixtures/hf_models/qwen3", "shq");
    snprintf(args, sizeof args, "train --init tests/fixtures/hf_models/qwen3 --data %s/shq "
             "--objective mdm --steps 3 --batch-size 2 --seq-len 16 --run %s/qwen3_mdm", dir, dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0 && strstr(r->out, "adapting") && strstr(r->out, "q/k norms"),
                  "%s%s", r->out, r->err);
    snprintf(args, sizeof args, "sample --model %s/qwen3_mdm --prompt hi --gen-length 4 "
             "--block-length 4 --steps 4", dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0 && strstr(r->err, "llada sampler"), "%s", r->err);
    snprintf(args, sizeof args, "train --init tests/fixtures/hf_models/qwen3 --data %s/shq "
             "--objective mdm --steps 1 --seq-len 16 --mask-id 1020 --run %s/qwen3_x", dir, dir);
    assert_one_error(dllm(args), "--mask-id 1020, but the tokenizer of "
                                 "tests/fixtures/hf_models/qwen3 names its mask token (1003)");
    // a tokenizer that names no mask token (as Qwen3's own): --mask-id picks an unused id
    snprintf(args, sizeof args, "cp -r tests/fixtures/hf_models/qwen3 %s/q3 && sed -i "
             "'s/<|mask|>/<|reserved_9|>/' %s/q3/tokenizer.json && sed -i '/\"mask_token\"/d' "
             "%s/q3/tokenizer_config.json", dir, dir, dir);
    ck_assert(system(args) == 0);
    snprintf(args, sizeof args, "%s/q3", dir);
    prepare_genesis(args, "shq3");
    snprintf(args, sizeof args, "train --init %s/q3 --data %s/shq3 --objective mdm --steps 2 "
             "--batch-size 2 --seq-len 16 --run %s/q3_mdm", dir, dir, dir);
    assert_one_error(dllm(args), "names none: give --mask-id, an unused id in [1005, 1024)");
    snprintf(args, sizeof args, "train --init %s/q3 --data %s/shq3 --objective mdm --steps 2 "
             "--batch-size 2 --seq-len 16 --mask-id 1020 --run %s/q3_mdm", dir, dir, dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0 && strstr(r->out, "mask_id 1020"), "%s%s", r->out, r->err);
    snprintf(args, sizeof args, "sample --model %s/q3_mdm --prompt hi --gen-length 4 "
             "--block-length 4 --steps 4", dir);
    ck_assert_msg(dllm(args)->status == 0, "sample of the model adapted with --mask-id");
    // Mistral's sliding window: LoRA fine-tuning and sampling work, adaptation is refused
    snprintf(args, sizeof args, "train --init tests/fixtures/hf_models/mistral --data %s/sh "
             "--steps 2 --batch-size 2 --seq-len 16 --lora-rank 2 --run %s/mistral_lora", dir,
             dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0 && strstr(r->out, "sliding window of 4 keys"), "%s%s", r->out,
                  r->err);
    snprintf(args, sizeof args, "sample --model %s/mistral_lora --prompt hi --gen-length 4", dir);
    ck_assert_msg(dllm(args)->status == 0, "sample of the Mistral LoRA run");
    snprintf(args, sizeof args, "train --init tests/fixtures/hf_models/mistral --data %s/sh "
             "--objective mdm --steps 2 --seq-len 16 --run %s/mistral_mdm", dir, dir);
    assert_one_error(dllm(args), "attends through a sliding window of 4 keys; adapting it to "
                                 "bidirectional attention is not built");
    // LLaDA-MoE: LoRA on attention and on every expert (routed and shared), sampled; the
    // adapters merged into the experts give the run's own ELBO; PEFT's layout is refused
    snprintf(args, sizeof args, "train --init tests/fixtures/hf_models/llada_moe --data %s/sh "
             "--steps 3 --batch-size 2 --seq-len 16 --lora-rank 2 --lora-targets q,v,gate,up,down "
             "--run %s/moe_lora", dir, dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0 && strstr(r->out, "experts: 8 of width 16, 2 active per token") &&
                  strstr(r->out, "active per token)"), "%s%s", r->out, r->err);
    snprintf(args, sizeof args, "sample --model %s/moe_lora --prompt hi --gen-length 4 "
             "--block-length 4 --steps 4", dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0 && strstr(r->err, "llada sampler"), "%s", r->err);
    snprintf(args, sizeof args, "export %s/moe_lora --out %s/moe_peft", dir, dir);
    assert_one_error(dllm(args), "PEFT adapters of a mixture of experts are not built");
    snprintf(args, sizeof args, "export %s/moe_lora --out %s/moe_merged --merge 1", dir, dir);
    ck_assert_msg(dllm(args)->status == 0, "merged export of the MoE LoRA run");
    char moe_elbo[2][64];
    for (int i = 0; i < 2; i++) {
        snprintf(args, sizeof args, "eval --model %s/%s --data %s/sh --windows 4", dir,
                 i ? "moe_merged" : "moe_lora", dir);
        r = dllm(args);
        ck_assert_msg(r->status == 0, "%s", r->err);
        const char *row = strstr(r->out, i ? "moe_merged" : "moe_lora");
        ck_assert(row && sscanf(strchr(row, '|') + 1, "%63s", moe_elbo[i]) == 1);
    }
    printf("  LLaDA-MoE LoRA run: ELBO %s nats/token, merged export %s\n", moe_elbo[0],
           moe_elbo[1]);
    ck_assert_str_eq(moe_elbo[0], moe_elbo[1]);
    // LLaDA 2.0 (block diffusion, the grouped router): LoRA trains bd3, and it samples
    snprintf(args, sizeof args, "train --init tests/fixtures/hf_models/llada2 --data %s/sh "
             "--steps 2 --batch-size 2 --seq-len 64 --lora-rank 2 --run %s/llada2_lora", dir, dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0 && strstr(r->out, "objective bd3") &&
                  strstr(r->out, "sigmoid, grouped router: 4 groups, best 2, scale 2.5"),
                  "%s%s", r->out, r->err);
    snprintf(args, sizeof args, "sample --model %s/llada2_lora --prompt hi --gen-length 32 "
             "--steps 8", dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0 && strstr(r->err, "32 tokens generated"), "%s", r->err);
    snprintf(args, sizeof args, "export tests/fixtures/hf_models/llada2 --out %s/l2x", dir);
    assert_one_error(dllm(args), "partial rotary (LLaDA 2.0's) has no export layout");
    snprintf(args, sizeof args, "train --resume tests/fixtures/hf_models/llama --data %s/sh "
             "--run %s/ft2", dir, dir);
    assert_one_error(dllm(args), "an imported model, not a run: start from it with --init");
    snprintf(args, sizeof args, "export %s/ft --out %s/exp --dtype bf16", dir, dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    ck_assert(exists("exp/config.json") && exists("exp/model.safetensors") &&
              exists("exp/tokenizer.json") && !exists("exp.tmp"));
    snprintf(args, sizeof args, "export %s/ft --out %s/exp", dir, dir);
    assert_one_error(dllm(args), "exists and is not empty");
    snprintf(args, sizeof args, "export %s/missing --out %s/exp2", dir, dir);
    assert_one_error(dllm(args), "missing");
    ck_assert(!exists("exp2") && !exists("exp2.tmp"));
    snprintf(args, sizeof args, "logits --model %s/exp --tokens '1 2 3,4 5 6' --out %s/l.st", dir,
             dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0 && strstr(r->out, "logits [2, 3, 1009]"), "%s", r->err);
    snprintf(args, sizeof args, "logits --model %s/exp --tokens '1 2,4' --out %s/l2.st", dir, dir);
    assert_one_error(dllm(args), "rows of equal length");
    ck_assert(!exists("l2.st"));
    // ids in, logits out: a model directory without a tokenizer will do; sampling needs one
    snprintf(args, sizeof args, "rm %s/exp/tokenizer*", dir);
    ck_assert(system(args) == 0);
    snprintf(args, sizeof args, "logits --model %s/exp --tokens '1 2 3' --out %s/l3.st", dir, dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0 && strstr(r->out, "logits [1, 3, 1009]"), "%s", r->err);
    snprintf(args, sizeof args, "sample --model %s/exp --prompt hi --gen-length 2", dir);
    assert_one_error(dllm(args), "no tokenizer.json or tokenizer.model in the directory");
}
END_TEST

// A model with a NaN weight: sampling stops with one error naming the model's directory, not
// a token chosen from NaN logits.
START_TEST(test_nan_weights_name_the_model) {
    char cmd[1024], path[300];
    snprintf(cmd, sizeof cmd, "cp -r tests/fixtures/hf_models/llama %s/nan", dir);
    ck_assert(system(cmd) == 0);
    snprintf(path, sizeof path, "%s/nan/model.safetensors", dir);
    FILE *f = fopen(path, "r+b");
    ck_assert(f && fseek(f, -4, SEEK_END) == 0);
    float nan = NAN;  // the last value of the last tensor in the file
    ck_assert(fwrite(&nan, 4, 1, f) == 1);
    fclose(f);
    snprintf(cmd, sizeof cmd, "sample --model %s/nan --prompt hello --gen-length 4", dir);
    Result *r = dllm(cmd);
    assert_one_error(r, "logits are NaN or infinite");
    ck_assert_msg(strstr(r->err, "/nan: the model's"), "%s", r->err);
    ck_assert_msg(r->out[0] == '\0', "%s", r->out);
}
END_TEST

// Pieces of a byte-level vocabulary are not UTF-8 on their own: a trace of an untrained byte
// model sampled at temperature 1 (nearly uniform over 257 tokens, so about half its picks are
// bytes >= 0x80) is still valid UTF-8, each line parses as JSON, and each committed entry's
// text decodes back to its byte.
START_TEST(test_trace_is_valid_json) {
    char args[1024], path[300];
    snprintf(args, sizeof args, "train %s --steps 1 --lr 1e-9 --min-lr 0 --data %s/text.txt --run %s/raw",
             tiny, dir, dir);
    Result *r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    snprintf(args, sizeof args, "sample --model %s/raw --prompt 'In' --gen-length 24 "
             "--block-length 24 --steps 24 --temperature 1 --trace %s/t.jsonl", dir, dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    static char trace[1 << 16];
    snprintf(path, sizeof path, "%s/t.jsonl", dir);
    slurp(path, trace, sizeof trace);
    size_t n = strlen(trace);
    for (size_t k = 0; k < n;) {
        size_t len = utf8_sequence_length((const unsigned char *)trace + k, n - k);
        ck_assert_msg(len > 0, "byte %zu of the trace is not UTF-8", k);
        k += len;
    }
    int high = 0, entries = 0;
    for (char *line = strtok(trace, "\n"); line; line = strtok(NULL, "\n")) {
        JsonValue v;
        Error err;
        ck_assert_msg(json_parse(line, &v, &err) == 0, "%s: %s", err.msg, line);
        const JsonValue *c = json_member(&v, "committed");
        for (int i = 0; i < c->n; i++) {
            const JsonValue *e = &c->items[i];
            int token = (int)json_member(e, "token")->number;
            const JsonValue *text = json_member(e, "text");
            ck_assert_int_eq(json_member(e, "confidence")->type, JSON_NUMBER);
            ck_assert_int_eq(text->type, JSON_STRING);
            if (token < 256) {  // a byte: its text is that byte
                ck_assert_uint_eq(text->len, 1);
                ck_assert_int_eq((unsigned char)text->string[0], token);
                high += token >= 0x80;
            }
            entries++;
        }
        json_free(&v);
    }
    printf("  trace: %d entries, %d bytes >= 0x80, all valid UTF-8 JSON\n", entries, high);
    ck_assert_int_eq(entries, 24);
    ck_assert_int_gt(high, 0);
    // and a second parser, Python's json (strict UTF-8 first), where CI provides one: every
    // byte token's text comes back through surrogateescape
    const char *python = getenv("DLLM_TEST_PYTHON");
    if (python) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd,
                 "%s -c 'import json, sys\n"
                 "rows = [json.loads(l) for l in open(sys.argv[1], \"rb\").read()"
                 ".decode(\"utf-8\").splitlines()]\n"
                 "for c in (c for r in rows for c in r[\"committed\"] if c[\"token\"] < 256):\n"
                 "    assert c[\"text\"].encode(\"utf-8\", \"surrogateescape\") == "
                 "bytes([c[\"token\"]]), c\n' %s",
                 python, path);
        ck_assert_msg(system(cmd) == 0, "python's json refused the trace: %s", cmd);
        printf("  trace: python's json agrees\n");
    }
}
END_TEST

// The nats/token `eval --sft` prints for the model in its one result row.
static double sft_nats(const Result *r) {
    const char *bar = strrchr(r->out, '|');
    ck_assert_msg(bar, "%s", r->out);
    return atof(bar + 1);
}

START_TEST(test_lora_train_sample_export) {
    // rank-4 adapters on q, v and down of an imported bf16 LLaDA, which stays frozen in bf16
    char args[1024], path[300];
    snprintf(path, sizeof path, "%s/qa.jsonl", dir);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 40; i++)
        fprintf(f, "{\"prompt\": \"%d+%d=\", \"response\": \"%d\"}\n", i, i + 3, 2 * i + 3);
    fclose(f);
    const char *base = "tests/fixtures/hf_models/llada_bf16";
    snprintf(args, sizeof args, "train --sft %s --init %s --lora-rank 4 --lora-targets q,v,down "
             "--seq-len 48 --batch-size 2 --device cpu --dry-run 1", path, base);
    Result *r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    ck_assert_msg(strstr(r->out, "LoRA: rank 4, alpha 4 (scale 1), targets q,v,down") &&
                  strstr(r->out, "base frozen in bf16") && strstr(r->out, "frozen base"),
                  "%s", r->out);
    snprintf(args, sizeof args, "train --sft %s --init %s --lora-rank 4 --lora-targets q,v,down "
             "--seq-len 48 --batch-size 2 --steps 8 --lr 2e-2 --warmup 1 --eval-every 0 "
             "--device cpu --run %s/lora", path, base, dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    snprintf(args, sizeof args, "sample --model %s/lora --prompt '1+4=' --gen-length 8 "
             "--block-length 8 --steps 4 --chat 1", dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0 && strstr(r->err, "llada sampler: 4 steps"), "%s", r->err);
    // the adapters alone as a PEFT directory, and merged into the base: the same model
    snprintf(args, sizeof args, "export %s/lora --out %s/peft", dir, dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0 && strstr(r->out, "LoRA adapters, PEFT layout"), "%s", r->err);
    ck_assert(exists("peft/adapter_config.json") && exists("peft/adapter_model.safetensors") &&
              !exists("peft/config.json"));
    snprintf(args, sizeof args, "export %s/lora --out %s/merged --merge 1", dir, dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0 && strstr(r->out, "merged into its base"), "%s", r->err);
    ck_assert(exists("merged/config.json") && exists("merged/tokenizer.json"));
    double nats[4];
    const char *models[4] = {base, "lora", "peft", "merged"};
    for (int i = 0; i < 4; i++) {
        // rows of the length the adapters were trained at (a PEFT directory does not say it)
        snprintf(args, sizeof args, "eval --model %s%s%s --sft %s --device cpu --row-len 48",
                 i ? dir : "", i ? "/" : "", models[i], path);
        r = dllm(args);
        ck_assert_msg(r->status == 0, "%s", r->err);
        nats[i] = sft_nats(r);
    }
    printf("  eval --sft nats/token: base %.4f, LoRA run %.4f, its PEFT export %.4f, merged "
           "%.4f\n", nats[0], nats[1], nats[2], nats[3]);
    ck_assert(nats[1] < nats[0] - 0.05);  // the adapters learned something
    ck_assert(fabs(nats[2] - nats[1]) < 1e-4 && fabs(nats[3] - nats[1]) < 2e-3);
    // block diffusion (pretraining-style: bd3 has no SFT loss) trains adapters too, the base
    // read as bd3 as --init allows
    prepare_genesis(base, "sh");
    snprintf(args, sizeof args, "train --data %s/sh --init %s --objective bd3 --block-size 8 "
             "--lora-rank 2 --seq-len 32 --batch-size 2 --steps 3 --eval-every 0 --device cpu "
             "--run %s/lora_bd3", dir, base, dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    snprintf(args, sizeof args, "sample --model %s/lora_bd3 --prompt 'In the' --gen-length 8 "
             "--steps 8", dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0, "%s", r->err);
    // bad uses, one line each
    snprintf(args, sizeof args, "train --sft %s --lora-rank 4 --tokenizer bytes", path);
    assert_one_error(dllm(args), "give it with --init BASE");
    snprintf(args, sizeof args, "train --sft %s --init %s --lora-rank 4 --lora-targets q,x",
             path, base);
    assert_one_error(dllm(args), "unknown projection 'x'");
    snprintf(args, sizeof args, "train --sft %s --init %s/lora --lora-rank 2", path, dir);
    assert_one_error(dllm(args), "holds LoRA adapters");
    snprintf(args, sizeof args, "export %s --out %s/m2 --merge 1", base, dir);
    assert_one_error(dllm(args), "has none");
    snprintf(args, sizeof args, "export %s/lora --out %s/p2 --dtype bf16", dir, dir);
    assert_one_error(dllm(args), "written as f32");
    // ternary weights (BitNet b1.58 QAT): train and sample; no Hugging Face layout for them
    snprintf(args, sizeof args, "train --data %s/text.txt %s --steps 3 --weights ternary --run "
             "%s/tern", dir, tiny, dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0 && strstr(r->out, "weights: ternary"), "%s", r->err);
    snprintf(args, sizeof args, "sample --model %s/tern --prompt In --gen-length 8 "
             "--block-length 8 --steps 4", dir);
    ck_assert_msg(dllm(args)->status == 0, "sample ternary");
    snprintf(args, sizeof args, "export %s/tern --out %s/t2", dir, dir);
    assert_one_error(dllm(args), "a ternary model has no Hugging Face layout");
    snprintf(args, sizeof args, "train --data %s/text.txt %s --steps 3 --weights int4", dir, tiny);
    assert_one_error(dllm(args), "--weights");
    ck_assert(!exists("m2") && !exists("p2") && !exists("p2.tmp"));
}
END_TEST

START_TEST(test_packed_ternary_export) {
    // a ternary run packed to one file: it samples and evaluates like the run, about a tenth
    // of a checkpoint's size; what cannot be packed or trained from is refused by name
    char args[1024], path[300];
    snprintf(args, sizeof args, "train --data %s/text.txt %s --steps 3 --weights ternary "
             "--objective ar --run %s/tern", dir, tiny, dir);
    ck_assert_msg(dllm(args)->status == 0, "train ternary");
    snprintf(args, sizeof args, "export %s/tern --out %s/t.tern --format ternary", dir, dir);
    Result *r = dllm(args);
    ck_assert_msg(r->status == 0 && strstr(r->out, "packed ternary"), "%s", r->err);
    static char text[2][sizeof ((Result *)0)->out];
    const char *models[2] = {"tern", "t.tern"};
    for (int i = 0; i < 2; i++) {
        snprintf(args, sizeof args, "sample --model %s/%s --prompt 'In the' --gen-length 12 "
                 "--temperature 0", dir, models[i]);
        r = dllm(args);
        ck_assert_msg(r->status == 0, "%s", r->err);
        memcpy(text[i], r->out, sizeof r->out);
    }
    ck_assert_str_eq(text[0], text[1]);
    snprintf(args, sizeof args, "eval --model %s/tern,%s/t.tern --data %s/text.txt --windows 4",
             dir, dir, dir);
    r = dllm(args);
    ck_assert_msg(r->status == 0 && strstr(r->out, "t.tern"), "%s", r->err);
    snprintf(args, sizeof args, "train --data %s/text.txt %s --steps 2 --run %s/fp", dir, tiny,
             dir);
    ck_assert_msg(dllm(args)->status == 0, "train fp32");
    snprintf(args, sizeof args, "export %s/fp --out %s/f.tern --format ternary", dir, dir);
    assert_one_error(dllm(args), "was not trained with --weights ternary");
    snprintf(args, sizeof args, "export %s/t.tern --out %s/u.tern --format ternary", dir, dir);
    assert_one_error(dllm(args), "is packed already");
    snprintf(args, sizeof args, "export %s/tern --out %s/v.tern --format int2", dir, dir);
    assert_one_error(dllm(args), "--format");
    snprintf(args, sizeof args, "train --data %s/text.txt --init %s/t.tern --steps 2", dir, dir);
    assert_one_error(dllm(args), "packed ternary model, for inference only");
    snprintf(args, sizeof args, "sample --model %s/t.tern --prompt In --device cuda-fp32", dir);
    ck_assert_int_ne(dllm(args)->status, 0);
    snprintf(path, sizeof path, "head -c 3000 %s/t.tern > %s/cut.tern", dir, dir);
    ck_assert(system(path) == 0);
    snprintf(args, sizeof args, "sample --model %s/cut.tern --prompt In", dir);
    assert_one_error(dllm(args), "truncated");
    ck_assert(!exists("f.tern") && !exists("u.tern") && !exists("v.tern"));
}
END_TEST

int main(void) {
    if (access("./dllm", X_OK) != 0) {
        fprintf(stderr, "test_cli: ./dllm not found; run from the project root after make\n");
        return 1;
    }
    Suite *s = suite_create("cli");
    TCase *tc = tcase_create("dllm program");
    tcase_set_timeout(tc, 300);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_help);
    tcase_add_test(tc, test_bad_flags);
    tcase_add_test(tc, test_bad_data);
    tcase_add_test(tc, test_dry_run_memory_plan);
    tcase_add_test(tc, test_train_mdm);
    tcase_add_test(tc, test_train_ar);
    tcase_add_test(tc, test_bad_resume);
    tcase_add_test(tc, test_sample);
    tcase_add_test(tc, test_adapt_ar_to_mdm);
    tcase_add_test(tc, test_bd3_train_eval_sample);
    tcase_add_test(tc, test_eval_sft_plot);
    tcase_add_test(tc, test_eval_matches_training);
    tcase_add_test(tc, test_exact_match_plain_text);
    tcase_add_test(tc, test_sample_bad_input);
    tcase_add_test(tc, test_tokenizer_prepare_train_sample);
    tcase_add_test(tc, test_hf_tokenizer_prepare_sft_sample);
    tcase_add_test(tc, test_imported_models);
    tcase_add_test(tc, test_gguf_models);
    tcase_add_test(tc, test_nan_weights_name_the_model);
    tcase_add_test(tc, test_trace_is_valid_json);
    tcase_add_test(tc, test_lora_train_sample_export);
    tcase_add_test(tc, test_packed_ternary_export);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

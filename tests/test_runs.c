// Runs survive what happens to long jobs: kill -9 at any point (a resume reproduces the
// uninterrupted run's losses exactly), damaged newest checkpoints (never chosen), SIGTERM
// (saved, clean exit), and divergence (non-finite steps skipped, then a clear stop).
// Drives ./dllm from the project root as a user or a sweep would.
#include <check.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/file.h"
#include "common/json.h"
#include "tests/testutil.h"
#include "store/checkpoint.h"
#include "train/run_dir.h"

static char dir[128];

// Small enough for ~5 ms steps on a CPU core; evaluations and saves every few steps.
static const char *run_flags =
    "--data tests/fixtures/genesis.txt --device cpu --n-layer 2 --n-head 2 --d-model 32 "
    "--d-ff 64 --seq-len 32 --batch-size 4 --warmup 10 --lr 3e-3 --eval-every 10 "
    "--eval-windows 4 --eval-mc 2 --save-every 7 --keep 2 --log-every 1000";

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/dllm_runs_%d", (int)getpid());
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", dir, dir);
    ck_assert(system(cmd) == 0);
}

static void teardown(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

// Starts `./dllm train <args>` with its output thrown away; returns the pid.
static pid_t start_train(const char *args) {
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "exec ./dllm train %s >/dev/null 2>>%s/stderr", args, dir);
    return spawn_shell(cmd);
}

static int run_train(const char *args) { return wait_exit(start_train(args)); }

// The last step of a train line in the run's log so far (0 when none).
static long last_logged_step(const char *run) {
    char path[300], *text;
    size_t n;
    Error err;
    snprintf(path, sizeof path, "%s/log.jsonl", run);
    if (file_read_all(path, &text, &n, &err)) return 0;
    long step = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        double s;
        if (strstr(line, "\"train\"") && json_get_number(line, "step", &s, &err) == 0)
            step = (long)s;
    }
    free(text);
    return step;
}

// Kills the training process with SIGKILL once its log has passed `step`.
static void kill_after(pid_t pid, const char *run, long step) {
    while (last_logged_step(run) < step) {
        int st;
        ck_assert_msg(waitpid(pid, &st, WNOHANG) == 0, "the run ended before step %ld", step);
        usleep(500);
    }
    kill(pid, SIGKILL);
    ck_assert_int_eq(wait_exit(pid), 128 + SIGKILL);
}

// The log's losses as text, one "train STEP LOSS" / "eval STEP VAL" line each, in order:
// what must be identical between an interrupted and an uninterrupted run.
static char *loss_record(const char *run) {
    char path[300], *text;
    size_t n;
    Error err;
    snprintf(path, sizeof path, "%s/log.jsonl", run);
    ck_assert_msg(file_read_all(path, &text, &n, &err) == 0, "%s", err.msg);
    char *out = calloc(n + 1, 1);
    size_t used = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        double s, x;
        if (json_get_number(line, "step", &s, &err)) continue;
        if (json_get_number(line, "loss", &x, &err) == 0)
            used += sprintf(out + used, "train %ld %.9g\n", (long)s, x);
        else if (json_get_number(line, "val_loss", &x, &err) == 0)
            used += sprintf(out + used, "eval %ld %.9g\n", (long)s, x);
    }
    free(text);
    return out;
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

// The checkpoint a resume of run would pick; *skipped counts the damaged newer ones.
static ModelSource load_latest(const char *run, char *chosen, size_t cap, int *skipped) {
    ModelSource ck;
    Error err;
    ck_assert_msg(model_source_open(run, HF_WEIGHTS_LATER, &ck, chosen, cap, skipped, &err) == 0, "%s",
                  err.msg);
    return ck;
}

// A run of `flags` for 200 steps, and the same run killed three times and resumed: the two
// logs' losses must be identical. name tells the runs apart.
static void check_kill9_resume(const char *name, const char *flags) {
    char args[2048], ref[300], run[300];
    snprintf(ref, sizeof ref, "%s/%s_ref", dir, name);
    snprintf(run, sizeof run, "%s/%s_killed", dir, name);
    snprintf(args, sizeof args, "%s --steps 200 --run %s", flags, ref);
    ck_assert_int_eq(run_train(args), 0);

    // killed three times at different points, each time resumed with the same command
    long kill_at[] = {23, 88, 151};
    snprintf(args, sizeof args, "%s --steps 200 --run %s", flags, run);
    kill_after(start_train(args), run, kill_at[0]);
    char resume[2048];
    snprintf(resume, sizeof resume, "--data tests/fixtures/genesis.txt --device cpu "
             "--eval-every 10 --eval-windows 4 --eval-mc 2 --save-every 7 --keep 2 "
             "--log-every 1000 --resume %s", run);
    for (int i = 1; i < 3; i++) {
        long killed = last_logged_step(run);
        kill_after(start_train(resume), run, kill_at[i]);
        printf("  %s: SIGKILL after step %ld of 200; --resume; SIGKILL again after step %ld\n",
               name, killed, last_logged_step(run));
    }
    ck_assert_int_eq(run_train(resume), 0);

    char *a = loss_record(ref), *b = loss_record(run);
    printf("  %s: uninterrupted: %d loss lines; killed 3 times and resumed: %d loss lines; %s\n",
           name, count_lines(a), count_lines(b), strcmp(a, b) == 0 ? "identical" : "DIFFERENT");
    ck_assert_int_eq(count_lines(a), 200 + 20);
    ck_assert_str_eq(a, b);
    free(a);
    free(b);
}

START_TEST(test_kill9_resume_is_exact) { check_kill9_resume("full", run_flags); }
END_TEST

START_TEST(test_lora_kill9_resume_is_exact) {
    // rank-4 adapters on a trained base: the resumes reload the base from the path the
    // checkpoints name, and the base's file is not touched
    char args[2048], base[300], base_ckpt[400];
    snprintf(base, sizeof base, "%s/base", dir);
    snprintf(args, sizeof args, "%s --steps 30 --run %s", run_flags, base);
    ck_assert_int_eq(run_train(args), 0);
    snprintf(base_ckpt, sizeof base_ckpt, "%s/step_00000030.ckpt", base);
    char *before, *after;
    size_t n_before, n_after;
    Error err;
    ck_assert(file_read_all(base_ckpt, &before, &n_before, &err) == 0);
    snprintf(args, sizeof args, "--data tests/fixtures/genesis.txt --device cpu --init %s "
             "--lora-rank 4 --lora-alpha 8 --batch-size 4 --warmup 10 --lr 1e-2 --eval-every 10 "
             "--eval-windows 4 --eval-mc 2 --save-every 7 --keep 2 --log-every 1000", base);
    check_kill9_resume("lora", args);
    ck_assert(file_read_all(base_ckpt, &after, &n_after, &err) == 0);
    ck_assert(n_before == n_after && memcmp(before, after, n_before) == 0);
    free(before);
    free(after);
}
END_TEST

START_TEST(test_damaged_checkpoints_are_skipped) {
    char args[2048], run[300], path[400], cmd[1024];
    snprintf(run, sizeof run, "%s/damaged", dir);
    snprintf(args, sizeof args, "%s --steps 28 --keep 3 --run %s", run_flags, run);
    ck_assert_int_eq(run_train(args), 0);  // leaves step 14, 21 and 28
    char *ref = loss_record(run);
    // the newest is cut short; a newer one is junk; a temporary file is left over
    snprintf(cmd, sizeof cmd, "cd %s && head -c 5000 step_00000028.ckpt > cut && "
             "mv cut step_00000028.ckpt && echo junk > step_00000030.ckpt && "
             "cp step_00000021.ckpt step_00000029.ckpt.tmp", run);
    ck_assert(system(cmd) == 0);
    char chosen[400];
    int skipped;
    ModelSource ck = load_latest(run, chosen, sizeof chosen, &skipped);
    printf("  resume picks %s, skipping %d damaged newer checkpoints\n", strrchr(chosen, '/') + 1,
           skipped);
    snprintf(path, sizeof path, "%s/step_00000021.ckpt", run);
    ck_assert_str_eq(chosen, path);
    ck_assert_int_eq(skipped, 2);
    ck_assert_int_eq(ck.header.step, 21);
    model_source_free(&ck);
    // and the resumed run redoes steps 22..28 exactly
    snprintf(args, sizeof args, "--data tests/fixtures/genesis.txt --device cpu --eval-every 10 "
             "--eval-windows 4 --eval-mc 2 --save-every 7 --log-every 1000 --resume %s", run);
    ck_assert_int_eq(run_train(args), 0);
    char *again = loss_record(run);
    ck_assert_str_eq(ref, again);
    free(ref);
    free(again);
    // a run directory with nothing complete in it is an error, not a fresh start
    snprintf(cmd, sizeof cmd, "cd %s && for f in step_*.ckpt; do echo junk > $f; done", run);
    ck_assert(system(cmd) == 0);
    Error err;
    ck_assert(model_source_open(run, HF_WEIGHTS_LATER, &ck, chosen, sizeof chosen, &skipped, &err) == -1);
    ck_assert_msg(strstr(err.msg, "is complete"), "%s", err.msg);
}
END_TEST

START_TEST(test_sigterm_saves_and_exits) {
    char args[2048], run[300];
    snprintf(run, sizeof run, "%s/term", dir);
    snprintf(args, sizeof args, "%s --steps 100000 --save-every 0 --run %s", run_flags, run);
    pid_t pid = start_train(args);
    while (last_logged_step(run) < 30) usleep(1000);
    kill(pid, SIGTERM);
    ck_assert_int_eq(wait_exit(pid), 128 + SIGTERM);
    long step = last_logged_step(run);
    char chosen[400];
    int skipped;
    ModelSource ck = load_latest(run, chosen, sizeof chosen, &skipped);
    printf("  SIGTERM: exit %d, checkpoint at step %lld, log ends at step %ld\n", 128 + SIGTERM,
           (long long)ck.header.step, step);
    ck_assert_int_eq(ck.header.step, step);
    model_source_free(&ck);
}
END_TEST

START_TEST(test_divergence_stops_cleanly) {
    char args[2048], run[300], path[400];
    snprintf(run, sizeof run, "%s/diverge", dir);
    // an absurd learning rate overflows the weights after the first update
    snprintf(args, sizeof args, "%s --steps 50 --lr 1e30 --min-lr 0 --warmup 0 --max-skips 3 "
             "--run %s", run_flags, run);
    int status = run_train(args);
    char *text;
    size_t n;
    Error err;
    snprintf(path, sizeof path, "%s/stderr", dir);
    ck_assert(file_read_all(path, &text, &n, &err) == 0);
    printf("  diverged run: exit %d, %s", status, text);
    ck_assert_int_eq(status, 1);
    ck_assert(strstr(text, "3 steps in a row with a non-finite loss"));
    free(text);
    snprintf(path, sizeof path, "%s/log.jsonl", run);
    ck_assert(file_read_all(path, &text, &n, &err) == 0);
    int skipped = 0;
    for (const char *p = text; (p = strstr(p, "\"skipped\":true")); p++) skipped++;
    ck_assert_int_eq(skipped, 3);
    ck_assert(strstr(text, "\"event\":\"diverged\""));
    free(text);
    // nothing was saved after the weights went bad
    ModelSource ck;
    char chosen[400];
    int damaged;
    ck_assert(model_source_open(run, HF_WEIGHTS_LATER, &ck, chosen, sizeof chosen, &damaged, &err) == -1);
}
END_TEST

int main(void) {
    Suite *s = suite_create("runs");
    TCase *tc = tcase_create("interruption and divergence");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_kill9_resume_is_exact);
    tcase_add_test(tc, test_lora_kill9_resume_is_exact);
    tcase_add_test(tc, test_damaged_checkpoints_are_skipped);
    tcase_add_test(tc, test_sigterm_saves_and_exits);
    tcase_add_test(tc, test_divergence_stops_cleanly);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

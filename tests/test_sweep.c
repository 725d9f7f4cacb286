// Sweeps: plan parsing (tables, grids, budgets, line-numbered errors) and a real tiny sweep
// driven through ./dllm: one run fails on purpose, the sweep is killed with SIGKILL halfway
// and started again, and finishes without redoing the finished runs.
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include "common/file.h"
#include "common/json.h"
#include "common/process.h"
#include "sweep/plan.h"
#include "sweep/runner.h"
#include "tests/testutil.h"

static Plan *parse(const char *text, Error *err, int *rc) {
    Plan *p = malloc(sizeof *p);
    *rc = plan_parse(p, text, "plan.md", err);
    return p;
}

START_TEST(test_table_grid_budget) {
    const char *text =
        "# Sizes and rates\n"
        "Some prose, with a list that is not a setting:\n"
        "- just a thought\n"
        "## Base\n"
        "- data: data/shards\n"
        "- steps: 999\n"
        "```\n"
        "--n-layer 2 --seq-len=64 \\\n"
        "--batch-size 8\n"
        "```\n"
        "## Runs\n"
        "| name | objective | d-model |\n"
        "|:-----|-----------|--------:|\n"
        "| small mdm | mdm | 64 |\n"
        "| small ar | ar | 64 |\n"
        "\n"
        "## Grid\n"
        "- lr: 1e-3, 3e-3, 1e-2\n"
        "## Budget\n"
        "- tokens: 2M\n"
        "- minutes: 30\n"
        "## Report\n"
        "- metric: train_loss\n"
        "- prompt: And God said,\n";
    Error err;
    int rc;
    Plan *p = parse(text, &err, &rc);
    ck_assert_msg(rc == 0, "%s", err.msg);
    ck_assert_str_eq(p->title, "Sizes and rates");
    ck_assert_int_eq(p->n_base, 5);
    ck_assert_int_eq(p->n_runs, 6);  // 2 rows x 3 learning rates
    ck_assert_str_eq(p->runs[0].name, "small_mdm-lr1e-3");
    ck_assert_str_eq(p->runs[5].name, "small_ar-lr1e-2");
    ck_assert_int_eq(p->n_varied_names, 3);
    ck_assert_str_eq(p->varied_names[2], "lr");
    ck_assert_str_eq(plan_value(p, &p->runs[4], "objective"), "ar");
    ck_assert_str_eq(plan_value(p, &p->runs[4], "lr"), "3e-3");
    ck_assert_str_eq(plan_value(p, &p->runs[4], "seq-len"), "64");
    ck_assert_int_eq(p->budget_tokens, 2000000);
    ck_assert(p->budget_minutes == 30.0);
    ck_assert_str_eq(p->metric, "train_loss");
    ck_assert_str_eq(p->prompt, "And God said,");
    // the arguments of one run: steps from the token budget, 2e6 / (8 * 64) = 3907 (rounded up)
    char storage[4096], *argv[160];
    int n = sweep_train_args(p, &p->runs[1], "/x/run", storage, sizeof storage, argv, 160);
    char line[2048] = "";
    for (int i = 0; i < n; i++) strcat(line, argv[i]), strcat(line, " ");
    printf("  run 2: dllm %s\n", line);
    ck_assert(strstr(line, "--steps 3907 "));
    ck_assert(!strstr(line, "--steps 999"));
    ck_assert(strstr(line, "--d-model 64 ") && strstr(line, "--lr 3e-3 "));
    ck_assert(strstr(line, "--run /x/run --auto-resume 1"));
    free(p);
}
END_TEST

// Each bad plan fails with the file, the line and the problem.
// The report's samples come from a child's stdout: output past the buffer is read and
// dropped, so the child finishes (it used to block on the full pipe, and the sweep with it).
START_TEST(test_capture_drains_a_talkative_child) {
    char out[100];
    char *argv[] = {"/bin/sh", "-c", "head -c 1000000 /dev/zero | tr '\\0' x; echo; exit 3",
                    NULL};
    ck_assert_int_eq(run_capture(argv, out, sizeof out), 3);
    ck_assert_int_eq(strlen(out), 99);
    ck_assert_int_eq(strspn(out, "x"), 99);
    char *missing[] = {"/nonexistent/program", NULL};
    ck_assert_int_eq(run_capture(missing, out, sizeof out), 127);
}
END_TEST

START_TEST(test_errors_name_the_line) {
    static const char *const cases[][2] = {
        {"## Base\n- lr 1e-3\n", "plan.md:2: expected '- name: value'"},
        {"## Base\n```\n--lr\n```\n", "plan.md:3: --lr needs a value"},
        {"## Base\n```\nlr 3\n```\n", "plan.md:3: expected a --flag, got 'lr'"},
        {"## Base\n- lr: 1\n## Runs\n| a | b |\n|---|---|\n| 1 |\n", "plan.md:6: 1 cells, the header has 2"},
        {"## Base\n- lr: 1\n## Runs\n| a | b |\n| 1 | 2 |\n", "plan.md:5: expected the |---| line"},
        {"## Base\n- lr: 1\n## Budget\n- hours: 3\n", "plan.md:4: unknown budget 'hours'"},
        {"## Base\n- lr: 1\n## Budget\n- steps: -5\n", "plan.md:4: budget '-5' is not a positive"},
        {"## Base\n- lr: 1\n## Budget\n- tokens: 1e34\n", "plan.md:4: budget '1e34' is too large"},
        {"## Base\n- run: x\n", "plan.md:2: --run is set by the sweep"},
        {"## Base\n- lr: 1\n- lr: 2\n", "plan.md:3: --lr given twice"},
        {"## Base\n- lr: 1\n## Grid\n- seed: 1,,2\n", "plan.md:4: seed: an empty value"},
        {"## Base\n```\n--lr 1\n", "plan.md: a ``` block is not closed"},
        {"# Only a title\n", "plan.md: no base configuration"},
        {"## Base\n- lr: 1\n## Runs\n| name | x |\n|--|--|\n| a | 1 |\n| a | 2 |\n",
         "plan.md: two runs are named 'a'"},
        {"## Base\n- lr: 1\n## Report\n- metric: accuracy\n", "plan.md:4: metric 'accuracy'"},
        {"## Base\n- lr: 1\n## Report\n- check: likelihood x.jsonl\n",
         "plan.md:4: check 'likelihood x.jsonl': give 'choices FILE' or 'exact FILE'"},
        // 9 columns and 9 grid lines overran a run's 16 varied slots (found by fuzz_plan)
        {"## Base\n- lr: 1\n## Runs\n| a | b | c | d | e | f | g | h | i |\n"
         "|-|-|-|-|-|-|-|-|-|\n| 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 |\n## Grid\n- j: 1\n- k: 1\n"
         "- l: 1\n- m: 1\n- n: 1\n- o: 1\n- p: 1\n- q: 1\n- r: 1\n",
         "plan.md: 18 varied settings (table columns and grid lines), more than 16"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Error err;
        int rc;
        Plan *p = parse(cases[i][0], &err, &rc);
        ck_assert_msg(rc == -1, "case %zu parsed", i);
        ck_assert_msg(strstr(err.msg, cases[i][1]), "case %zu: '%s' not in '%s'", i, cases[i][1],
                      err.msg);
        free(p);
    }
}
END_TEST

// ---- a real sweep ----

static char dir[128];

static const char *tiny_plan =
    "# CI sweep\n"
    "## Base\n"
    "```\n"
    "--data tests/fixtures/genesis.txt --device cpu --n-layer 1 --n-head 2 --d-model 32\n"
    "--d-ff 64 --seq-len 32 --batch-size 4 --warmup 5 --eval-every 50 --eval-windows 4\n"
    "--eval-mc 2 --save-every 25 --max-skips 2 --log-every 1000\n"
    "```\n"
    "## Runs\n"
    "| name | objective | lr |\n"
    "|---|---|---|\n"
    "| a | mdm | 3e-3 |\n"
    "| b | ar | 3e-3 |\n"
    "| diverges | mdm | 1e30 |\n"
    "| c | mdm | 1e-3 |\n"
    "## Budget\n"
    "- steps: 400\n";

static pid_t start_sweep(void) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "exec ./dllm sweep %s/plan.md --dir %s/out >>%s/sweep.out 2>&1",
             dir, dir, dir);
    return spawn_shell(cmd);
}

static int file_has(const char *name, const char *what) {
    char path[300], *text;
    size_t n;
    Error err;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (file_read_all(path, &text, &n, &err)) return 0;
    int found = strstr(text, what) != NULL;
    free(text);
    return found;
}

static int exists(const char *name) {
    char path[300];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

// A fresh /tmp/dllm_<name>_PID directory (now `dir`) holding plan.md.
static void fresh_dir_with_plan(const char *name, const char *plan) {
    snprintf(dir, sizeof dir, "/tmp/dllm_%s_%d", name, (int)getpid());
    char cmd[300], path[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", dir, dir);
    ck_assert(system(cmd) == 0);
    snprintf(path, sizeof path, "%s/plan.md", dir);
    FILE *f = fopen(path, "w");
    fputs(plan, f);
    fclose(f);
}

START_TEST(test_sweep_survives_kill_and_failure) {
    char cmd[300], path[300];
    fresh_dir_with_plan("sweep", tiny_plan);

    // kill -9 the sweep while run b is past its first checkpoint
    pid_t pid = start_sweep();
    while (!file_has("out/runs/b/log.jsonl", "\"step\":60,")) {
        int st;
        ck_assert_msg(waitpid(pid, &st, WNOHANG) == 0, "the sweep ended early");
        usleep(2000);
    }
    kill(pid, SIGKILL);
    ck_assert_int_eq(wait_exit(pid), 128 + SIGKILL);
    // run b gets SIGTERM from the kernel (its parent died), saves and exits, and only then
    // lets go of the sweep's lock
    snprintf(path, sizeof path, "%s/out/lock", dir);
    int fd = open(path, O_RDWR), waited = 0;
    ck_assert(fd >= 0);
    while (flock(fd, LOCK_EX | LOCK_NB) != 0 && waited++ < 1000) usleep(10000);
    ck_assert_msg(waited < 1000, "the orphaned run kept the lock for 10 s");
    ck_assert(exists("out/runs/a/status.json"));
    ck_assert(!exists("out/runs/b/status.json"));
    ck_assert(file_has("out/runs/b/log.jsonl", "\"event\":\"interrupted\""));
    printf("  killed the sweep (SIGKILL) during run b; a done, b saved and stopped\n");

    // a second sweep on the same directory while one holds the lock is refused
    ck_assert_int_eq(wait_exit(start_sweep()), 1);
    ck_assert(file_has("sweep.out", "another sweep is running in this directory"));
    close(fd);

    // started again: a is skipped, b resumes, the failure is recorded, the sweep completes
    ck_assert_int_eq(wait_exit(start_sweep()), 0);
    ck_assert(file_has("sweep.out", "run 1/4 a: done earlier"));
    ck_assert(file_has("out/runs/b/log.jsonl", "\"event\":\"resume\""));
    ck_assert(file_has("out/runs/b/log.jsonl", "\"step\":400,"));
    ck_assert(file_has("out/runs/diverges/status.json", "\"status\":\"failed\""));
    ck_assert(file_has("out/REPORT.md", "| diverges | mdm | 1e30 |"));
    ck_assert(file_has("out/REPORT.md", "non-finite loss"));
    ck_assert(file_has("out/REPORT.md", "4 runs: 3 done, 1 failed"));
    ck_assert(exists("out/val_curves.png") && exists("out/metric_lr.png"));
    // a's run was not redone: its log has exactly one start
    char *text;
    size_t n;
    Error err;
    snprintf(path, sizeof path, "%s/out/runs/a/log.jsonl", dir);
    ck_assert(file_read_all(path, &text, &n, &err) == 0);
    int starts = 0;
    for (const char *p = text; (p = strstr(p, "\"event\":\"start\"")); p++) starts++;
    ck_assert_int_eq(starts, 1);
    free(text);
    printf("  restarted: a skipped, b resumed to step 400, 'diverges' failed and reported\n");
    snprintf(cmd, sizeof cmd, "./dllm sweep --status %s/out > %s/status.txt", dir, dir);
    ck_assert(system(cmd) == 0);
    ck_assert(file_has("status.txt", "4 runs: 3 done, 1 failed, 0 partial, 0 pending"));
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert(system(cmd) == 0);
}
END_TEST

// The final "loss" of a run's log.jsonl, as text.
static void last_train_loss(const char *run, char *out, size_t cap) {
    char path[400], *text;
    size_t n;
    Error err;
    snprintf(path, sizeof path, "%s/%s/log.jsonl", dir, run);
    out[0] = '\0';
    if (file_read_all(path, &text, &n, &err)) return;
    const char *last = NULL;
    for (const char *q = text; (q = strstr(q, "\"loss\":")); q++) last = q;
    if (last) snprintf(out, cap, "%.*s", (int)strcspn(last, ","), last);
    free(text);
}

// --jobs 2: runs train two at a time (one OpenMP thread each here) and end exactly as when
// run one after another (a run's numbers do not depend on its thread count); the failure is
// still recorded and the report written.
START_TEST(test_parallel_jobs_match_serial) {
    fresh_dir_with_plan("sweep_jobs",
                        "# jobs\n## Base\n```\n--data tests/fixtures/genesis.txt --device cpu "
                        "--n-layer 1 --n-head 2 --d-model 32 --d-ff 64 --seq-len 32 "
                        "--batch-size 4 --warmup 5 --eval-every 0 --log-every 1000\n```\n"
                        "## Runs\n| name | objective | lr |\n|---|---|---|\n"
                        "| a | mdm | 3e-3 |\n| b | ar | 3e-3 |\n| diverges | mdm | 1e30 |\n"
                        "| c | ar | 1e-3 |\n## Budget\n- steps: 60\n");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "env -u OMP_NUM_THREADS ./dllm sweep %s/plan.md --dir %s/par "
             "--jobs 2 > %s/par.out 2>&1", dir, dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "./dllm sweep %s/plan.md --dir %s/ser > %s/ser.out 2>&1", dir,
             dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert(file_has("par/runs/diverges/status.json", "\"status\":\"failed\""));
    ck_assert(file_has("par/REPORT.md", "4 runs: 3 done, 1 failed"));
    ck_assert(file_has("par/runs/a/log.jsonl", "\"step\":60,"));
    const char *runs[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        char par[64], ser[64], name[32];
        snprintf(name, sizeof name, "par/runs/%s", runs[i]);
        last_train_loss(name, par, sizeof par);
        snprintf(name, sizeof name, "ser/runs/%s", runs[i]);
        last_train_loss(name, ser, sizeof ser);
        printf("  run %s: --jobs 2 %s, one after another %s\n", runs[i], par, ser);
        ck_assert(par[0] && strcmp(par, ser) == 0);
    }
    snprintf(cmd, sizeof cmd, "./dllm sweep %s/plan.md --dir %s/x --jobs 0 2> %s/err.txt", dir,
             dir, dir);
    ck_assert_int_ne(system(cmd), 0);
    ck_assert(file_has("err.txt", "--jobs must be between 1 and 64"));
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert(system(cmd) == 0);
}
END_TEST

// --devices 7,9 (ids that need not exist: the runs train on the CPU): a and c run at the same
// time, one per device; b asks for 2 ranks and waits until both are free, then runs under
// mpirun on both. Each run's command.txt names its devices.
START_TEST(test_devices_place_runs) {
    fresh_dir_with_plan("sweep_devices",
                        "# devices\n## Base\n```\n--data tests/fixtures/genesis.txt --device cpu "
                        "--n-layer 1 --n-head 2 --d-model 32 --d-ff 64 --seq-len 32 "
                        "--batch-size 2 --eval-every 0 --log-every 1000\n```\n"
                        "## Runs\n| name | ranks | lr |\n|---|---|---|\n"
                        "| a | 1 | 3e-3 |\n"
#ifdef DLLM_MPI
                        "| b | 2 | 3e-3 |\n"
#endif
                        "| c | - | 1e-3 |\n## Budget\n- steps: 20\n");
    char cmd[1024];
    // Open MPI refuses root unless told (CI runs as root)
    snprintf(cmd, sizeof cmd, "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
             "ASAN_OPTIONS=detect_leaks=0 ./dllm sweep %s/plan.md --dir %s/out --devices 7,9 "
             "> %s/out.txt 2>&1", dir, dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert(file_has("out/runs/a/command.txt", "CUDA_VISIBLE_DEVICES=7 "));
    ck_assert(file_has("out/runs/c/command.txt", "CUDA_VISIBLE_DEVICES=9 "));
    ck_assert(file_has("out/runs/c/log.jsonl", "\"step\":20,"));
#ifdef DLLM_MPI
    ck_assert(file_has("out/runs/b/command.txt", "CUDA_VISIBLE_DEVICES=7,9 mpirun -np 2 "));
    ck_assert(file_has("out/runs/b/log.jsonl", "\"rank_tokens_per_s\":["));
    ck_assert(file_has("out/REPORT.md", "3 runs: 3 done, 0 failed"));
    printf("  --devices 7,9: a on 7 and c on 9 at once, then b's 2 ranks on 7,9 under mpirun\n");
#endif
    const char *bad[][2] = {
        {"--devices 7,9 --jobs 2", "--devices and --jobs exclude each other"},
        {"--devices 7,7", "--devices lists 7 twice"},
        {"--devices 7,x", "expected device ids like 0,1,2"},
        {"--devices 7", "asks for 2 ranks, and --devices lists 1"},
    };
    for (int i = 0; i < (int)(sizeof bad / sizeof bad[0]); i++) {
#ifndef DLLM_MPI
        if (i == 3) continue;  // the plan has no run of 2 ranks
#endif
        snprintf(cmd, sizeof cmd, "./dllm sweep %s/plan.md --dir %s/bad %s 2> %s/err.txt", dir,
                 dir, bad[i][0], dir);
        ck_assert_int_ne(system(cmd), 0);
        ck_assert_msg(file_has("err.txt", bad[i][1]), "%s: no '%s'", bad[i][0], bad[i][1]);
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert(system(cmd) == 0);
}
END_TEST

// AR-to-diffusion in one plan: a "-" cell leaves --init out of the AR row, and with --jobs 2
// the adapted row, which starts from the AR run, waits for it to finish.
START_TEST(test_adapted_run_waits_for_its_ar_run) {
    fresh_dir_with_plan("sweep_adapt", "");  // names `dir` for the plan's paths
    char plan[1200], cmd[1024];
    snprintf(plan, sizeof plan,
             "# adapt\n## Base\n```\n--data tests/fixtures/genesis.txt --device cpu "
             "--n-layer 1 --n-head 2 --d-model 32 --d-ff 64 --seq-len 32 --batch-size 4 "
             "--warmup 5 --eval-every 40 --eval-windows 4 --eval-mc 2 --log-every 1000\n```\n"
             "## Runs\n| name | objective | init |\n|---|---|---|\n| ar | ar | - |\n"
             "| adapted | mdm | %s/out/runs/ar |\n## Budget\n- steps: 40\n", dir);
    fresh_dir_with_plan("sweep_adapt", plan);
    snprintf(cmd, sizeof cmd, "./dllm sweep %s/plan.md --dir %s/out --jobs 2 > %s/out.txt 2>&1",
             dir, dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert(!file_has("out/runs/ar/command.txt", "--init"));
    ck_assert(file_has("out/runs/adapted/command.txt", "--init"));
    ck_assert(file_has("out/runs/adapted/train.out", "adapting"));
    ck_assert(file_has("out/runs/adapted/train.out", "step_00000040.ckpt (step 40)"));
    ck_assert(file_has("out/REPORT.md", "2 runs: 2 done, 0 failed"));
    printf("  --jobs 2: the adapted run waited for its AR run and started from its step 40\n");
    // its budget counts the AR run's: 40 + 40 steps of 4 x 32 tokens
    ck_assert(file_has("out/REPORT.md", " | 5.12k | ") && file_has("out/REPORT.md", " | 10.2k | "));
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert(system(cmd) == 0);
}
END_TEST

// Seeds are averaged, not ranked: a 2 x 2 grid of objective and seed reports each objective's
// mean and spread over its seeds, every run's tokens and FLOPs, the loss at matched FLOPs and
// the curves against FLOPs; no plot against the seed.
START_TEST(test_seeds_are_averaged) {
    fresh_dir_with_plan("sweep_seeds",
                        "# seeds\n## Base\n- data: tests/fixtures/genesis.txt\n- device: cpu\n"
                        "- n-layer: 1\n- n-head: 2\n- d-model: 32\n- d-ff: 64\n- seq-len: 32\n"
                        "- batch-size: 4\n- eval-every: 20\n- eval-windows: 4\n- eval-mc: 2\n"
                        "## Grid\n- objective: mdm, ar\n- seed: 1, 2\n## Budget\n- steps: 40\n"
                        "## Report\n- reference: ar\n");
    ck_assert_int_eq(wait_exit(start_sweep()), 0);
    ck_assert(file_has("out/REPORT.md", "## Per setting, over seeds (mean ± sample std)"));
    ck_assert(file_has("out/REPORT.md", "| mdm | 2 | ") && file_has("out/REPORT.md", "| ar | 2 | "));
    ck_assert(file_has("out/REPORT.md", " ± "));
    ck_assert(file_has("out/REPORT.md", "Best setting: **") ||
              file_has("out/REPORT.md", "No single best setting: **"));
    // 40 steps x 4 rows x 32 tokens, 3 x forward FLOPs of this model
    ck_assert(file_has("out/REPORT.md", "| 5.12k | 635M |"));
    ck_assert(exists("out/val_vs_flops.png") && !exists("out/metric_seed.png"));
    ck_assert(file_has("out/runs/mdm-seed1/log.jsonl", "\"type\":\"budget\""));
    // the MDM's compute to reach each same-seed AR run's final loss, both seeds counted
    ck_assert(file_has("out/REPORT.md", "## Compute to reach the reference's loss (ar)"));
    ck_assert(file_has("out/REPORT.md", "| mdm | 2 of 2 |") ||
              file_has("out/REPORT.md", "| mdm | 1 of 2 |") ||
              file_has("out/REPORT.md", "| mdm | 0 of 2 |"));
    printf("  two seeds per objective: means, spreads and FLOPs in the report\n");
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert(system(cmd) == 0);
}
END_TEST

// A wall-clock budget stops a run cleanly (SIGTERM: it saves) and counts it as done.
START_TEST(test_time_budget) {
    fresh_dir_with_plan("sweep_time",
                        "# time budget\n## Base\n- data: tests/fixtures/genesis.txt\n"
                        "- device: cpu\n- n-layer: 1\n- n-head: 2\n- d-model: 32\n- d-ff: 64\n"
                        "- seq-len: 32\n- batch-size: 4\n- steps: 10000000\n- eval-every: 0\n"
                        "## Budget\n- minutes: 0.03\n");
    char cmd[300];
    ck_assert_int_eq(wait_exit(start_sweep()), 0);
    ck_assert(file_has("out/runs/run/status.json", "time budget reached"));
    ck_assert(file_has("out/runs/run/log.jsonl", "\"event\":\"interrupted\""));
    ck_assert(exists("out/REPORT.md"));
    printf("  a 0.03-minute budget: the run was stopped, saved and counted as done\n");
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert(system(cmd) == 0);
}
END_TEST

// A plan scored by exact match: the report's speed-vs-quality table holds the MDM's sampler
// settings and, on the same test file, the AR baseline token by token.
START_TEST(test_exact_match_tradeoff) {
    fresh_dir_with_plan("sweep_exact", "");  // names `dir` for the plan's paths
    char cmd[600], plan[1200];
    snprintf(plan, sizeof plan,
             "# exact\n## Base\n- sft: %s/task/train.jsonl\n- tokenizer: bytes\n- device: cpu\n"
             "- n-layer: 1\n- n-head: 2\n- d-model: 32\n- d-ff: 64\n- batch-size: 8\n"
             "- steps: 20\n- eval-every: 0\n## Grid\n- objective: mdm, ar\n"
             "## Report\n- metric: exact\n- exact: %s/task/test.jsonl\n"
             "- check: exact %s/task/train.jsonl\n", dir, dir, dir);
    fresh_dir_with_plan("sweep_exact", plan);
    snprintf(cmd, sizeof cmd, "./dllm task reversal --out %s/task --train 64 --test 8 > /dev/null",
             dir);
    ck_assert(system(cmd) == 0);
    ck_assert_int_eq(wait_exit(start_sweep()), 0);
    ck_assert(file_has("out/REPORT.md", "## MDM sampler: speed vs quality (mdm)"));
    ck_assert(file_has("out/REPORT.md", "| threshold 0.9 | 1 |"));
    ck_assert(file_has("out/REPORT.md", "| AR baseline (ar): a token per pass, stops at EOS | - |"));
    printf("  exact-match report: MDM sampler settings and the AR baseline in one table\n");
    // 20 steps learn no answer: 0% against 0% is a tie, not a ranking
    ck_assert(file_has("out/REPORT.md", "No single best run: **"));
    ck_assert(file_has("out/REPORT.md", "One seed per setting: no spread was measured"));
    // the further check: a column of exact match on the training file
    ck_assert(file_has("out/REPORT.md", " exact match | exact train.jsonl | tokens |"));
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert(system(cmd) == 0);
}
END_TEST

int main(void) {
    Suite *s = suite_create("sweep");
    TCase *tc = tcase_create("plans and runs");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_table_grid_budget);
    tcase_add_test(tc, test_errors_name_the_line);
    tcase_add_test(tc, test_capture_drains_a_talkative_child);
    tcase_add_test(tc, test_sweep_survives_kill_and_failure);
    tcase_add_test(tc, test_time_budget);
    tcase_add_test(tc, test_seeds_are_averaged);
    tcase_add_test(tc, test_parallel_jobs_match_serial);
    tcase_add_test(tc, test_devices_place_runs);
    tcase_add_test(tc, test_adapted_run_waits_for_its_ar_run);
    tcase_add_test(tc, test_exact_match_tradeoff);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

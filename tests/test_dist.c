// Data-parallel training as a user launches it: `mpirun -np 2 ./dllm train ...` on the CPU
// backend must leave the checkpoint one process leaves at the same global batch, byte for byte;
// a run resumes at another number of ranks; a killed, hung or stopped rank ends the whole job
// (no hang) and the run resumes exactly. Runs ./dllm from the project root; a build with MPI
// needs mpirun (Open MPI), a build without it must refuse a launcher's job by name.
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/progress.h"
#include "tests/testutil.h"

static char dir[128];

// Small enough for a step of a few milliseconds, big enough that rounding differs between
// summation orders (so equality means the same order, not luck).
static const char *model = "--n-layer 2 --n-head 2 --d-model 32 --d-ff 64 --seq-len 32 "
                           "--batch-size 2 --lr 1e-2 --eval-every 0 --device cpu";

// The interrupted runs' model: steps of some tens of milliseconds, so a signal lands mid-run.
static const char *slow_model = "--n-layer 2 --n-head 4 --d-model 128 --d-ff 256 --seq-len 64 "
                                "--batch-size 4 --lr 1e-2 --eval-every 0 --device cpu";

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/dllm_dist_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[300];
    snprintf(path, sizeof path, "%s/text.txt", dir);
    FILE *f = fopen(path, "w");
    static const char *line = "In the beginning was the word, and the word was with the text. ";
    for (size_t i = 0; i < 60000; i++) fputc(line[i % strlen(line)] + (int)(i / 997 % 3), f);
    fclose(f);
    // one OpenMP thread per rank (two ranks share the machine); results do not depend on it.
    // Open MPI refuses root unless told (CI runs as root).
    setenv("OMP_NUM_THREADS", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    // Open MPI's own allocations at exit are not dllm's leaks (the sanitized build)
    setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
}

static void teardown(void) {
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

// Runs a shell command in dir; its exit status (128 + n for a signal).
static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...) {
    char cmd[2048], full[2300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    snprintf(full, sizeof full, "cd %s && %s", dir, cmd);
    return wait_exit(spawn_shell(full));
}

static const char *mpirun = "mpirun -np 2 --oversubscribe --bind-to none";

// 1 when the two files hold the same bytes.
static int same_file(const char *a, const char *b) {
    return run("cmp -s %s %s", a, b) == 0;
}

// The dllm binary of the project root, wherever the test runs.
static const char *dllm(void) {
    static char path[4096];
    if (!path[0]) {
        ck_assert_ptr_nonnull(getcwd(path, sizeof path - 8));
        strcat(path, "/dllm");
    }
    return path;
}

static void slurp(const char *name, char *buf, size_t cap) {
    char path[300];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
    buf[n] = '\0';
    if (f) fclose(f);
}

#ifdef DLLM_MPI

// The train steps of a run's log without their timings: what must not depend on the ranks.
static void train_lines(const char *run_dir, char *buf, size_t cap) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "grep '\"train\"' %s/log.jsonl | sed 's/,\"tokens_per_s.*//' > %s.lines",
             run_dir, run_dir);
    ck_assert_int_eq(run("%s", cmd), 0);
    char name[200];
    snprintf(name, sizeof name, "%s.lines", run_dir);
    slurp(name, buf, cap);
}

// One process and several ranks, the same global batch (--grad-accum micro-batches per step).
// With validation, best.ckpt must match too.
static void check_ranks_equal_one_process(const char *flags, int accum, int ranks) {
    static int n = 0;
    n++;
    ck_assert_int_eq(run("%s train --data text.txt %s %s --grad-accum %d --steps 5 --run one%d "
                         ">one%d.out 2>&1", dllm(), model, flags, accum, n, n), 0);
    ck_assert_int_eq(run("mpirun -np %d --oversubscribe --bind-to none %s train --data text.txt "
                         "%s %s --grad-accum %d --steps 5 --run two%d >two%d.out 2>&1", ranks,
                         dllm(), model, flags, accum, n, n), 0);
    char a[40], b[40];
    snprintf(a, sizeof a, "one%d/step_00000005.ckpt", n);
    snprintf(b, sizeof b, "two%d/step_00000005.ckpt", n);
    int same = same_file(a, b);
    snprintf(a, sizeof a, "one%d/best.ckpt", n);
    snprintf(b, sizeof b, "two%d/best.ckpt", n);
    if (strstr(flags, "--eval-every")) same = same && same_file(a, b);
    static char la[8192], lb[8192];
    snprintf(a, sizeof a, "one%d", n);
    snprintf(b, sizeof b, "two%d", n);
    train_lines(a, la, sizeof la);
    train_lines(b, lb, sizeof lb);
    printf("  %s --grad-accum %d: %d ranks vs 1 process: checkpoints %s, step lines %s\n", flags,
           accum, ranks, same ? "byte-identical" : "DIFFERENT", strcmp(la, lb) ? "DIFFER" : "equal");
    fflush(stdout);
    ck_assert(same);
    ck_assert_str_eq(la, lb);
}

START_TEST(test_ranks_equal_one_process) {
    check_ranks_equal_one_process("--objective mdm", 2, 2);
    check_ranks_equal_one_process("--objective ar", 2, 2);
    check_ranks_equal_one_process("--objective bd3 --block-size 8", 2, 2);
    // two micro-batches per rank, with recomputation, and random-length steps
    check_ranks_equal_one_process("--objective mdm --recompute 1 --random-length-prob 0.5", 4, 2);
    // 3 ranks own 4, 3 and 3 of the 10 chunks of 4096 values; rank 0 validates and every rank
    // saves best.ckpt
    check_ranks_equal_one_process("--objective mdm --eval-every 2 --eval-windows 4 --eval-mc 2",
                                  3, 3);
    // LoRA adapters on the first run's model: one chunk, all rank 0's, none rank 1's
    check_ranks_equal_one_process("--init one1/step_00000005.ckpt --lora-rank 4", 2, 2);
    // the log says what each rank computed per second
    char log[8192];
    slurp("two1/log.jsonl", log, sizeof log);
    ck_assert_ptr_nonnull(strstr(log, "\"rank_tokens_per_s\":["));
}
END_TEST

// One process with one micro-batch of 4 rows against 2 ranks of 2 rows: the same windows (AR:
// no masks, whose stratified rates depend on the micro-batch size), but the matmuls sum their
// rows in another order, so equal only to rounding.
START_TEST(test_ranks_close_to_one_big_batch) {
    ck_assert_int_eq(run("%s train --data text.txt %s --objective ar --batch-size 4 --steps 5 "
                         "--run big >big.out 2>&1", dllm(), model), 0);
    ck_assert_int_eq(run("%s %s train --data text.txt %s --objective ar --grad-accum 2 --steps 5 "
                         "--run split >split.out 2>&1", mpirun, dllm(), model), 0);
    ck_assert_int_eq(run("grep -o '\"loss\":[0-9.e-]*' big/log.jsonl | cut -d: -f2 > big.l && "
                         "grep -o '\"loss\":[0-9.e-]*' split/log.jsonl | cut -d: -f2 > split.l"),
                     0);
    char a[4096], b[4096];
    slurp("big.l", a, sizeof a);
    slurp("split.l", b, sizeof b);
    double worst = 0;
    char *pa = a, *pb = b;
    for (int i = 0; i < 5; i++) {
        double x = strtod(pa, &pa), y = strtod(pb, &pb);
        worst = fmax(worst, fabs(x - y) / fabs(x));
    }
    printf("  batch 4 in one process vs 2 ranks x 2: losses of 5 steps within %.2e (relative)\n",
           worst);
    ck_assert(worst < 1e-4);
}
END_TEST

START_TEST(test_resume_at_another_world_size) {
    const char *ckpt = "--save-every 3 --grad-accum 2";
    ck_assert_int_eq(run("%s train --data text.txt %s %s --steps 6 --run straight >s.out 2>&1",
                         dllm(), model, ckpt), 0);
    // 2 ranks, then 1 process; 1 process, then 2 ranks
    ck_assert_int_eq(run("%s %s train --data text.txt %s %s --steps 3 --run a >a.out 2>&1",
                         mpirun, dllm(), model, ckpt), 0);
    ck_assert_int_eq(run("%s train --resume a --data text.txt --steps 6 >a2.out 2>&1", dllm()),
                     0);
    ck_assert_int_eq(run("%s train --data text.txt %s %s --steps 3 --run b >b.out 2>&1", dllm(),
                         model, ckpt), 0);
    ck_assert_int_eq(run("%s %s train --resume b --data text.txt --steps 6 >b2.out 2>&1", mpirun,
                         dllm()), 0);
    int a = same_file("straight/step_00000006.ckpt", "a/step_00000006.ckpt");
    int b = same_file("straight/step_00000006.ckpt", "b/step_00000006.ckpt");
    printf("  resumed at step 3: 2 ranks -> 1 process %s, 1 process -> 2 ranks %s the straight "
           "run's step 6\n", a ? "equals" : "DIFFERS FROM", b ? "equals" : "DIFFERS FROM");
    fflush(stdout);
    ck_assert(a && b);
    // a step's micro-batches must split evenly over the ranks
    ck_assert_int_ne(run("%s %s train --data text.txt %s --grad-accum 3 --steps 2 --run odd "
                         ">odd.out 2>odd.err", mpirun, dllm(), model), 0);
    char err[4096];
    slurp("odd.err", err, sizeof err);
    ck_assert_ptr_nonnull(strstr(err, "3 micro-batches per step (--grad-accum) do not split over "
                                      "2 ranks"));
}
END_TEST

// The pid of rank `rank` of a running `dllm train ... --run name`, or 0.
static pid_t rank_pid(const char *name, int rank) {
    DIR *d = opendir("/proc");
    pid_t found = 0;
    char want_run[300], want_rank[64];
    snprintf(want_run, sizeof want_run, "%s/%s", dir, name);
    snprintf(want_rank, sizeof want_rank, "OMPI_COMM_WORLD_RANK=%d", rank);
    for (struct dirent *e; d && !found && (e = readdir(d));) {
        pid_t pid = (pid_t)atoi(e->d_name);
        if (pid <= 0) continue;
        char path[64], buf[65536];
        snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        int has_rank = 0, has_run = 0;
        for (size_t i = 0; i < n; i += strlen(buf + i) + 1) {
            buf[n] = '\0';
            if (strcmp(buf + i, want_rank) == 0) has_rank = 1;
            if (strncmp(buf + i, "PWD=", 4) == 0 && strcmp(buf + i + 4, dir) == 0) has_run = 1;
        }
        if (has_rank && has_run) {
            snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
            f = fopen(path, "r");
            n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
            if (f) fclose(f);
            for (size_t i = 0; i + 1 < n; i++)
                if (buf[i] == '\0') buf[i] = ' ';
            buf[n] = '\0';
            if (strstr(buf, " train ") && strstr(buf, name)) found = pid;
        }
    }
    if (d) closedir(d);
    (void)want_run;
    return found;
}

// Starts a long 2-rank run in the background, waits for its first checkpoint, sends rank 1
// sig, and returns the job's exit status and how long it took to end after the signal.
static int signal_rank(const char *name, const char *extra, int sig, double *seconds) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cd %s && exec %s %s train --data text.txt %s --steps 200 "
             "--save-every 10 --run %s %s >%s.out 2>%s.err", dir, mpirun, dllm(), slow_model,
             name, extra, name, name);
    pid_t job = spawn_shell(cmd);
    char first[300];
    snprintf(first, sizeof first, "%s/%s/step_00000010.ckpt", dir, name);
    pid_t victim = 0;
    for (int i = 0; i < 3000 && (access(first, F_OK) != 0 || !victim); i++) {
        nanosleep(&(struct timespec){0, 10000000}, NULL);
        if (!victim) victim = rank_pid(name, 1);
    }
    ck_assert_msg(victim > 0, "rank 1 of %s not found", name);
    double t0 = now_seconds();
    kill(victim, sig);
    int status = wait_exit(job);
    *seconds = now_seconds() - t0;
    if (sig == SIGSTOP) kill(victim, SIGKILL);  // in case the launcher left it
    return status;
}

// The newest checkpoint step of a run directory.
static int newest_step(const char *name) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "ls %s | grep step_ | tail -1 | tr -dc 0-9 > %s.newest", name, name);
    ck_assert_int_eq(run("%s", cmd), 0);
    char buf[64], file[200];
    snprintf(file, sizeof file, "%s.newest", name);
    slurp(file, buf, sizeof buf);
    return atoi(buf);
}

START_TEST(test_killed_rank_ends_job_and_resume_is_exact) {
    double seconds;
    int status = signal_rank("killed", "", SIGKILL, &seconds);
    int step = newest_step("killed");
    printf("  kill -9 of rank 1: the job ended after %.1f s with status %d; newest checkpoint "
           "step %d\n", seconds, status, step);
    fflush(stdout);
    ck_assert_int_ne(status, 0);
    ck_assert(seconds < 60);
    ck_assert_int_ge(step, 10);
    ck_assert_int_lt(step, 200);
    // the resumed run (2 ranks) ends where a straight one does
    ck_assert_int_eq(run("%s %s train --resume killed --data text.txt >resumed.out 2>&1", mpirun,
                         dllm()), 0);
    ck_assert_int_eq(run("%s train --data text.txt %s --grad-accum 2 --steps 200 --save-every 0 "
                         "--run straight >straight.out 2>&1", dllm(), slow_model), 0);
    ck_assert(same_file("straight/step_00000200.ckpt", "killed/step_00000200.ckpt"));
}
END_TEST

START_TEST(test_hung_rank_times_out) {
    double seconds;
    int status = signal_rank("hung", "--comm-timeout 2", SIGSTOP, &seconds);
    char err[8192];
    slurp("hung.err", err, sizeof err);
    printf("  rank 1 stopped: the job ended after %.1f s with status %d\n", seconds, status);
    fflush(stdout);
    ck_assert_int_ne(status, 0);
    ck_assert(seconds < 60);
    ck_assert_msg(strstr(err, "dllm: train: rank 0 of 2: no answer from the other ranks for 2 s"),
                  "stderr: %s", err);
}
END_TEST

START_TEST(test_stop_signal_on_one_rank_stops_all) {
    double seconds;
    int status = signal_rank("stopped", "", SIGTERM, &seconds);
    int step = newest_step("stopped");
    char out[65536];
    slurp("stopped.out", out, sizeof out);
    printf("  SIGTERM to rank 1: status %d, saved step %d\n", status, step);
    fflush(stdout);
    ck_assert_int_eq(status, 128 + SIGTERM);
    char want[100];
    snprintf(want, sizeof want, "SIGTERM at step %d: saved", step);
    ck_assert_msg(strstr(out, want), "'%s' not in the output", want);
}
END_TEST

START_TEST(test_plan_per_rank) {
    ck_assert_int_eq(run("%s %s train --data text.txt %s --grad-accum 4 --dry-run 1 >plan.out "
                         "2>&1", mpirun, dllm(), model), 0);
    char out[8192];
    slurp("plan.out", out, sizeof out);
    ck_assert_msg(strstr(out, "job: 2 ranks, each running 2 of the step's 4 micro-batches of 2 "
                              "sequences"), "%s", out);
    ck_assert_ptr_nonnull(strstr(out, "memory per rank: + gradient sums"));
    // one copy of the plan: rank 1 prints nothing
    ck_assert_ptr_null(strstr(strstr(out, "job: 2 ranks") + 1, "job: 2 ranks"));
}
END_TEST

#else

// A build without MPI started as one of a launcher's ranks refuses by name.
START_TEST(test_launcher_job_refused_without_mpi) {
    ck_assert_int_ne(run("OMPI_COMM_WORLD_SIZE=2 %s train --data text.txt %s --steps 1 --run x "
                         ">x.out 2>x.err", dllm(), model), 0);
    char err[4096];
    slurp("x.err", err, sizeof err);
    ck_assert_ptr_nonnull(strstr(err, "built without MPI"));
}
END_TEST

#endif

int main(void) {
    Suite *s = suite_create("dist");
    TCase *tc = tcase_create("mpirun");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
#ifdef DLLM_MPI
    if (system("command -v mpirun >/dev/null 2>&1") != 0) {
        fprintf(stderr, "test_dist: this dllm is built with MPI but mpirun is missing "
                        "(apt-get install openmpi-bin)\n");
        return 1;
    }
    tcase_add_test(tc, test_ranks_equal_one_process);
    tcase_add_test(tc, test_ranks_close_to_one_big_batch);
    tcase_add_test(tc, test_resume_at_another_world_size);
    tcase_add_test(tc, test_killed_rank_ends_job_and_resume_is_exact);
    tcase_add_test(tc, test_hung_rank_times_out);
    tcase_add_test(tc, test_stop_signal_on_one_rank_stops_all);
    tcase_add_test(tc, test_plan_per_rank);
#else
    tcase_add_test(tc, test_launcher_job_refused_without_mpi);
#endif
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

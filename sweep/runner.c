#include "sweep/runner.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/file.h"
#include "common/json.h"
#include "common/progress.h"
#include "model/config.h"
#include "report/run_log.h"
#include "sweep/status.h"
#include "store/train_config.h"

// SIGINT / SIGTERM to the sweep: the child gets the same signal (it saves and exits), and the
// sweep stops after it without recording an outcome, so a restart resumes the run.
static volatile sig_atomic_t stop_signal = 0;

static void on_stop_signal(int sig) { stop_signal = sig; }

static int int_value(const Plan *p, const PlanRun *r, const char *name, int fallback) {
    const char *v = plan_value(p, r, name);
    return v ? atoi(v) : fallback;
}

int sweep_train_args(const Plan *p, const PlanRun *r, const char *run_dir, char *storage,
                     size_t cap, char **argv, int max) {
    int n = 0;
    size_t used = 0;
    argv[n++] = "train";
    for (int i = 0; i < p->n_base && n + 2 < max; i++) {
        const char *name = p->base[i].name;
        int varied = 0;
        for (int k = 0; k < r->n_varied; k++) varied |= strcmp(r->varied[k].name, name) == 0;
        if (varied || strcmp(name, "ranks") == 0 ||
            (strcmp(name, "steps") == 0 && (p->budget_steps || p->budget_tokens)))
            continue;
        argv[n++] = storage + used;
        used += (size_t)snprintf(storage + used, cap - used, "--%s", name) + 1;
        argv[n++] = (char *)p->base[i].value;
    }
    for (int k = 0; k < r->n_varied && n + 2 < max; k++) {
        if (strcmp(r->varied[k].value, "-") == 0) continue;  // this run leaves the flag out
        if (strcmp(r->varied[k].name, "exact") == 0) continue;  // the report's, not train's
        if (strcmp(r->varied[k].name, "ranks") == 0) continue;  // the launcher's
        argv[n++] = storage + used;
        used += (size_t)snprintf(storage + used, cap - used, "--%s", r->varied[k].name) + 1;
        argv[n++] = (char *)r->varied[k].value;
    }
    int64_t steps = p->budget_steps;
    if (p->budget_tokens) {
        // equal tokens for every run: steps = tokens / (batch * accum * seq_len)
        TrainConfig tc = train_config_default();
        ModelConfig mc = model_config_default();
        int64_t per_step = (int64_t)int_value(p, r, "batch-size", tc.batch_size) *
                           int_value(p, r, "grad-accum", int_value(p, r, "ranks", tc.grad_accum)) *
                           int_value(p, r, "seq-len", mc.seq_len);
        steps = per_step > 0 ? (p->budget_tokens + per_step - 1) / per_step : 1;
    }
    if (steps) {
        argv[n++] = "--steps";
        argv[n++] = storage + used;
        used += (size_t)snprintf(storage + used, cap - used, "%lld", (long long)steps) + 1;
    }
    argv[n++] = "--run";
    argv[n++] = (char *)run_dir;
    argv[n++] = "--auto-resume";
    argv[n++] = "1";
    argv[n] = NULL;
    return n;
}

// run_dir/command.txt: the exact `dllm train` command of the run, to read or rerun by hand
// (after the devices it was given, when it was given some).
static int write_command(const char *run_dir, const char *devices, char **argv, int argc,
                         Error *err) {
    char path[4400];
    snprintf(path, sizeof path, "%s/command.txt", run_dir);
    AtomicFile f;
    if (atomic_open(&f, path, err)) return -1;
    if (devices[0]) fprintf(f.f, "CUDA_VISIBLE_DEVICES=%s ", devices);
    for (int i = 0; i < argc; i++) fprintf(f.f, "%s%s", i ? " " : "", argv[i]);
    fputc('\n', f.f);
    return atomic_commit(&f, err);
}

// The last non-empty line of a file (a failed run's error), or "".
static void last_line(const char *path, char *out, size_t cap) {
    out[0] = '\0';
    char *text;
    size_t n;
    Error err;
    if (file_read_all(path, &text, &n, &err)) return;
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r')) text[--n] = '\0';
    char *start = strrchr(text, '\n');
    start = start ? start + 1 : text;
    // a progress line redrawn with \r keeps only its last frame
    char *cr = strrchr(start, '\r');
    snprintf(out, cap, "%s", cr ? cr + 1 : start);
    free(text);
}

typedef struct {
    int total;
    double done_seconds;  // wall time of the runs finished in this process
    int done_here, jobs;
} Progress;

// A run in flight: its child, where it writes, when it started, its step budget, the
// devices it holds (indices into SweepOptions.devices).
typedef struct {
    pid_t pid;
    int index;
    int slots[SWEEP_MAX_DEVICES], n_slots;
    int64_t steps;
    double t0;
    int timed_out, forwarded;
    char dir[4300];
} Job;

// The live line: the first run in flight, its progress, and the sweep's ETA (runs left times
// the mean run so far, or this one extrapolated from its progress, over the parallel jobs).
static void draw_status(const Progress *pg, const Plan *p, const Job *j, int pending) {
    char loss[64] = "starting", eta[16] = "?", bar[32];
    double frac = 0.0, last_loss;
    long long step;
    if (run_log_last_step(j->dir, &step, &last_loss) == 0) {
        snprintf(loss, sizeof loss, "step %lld | loss %.4f", step, last_loss);
        if (j->steps > 0) frac = (double)step / j->steps;
    }
    double run_elapsed = now_seconds() - j->t0;
    double per_run = pg->done_here ? pg->done_seconds / pg->done_here
                     : frac > 0.02   ? run_elapsed / frac
                                     : NAN;
    if (isfinite(per_run))
        format_duration(eta, sizeof eta,
                        per_run * (pending + 1) / pg->jobs - fmin(run_elapsed, per_run));
    progress_bar(bar, 20, frac);
    printf("\r\033[Krun %d/%d %s %s | %s | sweep ETA %s", j->index + 1, pg->total,
           p->runs[j->index].name, bar, loss, eta);
    fflush(stdout);
}

// Starts one child, its output appended to RUN_DIR/train.out. threads > 0 sets its
// OMP_NUM_THREADS (parallel runs share the cores instead of each taking them all); devices
// (not "") its CUDA_VISIBLE_DEVICES. argv[0] is found on PATH (mpirun) or is a path (dllm).
static int start_child(char **argv, const char *run_dir, int threads, const char *devices,
                       Job *j, Error *err) {
    char out_path[4400];
    snprintf(out_path, sizeof out_path, "%s/train.out", run_dir);
    int fd = open(out_path, O_WRONLY | O_CREAT | O_APPEND, 0666);
    if (fd < 0) return error_set(err, "%s: %s", out_path, strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        close(fd);
        return error_set(err, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        // a killed sweep takes its run down cleanly; the run keeps the sweep's lock (inherited)
        // until it has saved and exited, so no restart can touch its directory before
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        close(fd);
        signal(SIGINT, SIG_IGN);  // the sweep forwards SIGTERM instead, once
        if (threads > 0) {
            char n[16];
            snprintf(n, sizeof n, "%d", threads);
            setenv("OMP_NUM_THREADS", n, 1);
        }
        if (devices[0]) setenv("CUDA_VISIBLE_DEVICES", devices, 1);
        execvp(argv[0], argv);
        fprintf(stderr, "dllm: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fd);
    j->pid = pid;
    j->t0 = now_seconds();
    j->timed_out = j->forwarded = 0;
    snprintf(j->dir, sizeof j->dir, "%s", run_dir);
    return 0;
}

// 1 when run r starts from (--init) a run of this sweep that has no outcome yet: with --jobs
// it must wait for it (an adapted model needs its AR run's last checkpoint).
static int waits_for_another_run(const Plan *p, const PlanRun *r, const char *dir) {
    const char *init = plan_value(p, r, "init");
    if (!init) return 0;
    for (int i = 0; i < p->n_runs; i++) {
        char run_dir[4300];
        snprintf(run_dir, sizeof run_dir, "%s/runs/%s", dir, p->runs[i].name);
        RunOutcome done;
        if (&p->runs[i] != r && strcmp(init, run_dir) == 0 &&
            run_outcome_read(run_dir, &done) != 0)
            return 1;
    }
    return 0;
}

// Sends SIGTERM once to a run that is over its time budget or whose sweep was stopped.
static void stop_if_due(Job *j, double minutes) {
    if (j->forwarded) return;
    if (stop_signal || (minutes > 0 && now_seconds() - j->t0 > minutes * 60)) {
        j->timed_out = !stop_signal;
        kill(j->pid, SIGTERM);
        j->forwarded = 1;
    }
}

// Records how the run ended. Returns 1 when the sweep must stop (interrupted), -1 on an error,
// else 0.
static int record_outcome(const char *run_dir, int st, int timed_out, Error *err) {
    char reason[512], out_path[4400];
    snprintf(out_path, sizeof out_path, "%s/train.out", run_dir);
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (code == 0) return run_outcome_write(run_dir, "done", "", err);
    if (timed_out && (code == 128 + SIGTERM || code == 0))
        return run_outcome_write(run_dir, "done", "time budget reached", err);
    if (stop_signal && code == 128 + SIGTERM) return 1;
    if (WIFSIGNALED(st)) {
        int sig = WTERMSIG(st);
        snprintf(reason, sizeof reason, "killed by signal %d%s", sig,
                 sig == SIGKILL ? " (out of memory?)" : "");
    } else {
        last_line(out_path, reason, sizeof reason);
        if (!reason[0]) snprintf(reason, sizeof reason, "exit status %d", code);
    }
    return run_outcome_write(run_dir, "failed", reason, err);
}

// The processes run r trains with: its plan's "ranks" (1 when it sets none).
static int run_ranks(const Plan *p, const PlanRun *r) { return int_value(p, r, "ranks", 1); }

// Every run's ranks are >= 1 and, with devices, no more than there are.
static int check_ranks(const Plan *p, const SweepOptions *o, Error *err) {
    for (int i = 0; i < p->n_runs; i++) {
        int ranks = run_ranks(p, &p->runs[i]);
        if (ranks < 1 || ranks > SWEEP_MAX_DEVICES)
            return error_set(err, "run %s: ranks must be between 1 and %d", p->runs[i].name,
                             SWEEP_MAX_DEVICES);
        if (o->n_devices && ranks > o->n_devices)
            return error_set(err, "run %s asks for %d ranks, and --devices lists %d",
                             p->runs[i].name, ranks, o->n_devices);
    }
    return 0;
}

// Takes `want` free devices for job j (used[] marks the taken ones) and writes their ids, as
// CUDA_VISIBLE_DEVICES lists them, into ids. 0, or -1 when fewer are free (nothing taken).
static int take_devices(const SweepOptions *o, int *used, int want, Job *j, char *ids,
                        size_t cap) {
    int free_count = 0;
    for (int d = 0; d < o->n_devices; d++) free_count += !used[d];
    if (free_count < want) return -1;
    size_t len = 0;
    ids[0] = '\0';
    j->n_slots = 0;
    for (int d = 0; d < o->n_devices && j->n_slots < want; d++) {
        if (used[d]) continue;
        used[d] = 1;
        j->slots[j->n_slots++] = d;
        len += (size_t)snprintf(ids + len, cap - len, "%s%d", len ? "," : "", o->devices[d]);
    }
    return 0;
}

static void give_back_devices(int *used, const Job *j) {
    for (int k = 0; k < j->n_slots; k++) used[j->slots[k]] = 0;
}

// Puts `mpirun -np N` in front of a run of several ranks (argv has room for 6 more).
static void launch_with_mpirun(char **argv, int argc, int ranks, char *np, size_t cap) {
    memmove(argv + 6, argv, (size_t)(argc + 2) * sizeof *argv);  // with its NULL
    snprintf(np, cap, "%d", ranks);
    char *launcher[] = {"mpirun", "-np", np, "--oversubscribe", "--bind-to", "none"};
    memcpy(argv, launcher, sizeof launcher);
}

int sweep_run(const char *plan_path, const char *dir, const SweepOptions *o, Error *err) {
    Plan *p = malloc(sizeof *p);
    if (!p) return error_set(err, "out of memory");
    int status = plan_load(p, plan_path, err);
    char path[4300], run_dir[4300];
    snprintf(path, sizeof path, "%s/runs", dir);
    if (status == 0) status = check_ranks(p, o, err);
    if (status == 0) status = make_dirs(path, err);
    int lock_fd = -1;
    if (status == 0) {
        snprintf(path, sizeof path, "%s/lock", dir);
        lock_fd = open(path, O_RDWR | O_CREAT, 0666);
        if (lock_fd < 0) status = error_set(err, "%s: %s", path, strerror(errno));
        else if (flock(lock_fd, LOCK_EX | LOCK_NB) != 0)
            status = error_set(err, "%s: another sweep is running in this directory (or a run "
                                    "it started is still stopping)", dir);
    }
    if (status == 0) {  // the plan travels with its results
        snprintf(path, sizeof path, "%s/PLAN.md", dir);
        char *text;
        size_t n;
        AtomicFile f;
        if (file_read_all(plan_path, &text, &n, err) == 0) {
            if (atomic_open(&f, path, err) == 0) {
                fwrite(text, 1, n, f.f);
                atomic_commit(&f, err);
            }
            free(text);
        }
    }
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    // with devices, as many runs as they hold (each device is one process); else --jobs
    int jobs = o->n_devices ? o->n_devices : o->jobs > 1 ? o->jobs : 1;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = jobs > 1 && !getenv("OMP_NUM_THREADS")
                      ? (cores / jobs > 1 ? (int)(cores / jobs) : 1)
                      : 0;
    int used[SWEEP_MAX_DEVICES] = {0};
    Progress pg = {p->n_runs, 0.0, 0, jobs};
    Job running[SWEEP_MAX_JOBS];
    char started[PLAN_MAX_RUNS] = {0};
    int n_running = 0, n_started = 0, stop = 0;
    while (status == 0 && !stop && (n_running > 0 || (n_started < p->n_runs && !stop_signal))) {
        // start runs in plan order while a slot is free; a run waiting for the run it starts
        // from is passed over until that one has finished
        for (int i = 0; i < p->n_runs && status == 0 && n_running < jobs && !stop_signal; i++) {
            if (started[i]) continue;
            const PlanRun *r = &p->runs[i];
            snprintf(run_dir, sizeof run_dir, "%s/runs/%s", dir, r->name);
            RunOutcome done;
            if (run_outcome_read(run_dir, &done) == 0) {
                printf("run %d/%d %s: %s earlier%s%s\n", i + 1, p->n_runs, r->name, done.status,
                       done.reason[0] ? ": " : "", done.reason);
                started[i] = 1, n_started++;
                continue;
            }
            if (n_running > 0 && waits_for_another_run(p, r, dir)) continue;
            Job *j = &running[n_running];
            char ids[4 * SWEEP_MAX_DEVICES] = "", np[16];
            int ranks = run_ranks(p, r);
            if (o->n_devices && take_devices(o, used, ranks, j, ids, sizeof ids)) continue;
            if (!o->n_devices) j->n_slots = 0;
            if ((status = make_dirs(run_dir, err))) break;
            char storage[4096], *argv[2 * PLAN_MAX_FLAGS + 2 * PLAN_MAX_VARIED + 24];
            int argc = sweep_train_args(p, r, run_dir, storage, sizeof storage, argv + 1,
                                        (int)(sizeof argv / sizeof argv[0]) - 9);
            argv[0] = (char *)o->exe;
            if (!plan_value(p, r, "device")) {
                argv[++argc] = "--device";
                argv[++argc] = (char *)o->device;
                argv[argc + 1] = NULL;
            }
            if (ranks > 1) {
                launch_with_mpirun(argv, argc, ranks, np, sizeof np);
                argc += 6;
            }
            if ((status = write_command(run_dir, ids, argv, argc + 1, err))) break;
            j->index = i, j->steps = 0;
            for (int k = 1; argv[k]; k++)
                if (strcmp(argv[k], "--steps") == 0) j->steps = atoll(argv[k + 1]);
            if ((status = start_child(argv, run_dir, threads, ids, j, err))) break;
            started[i] = 1, n_started++, n_running++;
        }
        // collect the runs that ended
        for (int k = 0; k < n_running && !stop; k++) {
            Job *j = &running[k];
            stop_if_due(j, p->budget_minutes);
            int st;
            pid_t got = waitpid(j->pid, &st, WNOHANG);
            if (got < 0 && errno != EINTR) {
                status = error_set(err, "waitpid: %s", strerror(errno));
                break;
            }
            if (got != j->pid) continue;
            if (o->tty) printf("\r\033[K");
            int outcome = record_outcome(j->dir, st, j->timed_out, err);
            if (outcome < 0) status = -1;
            if (outcome > 0) stop = 1;
            if (outcome == 0) {
                pg.done_seconds += now_seconds() - j->t0, pg.done_here++;
                RunOutcome r;
                run_outcome_read(j->dir, &r);
                printf("run %d/%d %s: %s%s%s (%.0f s)\n", j->index + 1, p->n_runs,
                       p->runs[j->index].name, r.status, r.reason[0] ? ": " : "", r.reason,
                       now_seconds() - j->t0);
                fflush(stdout);
            }
            give_back_devices(used, j);
            running[k--] = running[--n_running];
        }
        if (status != 0 || stop) break;
        if (n_running > 0) {
            if (o->tty) draw_status(&pg, p, &running[0], p->n_runs - n_started);
            usleep(200000);
        }
    }
    // an error or an interruption: the runs still in flight get SIGTERM (they save) and the
    // sweep waits for them, so no restart finds a run still writing
    for (int k = 0; k < n_running; k++) {
        kill(running[k].pid, SIGTERM);
        while (waitpid(running[k].pid, NULL, 0) < 0 && errno == EINTR) {
        }
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (status == 0 && stop_signal) {
        printf("sweep interrupted: run `dllm sweep` again to continue\n");
        status = 128 + stop_signal;
    }
    if (lock_fd >= 0) close(lock_fd);
    free(p);
    return status;
}

#include "sweep/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "common/json.h"
#include "report/run_log.h"

int run_outcome_read(const char *run_dir, RunOutcome *out) {
    memset(out, 0, sizeof *out);
    char path[4300], *text, *value;
    size_t n, len;
    Error err;
    snprintf(path, sizeof path, "%s/status.json", run_dir);
    if (file_read_all(path, &text, &n, &err)) return -1;
    if (json_get_string(text, "status", &value, &len, &err) == 0) {
        snprintf(out->status, sizeof out->status, "%s", value);
        free(value);
    }
    if (json_get_string(text, "reason", &value, &len, &err) == 0) {
        snprintf(out->reason, sizeof out->reason, "%s", value);
        free(value);
    }
    free(text);
    return out->status[0] ? 0 : -1;
}

int run_outcome_write(const char *run_dir, const char *status, const char *reason,
                      Error *err) {
    char path[4300];
    snprintf(path, sizeof path, "%s/status.json", run_dir);
    AtomicFile f;
    if (atomic_open(&f, path, err)) return -1;
    fprintf(f.f, "{\"status\":\"%s\",\"reason\":", status);
    json_write_string(f.f, reason);
    fprintf(f.f, "}\n");
    return atomic_commit(&f, err);
}

int sweep_failures(const Plan *p, const char *dir) {
    int failures = 0;
    for (int i = 0; i < p->n_runs; i++) {
        char run_dir[4300];
        RunOutcome out;
        snprintf(run_dir, sizeof run_dir, "%s/runs/%s", dir, p->runs[i].name);
        failures += run_outcome_read(run_dir, &out) == 0 && strcmp(out.status, "failed") == 0;
    }
    return failures;
}

int sweep_status(const char *dir, Error *err) {
    Plan *p = malloc(sizeof *p);
    if (!p) return error_set(err, "out of memory");
    char path[4300];
    snprintf(path, sizeof path, "%s/PLAN.md", dir);
    if (plan_load(p, path, err)) {
        free(p);
        return -1;
    }
    printf("%s: %s\n", dir, p->title[0] ? p->title : "(untitled)");
    int counts[4] = {0};
    static const char *const names[4] = {"done", "failed", "partial", "pending"};
    for (int i = 0; i < p->n_runs; i++) {
        char run_dir[4300];
        snprintf(run_dir, sizeof run_dir, "%s/runs/%s", dir, p->runs[i].name);
        RunOutcome out;
        RunLog log;
        Error ignore;
        int have_log = run_log_read(run_dir, &log, &ignore) == 0;
        int kind = run_outcome_read(run_dir, &out) == 0 ? strcmp(out.status, "done") != 0
                   : have_log                          ? 2
                                                       : 3;
        counts[kind]++;
        printf("  %-32s %-8s", p->runs[i].name, names[kind]);
        if (have_log && log.n_train)
            printf(" step %6lld | loss %.4f", log.last_step, log.train_loss[log.n_train - 1]);
        if (kind == 1) printf(" | %s", out.reason);
        printf("\n");
        if (have_log) run_log_free(&log);
    }
    printf("%d runs: %d done, %d failed, %d partial, %d pending\n", p->n_runs, counts[0],
           counts[1], counts[2], counts[3]);
    free(p);
    return 0;
}

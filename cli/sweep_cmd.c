// dllm sweep PLAN.md [--dir DIR] [--jobs N]: run every training run a markdown plan describes,
// one after another or N at a time, and write DIR/REPORT.md; `dllm sweep --status DIR` shows
// where a sweep stands.
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/flags.h"
#include "kernels/backend.h"
#include "sweep/report.h"
#include "sweep/runner.h"
#include "sweep/status.h"

// DIR defaults to sweeps/<plan file name without .md>.
static void default_dir(const char *plan, char *out, size_t cap) {
    const char *base = strrchr(plan, '/');
    base = base ? base + 1 : plan;
    size_t n = strlen(base);
    if (n > 3 && strcmp(base + n - 3, ".md") == 0) n -= 3;
    snprintf(out, cap, "sweeps/%.*s", (int)n, base);
}

// After every run has an outcome: DIR/REPORT.md from the plan copy the sweep keeps in DIR.
static int write_report(const char *dir, const SweepOptions *o, Error *err) {
    static Plan plan;  // large: not on the stack
    char path[4300];
    snprintf(path, sizeof path, "%s/PLAN.md", dir);
    if (plan_load(&plan, path, err) || sweep_report(&plan, dir, o->exe, o->device, err)) return -1;
    printf("sweep done: %d runs, %d failed; report: %s/REPORT.md\n", plan.n_runs,
           sweep_failures(&plan, dir), dir);
    return 0;
}

// "0,1,3": distinct non-negative device ids.
static int parse_devices(const char *list, int *ids, int *n, Error *err) {
    *n = 0;
    for (const char *s = list; *s;) {
        char *end;
        long id = strtol(s, &end, 10);
        if (end == s || id < 0 || id > 4095 || (*end && *end != ','))
            return error_set(err, "sweep: --devices '%s': expected device ids like 0,1,2", list);
        for (int k = 0; k < *n; k++)
            if (ids[k] == id) return error_set(err, "sweep: --devices lists %ld twice", id);
        if (*n == SWEEP_MAX_DEVICES)
            return error_set(err, "sweep: --devices lists more than %d", SWEEP_MAX_DEVICES);
        ids[(*n)++] = (int)id;
        s = *end ? end + 1 : end;
    }
    if (*n == 0) return error_set(err, "sweep: --devices is empty");
    return 0;
}

int cmd_sweep(int argc, char **argv) {
    const char *dir = NULL, *status_dir = NULL, *device = "auto", *device_list = NULL;
    int jobs = 1;
    Flag flags[] = {
        {"dir", FLAG_STRING, &dir, "sweep directory (default: sweeps/PLAN-NAME)", FLAG_FREE, 0},
        {"status", FLAG_STRING, &status_dir, "print the state of the sweep in this directory",
         FLAG_FREE, 0},
        {"device", FLAG_STRING, &device,
         "auto, cpu, cuda or cuda-fp32: runs whose plan sets no device, and the report's "
         "evaluations", FLAG_FREE, 0},
        {"jobs", FLAG_INT, &jobs,
         "runs trained at the same time, each on cores / jobs threads (small models use a "
         "whole machine better this way)", FLAG_FREE, 0},
        {"devices", FLAG_STRING, &device_list,
         "GPU ids, e.g. 0,1,2,3: one run per device at a time (CUDA_VISIBLE_DEVICES), a run "
         "whose plan sets ranks: N gets N of them under mpirun (instead of --jobs)", FLAG_FREE,
         0},
    };
    int n_flags = sizeof flags / sizeof flags[0];
    const char *plan = NULL;
    if (argc > 0 && strncmp(argv[0], "--", 2) != 0) plan = argv[0], argc--, argv++;
    int rc = flags_parse_command(flags, n_flags, argc, argv,
                                 "usage: dllm sweep PLAN.md [--dir DIR]\n"
                                 "       dllm sweep --status DIR");
    if (rc) return rc < 0;
    Error err;
    if (status_dir) return sweep_status(status_dir, &err) ? cli_fail(err.msg) : 0;
    if (!plan) return cli_fail("sweep: give a plan file (see --help)");
    char dir_buf[4200], exe[PATH_MAX];
    if (!dir) {
        default_dir(plan, dir_buf, sizeof dir_buf);
        dir = dir_buf;
    }
    // the runs use this very program
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return cli_fail("sweep: cannot find the dllm executable (/proc/self/exe)");
    exe[n] = '\0';
    if (!backend_by_name(device, &err)) return cli_fail(err.msg);
    if (jobs < 1 || jobs > SWEEP_MAX_JOBS)
        return cli_fail("sweep: --jobs must be between 1 and 64");
    int devices[SWEEP_MAX_DEVICES], n_devices = 0;
    if (device_list && (jobs > 1 || parse_devices(device_list, devices, &n_devices, &err)))
        return cli_fail(jobs > 1 ? "sweep: --devices and --jobs exclude each other (with "
                                   "devices, runs go one per device)"
                                 : err.msg);
    SweepOptions o = {exe, isatty(STDOUT_FILENO), device, jobs, devices, n_devices};
    rc = sweep_run(plan, dir, &o, &err);
    if (rc < 0) return cli_fail(err.msg);
    if (rc > 0) return rc;  // interrupted: the next `dllm sweep` continues
    return write_report(dir, &o, &err) ? cli_fail(err.msg) : 0;
}

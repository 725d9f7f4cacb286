// dllm sweep PLAN.md [--dir DIR] [--jobs N]: run every training run a markdown plan describes,
// one after another or N at a time, and write DIR/REPORT.md; `dllm sweep --status DIR` shows
// where a sweep stands.
#include <limits.h>
#include <stdio.h>
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

int cmd_sweep(int argc, char **argv) {
    const char *dir = NULL, *status_dir = NULL, *device = "auto";
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
    SweepOptions o = {exe, isatty(STDOUT_FILENO), device, jobs};
    rc = sweep_run(plan, dir, &o, &err);
    if (rc < 0) return cli_fail(err.msg);
    if (rc > 0) return rc;  // interrupted: the next `dllm sweep` continues
    return write_report(dir, &o, &err) ? cli_fail(err.msg) : 0;
}

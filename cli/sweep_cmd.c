// dllm sweep PLAN.md [--dir DIR]: run every training run a markdown plan describes, one after
// another, and write DIR/REPORT.md; `dllm sweep --status DIR` shows where a sweep stands.
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/flags.h"
#include "kernels/backend.h"
#include "sweep/runner.h"

// DIR defaults to sweeps/<plan file name without .md>.
static void default_dir(const char *plan, char *out, size_t cap) {
    const char *base = strrchr(plan, '/');
    base = base ? base + 1 : plan;
    size_t n = strlen(base);
    if (n > 3 && strcmp(base + n - 3, ".md") == 0) n -= 3;
    snprintf(out, cap, "sweeps/%.*s", (int)n, base);
}

int cmd_sweep(int argc, char **argv) {
    const char *dir = NULL, *status_dir = NULL, *device = "auto";
    Flag flags[] = {
        {"dir", FLAG_STRING, &dir, "sweep directory (default: sweeps/PLAN-NAME)", 0},
        {"status", FLAG_STRING, &status_dir, "print the state of the sweep in this directory", 0},
        {"device", FLAG_STRING, &device,
         "auto, cpu, cuda or cuda-fp32: runs whose plan sets no device, and the report's "
         "evaluations", 0},
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
    SweepOptions o = {exe, isatty(STDOUT_FILENO), device};
    rc = sweep_run(plan, dir, &o, &err);
    if (rc < 0) return cli_fail(err.msg);
    return rc;
}

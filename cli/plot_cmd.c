// dllm plot RUN_DIR...: loss curves of one or more runs overlaid in one PNG: the training loss
// (averaged over bins of steps, pale) and the validation loss (bold, with markers) per run.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/flags.h"
#include "report/plot.h"
#include "report/run_log.h"

enum { MAX_RUNS = 10, MAX_POINTS = 300 };

// Means of consecutive bins so that at most MAX_POINTS remain (in place; returns the count).
static int bin_means(double *x, double *y, int n) {
    int per = (n + MAX_POINTS - 1) / MAX_POINTS, out = 0;
    if (per <= 1) return n;
    for (int i = 0; i < n; i += per) {
        double sx = 0.0, sy = 0.0;
        int k = 0;
        for (int j = i; j < n && j < i + per; j++)
            if (isfinite(y[j])) sx += x[j], sy += y[j], k++;
        if (k) x[out] = sx / k, y[out] = sy / k, out++;
    }
    return out;
}

// The last component of a path, without a trailing slash.
static void run_name(const char *path, char *out, size_t cap) {
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && path[start - 1] != '/') start--;
    snprintf(out, cap, "%.*s", (int)(len - start), path + start);
}

int cmd_plot(int argc, char **argv) {
    const char *out = NULL, *title = "loss (nats/token)";
    Flag flags[] = {
        {"out", FLAG_STRING, &out, "PNG to write (default: RUN/loss.png for one run, else loss.png)",
         FLAG_FREE, 0},
        {"title", FLAG_STRING, &title, "title above the plot", FLAG_FREE, 0},
    };
    int n_flags = sizeof flags / sizeof flags[0];
    // run directories are the arguments that are not flags or flag values
    const char *runs[MAX_RUNS];
    int n_runs = 0, n_rest = 0;
    char *rest[64];
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) == 0) {
            rest[n_rest++] = argv[i];
            if (!strchr(argv[i], '=') && i + 1 < argc && strcmp(argv[i], "--help") != 0)
                rest[n_rest++] = argv[++i];
        } else if (n_runs < MAX_RUNS) {
            runs[n_runs++] = argv[i];
        } else {
            return cli_fail("plot: at most 10 runs in one plot");
        }
        if (n_rest > 60) return cli_fail("plot: too many flags");
    }
    int rc = flags_parse_command(flags, n_flags, n_rest, rest, "usage: dllm plot RUN_DIR... [--out F]");
    if (rc) return rc < 0;
    if (n_runs == 0) return cli_fail("plot: give one or more run directories");
    char default_out[4200];
    if (!out) {
        if (n_runs == 1) snprintf(default_out, sizeof default_out, "%s/loss.png", runs[0]);
        else snprintf(default_out, sizeof default_out, "loss.png");
        out = default_out;
    }
    RunLog logs[MAX_RUNS];
    Series series[2 * MAX_RUNS];
    char labels[2 * MAX_RUNS][80];
    int n_series = 0, status = 0, n_logs = 0;
    Error err;
    for (int r = 0; r < n_runs && status == 0; r++) {
        if (run_log_read(runs[r], &logs[r], &err)) {
            status = -1;
            break;
        }
        n_logs++;
        RunLog *lg = &logs[r];
        if (lg->n_train == 0 && lg->n_eval == 0) {
            status = error_set(&err, "%s/log.jsonl: no steps logged yet", runs[r]);
            break;
        }
        char name[64];
        run_name(runs[r], name, sizeof name);
        int n = bin_means(lg->train_step, lg->train_loss, lg->n_train);
        char *label = labels[n_series];
        snprintf(label, sizeof labels[0], "%s train", name);
        series[n_series++] = (Series){label, lg->train_step, lg->train_loss, n, r, 1, 0, 0};
        if (lg->n_eval) {
            label = labels[n_series];
            snprintf(label, sizeof labels[0], "%s val", name);
            series[n_series++] =
                (Series){label, lg->eval_step, lg->eval_loss, lg->n_eval, r, 0, 1, 0};
        }
    }
    PlotSpec spec = {.title = title, .x_label = "step", .y_label = "nats/token"};
    if (status == 0) status = plot_png(out, &spec, series, n_series, &err);
    for (int r = 0; r < n_logs; r++) run_log_free(&logs[r]);
    if (status) return cli_fail(err.msg);
    printf("wrote %s (%d run%s)\n", out, n_runs, n_runs > 1 ? "s" : "");
    return 0;
}

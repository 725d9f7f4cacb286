#include "report/run_log.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "common/json.h"

static void push(double **xs, double **ys, int *n, double x, double y) {
    *xs = realloc(*xs, (size_t)(*n + 1) * sizeof **xs);
    *ys = realloc(*ys, (size_t)(*n + 1) * sizeof **ys);
    (*xs)[*n] = x;
    (*ys)[*n] = y;
    (*n)++;
}

int run_log_read(const char *dir, RunLog *log, Error *err) {
    memset(log, 0, sizeof *log);
    log->tokens_per_step = log->flops_per_token = NAN;
    char path[4200], *text;
    size_t n;
    snprintf(path, sizeof path, "%s/log.jsonl", dir);
    if (file_read_all(path, &text, &n, err)) return -1;
    double tps_sum = 0.0;
    int tps_n = 0;
    Error ignore;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        double step, x;
        if (json_get_number(line, "step", &step, &ignore)) continue;
        char *type;
        size_t len;
        if (json_get_string(line, "type", &type, &len, &ignore)) continue;
        if (strcmp(type, "train") == 0) {
            // a skipped step logs "loss":null, which is not a number
            if (json_get_number(line, "loss", &x, &ignore)) x = NAN;
            push(&log->train_step, &log->train_loss, &log->n_train, step, x);
            if (json_get_number(line, "tokens_per_s", &x, &ignore) == 0) tps_sum += x, tps_n++;
            log->last_step = (long long)step;
        } else if (strcmp(type, "eval") == 0) {
            if (json_get_number(line, "val_loss", &x, &ignore) == 0)
                push(&log->eval_step, &log->eval_loss, &log->n_eval, step, x);
        } else if (strcmp(type, "budget") == 0) {
            if (json_get_number(line, "tokens_per_step", &log->tokens_per_step, &ignore) ||
                json_get_number(line, "flops_per_token", &log->flops_per_token, &ignore))
                log->tokens_per_step = log->flops_per_token = NAN;
        } else if (strcmp(type, "event") == 0) {
            char *event;
            if (json_get_string(line, "event", &event, &len, &ignore) == 0) {
                snprintf(log->last_event, sizeof log->last_event, "%s", event);
                free(event);
            }
        }
        if (json_get_number(line, "elapsed_s", &x, &ignore) == 0) log->elapsed_s = x;
        free(type);
    }
    free(text);
    log->tokens_per_s = tps_n ? tps_sum / tps_n : NAN;
    return 0;
}

int run_log_last_step(const char *dir, long long *step, double *loss) {
    char path[4200], tail[8192];
    snprintf(path, sizeof path, "%s/log.jsonl", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    long start = size > (long)sizeof tail - 1 ? size - (long)sizeof tail + 1 : 0;
    fseek(f, start, SEEK_SET);
    size_t n = fread(tail, 1, sizeof tail - 1, f);
    fclose(f);
    tail[n] = '\0';
    // complete lines only, newest first
    for (char *end = strrchr(tail, '\n'); end; ) {
        *end = '\0';
        char *line = strrchr(tail, '\n');
        line = line ? line + 1 : tail;
        double s, x;
        Error ignore;
        if (strstr(line, "\"type\":\"train\"") && json_get_number(line, "step", &s, &ignore) == 0) {
            *step = (long long)s;
            if (json_get_number(line, "loss", &x, &ignore)) x = NAN;
            *loss = x;
            return 0;
        }
        if (line == tail) break;
        end = line - 1;
    }
    return -1;
}

void run_log_free(RunLog *log) {
    free(log->train_step);
    free(log->train_loss);
    free(log->eval_step);
    free(log->eval_loss);
    memset(log, 0, sizeof *log);
}

double run_log_best_eval(const RunLog *log, double *step) {
    double best = NAN;
    for (int i = 0; i < log->n_eval; i++)
        if (isnan(best) || log->eval_loss[i] < best) best = log->eval_loss[i], *step = log->eval_step[i];
    return best;
}

double run_log_final_train_loss(const RunLog *log, int window) {
    double sum = 0.0;
    int n = 0;
    for (int i = log->n_train - 1; i >= 0 && n < window; i--)
        if (isfinite(log->train_loss[i])) sum += log->train_loss[i], n++;
    return n ? sum / n : NAN;
}

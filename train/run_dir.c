#include "train/run_dir.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/file.h"
#include "common/json.h"
#include "store/model_source.h"

static const char LOG_NAME[] = "log.jsonl";

// Rewrites the log keeping the complete lines of steps <= step; reads the best validation
// loss and the elapsed time from them.
static int cut_log(RunDir *rd, const char *path, int64_t step, Error *err) {
    char *text;
    size_t n;
    if (file_read_all(path, &text, &n, err)) return errno == ENOENT ? 0 : -1;
    AtomicFile f;
    if (atomic_open(&f, path, err)) {
        free(text);
        return -1;
    }
    char *line = text;
    while (line < text + n) {
        char *end = strchr(line, '\n');
        if (!end) break;  // a line cut short by a kill
        *end = '\0';
        double s, x;
        Error ignore;
        if (json_get_number(line, "step", &s, &ignore) == 0 && s <= (double)step) {
            fprintf(f.f, "%s\n", line);
            if (json_get_number(line, "val_loss", &x, &ignore) == 0 && x < rd->best_val)
                rd->best_val = x;
            if (json_get_number(line, "elapsed_s", &x, &ignore) == 0) rd->elapsed_before = x;
        }
        line = end + 1;
    }
    free(text);
    return atomic_commit(&f, err);
}

int run_dir_open(RunDir *rd, const char *dir, int keep, int64_t resume_step, Error *err) {
    memset(rd, 0, sizeof *rd);
    rd->keep = keep;
    rd->best_val = INFINITY;
    if (strlen(dir) >= sizeof rd->dir - 32) return error_set(err, "%.200s...: path too long", dir);
    strcpy(rd->dir, dir);
    if (make_dirs(dir, err)) return -1;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, LOG_NAME);
    if (resume_step < 0) {
        int64_t steps[1];
        if (file_size(path) > 0 || run_checkpoints(dir, steps, 1) > 0)
            return error_set(err, "%s: already holds a run (--resume it, or pick another --run)",
                             dir);
    } else if (cut_log(rd, path, resume_step, err)) {
        return -1;
    }
    rd->log = fopen(path, "a");
    if (!rd->log) return error_set(err, "%s: %s", path, strerror(errno));
    return 0;
}

void run_dir_close(RunDir *rd) {
    if (rd->log) fclose(rd->log);
    rd->log = NULL;
}

// JSON has no NaN or infinity: those are written as null.
static void put_number(FILE *f, const char *key, double x) {
    if (isfinite(x)) fprintf(f, ",\"%s\":%.9g", key, x);
    else fprintf(f, ",\"%s\":null", key);
}

void run_log_train(RunDir *rd, int64_t step, const StepStats *st, double tokens_per_s,
                   const double *rank_tokens_per_s, int ranks, double elapsed) {
    if (!rd->log) return;  // not opened: another rank writes
    fprintf(rd->log, "{\"type\":\"train\",\"step\":%lld", (long long)step);
    put_number(rd->log, "loss", st->loss);
    put_number(rd->log, "lr", st->lr);
    put_number(rd->log, "grad_norm", st->grad_norm);
    fprintf(rd->log, ",\"seq_len\":%d,\"skipped\":%s", st->seq_len, st->skipped ? "true" : "false");
    put_number(rd->log, "tokens_per_s", tokens_per_s);
    if (ranks > 1) {
        fputs(",\"rank_tokens_per_s\":[", rd->log);
        for (int r = 0; r < ranks; r++)
            fprintf(rd->log, "%s%.1f", r ? "," : "", rank_tokens_per_s[r]);
        fputc(']', rd->log);
    }
    put_number(rd->log, "elapsed_s", rd->elapsed_before + elapsed);
    fputs("}\n", rd->log);
    fflush(rd->log);
}

void run_log_eval(RunDir *rd, int64_t step, const EvalResult *r, double elapsed) {
    if (!rd->log) return;  // not opened: another rank writes
    fprintf(rd->log, "{\"type\":\"eval\",\"step\":%lld", (long long)step);
    put_number(rd->log, "val_loss", r->nats_per_token);
    put_number(rd->log, "val_se", r->std_error);
    put_number(rd->log, "val_ppl", r->ppl);
    fprintf(rd->log, ",\"tokens\":%lld,\"windows\":%d,\"mc\":%d", (long long)r->tokens,
            r->windows, r->mc);
    put_number(rd->log, "elapsed_s", rd->elapsed_before + elapsed);
    fputs("}\n", rd->log);
    fflush(rd->log);
}

void run_log_budget(RunDir *rd, int64_t step, int64_t tokens_per_step, double flops_per_token) {
    if (!rd->log) return;  // not opened: another rank writes
    fprintf(rd->log, "{\"type\":\"budget\",\"step\":%lld,\"tokens_per_step\":%lld",
            (long long)step, (long long)tokens_per_step);
    put_number(rd->log, "flops_per_token", flops_per_token);
    fputs("}\n", rd->log);
    fflush(rd->log);
}

void run_log_event(RunDir *rd, int64_t step, const char *event, const char *detail) {
    if (!rd->log) return;  // not opened: another rank writes
    fprintf(rd->log, "{\"type\":\"event\",\"step\":%lld,\"event\":\"%s\",\"detail\":",
            (long long)step, event);
    json_write_string(rd->log, detail);
    fputs("}\n", rd->log);
    fflush(rd->log);
}

int run_dir_save(RunDir *rd, const Trainer *tr, const Tokenizer *t, Error *err) {
    char path[4096];
    run_checkpoint_path(rd->dir, tr->step, path, sizeof path);
    if (trainer_save(path, tr, t, err)) return -1;  // every rank: its optimizer shard
    if (!rd->log) return 0;  // not opened: another rank writes
    int64_t steps[1024];
    int n = run_checkpoints(rd->dir, steps, 1024);
    for (int i = rd->keep; i < n; i++) {
        run_checkpoint_path(rd->dir, steps[i], path, sizeof path);
        remove(path);
    }
    return 0;
}

int run_dir_is_best(const RunDir *rd, double val) { return rd->log && val < rd->best_val; }

int run_dir_save_best(RunDir *rd, const Trainer *tr, const Tokenizer *t, double val,
                      Error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/best.ckpt", rd->dir);
    if (trainer_save(path, tr, t, err)) return -1;  // every rank: its optimizer shard
    rd->best_val = val;
    return 0;
}


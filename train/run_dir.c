#include "train/run_dir.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/file.h"
#include "common/json.h"
#include "model/peft.h"
#include "model/hf_model.h"

static const char LOG_NAME[] = "log.jsonl";

// Steps of the dir's step_NNNNNNNN.ckpt files, newest first; returns the count (max cap).
static int list_checkpoints(const char *dir, int64_t *steps, int cap) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < cap) {
        long long step;
        char tail[8];
        if (sscanf(e->d_name, "step_%lld.%7s", &step, tail) == 2 && strcmp(tail, "ckpt") == 0)
            steps[n++] = step;
    }
    closedir(d);
    for (int i = 1; i < n; i++)  // insertion sort, newest first
        for (int j = i; j > 0 && steps[j] > steps[j - 1]; j--) {
            int64_t t = steps[j];
            steps[j] = steps[j - 1];
            steps[j - 1] = t;
        }
    return n;
}

static void checkpoint_path(const char *dir, int64_t step, char *out, size_t cap) {
    snprintf(out, cap, "%s/step_%08lld.ckpt", dir, (long long)step);
}

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
        if (file_size(path) > 0 || list_checkpoints(dir, steps, 1) > 0)
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
                   double elapsed) {
    fprintf(rd->log, "{\"type\":\"train\",\"step\":%lld", (long long)step);
    put_number(rd->log, "loss", st->loss);
    put_number(rd->log, "lr", st->lr);
    put_number(rd->log, "grad_norm", st->grad_norm);
    fprintf(rd->log, ",\"seq_len\":%d,\"skipped\":%s", st->seq_len, st->skipped ? "true" : "false");
    put_number(rd->log, "tokens_per_s", tokens_per_s);
    put_number(rd->log, "elapsed_s", rd->elapsed_before + elapsed);
    fputs("}\n", rd->log);
    fflush(rd->log);
}

void run_log_eval(RunDir *rd, int64_t step, const EvalResult *r, double elapsed) {
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
    fprintf(rd->log, "{\"type\":\"budget\",\"step\":%lld,\"tokens_per_step\":%lld",
            (long long)step, (long long)tokens_per_step);
    put_number(rd->log, "flops_per_token", flops_per_token);
    fputs("}\n", rd->log);
    fflush(rd->log);
}

void run_log_event(RunDir *rd, int64_t step, const char *event, const char *detail) {
    fprintf(rd->log, "{\"type\":\"event\",\"step\":%lld,\"event\":\"%s\",\"detail\":",
            (long long)step, event);
    json_write_string(rd->log, detail);
    fputs("}\n", rd->log);
    fflush(rd->log);
}

int run_dir_save(RunDir *rd, const Trainer *tr, const Tokenizer *t, Error *err) {
    char path[4096];
    checkpoint_path(rd->dir, tr->step, path, sizeof path);
    if (checkpoint_save(path, tr, t, err)) return -1;
    int64_t steps[1024];
    int n = list_checkpoints(rd->dir, steps, 1024);
    for (int i = rd->keep; i < n; i++) {
        checkpoint_path(rd->dir, steps[i], path, sizeof path);
        remove(path);
    }
    return 0;
}

int run_dir_save_best(RunDir *rd, const Trainer *tr, const Tokenizer *t, double val, int *saved,
                      Error *err) {
    *saved = 0;
    if (!(val < rd->best_val)) return 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/best.ckpt", rd->dir);
    if (checkpoint_save(path, tr, t, err)) return -1;
    rd->best_val = val;
    *saved = 1;
    return 0;
}

int checkpoint_load_latest(const char *path, HfWeights imported, Checkpoint *ck, char *chosen,
                           size_t cap,
                           int *skipped, Error *err) {
    *skipped = 0;
    struct stat st;
    if (stat(path, &st) != 0) return error_set(err, "%s: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode)) {
        snprintf(chosen, cap, "%s", path);
        return checkpoint_load(path, ck, err);
    }
    if (peft_dir(path)) {  // LoRA adapters in peft's layout, on the base they name
        snprintf(chosen, cap, "%s", path);
        return checkpoint_from_peft(path, ck, err);
    }
    if (hf_model_dir(path)) {  // a Hugging Face model directory, not a run
        snprintf(chosen, cap, "%s", path);
        return checkpoint_from_hf(path, imported, ck, err);
    }
    int64_t steps[1024];
    int n = list_checkpoints(path, steps, 1024);
    Error first;
    for (int i = 0; i < n; i++) {
        checkpoint_path(path, steps[i], chosen, cap);
        if (checkpoint_load(chosen, ck, i == 0 ? &first : err) == 0) return 0;
        (*skipped)++;
    }
    if (n == 0) return error_set(err, "%s: no step_*.ckpt checkpoints in this run directory", path);
    return error_set(err, "%s: none of its %d checkpoints is complete (newest: %s)", path, n,
                     first.msg);
}

// Reading a run directory's log.jsonl back (train/run_dir.h writes it): the curves and the
// last state of a run, for plots and sweep reports.
#ifndef DLLM_RUN_LOG_H
#define DLLM_RUN_LOG_H

#include "common/error.h"

typedef struct {
    int n_train, n_eval;
    double *train_step, *train_loss;  // n_train points (skipped steps have NAN loss)
    double *eval_step, *eval_loss;    // n_eval points, nats/token
    double tokens_per_s;              // mean over the logged steps
    double tokens_per_step;           // the run's budget line: tokens trained per step and
    double flops_per_token;           // their training FLOPs (NAN in logs without one)
    double elapsed_s;                 // wall time of the run so far
    long long last_step;
    char last_event[32];              // "start", "resume", "interrupted", "diverged", "done"
} RunLog;

// Reads dir/log.jsonl; lines cut short or not understood are ignored.
int run_log_read(const char *dir, RunLog *log, Error *err);
void run_log_free(RunLog *log);
// The step and loss of the last training line, from the end of dir/log.jsonl only (a live
// status line polls it, and the whole log of a long run is megabytes). 0, or -1 when none.
int run_log_last_step(const char *dir, long long *step, double *loss);
// The lowest validation loss and its step; NAN when the run has no evaluation.
double run_log_best_eval(const RunLog *log, double *step);
// Mean of the last `window` finite training losses (the noisy MDM loss needs the average).
double run_log_final_train_loss(const RunLog *log, int window);

#endif

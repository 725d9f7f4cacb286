// A training run's directory, everything a run leaves behind:
//   log.jsonl              one JSON object per line: train steps, evaluations, events
//   step_NNNNNNNN.ckpt     periodic checkpoints, the newest `keep` of them
//   best.ckpt              the checkpoint with the lowest validation loss so far
// Every file is written to a temporary name and renamed, so whatever kills the process
// (kill -9 included) leaves only complete checkpoints under their real names; the log is
// flushed line by line and cut back to the resumed step when a run continues, so a resumed
// run's log reads exactly like an uninterrupted one.
#ifndef DLLM_RUN_DIR_H
#define DLLM_RUN_DIR_H

#include <stdint.h>
#include <stdio.h>

#include "common/error.h"
#include "tokenizer/tokenizer.h"
#include "eval/eval.h"
#include "train/trainer.h"

typedef struct {
    char dir[4000];
    FILE *log;
    int keep;                // periodic checkpoints kept
    double best_val;         // lowest validation loss logged so far (INFINITY: none)
    double elapsed_before;   // wall seconds of the run before this process (resumes)
} RunDir;

// A RunDir left closed (zeroed) writes nothing: the ranks of a job other than rank 0.
// Opens (creating it if needed) the run directory. A fresh run (resume_step < 0) refuses a
// directory that already holds a run. A resumed run keeps only the log lines up to
// resume_step and takes the best validation loss and elapsed time from them.
int run_dir_open(RunDir *rd, const char *dir, int keep, int64_t resume_step, Error *err);
void run_dir_close(RunDir *rd);

// tokens_per_s: the whole job's; rank_tokens_per_s[ranks]: each rank's own (its tokens over its
// forward and backward time), written when ranks > 1.
void run_log_train(RunDir *rd, int64_t step, const StepStats *st, double tokens_per_s,
                   const double *rank_tokens_per_s, int ranks, double elapsed);
void run_log_eval(RunDir *rd, int64_t step, const EvalResult *r, double elapsed);
// What a step of this run costs, written when it starts or resumes: tokens trained and their
// training FLOPs (model/params.h's count).
void run_log_budget(RunDir *rd, int64_t step, int64_t tokens_per_step, double flops_per_token);
// A line for what happened outside the step loop: "start", "resume", "interrupted",
// "diverged", "done".
void run_log_event(RunDir *rd, int64_t step, const char *event, const char *detail);

// Saves step_NNNNNNNN.ckpt and deletes the older ones beyond keep. Every rank of a job calls
// it (trainer_save); the one with the open directory writes.
int run_dir_save(RunDir *rd, const Trainer *tr, const Tokenizer *t, Error *err);
// 1 when val is the lowest validation loss so far (an open directory only).
int run_dir_is_best(const RunDir *rd, double val);
// Saves best.ckpt (every rank of a job, as run_dir_save) and remembers val as the best.
int run_dir_save_best(RunDir *rd, const Trainer *tr, const Tokenizer *t, double val,
                      Error *err);

#endif

// Where a sweep stands: each run's outcome (DIR/runs/NAME/status.json, written by the runner
// when a run ends), read back by the runner (to skip finished runs), the report and
// `dllm sweep --status`.
#ifndef DLLM_SWEEP_STATUS_H
#define DLLM_SWEEP_STATUS_H

#include "common/error.h"
#include "sweep/plan.h"

// A run's outcome as status.json records it.
typedef struct {
    char status[16];   // "done", "failed", or "" when the run has no outcome yet
    char reason[512];
} RunOutcome;

// 0 when the run has an outcome, -1 when it has none yet.
int run_outcome_read(const char *run_dir, RunOutcome *out);
// Records an outcome ("done" / "failed" and why), atomically.
int run_outcome_write(const char *run_dir, const char *status, const char *reason, Error *err);
// The number of runs of plan p in dir that failed.
int sweep_failures(const Plan *p, const char *dir);
// Prints the state of every run of the sweep in dir (done, failed, partial, pending).
int sweep_status(const char *dir, Error *err);

#endif

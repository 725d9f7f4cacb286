// Runs a sweep plan unattended: each run is a `dllm train` child process in DIR/runs/NAME
// (its command in command.txt, its output in train.out), one after another or `jobs` at a
// time (each then on cores / jobs OpenMP threads unless OMP_NUM_THREADS is set). A run that
// fails (crash, out of memory, divergence) is recorded with its reason and the sweep goes on. Finished runs leave DIR/runs/NAME/status.json; starting the
// sweep again skips them and resumes an interrupted run from its checkpoint. DIR/lock keeps a
// second sweep out of the directory. The report (sweep/report.h) is the caller's next step.
// With devices (GPU ids), each run gets its own: CUDA_VISIBLE_DEVICES names them to the child,
// and a run whose plan sets "ranks: N" gets N of them and runs under `mpirun -np N`; runs then
// start as devices come free (jobs is unused).
#ifndef DLLM_RUNNER_H
#define DLLM_RUNNER_H

#include <stddef.h>

#include "common/error.h"
#include "sweep/plan.h"

typedef struct {
    const char *exe;     // the dllm program to run the children with
    int tty;             // draw a live status line
    const char *device;  // --device of runs whose plan sets none, and of the report's models
    int jobs;            // runs at the same time (1: one after another)
    const int *devices;  // device ids to place runs on (NULL: none)
    int n_devices;
} SweepOptions;

enum { SWEEP_MAX_JOBS = 64, SWEEP_MAX_DEVICES = 64 };

// Returns 0 when every run has an outcome (done or failed), 128 + signal when the sweep was
// interrupted by one (the current run saved; run again to continue), -1 on an error.
int sweep_run(const char *plan_path, const char *dir, const SweepOptions *o, Error *err);
// The `dllm train` flags of run r: base, varied (overriding the base), the budget in steps.
// Writes at most max pointers into argv (strings owned by the plan or static storage).
int sweep_train_args(const Plan *p, const PlanRun *r, const char *run_dir, char *storage,
                     size_t cap, char **argv, int max);

#endif

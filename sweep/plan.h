// A sweep plan: an ordinary markdown file a person writes before going to sleep.
//
//   # Title
//   Free prose (ignored).
//   ## Base                          the `dllm train` flags every run shares, as a list
//   - data: data/shards              ("- flag: value" lines) or a fenced block of --flags
//   - n-layer: 4
//   ## Runs                          optional: one run per table row; a "name" column names it
//   | name | objective | lr   |
//   |------|-----------|------|
//   | mdm  | mdm       | 3e-3 |       a cell "-": that run does not give the flag (an
//                                    AR row beside adapted rows' --init, say)
//   ## Grid                          optional: "- flag: v1, v2" lines, the cartesian product
//   - lr: 1e-3, 3e-3                 (crossed with the table rows when both are given)
//   ## Budget                        per run: steps, tokens (steps = tokens / tokens per
//   - tokens: 2000000                step, equal data for every size) and/or minutes
//   ## Report                        optional: metric (val_loss, train_loss or exact), prompt
//   - prompt: And God said,          (samples from the best run), exact (a prompt/response
//   - exact: tasks/add/test.jsonl    JSONL scored by exact match for every run; a Runs-table
//   - reference: ar                  column "exact" gives a run its own file, and is not a
//                                    train flag), reference (a setting whose final loss the
//                                    others' compute is measured against), check (a further
//                                    column per run: "choices FILE" or "exact FILE")
//
// Section names are case-insensitive; anything else is prose. Errors name the line.
#ifndef DLLM_PLAN_H
#define DLLM_PLAN_H

#include <stdint.h>

#include "common/error.h"

enum { PLAN_MAX_FLAGS = 64, PLAN_MAX_RUNS = 256, PLAN_MAX_VARIED = 16, PLAN_MAX_CHECKS = 4 };

typedef struct {
    char name[64];   // flag name without dashes
    char value[256];
} PlanFlag;

typedef struct {
    char name[128];                       // directory name under the sweep's runs/
    PlanFlag varied[PLAN_MAX_VARIED];     // this run's settings that differ between runs
    int n_varied;
} PlanRun;

typedef struct {
    char title[256];
    PlanFlag base[PLAN_MAX_FLAGS];
    int n_base;
    PlanRun runs[PLAN_MAX_RUNS];
    int n_runs;
    char varied_names[PLAN_MAX_VARIED][64];  // the settings that vary, in column order
    int n_varied_names;
    int64_t budget_steps, budget_tokens;  // 0: not given
    double budget_minutes;                // 0: not given
    char metric[32];                      // "val_loss" (default), "train_loss" or "exact"
    char prompt[512];                     // samples from the best run ("" : none)
    char exact[512];                      // exact-match test file ("": none)
    // further evaluations of every run, a column each ("- check: choices FILE" or
    // "- check: exact FILE"): is_choices, and the file
    int n_checks, check_is_choices[PLAN_MAX_CHECKS];
    char check_file[PLAN_MAX_CHECKS][512];
    char reference[128];                  // a setting the others' compute is measured
                                          // against ("": none; sweep/report.h)
} Plan;

// A Plan is about a megabyte: allocate it, do not put it on the stack.
int plan_parse(Plan *p, const char *text, const char *path, Error *err);
int plan_load(Plan *p, const char *path, Error *err);
// 1 when runs differ in flag `name` (a table column or a grid line).
int plan_varies(const Plan *p, const char *name);
// The value of flag `name` for run r: its varied setting, else the base, else NULL (also for
// a "-" table cell: the run leaves the flag out).
const char *plan_value(const Plan *p, const PlanRun *r, const char *name);

#endif

// The morning report of a sweep: DIR/REPORT.md with every run ranked by the plan's metric
// (best first, in bold), its varied settings, final training loss, validation nats/token and
// perplexity, throughput, wall time and status; PNG plots (all validation curves overlaid;
// the metric against each varied setting); samples from the best run; the failures and why.
#ifndef DLLM_REPORT_H
#define DLLM_REPORT_H

#include "common/error.h"
#include "sweep/plan.h"

int sweep_report(const Plan *p, const char *dir, const char *exe, const char *device,
                 Error *err);

#endif

#include "sweep/report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/file.h"
#include "common/process.h"
#include "common/stats.h"
#include "kernels/backend.h"
#include "model/model.h"
#include "eval/choices.h"
#include "eval/exact_match.h"
#include "store/model_source.h"
#include "common/progress.h"
#include "report/plot.h"
#include "report/run_log.h"
#include "sampler/sampler.h"
#include "sweep/status.h"

typedef struct {
    const PlanRun *run;
    RunLog log;
    int have_log;
    RunOutcome outcome;
    double metric;  // NAN when the run has none (failed before evaluating)
    double best_val, final_train;
    double exact;   // exact-match accuracy on the plan's test file, NAN when not measured
    double check[PLAN_MAX_CHECKS];  // the plan's further checks, NAN when not measured
    // training budget from the log's budget line, the --init run's (of this sweep) included:
    // NAN when the log has none
    double tokens, flops, init_tokens, init_flops;
    double matched_val;  // validation loss at the sweep's matched FLOPs (NAN: not reached)
    int setting;         // index into the settings (runs that differ only in seed share one)
} Row;

// The runs of one setting over their seeds: the mean and sample standard deviation of each
// figure (std NAN with one seed).
typedef struct {
    char name[256];
    int n;        // runs with the metric
    double mean, std, val_mean, val_std, exact_mean, exact_std, matched_mean, matched_std;
    double check_mean[PLAN_MAX_CHECKS], check_std[PLAN_MAX_CHECKS];
    double tokens, flops;  // of its first run (seeds train the same budget)
    int tied;              // its mean is within the spreads of the best's
    int id;                // its index before the ranking (group_settings)
} Setting;

// qsort has no context argument: the direction of the ranking for by_metric.
static int rank_higher_better;

// The order of two figures in a ranking: accuracy high to low, losses low to high, a missing
// figure (NAN) last; 0 when they rank alike.
static int rank_order(double x, double y) {
    int nx = isnan(x), ny = isnan(y);
    if (nx != ny) return nx - ny;
    if (nx || x == y) return 0;
    return (x < y) != rank_higher_better ? -1 : 1;
}

static int by_metric(const void *a, const void *b) {
    const Row *x = a, *y = b;
    int order = rank_order(x->metric, y->metric);
    return order ? order : strcmp(x->run->name, y->run->name);
}

static void write_samples_of(FILE *f, const Plan *p, const Row *r, const char *what,
                             const char *dir, const char *exe, const char *device) {
    char model[4300], text[8192];
    snprintf(model, sizeof model, "%s/runs/%s", dir, r->run->name);
    // the rest of the context after the prompt, a token per step
    char *argv[] = {(char *)exe, "sample", "--model", model, "--prompt", (char *)p->prompt,
                    "--gen-length", "0", "--temperature", "0.8", "--batch", "3",
                    "--device", (char *)device, NULL};
    int rc = run_capture(argv, text, sizeof text);
    fprintf(f, "\n## Samples from the best %s\n\n`dllm sample --model runs/%s --prompt \"%s\" "
               "--gen-length 0 --temperature 0.8 --batch 3`%s\n\n```\n%s\n```\n",
            what, r->run->name, p->prompt, rc ? " (failed)" : "", text);
}

// Samples from the best run, or from the best run of each objective when the plan compares
// objectives (rows are ranked, so the first of each objective is its best).
static void write_samples(FILE *f, const Plan *p, const Row *rows, int n, const char *dir,
                          const char *exe, const char *device) {
    if (!p->prompt[0]) return;
    int by_objective = plan_varies(p, "objective");
    const char *const objectives[] = {"mdm", "bd3", "ar"};
    for (int o = 0; o < (by_objective ? 3 : 1); o++)
        for (int i = 0; i < n; i++) {
            const char *obj = plan_value(p, rows[i].run, "objective");
            if (isnan(rows[i].metric) || !rows[i].have_log) continue;
            if (by_objective && strcmp(obj ? obj : "mdm", objectives[o]) != 0) continue;
            char what[32];
            snprintf(what, sizeof what, by_objective ? "%s run" : "run", objectives[o]);
            write_samples_of(f, p, &rows[i], what, dir, exe, device);
            break;
        }
}

// A run's newest checkpoint as a model (with room for 32 rows) and its tokenizer.
static int load_run_model(const char *run_dir, const char *device, Model *m, ModelSource *ck,
                          Error *err) {
    char chosen[4400];
    int skipped;
    if (model_source_open(run_dir, HF_WEIGHTS_LATER, ck, chosen, sizeof chosen, &skipped, err))
        return -1;
    const Backend *be = backend_by_name(device, err);
    if (!be || model_source_build(ck, be, 32, m, err)) {
        model_source_free(ck);
        return -1;
    }
    return 0;
}

// The exact-match test file of run r: its own "exact" column (runs whose answers are written
// differently), else the plan's.
static const char *exact_file(const Plan *p, const PlanRun *r) {
    const char *own = plan_value(p, r, "exact");
    return own && strcmp(own, "-") != 0 ? own : p->exact;
}

// Accuracy of a loaded model on a test file: exact match of greedy answers, or multiple choice
// (32 mask draws per choice for an MDM); NAN with the reason in err.
static double accuracy_on(Model *m, const Tokenizer *t, int chat, int choices, const char *file,
                          Error *err) {
    if (choices) {
        ChoiceOptions co = {.chat = chat, .mc = 32, .seed = 1234};
        ChoiceResult r;
        return score_choices(m, t, file, &co, &r, err) == 0 ? r.accuracy : NAN;
    }
    ExactOptions eo = {.chat = chat};
    ExactResult r;
    return exact_match(m, t, file, &eo, &r, err) == 0 ? r.accuracy : NAN;
}

// A finished run's exact match on its test file and the plan's further checks, its newest
// checkpoint loaded once; a score that cannot be had stays NAN, the reason on stderr.
static void score_run(const Plan *p, Row *r, const char *run_dir, const char *device) {
    r->exact = NAN;
    for (int c = 0; c < p->n_checks; c++) r->check[c] = NAN;
    if ((!p->exact[0] && !p->n_checks) || strcmp(r->outcome.status, "done") != 0) return;
    Model m;
    ModelSource ck;
    Error why;
    if (load_run_model(run_dir, device, &m, &ck, &why)) {
        fprintf(stderr, "dllm: report: %s: %s\n", run_dir, why.msg);
        return;
    }
    int chat = ck.header.train.sft;
    if (p->exact[0]) {
        r->exact = accuracy_on(&m, &ck.tokenizer, chat, 0, exact_file(p, r->run), &why);
        if (isnan(r->exact)) fprintf(stderr, "dllm: report: %s: %s\n", run_dir, why.msg);
    }
    for (int c = 0; c < p->n_checks; c++) {
        r->check[c] = accuracy_on(&m, &ck.tokenizer, chat, p->check_is_choices[c],
                                  p->check_file[c], &why);
        if (isnan(r->check[c])) fprintf(stderr, "dllm: report: %s: %s\n", run_dir, why.msg);
    }
    model_free(&m);
    model_source_free(&ck);
}

// The header cells of the plan's checks: " choices test.jsonl |" each.
static void write_check_headers(FILE *f, const Plan *p) {
    for (int k = 0; k < p->n_checks; k++) {
        const char *base = strrchr(p->check_file[k], '/');
        fprintf(f, " %s %s |", p->check_is_choices[k] ? "choices" : "exact",
                base ? base + 1 : p->check_file[k]);
    }
}

// The first run of the objective (ar or not) that has an exact-match score, or NULL.
static const Row *first_scored(const Plan *p, const Row *rows, int n, int ar) {
    for (int i = 0; i < n; i++) {
        const char *obj = plan_value(p, rows[i].run, "objective");
        if ((obj && strcmp(obj, "ar") == 0) == ar && !isnan(rows[i].exact)) return &rows[i];
    }
    return NULL;
}

// A sampler setting of the speed-vs-quality table (an AR run ignores all but the name).
typedef struct {
    const char *name;
    int per_step, blocks;
    float threshold;
} SamplerSetting;

// Loads run `row` and prints one table row per setting.
static void tradeoff_rows(FILE *f, const Row *row, const char *dir, const char *device,
                          const char *test, const SamplerSetting *settings, int n_settings) {
    char run_dir[4300];
    snprintf(run_dir, sizeof run_dir, "%s/runs/%s", dir, row->run->name);
    Model m;
    ModelSource ck;
    Error err;
    if (load_run_model(run_dir, device, &m, &ck, &err)) return;
    for (int i = 0; i < n_settings; i++) {
        ExactOptions eo = {.chat = ck.header.train.sft, .tokens_per_step = settings[i].per_step,
                           .blocks = settings[i].blocks, .threshold = settings[i].threshold};
        ExactResult r;
        if (exact_match(&m, &ck.tokenizer, test, &eo, &r, &err)) break;
        char blocks[16];
        snprintf(blocks, sizeof blocks, m.cfg.causal ? "-" : "%d", r.blocks_used);
        fprintf(f, "| %s | %s | %.1f%% | %.2f | %.0f |\n", settings[i].name, blocks,
                100.0 * r.accuracy, nfe_per_token(r.nfe, 1, r.tokens), r.items / r.seconds);
    }
    model_free(&m);
    model_source_free(&ck);
}

// Generation speed against quality for the best MDM run: exact match, forward passes per
// answer token and answers per second for the reference schedule at 1, 2 and 4 tokens per step,
// in 1, 2 or 4 blocks, and for confidence-threshold decoding; then the AR run, token by token
// with its KV cache, on the same test file, so the trade-off reads off one table.
static void write_sampler_tradeoff(FILE *f, const Plan *p, const Row *rows, int n,
                                   const char *dir, const char *device) {
    const Row *mdm = first_scored(p, rows, n, 0), *ar = first_scored(p, rows, n, 1);
    if (!mdm) return;
    static const SamplerSetting settings[] = {
        {"1 token / step, 1 block", 1, 1, 0.0f}, {"2 tokens / step", 2, 1, 0.0f},
        {"4 tokens / step", 4, 1, 0.0f},         {"semi-AR blocks (about 2)", 1, 2, 0.0f},
        {"semi-AR blocks (about 4)", 1, 4, 0.0f}, {"threshold 0.99", 1, 1, 0.99f},
        {"threshold 0.95", 1, 1, 0.95f},          {"threshold 0.9", 1, 1, 0.9f},
        {"threshold 0.7", 1, 1, 0.7f},
    };
    fprintf(f, "\n## MDM sampler: speed vs quality (%s)\n\n| sampler | blocks | exact match | "
               "NFE / token | answers / s |\n|---|---|---|---|---|\n", mdm->run->name);
    tradeoff_rows(f, mdm, dir, device, exact_file(p, mdm->run), settings,
                  (int)(sizeof settings / sizeof settings[0]));
    if (!ar) return;
    char name[300];
    snprintf(name, sizeof name, "AR baseline (%s): a token per pass, stops at EOS", ar->run->name);
    SamplerSetting baseline = {name, 1, 1, 0.0f};
    tradeoff_rows(f, ar, dir, device, exact_file(p, ar->run), &baseline, 1);
}

static int sort_numbers(const void *a, const void *b) {
    double x = atof(*(const char *const *)a), y = atof(*(const char *const *)b);
    return x < y ? -1 : x > y;
}

// The distinct values runs use for a setting ("(base)" where they do not vary it), sorted
// numerically when all are numbers, else in order of appearance. Returns the count.
static int distinct_values(const Plan *p, const Row *rows, int n, const char *setting,
                           const char **values) {
    int n_values = 0, numeric = 1;
    for (int i = 0; i < n; i++) {
        const char *v = plan_value(p, rows[i].run, setting);
        if (!v) v = "(base)";
        int seen = 0;
        for (int k = 0; k < n_values; k++) seen |= strcmp(values[k], v) == 0;
        if (!seen) values[n_values++] = v;
        char *end;
        strtod(v, &end);
        numeric &= *end == '\0';
    }
    if (numeric) qsort(values, (size_t)n_values, sizeof values[0], sort_numbers);
    return n_values;
}

static int index_of(const char *const *values, int n, const char *v) {
    for (int k = 0; k < n; k++)
        if (strcmp(values[k], v ? v : "(base)") == 0) return k;
    return 0;
}

static int plot_val_curves(const Row *rows, int n, const char *dir, Error *err) {
    Series *s = calloc((size_t)n, sizeof *s);
    int m = 0;
    for (int i = 0; i < n; i++)
        if (rows[i].have_log && rows[i].log.n_eval)
            s[m] = (Series){rows[i].run->name, rows[i].log.eval_step, rows[i].log.eval_loss,
                            rows[i].log.n_eval, m, 0, 1, 0}, m++;
    char path[4400];
    snprintf(path, sizeof path, "%s/val_curves.png", dir);
    PlotSpec spec = {.title = "validation loss (nats/token)", .x_label = "step",
                     .y_label = "nats/token"};
    int rc = m ? plot_png(path, &spec, s, m, err) : 0;
    free(s);
    return rc ? -1 : m;
}

// ---- budgets: tokens and training FLOPs, and the loss at equal FLOPs ----

static double run_tokens_at(const Row *r, double step) {
    return r->init_tokens + step * r->log.tokens_per_step;
}

static double run_flops_at(const Row *r, double step) {
    return r->init_flops + step * r->log.tokens_per_step * r->log.flops_per_token;
}

// The row whose run directory is path, or NULL.
static Row *row_of_dir(Row *rows, int n, const char *dir, const char *path) {
    for (int i = 0; i < n; i++) {
        char run_dir[4300];
        snprintf(run_dir, sizeof run_dir, "%s/runs/%s", dir, rows[i].run->name);
        if (strcmp(run_dir, path) == 0) return &rows[i];
    }
    return NULL;
}

// Each run's tokens and FLOPs; a run initialised from another run of the sweep (an adapted
// model) carries that run's whole budget too, so "equal compute" counts everything it cost.
static void set_budgets(const Plan *p, Row *rows, int n, const char *dir) {
    for (int i = 0; i < n; i++) {
        Row *r = &rows[i];
        r->init_tokens = r->init_flops = 0.0;
        const char *init = plan_value(p, r->run, "init");
        // follow the chain of inits (a run cannot be its own ancestor: at most n links)
        for (int hops = 0; init && hops < n; hops++) {
            const Row *from = row_of_dir(rows, n, dir, init);
            if (!from) break;
            if (!from->have_log) {
                r->init_tokens = r->init_flops = NAN;
                break;
            }
            r->init_tokens += from->log.last_step * from->log.tokens_per_step;
            r->init_flops +=
                from->log.last_step * from->log.tokens_per_step * from->log.flops_per_token;
            init = plan_value(p, from->run, "init");
        }
        r->tokens = r->have_log ? run_tokens_at(r, (double)r->log.last_step) : NAN;
        r->flops = r->have_log ? run_flops_at(r, (double)r->log.last_step) : NAN;
    }
}

// Validation loss at f FLOPs, linear between the evaluations around it; NAN before the first
// evaluation or past the last.
static double val_at_flops(const Row *r, double f) {
    for (int k = 0; r->have_log && k < r->log.n_eval; k++) {
        double fk = run_flops_at(r, r->log.eval_step[k]);
        if (fk < f) continue;
        if (fk == f) return r->log.eval_loss[k];
        if (k == 0) return NAN;
        double f0 = run_flops_at(r, r->log.eval_step[k - 1]), w = (f - f0) / (fk - f0);
        return (1.0 - w) * r->log.eval_loss[k - 1] + w * r->log.eval_loss[k];
    }
    return NAN;
}

// The matched budget: the FLOPs of the cheapest run's last evaluation, which every run passed.
static double matched_budget(const Row *rows, int n) {
    double least = NAN;
    for (int i = 0; i < n; i++) {
        if (!rows[i].have_log || rows[i].log.n_eval == 0) continue;
        double f = run_flops_at(&rows[i], rows[i].log.eval_step[rows[i].log.n_eval - 1]);
        if (isfinite(f) && (isnan(least) || f < least)) least = f;
    }
    return least;
}

// "1.23M", "45.6G": a count with an SI prefix, 3 significant digits.
static void format_count(char *buf, size_t cap, double x) {
    static const char *const prefix[] = {"", "k", "M", "G", "T", "P", "E"};
    int k = 0;
    if (!isfinite(x)) {
        snprintf(buf, cap, "-");
        return;
    }
    while (fabs(x) >= 1000.0 && k < 6) x /= 1000.0, k++;
    snprintf(buf, cap, "%.3g%s", x, prefix[k]);
}

// ---- settings: the runs that differ only in their seed, as one ----

static int seeds_vary(const Plan *p) { return plan_varies(p, "seed"); }

// The name of run r's setting: its name without the grid's "seedN" piece, or else its varied
// values but the seed ("(all)" when only seeds vary).
static void setting_name(const Plan *p, const PlanRun *r, char *buf, size_t cap) {
    const char *seed = plan_value(p, r, "seed");
    char piece[300];
    snprintf(piece, sizeof piece, "seed%s", seed ? seed : "");
    snprintf(buf, cap, "%s", r->name);
    char *cut = seed && seeds_vary(p) ? strstr(buf, piece) : NULL;
    if (cut) {
        size_t n = strlen(piece);
        if (cut > buf && cut[-1] == '-') cut--, n++;           // "ar-seed1" -> "ar"
        else if (cut[n] == '-') n++;                           // "seed1-ar" -> "ar"
        memmove(cut, cut + n, strlen(cut + n) + 1);
        if (!buf[0]) snprintf(buf, cap, "(all)");
        return;
    }
    size_t at = 0;
    buf[0] = '\0';
    int others = 0;
    for (int k = 0; k < p->n_varied_names; k++) others += strcmp(p->varied_names[k], "seed") != 0;
    for (int k = 0; k < p->n_varied_names && at < cap; k++) {
        const char *name = p->varied_names[k];
        if (strcmp(name, "seed") == 0) continue;
        const char *v = plan_value(p, r, name);
        at += (size_t)snprintf(buf + at, cap - at, others > 1 ? "%s%s %s" : "%s%.0s%s",
                               at ? ", " : "", name, v ? v : "-");
    }
    if (!buf[0]) snprintf(buf, cap, "(all)");
}

// mean and std of the finite values among x[0..n)
static void mean_std(const double *x, int n, double *mean, double *std) {
    double v[PLAN_MAX_RUNS];
    int m = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(x[i])) v[m++] = x[i];
    *mean = m ? stats_mean(v, m) : NAN;
    *std = stats_std(v, m);
}

static int by_mean(const void *a, const void *b) {
    const Setting *x = a, *y = b;
    int order = rank_order(x->mean, y->mean);
    return order ? order : strcmp(x->name, y->name);
}

// Groups the rows into settings, ranked by the mean of the metric; a setting whose mean lies
// within the two spreads (the best's std + its own) of the best's is marked tied with it.
// Returns the number of settings.
static int group_settings(const Plan *p, Row *rows, int n, Setting *out) {
    int ns = 0;
    for (int i = 0; i < n; i++) {
        char name[256];
        setting_name(p, rows[i].run, name, sizeof name);
        int k = 0;
        while (k < ns && strcmp(out[k].name, name) != 0) k++;
        if (k == ns) {
            memset(&out[k], 0, sizeof out[k]);
            snprintf(out[k].name, sizeof out[k].name, "%s", name);
            out[k].tokens = rows[i].tokens, out[k].flops = rows[i].flops;
            out[k].id = k;
            ns++;
        }
        rows[i].setting = k;  // until the settings are ranked
    }
    for (int k = 0; k < ns; k++) {
        double metric[PLAN_MAX_RUNS], val[PLAN_MAX_RUNS], exact[PLAN_MAX_RUNS],
            matched[PLAN_MAX_RUNS], check[PLAN_MAX_CHECKS][PLAN_MAX_RUNS];
        int m = 0;
        for (int i = 0; i < n; i++) {
            if (rows[i].setting != k) continue;
            metric[m] = rows[i].metric, val[m] = rows[i].best_val, exact[m] = rows[i].exact;
            for (int c = 0; c < p->n_checks; c++) check[c][m] = rows[i].check[c];
            matched[m++] = rows[i].matched_val;
            out[k].n += !isnan(rows[i].metric);
        }
        mean_std(metric, m, &out[k].mean, &out[k].std);
        mean_std(val, m, &out[k].val_mean, &out[k].val_std);
        mean_std(exact, m, &out[k].exact_mean, &out[k].exact_std);
        mean_std(matched, m, &out[k].matched_mean, &out[k].matched_std);
        for (int c = 0; c < p->n_checks; c++)
            mean_std(check[c], m, &out[k].check_mean[c], &out[k].check_std[c]);
    }
    qsort(out, (size_t)ns, sizeof *out, by_mean);
    for (int k = 0; k < ns; k++) {
        double spread = (isnan(out[0].std) ? 0.0 : out[0].std) +
                        (isnan(out[k].std) ? 0.0 : out[k].std);
        out[k].tied = k > 0 && !isnan(out[k].mean) && fabs(out[k].mean - out[0].mean) <= spread;
    }
    int rank_of[PLAN_MAX_RUNS];
    for (int k = 0; k < ns; k++) rank_of[out[k].id] = k;
    for (int i = 0; i < n; i++) rows[i].setting = rank_of[rows[i].setting];
    return ns;
}

// "4.0312 ± 0.0210", or the value alone for one seed, or "-"
static void format_mean_std(char *buf, size_t cap, double mean, double std, int percent) {
    double scale = percent ? 100.0 : 1.0;
    const char *unit = percent ? "%" : "";
    if (isnan(mean)) snprintf(buf, cap, "-");
    else if (isnan(std)) snprintf(buf, cap, percent ? "%.1f%s" : "%.4f%s", scale * mean, unit);
    else snprintf(buf, cap, percent ? "%.1f%s ± %.1f" : "%.4f%s ± %.4f", scale * mean, unit,
                  scale * std);
}

static void write_settings_table(FILE *f, const Plan *p, const Setting *st, int ns,
                                 double matched) {
    char budget[32];
    format_count(budget, sizeof budget, matched);
    if (!isfinite(matched)) snprintf(budget, sizeof budget, "matched");
    int exact_column = p->exact[0] && strcmp(p->metric, "exact") != 0;  // else the metric's
    fprintf(f, "\n## Per setting, over seeds (mean ± sample std)\n\n| rank | setting | seeds | "
               "%s | best val nats/tok | val at %s FLOPs |%s", p->metric, budget,
            exact_column ? " exact match |" : "");
    write_check_headers(f, p);
    fprintf(f, " tokens | FLOPs |\n|---|---|---|---|---|---|%s", exact_column ? "---|" : "");
    for (int c = 0; c < p->n_checks; c++) fprintf(f, "---|");
    fprintf(f, "---|---|\n");
    for (int k = 0; k < ns; k++) {
        char metric[48], val[48], at[48], exact[48], tokens[32], flops[32];
        int pct = strcmp(p->metric, "exact") == 0;
        format_mean_std(metric, sizeof metric, st[k].mean, st[k].std, pct);
        format_mean_std(val, sizeof val, st[k].val_mean, st[k].val_std, 0);
        format_mean_std(at, sizeof at, st[k].matched_mean, st[k].matched_std, 0);
        format_mean_std(exact, sizeof exact, st[k].exact_mean, st[k].exact_std, 1);
        format_count(tokens, sizeof tokens, st[k].tokens);
        format_count(flops, sizeof flops, st[k].flops);
        char rank[16];
        int tied = st[k].tied || (k == 0 && ns > 1 && st[1].tied);
        snprintf(rank, sizeof rank, tied ? "=1" : "%d", k + 1);
        fprintf(f, "| %s | %s | %d | %s | %s | %s |", rank, st[k].name, st[k].n, metric, val, at);
        if (exact_column) fprintf(f, " %s |", exact);
        for (int c = 0; c < p->n_checks; c++) {
            char check[48];
            format_mean_std(check, sizeof check, st[k].check_mean[c], st[k].check_std[c], 1);
            fprintf(f, " %s |", check);
        }
        fprintf(f, " %s | %s |\n", tokens, flops);
    }
}

// The verdict: the best setting by its mean, and the settings it cannot be told apart from.
static void write_best(FILE *f, const Plan *p, const Row *rows, int n, const Setting *st,
                       int ns) {
    if (ns == 0 || isnan(st[0].mean)) return;
    int pct = strcmp(p->metric, "exact") == 0, ties = 0;
    for (int k = 1; k < ns; k++) ties += st[k].tied;
    char best[48];
    format_mean_std(best, sizeof best, st[0].mean, st[0].std, pct);
    const char *what = seeds_vary(p) ? "setting" : "run";
    const char *name = seeds_vary(p) ? st[0].name : rows[0].run->name;
    if (!ties) {
        fprintf(f, "\nBest %s: **%s**, %s %s%s.\n", what, name, p->metric, best,
                seeds_vary(p) ? " (mean ± std over its seeds)" : "");
    } else {
        fprintf(f, "\nNo single best %s: **%s** (%s %s) is tied with", what, name, p->metric,
                best);
        for (int k = 1, said = 0; k < ns; k++)
            if (st[k].tied) {
                const char *other = seeds_vary(p) ? st[k].name : NULL;
                for (int i = 0; !other && i < n; i++)
                    if (rows[i].setting == k) other = rows[i].run->name;
                fprintf(f, "%s **%s**", said++ ? "," : "", other);
            }
        fprintf(f, ": their %s differ by no more than their seed spreads add up to%s.\n",
                seeds_vary(p) ? "means" : "results", seeds_vary(p) ? "" : " (equal results)");
    }
    if (!seeds_vary(p))
        fprintf(f, "\nOne seed per setting: no spread was measured, so a difference between "
                   "two runs here may be the seed's; a plan with `- seed: 1, 2, 3` in its Grid "
                   "gets means and spreads.\n");
}

// FLOPs at which run r's validation loss first reaches `target` (linear between evaluations);
// NAN when it never does.
static double flops_to_reach(const Row *r, double target) {
    for (int k = 0; r->have_log && k < r->log.n_eval; k++) {
        if (r->log.eval_loss[k] > target) continue;
        double fk = run_flops_at(r, r->log.eval_step[k]);
        if (k == 0) return fk;
        double f0 = run_flops_at(r, r->log.eval_step[k - 1]), l0 = r->log.eval_loss[k - 1];
        return f0 + (fk - f0) * (l0 - target) / (l0 - r->log.eval_loss[k]);
    }
    return NAN;
}

// The run of setting `setting` trained with run r's seed, or NULL.
static const Row *same_seed(const Plan *p, const Row *rows, int n, int setting, const Row *r) {
    const char *seed = plan_value(p, r->run, "seed");
    for (int i = 0; i < n; i++) {
        const char *s = plan_value(p, rows[i].run, "seed");
        if (rows[i].setting == setting && (s == seed || (s && seed && strcmp(s, seed) == 0)))
            return &rows[i];
    }
    return NULL;
}

// SMDM's question: how much compute does each setting need to reach the validation loss the
// reference setting ended at? Per seed, the FLOPs at which a run first reaches its
// same-seed reference run's final loss, over that reference run's FLOPs; a run that never
// gets there gives a lower bound (its whole budget).
static void write_reference(FILE *f, const Plan *p, const Row *rows, int n, const Setting *st,
                            int ns) {
    int ref = 0;
    while (ref < ns && strcmp(st[ref].name, p->reference) != 0) ref++;
    fprintf(f, "\n## Compute to reach the reference's loss (%s)\n\n", p->reference);
    if (ref == ns) {
        fprintf(f, "`reference: %s` names none of this sweep's settings:", p->reference);
        for (int k = 0; k < ns; k++) fprintf(f, "%s %s", k ? "," : "", st[k].name);
        fprintf(f, ".\n");
        return;
    }
    fprintf(f, "Per seed: the training FLOPs a run needed to first reach the final validation "
               "loss of the %s run with its seed (linear between evaluations), as a multiple of "
               "that run's FLOPs. \"> x\": never reached; x is its whole budget's multiple.\n\n"
               "| setting | seeds reached | ratio (mean ± sample std) | per seed |\n"
               "|---|---|---|---|\n", p->reference);
    for (int k = 0; k < ns; k++) {
        if (k == ref) continue;
        double ratios[PLAN_MAX_RUNS];
        int m = 0, reached = 0, runs = 0;
        char per_seed[1024] = "";
        size_t at = 0;
        for (int i = 0; i < n; i++) {
            if (rows[i].setting != k) continue;
            const Row *base = same_seed(p, rows, n, ref, &rows[i]);
            if (!base || !base->have_log || base->log.n_eval == 0) continue;
            int last = base->log.n_eval - 1;
            double base_flops = run_flops_at(base, base->log.eval_step[last]);
            double need = flops_to_reach(&rows[i], base->log.eval_loss[last]);
            runs++;
            if (isfinite(need)) ratios[m++] = need / base_flops, reached++;
            at += (size_t)snprintf(per_seed + at, sizeof per_seed - at, "%s%s%.2f",
                                   at ? ", " : "", isfinite(need) ? "" : "> ",
                                   (isfinite(need) ? need : rows[i].flops) / base_flops);
            if (at >= sizeof per_seed) at = sizeof per_seed - 1;
        }
        char ratio[48];
        if (reached == runs && m > 0) {
            format_mean_std(ratio, sizeof ratio, stats_mean(ratios, m), stats_std(ratios, m), 0);
        } else {
            snprintf(ratio, sizeof ratio, "-");
        }
        fprintf(f, "| %s | %d of %d | %s | %s |\n", st[k].name, reached, runs, ratio, per_seed);
    }
}

// Whether metric_<setting>.png says anything: not for the seed (averaged), the report's own
// columns (exact) or settings whose values are paths (data, init: names, not quantities).
static int worth_plotting(const Plan *p, const Row *rows, int n, const char *setting) {
    if (strcmp(setting, "seed") == 0 || strcmp(setting, "exact") == 0) return 0;
    for (int i = 0; i < n; i++) {
        const char *v = plan_value(p, rows[i].run, setting);
        if (v && strchr(v, '/')) return 0;
    }
    return 1;
}

// The line run r is drawn on in metric_<setting>.png: its setting's name without the piece
// the plotted setting adds ("ar-solver-steps3000" -> "ar-solver" on the steps plot).
static void line_name(const Plan *p, const Row *r, const char *setting, char *buf, size_t cap) {
    setting_name(p, r->run, buf, cap);
    const char *v = plan_value(p, r->run, setting);
    char piece[320];
    snprintf(piece, sizeof piece, "%s%s", v && strchr("0123456789.-+", v[0]) ? setting : "",
             v ? v : "");
    size_t n = strlen(piece);
    for (char *at = strstr(buf, piece); n && at; at = strstr(at + 1, piece)) {
        int starts = at == buf || at[-1] == '-', ends = at[n] == '\0' || at[n] == '-';
        if (!starts || !ends) continue;
        if (at > buf) at--, n++;         // "ar-steps3000" -> "ar"
        else if (at[n] == '-') n++;      // "steps3000-ar" -> "ar"
        memmove(at, at + n, strlen(at + n) + 1);
        break;
    }
    if (!buf[0]) snprintf(buf, cap, "%s", p->metric);
}

// metric_<setting>.png: the values of the setting along the x axis; one colored line per
// combination of the other settings, through the mean over seeds at each value, every run a
// square.
static int plot_metric_vs(const Plan *p, const Row *rows, int n, const char *setting,
                          const char *dir, char *png, size_t cap, Error *err) {
    const char *values[PLAN_MAX_RUNS];
    int n_values = distinct_values(p, rows, n, setting, values);
    static char lines[PLAN_MAX_RUNS][256];
    int n_lines = 0, line_of[PLAN_MAX_RUNS];
    for (int i = 0; i < n; i++) {
        char name[256];
        line_name(p, &rows[i], setting, name, sizeof name);
        int k = 0;
        while (k < n_lines && strcmp(lines[k], name) != 0) k++;
        if (k == n_lines) snprintf(lines[n_lines++], sizeof lines[0], "%s", name);
        line_of[i] = k;
    }
    // per line: the means (at most n_values points), then its runs as markers
    double *x = malloc(sizeof *x * (size_t)(2 * n + 2 * n_lines * n_values + 1));
    double *y = x ? x + n + n_lines * n_values : NULL;
    Series *series = calloc((size_t)(2 * n_lines + 1), sizeof *series);
    if (!x || !series) {
        free(x);
        free(series);
        return error_set(err, "out of memory");
    }
    int m = 0, ns = 0;
    for (int g = 0; g < n_lines; g++) {
        int first = m;
        for (int k = 0; k < n_values; k++) {
            double sum = 0.0;
            int count = 0;
            for (int i = 0; i < n; i++)
                if (line_of[i] == g && !isnan(rows[i].metric) &&
                    index_of(values, n_values, plan_value(p, rows[i].run, setting)) == k)
                    sum += rows[i].metric, count++;
            if (count) x[m] = k, y[m++] = sum / count;
        }
        series[ns++] = (Series){lines[g], x + first, y + first, m - first, g, 0, 1, 0};
        first = m;
        for (int i = 0; i < n; i++)
            if (line_of[i] == g && !isnan(rows[i].metric))
                x[m] = index_of(values, n_values, plan_value(p, rows[i].run, setting)),
                y[m++] = rows[i].metric;
        series[ns++] = (Series){NULL, x + first, y + first, m - first, g, 0, 1, 1};
    }
    char title[160];
    snprintf(title, sizeof title, "%s vs %s%s", p->metric, setting,
             seeds_vary(p) ? " (lines: mean over seeds)" : "");
    PlotSpec spec = {.title = title, .x_label = setting,
                     .y_label = strcmp(p->metric, "exact") == 0 ? "accuracy" : "nats/token",
                     .x_names = values, .n_x_names = n_values};
    snprintf(png, cap, "metric_%s.png", setting);
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, png);
    int rc = plot_png(path, &spec, series, ns, err);
    free(x);
    free(series);
    return rc;
}

// val_vs_flops.png: every run's validation curve against the FLOPs spent (its init's too).
static int plot_val_vs_flops(const Row *rows, int n, const char *dir, Error *err) {
    Series *s = calloc((size_t)n, sizeof *s);
    double *x = malloc(sizeof *x * (size_t)(n * 4096 + 1));
    int m = 0, at = 0;
    for (int i = 0; s && x && i < n; i++) {
        const Row *r = &rows[i];
        if (!r->have_log || !r->log.n_eval || !isfinite(r->flops) || r->log.n_eval > 4096)
            continue;
        for (int k = 0; k < r->log.n_eval; k++) x[at + k] = run_flops_at(r, r->log.eval_step[k]);
        s[m] = (Series){r->run->name, x + at, r->log.eval_loss, r->log.n_eval, m, 0, 1, 0};
        at += r->log.n_eval, m++;
    }
    char path[4400];
    snprintf(path, sizeof path, "%s/val_vs_flops.png", dir);
    PlotSpec spec = {.title = "validation loss against training FLOPs",
                     .x_label = "training FLOPs (init run included)", .y_label = "nats/token"};
    int rc = !s || !x ? error_set(err, "out of memory") : m ? plot_png(path, &spec, s, m, err) : 0;
    free(s);
    free(x);
    return rc ? -1 : m;
}

static void write_table(FILE *f, const Plan *p, const Row *rows, int n) {
    fprintf(f, "## Runs\n\n");
    fprintf(f, "| rank | run |");
    for (int k = 0; k < p->n_varied_names; k++) fprintf(f, " %s |", p->varied_names[k]);
    fprintf(f, " train loss | val nats/tok | val ppl | val at matched FLOPs |%s",
            p->exact[0] ? " exact match |" : "");
    write_check_headers(f, p);
    fprintf(f, " tokens | FLOPs | tok/s | wall | status |\n|---|---|");
    for (int k = 0; k < p->n_varied_names + p->n_checks; k++) fprintf(f, "---|");
    fprintf(f, "---|---|---|---|%s---|---|---|---|---|\n", p->exact[0] ? "---|" : "");
    for (int i = 0; i < n; i++) {
        const Row *r = &rows[i];
        const char *b = i == 0 && !isnan(r->metric) ? "**" : "";
        const char *obj = plan_value(p, r->run, "objective");
        int mdm = !obj || strcmp(obj, "ar") != 0;
        fprintf(f, "| %s%d%s | %s%s%s |", b, i + 1, b, b, r->run->name, b);
        for (int k = 0; k < p->n_varied_names; k++) {
            const char *v = plan_value(p, r->run, p->varied_names[k]);
            fprintf(f, " %s |", v ? v : "");
        }
        char wall[16] = "";
        if (r->have_log) format_duration(wall, sizeof wall, r->log.elapsed_s);
        fprintf(f, isnan(r->final_train) ? " - |" : " %.4f |", r->final_train);
        if (isnan(r->best_val)) fprintf(f, " - | - |");
        else fprintf(f, " %s%.4f%s | %s%.1f |", b, r->best_val, b, mdm ? "≤ " : "", exp(r->best_val));
        fprintf(f, isnan(r->matched_val) ? " - |" : " %.4f |", r->matched_val);
        if (p->exact[0]) fprintf(f, isnan(r->exact) ? " - |" : " %.1f%% |", 100.0 * r->exact);
        for (int c = 0; c < p->n_checks; c++)
            fprintf(f, isnan(r->check[c]) ? " - |" : " %.1f%% |", 100.0 * r->check[c]);
        char tokens[32], flops[32];
        format_count(tokens, sizeof tokens, r->tokens);
        format_count(flops, sizeof flops, r->flops);
        fprintf(f, " %s | %s |", tokens, flops);
        fprintf(f, r->have_log && isfinite(r->log.tokens_per_s) ? " %.0f |" : " - |",
                r->log.tokens_per_s);
        fprintf(f, " %s | %s |\n", wall[0] ? wall : "-",
                r->outcome.status[0] ? r->outcome.status : "unfinished");
    }
}

int sweep_report(const Plan *p, const char *dir, const char *exe, const char *device,
                 Error *err) {
    Row *rows = calloc((size_t)p->n_runs, sizeof *rows);
    if (!rows) return error_set(err, "out of memory");
    for (int i = 0; i < p->n_runs; i++) {
        Row *r = &rows[i];
        char run_dir[4300];
        Error ignore;
        snprintf(run_dir, sizeof run_dir, "%s/runs/%s", dir, p->runs[i].name);
        r->run = &p->runs[i];
        r->have_log = run_log_read(run_dir, &r->log, &ignore) == 0;
        run_outcome_read(run_dir, &r->outcome);
        double step;
        r->best_val = r->have_log ? run_log_best_eval(&r->log, &step) : NAN;
        r->final_train = r->have_log ? run_log_final_train_loss(&r->log, 20) : NAN;
        score_run(p, r, run_dir, device);
        r->metric = strcmp(p->metric, "train_loss") == 0 ? r->final_train
                    : strcmp(p->metric, "exact") == 0    ? r->exact
                                                         : r->best_val;
        if (strcmp(r->outcome.status, "failed") == 0) r->metric = NAN;
    }
    set_budgets(p, rows, p->n_runs, dir);
    double matched = matched_budget(rows, p->n_runs);
    for (int i = 0; i < p->n_runs; i++) rows[i].matched_val = val_at_flops(&rows[i], matched);
    rank_higher_better = strcmp(p->metric, "exact") == 0;
    qsort(rows, (size_t)p->n_runs, sizeof *rows, by_metric);
    static Setting settings[PLAN_MAX_RUNS];
    int n_settings = group_settings(p, rows, p->n_runs, settings);
    int curves = plot_val_curves(rows, p->n_runs, dir, err), status = curves < 0 ? -1 : 0;
    int flop_curves = status ? 0 : plot_val_vs_flops(rows, p->n_runs, dir, err);
    if (flop_curves < 0) status = -1;
    char pngs[PLAN_MAX_VARIED][96];
    for (int k = 0; status == 0 && k < p->n_varied_names; k++)
        if (worth_plotting(p, rows, p->n_runs, p->varied_names[k]))
            status = plot_metric_vs(p, rows, p->n_runs, p->varied_names[k], dir, pngs[k],
                                    sizeof pngs[k], err);
    char path[4300];
    snprintf(path, sizeof path, "%s/REPORT.md", dir);
    AtomicFile f;
    if (status == 0) status = atomic_open(&f, path, err);
    if (status == 0) {
        int done = 0, failed = 0;
        for (int i = 0; i < p->n_runs; i++) {
            done += strcmp(rows[i].outcome.status, "done") == 0;
            failed += strcmp(rows[i].outcome.status, "failed") == 0;
        }
        time_t now = time(NULL);
        char stamp[32];
        strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M", localtime(&now));
        fprintf(f.f, "# Sweep report: %s\n\n", p->title[0] ? p->title : "(untitled)");
        fprintf(f.f, "Plan: [PLAN.md](PLAN.md) · %d runs: %d done, %d failed · ranked by %s "
                     "(%s) · losses in nats/token (MDM, BD3: ELBO bounds, AR: exact) · %s\n\n",
                p->n_runs, done, failed, p->metric,
                strcmp(p->metric, "exact") == 0 ? "higher is better" : "lower is better", stamp);
        write_table(f.f, p, rows, p->n_runs);
        if (seeds_vary(p)) write_settings_table(f.f, p, settings, n_settings, matched);
        write_best(f.f, p, rows, p->n_runs, settings, n_settings);
        if (p->reference[0]) write_reference(f.f, p, rows, p->n_runs, settings, n_settings);
        char budget[32];
        format_count(budget, sizeof budget, matched);
        fprintf(f.f, "\nCompute: tokens and FLOPs are what each run trained, its `--init` run of "
                     "this sweep included (an adapted model carries its AR run's); FLOPs = 3 x "
                     "forward (6 x matrix weights + 12 x layers x seq_len x d_model per token; "
                     "block diffusion counts its two copies; LoRA runs count as full training, "
                     "an upper bound).");
        if (isfinite(matched))
            fprintf(f.f, " The matched budget, %s FLOPs, is the cheapest run's last evaluation: "
                         "each run's validation loss there is read off its curve "
                         "(val_vs_flops.png), \"-\" when it had not evaluated by then.", budget);
        fprintf(f.f, "\n");
        if (p->exact[0])
            fprintf(f.f, "\nExact match: greedy answers to every line of `%s` (MDM: LLaDA's "
                         "sampler, one token per step; AR: token by token)%s.\n", p->exact,
                    plan_varies(p, "exact") ? ", or of the run's own `exact` file" : "");
        fprintf(f.f, "\n## Plots\n\n");
        if (curves > 0) fprintf(f.f, "![validation curves](val_curves.png)\n\n");
        if (flop_curves > 0)
            fprintf(f.f, "![validation loss against FLOPs](val_vs_flops.png)\n\n");
        for (int k = 0; k < p->n_varied_names; k++)
            if (worth_plotting(p, rows, p->n_runs, p->varied_names[k]))
                fprintf(f.f, "![%s vs %s](%s)\n\n", p->metric, p->varied_names[k], pngs[k]);
        if (p->exact[0]) write_sampler_tradeoff(f.f, p, rows, p->n_runs, dir, device);
        if (failed) {
            fprintf(f.f, "\n## Failed runs\n\n");
            for (int i = 0; i < p->n_runs; i++)
                if (strcmp(rows[i].outcome.status, "failed") == 0)
                    fprintf(f.f, "- %s: %s (log: runs/%s/train.out)\n", rows[i].run->name,
                            rows[i].outcome.reason, rows[i].run->name);
        }
        write_samples(f.f, p, rows, p->n_runs, dir, exe, device);
        status = atomic_commit(&f, err);
    }
    for (int i = 0; i < p->n_runs; i++)
        if (rows[i].have_log) run_log_free(&rows[i].log);
    free(rows);
    return status;
}

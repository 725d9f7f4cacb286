// dllm train: flags -> model and training configs -> trainer loop in a run directory
// (JSON log, periodic / best checkpoints, validation, clean stop on SIGINT / SIGTERM).
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/flags.h"
#include "common/progress.h"
#include "dist/comm.h"
#include "kernels/backend.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "store/model_source.h"
#include "dataset/data.h"
#include "eval/eval.h"
#include "train/run_dir.h"
#include "train/setup.h"
#include "dataset/sft.h"
#include "train/trainer.h"

static const char *const objective_names[] = {"mdm", "ar", "bd3"};
static const char *const schedule_names[] = {"cosine", "wsd"};
static const char *const order_names[] = {"random", "sequential"};
static const char *const t_sampling_names[] = {"uniform", "stratified"};

// With --init the model flags may still be given (a sweep's shared Base), but only with the
// checkpoint's values (checked once it is loaded); a tokenizer never (FIXED_BY_MODEL).
static const char *const model_flags[] = {
    "n-layer", "n-head", "n-kv-head", "d-model", "d-ff", "init-std", "qkv-bias", "n-experts",
    "n-active", "d-expert", "d-shared", "dense-layers", "aux-loss-coef",
    NULL,  // --seq-len may shorten
};

typedef struct {
    const char *data, *sft, *init, *tokenizer, *run, *resume, *device, *objective, *schedule,
        *order, *t_sampling, *lora_targets, *weights;
    int lora_rank;     // > 0: LoRA adapters on the --init model, which stays frozen
    float lora_alpha;  // 0: the rank (scale 1)
    int objective_set, steps_set, seq_len_set, grad_accum_set, auto_resume, recompute, dry_run,
        logit_shift;
    int block_size;         // bd3: positions per block (0: 4, or an initialising bd3 model's)
    int mask_id;            // adapting an AR model without a mask token: the id to use (-1)
    int model_flag_set[16];  // model_flags[i] was given
    ModelConfig given;      // the model flags as given
    const Backend *be;
    int log_every, eval_every, eval_windows, eval_mc, save_every, keep, max_skips;
    uint64_t eval_seed;
    float val_frac;
    float comm_timeout;   // seconds an exchange waits for the other ranks
    Comm comm;            // the job's ranks (one without a launcher)
} TrainOptions;

// SIGINT / SIGTERM only raise this flag: the loop finishes its step, saves and exits.
static volatile sig_atomic_t stop_signal = 0;

static void on_stop_signal(int sig) { stop_signal = sig; }

static void catch_stop_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

typedef struct {
    Trainer *tr;
    const TokenData *val;    // validation tokens, or
    const SftData *val_sft;  // validation examples (NULL both: no evaluation)
    const Tokenizer *tokenizer;
    const TrainOptions *o;
    RunDir rd;
    int tty;           // stdout is a terminal: one status line redrawn in place
    double t0;         // when this process started training
    int64_t step0;     // the step it started from
    double last_val;   // NAN until the first evaluation
    double last_draw;  // when the status line was last drawn
    Comm *comm;        // the job's ranks
    int stop;          // the stop signal one of the job's ranks caught (0: none)
    double *rank_tokens_per_s;  // [ranks]: each rank's own throughput in the last step
} Run;

// A line that stays: on a terminal it replaces the status line, which the next step redraws.
static void print_line(const Run *r, const char *fmt, ...) {
    if (r->tty) fputs("\r\033[K", stdout);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

// After each step the ranks agree: whether one of them caught a stop signal (all stop after
// the same step), and what each computed per second.
static int agree_after_step(Run *r, const StepStats *st, Error *err) {
    Comm *c = r->comm;
    const TrainConfig *tc = &r->tr->tc;
    struct { int stop; double tokens_per_s; } mine, *all = malloc((size_t)c->size * sizeof *all);
    if (!all) return error_set(err, "out of memory for %d ranks' reports", c->size);
    double tokens = (double)tc->batch_size * tc->grad_accum / c->size * st->seq_len;
    mine.stop = stop_signal;
    mine.tokens_per_s = st->compute_s > 0 ? tokens / st->compute_s : 0.0;
    int rc = comm_gather_host(c, &mine, all, sizeof mine, err);
    for (int i = 0; rc == 0 && i < c->size; i++) {
        if (all[i].stop && !r->stop) r->stop = all[i].stop;
        r->rank_tokens_per_s[i] = all[i].tokens_per_s;
    }
    free(all);
    return rc;
}

// " | ranks 1234-1300 tok/s": the slowest and fastest rank's own throughput.
static void format_rank_rates(const Run *r, char *buf, size_t cap) {
    int ranks = r->comm->size;
    buf[0] = '\0';
    if (ranks < 2) return;
    double lo = r->rank_tokens_per_s[0], hi = lo;
    for (int i = 1; i < ranks; i++) {
        lo = fmin(lo, r->rank_tokens_per_s[i]);
        hi = fmax(hi, r->rank_tokens_per_s[i]);
    }
    snprintf(buf, cap, " | %d ranks %.0f-%.0f tok/s each", ranks, lo, hi);
}

static void report_step(Run *r, const StepStats *st, double dt) {
    const TrainConfig *tc = &r->tr->tc;
    int64_t s = r->tr->step;
    double tokens = (double)tc->batch_size * tc->grad_accum * st->seq_len;
    double elapsed = now_seconds() - r->t0;
    run_log_train(&r->rd, s, st, tokens / dt, r->rank_tokens_per_s, r->comm->size, elapsed);
    char loss[32], ranks[64];
    snprintf(loss, sizeof loss, st->skipped ? "%.4f (skipped)" : "%.4f", st->loss);
    format_rank_rates(r, ranks, sizeof ranks);
    if (!r->tty) {
        if (s % r->o->log_every == 0 || s == tc->steps || s == 1 || st->skipped)
            print_line(r, "step %6lld/%lld | loss %s | lr %.2e | grad norm %.3f | %.1f ms | "
                          "%.0f tok/s%s\n", (long long)s, (long long)tc->steps, loss, st->lr,
                       st->grad_norm, dt * 1e3, tokens / dt, ranks);
        return;
    }
    if (now_seconds() - r->last_draw < 0.1 && s < tc->steps) return;  // ~10 frames a second
    r->last_draw = now_seconds();
    char bar[32], spent[16], eta[16], val[32] = "";
    progress_bar(bar, 20, (double)s / tc->steps);
    format_duration(spent, sizeof spent, elapsed);
    format_duration(eta, sizeof eta, elapsed / (double)(s - r->step0) * (double)(tc->steps - s));
    if (!isnan(r->last_val)) snprintf(val, sizeof val, " | val %.4f", r->last_val);
    printf("\r\033[Kstep %lld/%lld %s %3.0f%% | loss %s%s | %.0f tok/s | %s, ETA %s",
           (long long)s, (long long)tc->steps, bar, 100.0 * s / tc->steps, loss, val,
           tokens / dt, spent, eta);
    fflush(stdout);
}

// Rank 0's value of *flag to every rank of the job.
static int from_rank0(Comm *c, int *flag, Error *err) {
    if (c->size == 1) return 0;
    int *all = malloc((size_t)c->size * sizeof(int));
    int rc = all ? comm_gather_host(c, flag, all, sizeof *flag, err)
                 : error_set(err, "out of memory for %d ranks' flags", c->size);
    if (rc == 0) *flag = all[0];
    free(all);
    return rc;
}

// Rank 0 validates (every rank holds the same weights) and tells the others whether the run
// has a new best, which every rank then saves (each sends its optimizer shard).
static int evaluate(Run *r, Error *err) {
    EvalResult res = {0};
    int64_t s = r->tr->step;
    Model *m = r->tr->model;
    const TrainOptions *o = r->o;
    int rank0 = r->comm->rank == 0;
    if (rank0 && (r->val_sft ? eval_sft(m, r->val_sft, o->eval_windows, o->eval_mc,
                                        o->eval_seed, &res, err)
                             : eval_heldout(m, r->val, o->eval_windows, o->eval_mc,
                                            o->eval_seed, &res, err)))
        return -1;
    run_log_eval(&r->rd, s, &res, now_seconds() - r->t0);
    r->last_val = res.nats_per_token;
    int best = run_dir_is_best(&r->rd, res.nats_per_token);
    if (from_rank0(r->comm, &best, err) ||
        (best && run_dir_save_best(&r->rd, r->tr, r->tokenizer, res.nats_per_token, err)))
        return -1;
    if (!rank0) return 0;
    // the same number `dllm eval` prints for this checkpoint with --windows W --mc MC
    print_line(r, "step %6lld | val %.4f +- %.4f nats/token | %s %.2f | %lld tokens, %d %s x %d"
                  "%s%s\n", (long long)s, res.nats_per_token, res.std_error,
               m->cfg.causal ? "ppl" : "ppl <=", res.ppl, (long long)res.tokens, res.windows,
               r->val_sft ? "examples" : "windows", res.mc, m->cfg.causal ? "" : " (ELBO)",
               best ? " | best, saved best.ckpt" : "");
    return 0;
}

// Runs the loop from tr->step to tc.steps: logging, evaluating and saving along the way.
// Returns 0 when done, 128 + signal when stopped by one (after saving), -1 on an error.
static int run_training(Run *r, Error *err) {
    Trainer *tr = r->tr;
    const TrainConfig *tc = &tr->tc;
    const TrainOptions *o = r->o;
    int skips = 0;
    catch_stop_signals();
    while (tr->step < tc->steps && !r->stop) {
        double t_step = now_seconds();
        StepStats st = trainer_step(tr);
        if (st.failed) return error_set(err, "train: %s", tr->error.msg);
        if (tr->model->be->device_error(err)) return -1;  // nothing of the step is saved
        if (agree_after_step(r, &st, err)) return -1;
        report_step(r, &st, now_seconds() - t_step);
        int64_t s = tr->step;
        skips = st.skipped ? skips + 1 : 0;
        if (skips >= o->max_skips) {
            run_log_event(&r->rd, s, "diverged", "non-finite loss or gradients");
            return error_set(err, "train: %d steps in a row with a non-finite loss or gradients "
                                  "(up to step %lld): stopped without saving; the run's last "
                                  "checkpoint is untouched", skips, (long long)s);
        }
        if ((r->val || r->val_sft) && o->eval_every > 0 && (s % o->eval_every == 0 || s == tc->steps) &&
            evaluate(r, err))
            return -1;
        if (o->save_every > 0 && s % o->save_every == 0 && s < tc->steps) {
            if (run_dir_save(&r->rd, tr, r->tokenizer, err)) return -1;
            if (!r->tty) print_line(r, "saved %s/step_%08lld.ckpt\n", r->rd.dir, (long long)s);
        }
    }
    if (run_dir_save(&r->rd, tr, r->tokenizer, err)) return -1;
    if (r->stop) {
        const char *name = r->stop == SIGINT ? "SIGINT" : "SIGTERM";
        run_log_event(&r->rd, tr->step, "interrupted", name);
        print_line(r, "%s at step %lld: saved %s/step_%08lld.ckpt (--resume %s continues)\n",
                   name, (long long)tr->step, r->rd.dir, (long long)tr->step, r->rd.dir);
        return 128 + r->stop;
    }
    run_log_event(&r->rd, tr->step, "done", "");
    print_line(r, "done: %lld steps in %.1f s, saved %s/step_%08lld.ckpt\n",
               (long long)tc->steps, now_seconds() - r->t0, r->rd.dir, (long long)tr->step);
    return 0;
}

// The run's tokenizer: the checkpoint's on --resume / --init, else --tokenizer, else the one
// beside the shards, else bytes for a text file.
static int load_tokenizer(const TrainOptions *o, const Dataset *ds, ModelSource *ck,
                          Tokenizer *t, Error *err) {
    if (o->resume || o->init) {
        *t = ck->tokenizer;
        memset(&ck->tokenizer, 0, sizeof ck->tokenizer);
        return 0;
    }
    if (o->tokenizer) return tokenizer_load(t, o->tokenizer, err);
    if (!ds) return error_set(err, "train: --sft without --init needs --tokenizer (bytes, a .model or a tokenizer.json)");
    if (ds->tokenizer_path[0]) return tokenizer_load(t, ds->tokenizer_path, err);
    if (ds->text) {
        tokenizer_init_bytes(t);
        return 0;
    }
    return error_set(err, "%s: the shards come with no tokenizer (tokenizer.model or "
                          "tokenizer.json): pass --tokenizer",
                     o->data);
}

// The choices of the flags: the objective, schedule, data order and t sampling by name, and
// what train_settle_model needs.
static int read_choices(const TrainOptions *o, TrainConfig *tc, TrainChoices *ch, Error *err) {
    static const char *const weight_kinds[] = {"fp32", "ternary"};
    int obj = flags_choice("objective", o->objective, objective_names, 3, err);
    int sched = flags_choice("schedule", o->schedule, schedule_names, 2, err);
    int order = flags_choice("order", o->order, order_names, 2, err);
    int ts = flags_choice("t-sampling", o->t_sampling, t_sampling_names, 2, err);
    int ternary = o->weights ? flags_choice("weights", o->weights, weight_kinds, 2, err) : -1;
    if (obj < 0 || sched < 0 || order < 0 || ts < 0 || (o->weights && ternary < 0)) return -1;
    tc->schedule = (LrSchedule)sched;
    tc->order = (DataOrder)order;
    tc->t_sampling = (TSampling)ts;
    *ch = (TrainChoices){.objective = (Objective)obj, .objective_given = o->objective_set,
                         .block_size = o->block_size, .logit_shift = o->logit_shift,
                         .ternary = ternary};
    return 0;
}

// Pretraining tokens (a Dataset), or SFT rows split into train and validation examples.
typedef struct {
    Dataset ds;
    int have_ds;
    SftData sft, sft_train, sft_val;
} TrainingData;

static void close_training_data(TrainingData *d) {
    if (d->have_ds) dataset_close(&d->ds);
    sft_free(&d->sft);
}

// Loads the tokenizer and the data; fills in the model's vocabulary for a fresh run.
static int open_training_data(const TrainOptions *o, ModelSource *ck, ModelConfig *mc,
                              Tokenizer *tok, TrainingData *d, Error *err) {
    memset(d, 0, sizeof *d);
    if (o->data) {
        if (dataset_open(&d->ds, o->data, o->val_frac, err)) return -1;
        d->have_ds = 1;
    }
    if (load_tokenizer(o, d->have_ds ? &d->ds : NULL, ck, tok, err)) return -1;
    if (!o->resume && !o->init) {
        if (tok->mask_id < 0)  // a Hugging Face tokenizer that names none
            return error_set(err, "train: the tokenizer has no mask token (mask_token in "
                                  "tokenizer_config.json, or an added token <|mdm_mask|>, "
                                  "<|mask|>, [MASK] or <mask>): dllm's models need one");
        mc->vocab_size = tok->vocab_size;
        mc->mask_token_id = tok->mask_id;
    }
    int eval = o->eval_every > 0;
    if (o->sft) {
        if (sft_load(&d->sft, o->sft, tok, mc->seq_len, err)) return -1;
        // the last val_frac of the examples (at least one unless --val-frac 0)
        int n_val = eval ? (int)(d->sft.n * (double)o->val_frac) : 0;
        if (eval && o->val_frac > 0.0f && n_val < 1 && d->sft.n > 1) n_val = 1;
        d->sft_train = sft_view(&d->sft, 0, d->sft.n - n_val);
        d->sft_val = sft_view(&d->sft, d->sft.n - n_val, n_val);
        return 0;
    }
    if (dataset_check(&d->ds, tok, mc->vocab_size, err)) return -1;
    if (eval && d->ds.val.n > 0 && d->ds.val.n < (size_t)mc->seq_len + 1)
        return error_set(err, "%s: %zu validation tokens, fewer than seq_len + 1 = %d "
                              "(raise --val-frac, or --eval-every 0)",
                         o->data, d->ds.val.n, mc->seq_len + 1);
    return 0;
}

static void print_data_summary(const TrainOptions *o, const TrainingData *d) {
    if (o->sft)
        printf("sft data %s: %d train + %d val examples\n", o->sft, d->sft_train.n,
               d->sft_val.n);
    else
        printf("data %s: %zu train + %zu val tokens\n", o->data, d->ds.train.n, d->ds.val.n);
    if (d->sft.truncated)
        printf("sft data: %d responses were cut to fit seq_len %d\n", d->sft.truncated, d->sft.T);
}

// Resume: weights, optimizer state, step and RNG streams; --init: the weights only (a new run
// with a fresh optimizer); otherwise a seeded initialisation. A LoRA run's frozen base comes
// from base (on resume) or the --init model, its adapters from the checkpoint or PEFT's init.
static int set_start_weights(const TrainOptions *o, const ModelSource *ck, const ModelSource *base,
                             const char *path, Trainer *tr, Error *err) {
    Model *m = tr->model;
    if (o->resume) {
        if (m->lora.rank && model_source_copy_weights(base, m, err)) return -1;
        trainer_restore(tr, ck);
        printf("resumed %s at step %lld\n", path, (long long)tr->step);
    } else if (o->init) {
        if (model_source_copy_weights(ck, m, err)) return -1;
        if (m->lora.rank && model_init_lora(m, seed_for_init(tr->tc.seed), err)) return -1;
        printf("initialised from %s (step %lld)%s\n", path, (long long)ck->header.step,
               m->lora.rank ? ", frozen under fresh LoRA adapters" : "");
    } else {
        return model_init_params(m, seed_for_init(tr->tc.seed), err);
    }
    return 0;
}

// --run, else the resumed run's directory, else runs/DATE-TIME.
static void default_run_dir(const TrainOptions *o, char *out, size_t cap) {
    struct stat st;
    if (o->run) {
        snprintf(out, cap, "%s", o->run);
    } else if (o->resume && stat(o->resume, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(out, cap, "%s", o->resume);
    } else if (o->resume) {
        const char *slash = strrchr(o->resume, '/');
        snprintf(out, cap, "%.*s", slash ? (int)(slash - o->resume) : 1, slash ? o->resume : ".");
    } else {
        time_t now = time(NULL);
        char stamp[32];
        strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", localtime(&now));
        snprintf(out, cap, "runs/%s", stamp);
    }
}

// The model, the training settings, and what they take in memory (be: the base weights'
// table, a bf16-weight twin for a LoRA run on a bf16 base).
static void print_setup(const TrainOptions *o, const ModelConfig *mc, const TrainConfig *tc,
                        const LoraConfig *lc, const Backend *be, const Tokenizer *tok) {
    model_config_print(stdout, mc);
    train_config_print(stdout, tc);
    printf("params: %zu", param_count(mc));
    if (mc->n_experts) printf(" (%zu active per token)", param_count_active(mc));
    printf(" | device %s | tokenizer: %s, %d tokens\n", be->name, tokenizer_kind_name(tok),
           tok->vocab_size);
    if (lc->rank) {
        char targets[64];
        lora_format_targets(lc->targets, targets, sizeof targets);
        size_t n = lora_param_count(mc, lc);
        printf("LoRA: rank %d, alpha %g (scale %g), targets %s: %zu trained values (%.3f%% of "
               "the base) | base frozen in %s: %s\n", lc->rank, lc->alpha, lora_scale(lc),
               targets, n, 100.0 * n / param_count(mc), be->weight_bytes == 2 ? "bf16" : "fp32",
               lc->base);
    }
    MemoryPlan plan = model_memory_plan_lora(mc, lc, be, tc->batch_size * train_copies(tc),
                                             o->recompute);
    int ranks = o->comm.size;
    size_t n = lc->rank ? lora_param_count(mc, lc) : param_count(mc), lo, len;
    if (ranks > 1) {  // ZeRO-1: AdamW's m and v of the rank's shard only (rank 0's, the largest)
        comm_shard(n, ranks, 0, &lo, &len);
        size_t spared = 2 * (n - len) * sizeof(float);
        if (lc->rank) plan.adapters -= spared;
        else plan.optimizer -= spared;
    }
    memory_plan_print(stdout, &plan, ranks > 1 ? "per rank" : be->name);
    size_t sums = trainer_sum_bytes(n, tc->grad_accum, ranks);
    if (ranks > 1)
        printf("job: %d ranks, each running %d of the step's %d micro-batches of %d sequences\n",
               ranks, tc->grad_accum / ranks, tc->grad_accum, tc->batch_size);
    if (sums) {
        char text[2][32];
        format_bytes(text[0], sizeof text[0], sums);
        format_bytes(text[1], sizeof text[1],
                     plan.params + plan.grads + plan.optimizer + plan.activations +
                         plan.adapters + sums);
        printf("memory%s: + gradient sums %s (%s) | total %s\n", ranks > 1 ? " per rank" : "",
               text[0], ranks > 1 ? "the rank's shard, and every rank's piece of it"
                                  : "grad_accum > 1", text[1]);
    }
}

// Parses and checks the flags into the defaults: 0, or -1 with the command's exit code in
// *exit_code (0 after --help, else 1 with the error printed).
static int parse_train_flags(int argc, char **argv, ModelConfig *mc, TrainConfig *tc,
                             TrainOptions *o, int *exit_code) {
    *mc = model_config_default();
    *tc = train_config_default();
    *o = (TrainOptions){.device = "auto", .objective = "mdm", .schedule = "cosine",
                        .order = "random", .t_sampling = "stratified", .log_every = 10,
                        .eval_every = 100, .eval_windows = 32, .eval_mc = 8, .eval_seed = 1234,
                        .save_every = 100, .keep = 3, .max_skips = 5, .val_frac = 0.05f,
                        .logit_shift = -1, .comm_timeout = 600, .mask_id = -1};
    Flag flags[] = {
        {"data", FLAG_STRING, &o->data,
         "shard directory (dllm prepare, llm.c), one .bin shard, or a text file read as bytes "
         "(required)", FLAG_FREE, 0},
        {"sft", FLAG_STRING, &o->sft,
         "fine-tune on JSONL {\"prompt\", \"response\"} lines (instead of --data)", FLAG_FREE, 0},
        {"init", FLAG_STRING, &o->init,
         "start from this checkpoint's weights (or a run's newest), fresh optimizer", FLAG_FREE, 0},
        {"cfg-drop", FLAG_FLOAT, &tc->cfg_drop,
         "mdm --sft: share of examples trained with the prompt masked (for --cfg)",
         FIXED_BY_RUN, 0},
        {"tokenizer", FLAG_STRING, &o->tokenizer,
         "SentencePiece .model or 'bytes' (default: the shard directory's tokenizer.model)",
         FIXED_BY_MODEL, 0},
        {"order", FLAG_STRING, &o->order, "random or sequential windows", FIXED_BY_RUN, 0},
        {"run", FLAG_STRING, &o->run,
         "run directory: log.jsonl, step_*.ckpt, best.ckpt (default: runs/DATE-TIME; on "
         "--resume: the resumed run's)", FLAG_FREE, 0},
        {"auto-resume", FLAG_INT, &o->auto_resume,
         "1: resume --run when it holds a checkpoint, else start it (same command again)",
         FLAG_FREE, 0},
        {"resume", FLAG_STRING, &o->resume,
         "continue a run: its directory (newest complete checkpoint) or one .ckpt file",
         FLAG_FREE, 0},
        {"device", FLAG_STRING, &o->device,
         "auto (cuda when a GPU is present), cpu, cuda (bf16 activations) or cuda-fp32",
         FLAG_FREE, 0},
        {"weights", FLAG_STRING, &o->weights,
         "fp32, or ternary: BitNet b1.58 quantisation-aware training (the seven projections of "
         "every layer read absmean-ternary weights and 8-bit inputs; embeddings, norms and the "
         "LM head stay fp32); with --init, an fp32 model becomes ternary (default: fp32, or the "
         "--init model's)", FIXED_BY_RUN, 0},
        {"lora-rank", FLAG_INT, &o->lora_rank,
         "with --init: train LoRA adapters of this rank on a frozen base (kept in its file's "
         "dtype: bf16 stays bf16) instead of every weight (0: off)", FIXED_BY_RUN, 0},
        {"lora-alpha", FLAG_FLOAT, &o->lora_alpha,
         "LoRA: the update is scaled by alpha / rank (default: the rank, scale 1)",
         FIXED_BY_RUN, 0},
        {"lora-targets", FLAG_STRING, &o->lora_targets,
         "LoRA: the projections adapted in every layer, from q,k,v,o,gate,up,down (default: all)",
         FIXED_BY_RUN, 0},
        {"recompute", FLAG_INT, &o->recompute,
         "1: keep only the residual stream and recompute each layer in the backward pass "
         "(activation memory / n_layer, one more forward pass per step; same gradients)",
         FLAG_FREE, 0},
        {"dry-run", FLAG_INT, &o->dry_run,
         "1: print the model, the settings and the memory plan, then exit (nothing allocated)",
         FLAG_FREE, 0},
        {"objective", FLAG_STRING, &o->objective,
         "mdm (masked diffusion), bd3 (block diffusion, BD3-LM) or ar (baseline); --init with an "
         "ar model and --objective mdm or bd3 adapts it to diffusion (Dream, DiffuLLaMA)",
         FIXED_BY_RUN, 0},
        {"block-size", FLAG_INT, &o->block_size,
         "bd3: positions per block (BD3-LM; divides seq-len; default 4)", FIXED_BY_RUN, 0},
        {"t-max", FLAG_FLOAT, &tc->t_max,
         "bd3: mask rates drawn from [mask-eps, t-max) (BD3-LM's clipped schedule: < 1)",
         FIXED_BY_RUN, 0},
        {"anneal-steps", FLAG_INT64, &tc->anneal_steps,
         "mdm: attention widens from causal to bidirectional over these first steps "
         "(DiffuLLaMA's annealing, for an adapted ar model; 0: off)", FIXED_BY_RUN, 0},
        {"mask-id", FLAG_INT, &o->mask_id,
         "adapting an AR model whose tokenizer names no mask token: the [MASK] id, one of the "
         "model's vocabulary the tokenizer does not use", FIXED_BY_RUN, 0},
        {"logit-shift", FLAG_INT, &o->logit_shift,
         "mdm: 1 reads position i's prediction from logit row i - 1, as an AR model does "
         "(Dream's shift; the default when adapting an ar model), 0 from row i", FIXED_BY_RUN, 0},
        {"n-layer", FLAG_INT, &mc->n_layer, "transformer layers", FIXED_BY_RUN, 0},
        {"n-head", FLAG_INT, &mc->n_head, "attention heads", FIXED_BY_RUN, 0},
        {"n-kv-head", FLAG_INT, &mc->n_kv_head,
         "key/value heads, dividing n-head (grouped-query attention; 0: n-head)", FIXED_BY_RUN, 0},
        {"d-model", FLAG_INT, &mc->d_model, "model width", FIXED_BY_RUN, 0},
        {"d-ff", FLAG_INT, &mc->d_ff, "SwiGLU hidden width", FIXED_BY_RUN, 0},
        {"n-experts", FLAG_INT, &mc->n_experts,
         "a mixture of experts (LLaDA-MoE's): routed SwiGLU experts per MoE layer (0: a dense "
         "model)", FIXED_BY_RUN, 0},
        {"n-active", FLAG_INT, &mc->n_active, "experts: how many the router picks per token",
         FIXED_BY_RUN, 0},
        {"d-expert", FLAG_INT, &mc->d_expert, "experts: each expert's SwiGLU width",
         FIXED_BY_RUN, 0},
        {"d-shared", FLAG_INT, &mc->d_shared,
         "experts: a shared expert of this width every token passes through (0: none)",
         FIXED_BY_RUN, 0},
        {"dense-layers", FLAG_INT, &mc->dense_layers,
         "experts: the first layers keep the dense MLP of width d-ff", FIXED_BY_RUN, 0},
        {"aux-loss-coef", FLAG_FLOAT, &mc->aux_loss_coef,
         "experts: weight of the load-balancing loss (Switch's E sum f_e P_e; LLaDA-MoE 0.01)",
         FIXED_BY_RUN, 0},
        {"qkv-bias", FLAG_INT, &mc->qkv_bias,
         "1: the q, k and v projections add a learned bias (as Qwen2 and Dream)", FIXED_BY_RUN, 0},
        {"init-std", FLAG_FLOAT, &mc->init_std,
         "weights start as normal(0, init-std), the residual projections / sqrt(2 n-layer) "
         "(0: 0.02)", FIXED_BY_RUN, 0},
        {"seq-len", FLAG_INT, &mc->seq_len, "tokens per training sequence", FIXED_BY_RUN, 0},
        {"batch-size", FLAG_INT, &tc->batch_size, "sequences per micro-batch", FIXED_BY_RUN, 0},
        {"grad-accum", FLAG_INT, &tc->grad_accum,
         "micro-batches per optimizer step, over all ranks of a job (a multiple of the ranks; "
         "default 1, or the number of ranks)", FIXED_BY_RUN, 0},
        {"steps", FLAG_INT64, &tc->steps, "optimizer steps in the run (may grow on --resume)",
         FLAG_FREE, 0},
        {"warmup", FLAG_INT64, &tc->warmup_steps, "linear warmup steps", FIXED_BY_RUN, 0},
        {"lr", FLAG_FLOAT, &tc->lr, "peak learning rate", FIXED_BY_RUN, 0},
        {"min-lr", FLAG_FLOAT, &tc->min_lr, "final learning rate", FIXED_BY_RUN, 0},
        {"schedule", FLAG_STRING, &o->schedule, "cosine or wsd (warmup-stable-decay)",
         FIXED_BY_RUN, 0},
        {"decay-frac", FLAG_FLOAT, &tc->decay_frac, "wsd: fraction of steps spent decaying",
         FIXED_BY_RUN, 0},
        {"weight-decay", FLAG_FLOAT, &tc->weight_decay, "AdamW decoupled weight decay",
         FIXED_BY_RUN, 0},
        {"beta1", FLAG_FLOAT, &tc->beta1, "AdamW beta1", FIXED_BY_RUN, 0},
        {"beta2", FLAG_FLOAT, &tc->beta2, "AdamW beta2", FIXED_BY_RUN, 0},
        {"adam-eps", FLAG_FLOAT, &tc->adam_eps, "AdamW epsilon", FIXED_BY_RUN, 0},
        {"grad-clip", FLAG_FLOAT, &tc->grad_clip, "global gradient norm limit (0: off)",
         FIXED_BY_RUN, 0},
        {"mask-eps", FLAG_FLOAT, &tc->mask_eps, "mdm: t ~ U(mask-eps, 1)", FIXED_BY_RUN, 0},
        {"t-sampling", FLAG_STRING, &o->t_sampling,
         "mdm: uniform (each sequence its own t) or stratified (the batch's t spread evenly "
         "over [mask-eps, 1), MDLM's low-discrepancy sampler)", FIXED_BY_RUN, 0},
        {"random-length-prob", FLAG_FLOAT, &tc->random_length_prob,
         "mdm: chance a step trains on a random shorter length (LLaDA: 0.01)", FIXED_BY_RUN, 0},
        {"seed", FLAG_U64, &tc->seed, "seeds init, data order and masking", FIXED_BY_RUN, 0},
        {"val-frac", FLAG_FLOAT, &o->val_frac,
         "tail of the data held out for validation when there are no val shards", FLAG_FREE, 0},
        {"eval-every", FLAG_INT, &o->eval_every, "steps between validation losses (0: never)",
         FLAG_FREE, 0},
        {"eval-windows", FLAG_INT, &o->eval_windows, "validation windows of seq-len tokens",
         FLAG_FREE, 0},
        {"eval-mc", FLAG_INT, &o->eval_mc, "mdm: mask draws per validation window", FLAG_FREE, 0},
        {"eval-seed", FLAG_U64, &o->eval_seed,
         "seeds the validation masks (the same in every run, so runs compare)", FLAG_FREE, 0},
        {"log-every", FLAG_INT, &o->log_every, "steps between terminal lines (not a terminal)",
         FLAG_FREE, 0},
        {"save-every", FLAG_INT, &o->save_every, "steps between checkpoints (0: only at the end)",
         FLAG_FREE, 0},
        {"keep", FLAG_INT, &o->keep, "periodic checkpoints kept (best.ckpt besides)", FLAG_FREE, 0},
        {"max-skips", FLAG_INT, &o->max_skips,
         "stop after this many steps in a row with a non-finite loss or gradients", FLAG_FREE, 0},
        {"comm-timeout", FLAG_FLOAT, &o->comm_timeout,
         "under mpirun or srun: seconds an exchange waits for the other ranks before the job "
         "ends (a rank that died or hangs; validation on rank 0 must fit in it)", FLAG_FREE, 0},
    };
    int n_flags = sizeof flags / sizeof flags[0];
    int rc = flags_parse_command(flags, n_flags, argc, argv,
                                 "usage: dllm train --data FILE [flags]\n"
                                 "       dllm train --sft FILE.jsonl [--init CKPT] [flags]\n"
                                 "       dllm train --resume RUN_DIR --data FILE | --sft FILE");
    *exit_code = rc < 0;
    if (rc) return -1;
    *exit_code = 1;
    o->objective_set = flags_find(flags, n_flags, "objective")->set;
    o->steps_set = flags_find(flags, n_flags, "steps")->set;
    o->grad_accum_set = flags_find(flags, n_flags, "grad-accum")->set;
    o->seq_len_set = flags_find(flags, n_flags, "seq-len")->set;
    for (int i = 0; model_flags[i]; i++)
        o->model_flag_set[i] = flags_find(flags, n_flags, model_flags[i])->set;
    o->given = *mc;
    Error err;
    // flags a checkpoint fixes (--auto-resume: the checkpoint's settings win silently)
    FlagFixed fixed = o->auto_resume ? FLAG_FREE
                      : o->resume    ? FIXED_BY_RUN
                      : o->init      ? FIXED_BY_MODEL
                                     : FLAG_FREE;
    const char *clash = NULL;
    for (int i = 0; fixed != FLAG_FREE && i < n_flags && !clash; i++)
        if (flags[i].set && flags[i].fixed >= fixed) clash = flags[i].name;
    if (!o->data == !o->sft)
        error_set(&err, "train: give --data FILE (pretraining) or --sft FILE (fine-tuning)");
    else if (o->log_every < 1 || o->eval_windows < 1 || o->eval_mc < 1 || o->keep < 1 ||
             o->max_skips < 1 || o->eval_every < 0 || o->save_every < 0)
        error_set(&err, "train: --log-every, --eval-windows, --eval-mc, --keep and --max-skips "
                        "must be >= 1, --eval-every and --save-every >= 0");
    else if (!(o->val_frac >= 0.0f && o->val_frac < 1.0f))
        error_set(&err, "train: --val-frac must be in [0, 1)");
    else if (o->resume && o->init)
        error_set(&err, "train: --resume and --init exclude each other");
    else if (o->recompute != 0 && o->recompute != 1)
        error_set(&err, "train: --recompute must be 0 or 1");
    else if (o->auto_resume && !o->run)
        error_set(&err, "train: --auto-resume needs --run");
    else if (o->lora_rank < 0 || (o->lora_rank > 0 && !o->init && !o->resume && !o->auto_resume))
        error_set(&err, "train: --lora-rank N (>= 1) trains adapters on a base model: give it "
                        "with --init BASE");
    else if (!o->lora_rank && (o->lora_targets || o->lora_alpha) && !o->resume)
        error_set(&err, "train: --lora-alpha and --lora-targets go with --lora-rank");
    else if (clash)
        error_set(&err, "train: --%s cannot be combined with --%s (the checkpoint fixes it)",
                  clash, o->resume ? "resume" : "init");
    else if ((o->be = o->dry_run ? backend_for_plan(o->device, &err)
                                 : backend_by_name(o->device, &err)))
        return 0;
    cli_fail(err.msg);
    return -1;
}

// The checkpoint a run starts from: --resume's or --init's; with --auto-resume, the run
// directory's newest when it has one (rerunning the same command continues the run, what
// sweeps do after a crash), else none and the directory is reused (*reuse_dir).
static int load_start_checkpoint(TrainOptions *o, ModelSource *ck, char *ck_path, size_t cap,
                                 int *reuse_dir, Error *err) {
    int skipped = 0, loaded = 0;
    if (o->auto_resume && !o->resume) {
        loaded = model_source_open(o->run, HF_WEIGHTS_LATER, ck, ck_path, cap, &skipped,
                                   err) == 0;
        if (loaded) {
            o->resume = o->run, o->init = NULL;
        } else {  // killed before its first checkpoint: start over in place
            *reuse_dir = 1;
            ck_path[0] = '\0';
        }
    }
    HfWeights imported = o->dry_run ? HF_CONFIG_ONLY : HF_WEIGHTS_LATER;  // a plan needs none
    if ((o->resume || o->init) && !loaded &&
        model_source_open(o->resume ? o->resume : o->init, imported, ck, ck_path, cap,
                          &skipped, err))
        return -1;
    if (skipped)
        printf("skipped %d damaged or incomplete newer checkpoint%s\n", skipped,
               skipped > 1 ? "s" : "");
    if ((o->resume || o->init) && ck->kind == SOURCE_PACKED)
        return error_set(err, "train: %s is a packed ternary model, for inference only: train "
                         "from the run it was exported from", ck_path);
    if (o->resume && ck->kind != SOURCE_CHECKPOINT)
        return error_set(err, "train: %s is an imported model, not a run: start from it with "
                         "--init", o->resume);
    return 0;
}

// Model flag i of model_flags as a number, from a config.
static double model_flag_value(const ModelConfig *c, int i) {
    const double v[] = {c->n_layer,  c->n_head,   c->n_kv_head,   c->d_model,
                        c->d_ff,     c->init_std ? c->init_std : 0.02f, c->qkv_bias,
                        c->n_experts, c->n_active, c->d_expert,     c->d_shared,
                        c->dense_layers, c->aux_loss_coef};
    return v[i];
}

// --init with model flags: each must say what the checkpoint already is.
static int check_model_flags(const TrainOptions *o, const ModelConfig *ck_model,
                             const char *ck_path, Error *err) {
    ModelConfig given = o->given;
    if (!given.n_kv_head) given.n_kv_head = given.n_head;
    for (int i = 0; model_flags[i]; i++)
        if (o->model_flag_set[i] &&
            model_flag_value(&given, i) != model_flag_value(ck_model, i))
            return error_set(err, "train: --%s %g, but %s has %g (--init keeps the model)",
                             model_flags[i], model_flag_value(&given, i), ck_path,
                             model_flag_value(ck_model, i));
    return 0;
}

// The [MASK] of an imported AR model adapted to diffusion: its tokenizer's mask token, else
// --mask-id, an id of the model's vocabulary the tokenizer does not use (as Dream took one of
// Qwen2.5's padding ids).
static int settle_mask_id(const TrainOptions *o, const ModelSource *ck, const char *ck_path,
                          ModelConfig *mc, Error *err) {
    int tokens = ck->tokenizer.vocab_size;
    if (ck->named_mask_id >= 0 && o->mask_id >= 0 && o->mask_id != ck->named_mask_id)
        return error_set(err, "train: --mask-id %d, but the tokenizer of %s names its mask token "
                              "(%d)", o->mask_id, ck_path, ck->named_mask_id);
    if (ck->named_mask_id >= 0) {
        mc->mask_token_id = ck->named_mask_id;
        return 0;
    }
    if (tokens >= mc->vocab_size)
        return error_set(err, "train: adapting %s to diffusion needs a mask token, and its "
                              "tokenizer names none and uses all %d ids of the vocabulary "
                              "(growing it is not built)", ck_path, mc->vocab_size);
    if (o->mask_id < 0)
        return error_set(err, "train: adapting %s to diffusion needs a mask token, and its "
                              "tokenizer names none: give --mask-id, an unused id in [%d, %d)",
                         ck_path, tokens, mc->vocab_size);
    if (o->mask_id < tokens || o->mask_id >= mc->vocab_size)
        return error_set(err, "train: --mask-id %d: the tokenizer uses ids below %d and the model "
                              "has %d; give an unused id in [%d, %d)", o->mask_id, tokens,
                         mc->vocab_size, tokens, mc->vocab_size);
    mc->mask_token_id = o->mask_id;
    return 0;
}

// The model and training settings: the checkpoint's on --resume (--steps may grow), its model
// on --init, else the flags; the objective settled against the data and the checkpoint.
static int settle_configs(TrainOptions *o, const ModelSource *ck, const char *ck_path,
                          ModelConfig *mc, TrainConfig *tc, Error *err) {
    int seq_len = mc->seq_len;
    if (o->init && check_model_flags(o, &ck->header.model, ck_path, err)) return -1;
    if (o->resume || o->init) *mc = ck->header.model;
    if (o->init && o->seq_len_set) {  // fine-tuning on shorter rows than the model's context
        if (seq_len > mc->seq_len)
            return error_set(err, "train: --seq-len %d is longer than %s's context (%d)",
                             seq_len, ck_path, mc->seq_len);
        mc->seq_len = seq_len;
    }
    if (!o->resume) {
        TrainChoices ch;
        int adapting;
        if (read_choices(o, tc, &ch, err) ||
            train_settle_model(&ch, o->init, mc, tc, &adapting, err))
            return -1;
        if (o->mask_id >= 0 && !(adapting && mc->mask_token_id < 0))
            return error_set(err, "train: --mask-id is for adapting an AR model that has no mask "
                                  "token to diffusion");
        if (adapting && mc->mask_token_id < 0 && settle_mask_id(o, ck, ck_path, mc, err))
            return -1;
        if (adapting)
            printf("adapting %s (ar) to %s: %s attention%s\n", o->init,
                   tc->objective == OBJECTIVE_BD3 ? "bd3" : "mdm",
                   tc->objective == OBJECTIVE_BD3 ? "block-causal" : "bidirectional",
                   mc->logit_shift ? ", logit shift 1" : "");
        tc->sft = o->sft != NULL;
        return 0;
    }
    int64_t steps = tc->steps;
    *tc = ck->header.train;
    if (o->steps_set) tc->steps = steps;
    if (tc->sft != (o->sft != NULL))
        return error_set(err, "train: %s is %s run: resume it with %s", ck_path,
                         tc->sft ? "a fine-tuning" : "a pretraining",
                         tc->sft ? "--sft FILE" : "--data FILE");
    return 0;
}

// The adapters' settings: a resumed LoRA run's, else --lora-rank's on the --init model.
static int settle_lora(const TrainOptions *o, const ModelSource *ck, const char *ck_path,
                       LoraConfig *lc, Error *err) {
    if (o->resume) {
        *lc = ck->header.lora;
        return 0;
    }
    LoraChoices ch = {.rank = o->lora_rank, .alpha = o->lora_alpha, .targets = o->lora_targets};
    return train_settle_lora(&ch, o->init ? &ck->header.lora : NULL, o->init, ck_path, lc, err);
}

// The table the model's base weights live on: a LoRA run keeps its frozen base as its file
// stores it (a bf16 base on the bf16-weight twin), everything else trains fp32 weights.
static const Backend *base_backend(const TrainOptions *o, const LoraConfig *lc,
                                   const ModelSource *weights) {
    return lc->rank ? model_source_backend(weights, o->be) : o->be;
}

// Builds the model and trainer, sets the starting weights, opens the run directory and trains.
static int train(TrainOptions *o, const ModelConfig *mc, const TrainConfig *tc,
                 const LoraConfig *lc, const ModelSource *ck, const char *ck_path, int reuse_dir,
                 Tokenizer *tok, TrainingData *data, Error *err) {
    Model model;
    Trainer tr;
    ModelSource base = {0};  // a resumed LoRA run's frozen base
    if (lc->rank && o->resume && model_source_base(ck, HF_WEIGHTS_LATER, &base, err))
        return -1;
    const Backend *be = base_backend(o, lc, o->resume ? &base : ck);
    if (model_create_lora(&model, mc, lc, be, tc->batch_size * train_copies(tc), o->recompute,
                          err)) {
        model_source_free(&base);
        return -1;
    }
    int status = data->sft.n ? trainer_init_sft(&tr, &model, tc, &data->sft_train, err)
                             : trainer_init(&tr, &model, tc, &data->ds.train, err);
    if (status) {
        model_free(&model);
        model_source_free(&base);
        return -1;
    }
    status = trainer_join(&tr, &o->comm, err);
    if (status == 0) status = set_start_weights(o, ck, &base, ck_path, &tr, err);
    model_source_free(&base);
    if (status == 0) {
        print_setup(o, mc, tc, lc, be, tok);
        print_data_summary(o, data);
        char run_dir[4200];
        default_run_dir(o, run_dir, sizeof run_dir);
        Run r = {.tr = &tr, .tokenizer = tok, .o = o, .comm = &o->comm, .tty = isatty(STDOUT_FILENO),
                 .t0 = now_seconds(), .step0 = tr.step, .last_val = NAN};
        // rank 0 alone validates, logs and writes: every rank holds the same weights
        int writer = o->comm.rank == 0;
        if (o->eval_every > 0 && data->sft_val.n > 0) r.val_sft = &data->sft_val;
        if (o->eval_every > 0 && !data->sft.n && data->ds.val.n > 0) r.val = &data->ds.val;
        r.rank_tokens_per_s = calloc((size_t)o->comm.size, sizeof(double));
        status = !r.rank_tokens_per_s ? error_set(err, "out of memory")
                 : writer ? run_dir_open(&r.rd, run_dir, o->keep,
                                         o->resume || reuse_dir ? tr.step : -1, err)
                          : 0;
        if (status == 0) {
            printf("run: %s\n", run_dir);
            run_log_event(&r.rd, tr.step, o->resume ? "resume" : "start", ck_path);
            int T = trainer_row_length(&tr);
            run_log_budget(&r.rd, tr.step, (int64_t)tr.tc.batch_size * tr.tc.grad_accum * T,
                           train_flops_per_token(&model.cfg, T));
            status = run_training(&r, err);
            if (writer) run_dir_close(&r.rd);
        }
        free(r.rank_tokens_per_s);
    }
    trainer_free(&tr);
    model_free(&model);
    return status;
}

// The whole command once the flags are read and the job joined: 0, a stop signal's 128 + n, or
// -1 with err.
static int train_job(TrainOptions *o, ModelConfig *mc, TrainConfig *tc, Error *err) {
    ModelSource ck = {0};
    char ck_path[4200] = "";
    int reuse_dir = 0;
    LoraConfig lc;
    if (load_start_checkpoint(o, &ck, ck_path, sizeof ck_path, &reuse_dir, err) ||
        settle_configs(o, &ck, ck_path, mc, tc, err) ||
        settle_lora(o, &ck, ck_path, &lc, err)) {
        model_source_free(&ck);
        return -1;
    }
    // a new job of several ranks: one micro-batch per rank unless told otherwise
    if (!o->resume && !o->grad_accum_set) tc->grad_accum = o->comm.size;
    Tokenizer tok = {0};
    TrainingData data;
    int status = open_training_data(o, &ck, mc, &tok, &data, err);
    if (status == 0 && tc->grad_accum % o->comm.size)
        status = error_set(err, "train: %d micro-batches per step (--grad-accum) do not split "
                                "over %d ranks: give a multiple of %d", tc->grad_accum,
                           o->comm.size, o->comm.size);
    if (status == 0 && o->dry_run) {
        print_setup(o, mc, tc, &lc, base_backend(o, &lc, &ck), &tok);
        print_data_summary(o, &data);
    } else if (status == 0) {
        status = train(o, mc, tc, &lc, &ck, ck_path, reuse_dir, &tok, &data, err);
    }
    tokenizer_free(&tok);
    close_training_data(&data);
    model_source_free(&ck);
    return status;
}

int cmd_train(int argc, char **argv) {
    ModelConfig mc;
    TrainConfig tc;
    TrainOptions o;
    int exit_code;
    if (parse_train_flags(argc, argv, &mc, &tc, &o, &exit_code)) return exit_code;
    Error err;
    if (comm_open(&o.comm, o.comm_timeout, &err) ||
        (!o.dry_run && comm_use_backend(&o.comm, o.be, &err)))
        return cli_fail(err.msg);
    // one log and one progress display: rank 0's (errors still come from every rank)
    if (o.comm.rank > 0 && !freopen("/dev/null", "w", stdout)) return cli_fail("/dev/null");
    int status = train_job(&o, &mc, &tc, &err);
    if (status < 0) {
        status = cli_fail(err.msg);
        if (o.comm.size > 1) comm_abort(&o.comm, status);  // the other ranks would wait
    }
    comm_close(&o.comm);
    return status;
}

// dllm eval: checkpoints (or run directories) side by side, one table row each:
//   --data    held-out likelihood in nats/token (MDM: the ELBO bound; AR: exact) and perplexity
//   --sft     -log p(response | prompt) per answer token on prompt/response JSONL
//   --choices multiple-choice accuracy (JSONL items with "choices" and "answer")
//   --exact   exact-match accuracy of generated answers on prompt/response JSONL
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/flags.h"
#include "common/stats.h"
#include "kernels/backend.h"
#include "model/model.h"
#include "eval/exact_match.h"
#include "eval/choices.h"
#include "dataset/data.h"
#include "eval/eval.h"
#include "store/model_source.h"
#include "dataset/sft.h"

typedef struct {
    const char *data, *sft, *choices, *exact, *split, *device, *weights;
    int windows, mc, batch, chat, row_len, left_to_right;
    const char *likelihood;
    float cfg, val_frac;
    uint64_t seed;
} EvalOptions;

static void print_header(const EvalOptions *o) {
    printf("%-28s %-4s %9s %8s", "model", "kind", "params", "step");
    if (o->data) printf(" | %10s %7s %10s %9s %13s", "nats/tok", "+- se", "ppl", "tokens", "windows x mc");
    if (o->sft) printf(" | %12s %7s %9s %13s", "sft nats/tok", "+- se", "tokens", "examples x mc");
    if (o->choices) printf(" | %8s %6s %9s", "accuracy", "+- se", "correct");
    if (o->exact) printf(" | %8s %6s %9s", "exact", "+- se", "correct");
    printf("\n");
}

// A standard error in a 7-wide column; "-" where one window (or example) gives none.
static void print_se(double se) {
    if (isnan(se)) printf(" %7s", "-");
    else printf(" %7.4f", se);
}

// What a likelihood was measured on: "812 x 32", or "64/812 x 32" when --windows cut it.
static void print_scope(const EvalResult *r, int width) {
    char scope[64], of[24] = "";
    if ((size_t)r->windows < r->available) snprintf(of, sizeof of, "/%zu", r->available);
    snprintf(scope, sizeof scope, "%d%s x %d", r->windows, of, r->mc);
    printf(" %*s", width, scope);
}

// An accuracy with its standard error (binomial) and the items it counts: "75.0% 3.1% 150/200".
static void print_accuracy(double accuracy, int correct, int items) {
    printf(" | %7.1f%% %5.1f%% %4d/%-4d", 100.0 * accuracy,
           100.0 * stats_proportion_se(accuracy, items), correct, items);
}

static int eval_data(Model *m, const Tokenizer *t, const EvalOptions *o, Error *err) {
    Dataset ds;
    if (dataset_open(&ds, o->data, strcmp(o->split, "val") == 0 ? o->val_frac : 0.0, err))
        return -1;
    int status = dataset_check(&ds, t, m->cfg.vocab_size, err);
    const TokenData *d = strcmp(o->split, "val") == 0 ? &ds.val : &ds.train;
    EvalResult r;
    if (status == 0 && d->n == 0) status = error_set(err, "%s: no %s tokens", o->data, o->split);
    if (status == 0) status = eval_heldout(m, d, o->windows, o->mc, o->seed, &r, err);
    if (status == 0) {
        printf(" | %10.4f", r.nats_per_token);
        print_se(r.std_error);
        printf(" %s%9.2f %9lld", m->cfg.causal ? " " : "<", r.ppl, (long long)r.tokens);
        print_scope(&r, 13);
    }
    dataset_close(&ds);
    return status;
}

static int eval_sft_file(Model *m, const Tokenizer *t, const EvalOptions *o, Error *err) {
    SftData d;
    if (sft_load(&d, o->sft, t, o->row_len ? o->row_len : m->cfg.seq_len, err)) return -1;
    EvalResult r;
    int status = eval_sft(m, &d, o->windows, o->mc, o->seed, &r, err);
    if (status == 0) {
        printf(" | %12.4f", r.nats_per_token);
        print_se(r.std_error);
        printf(" %9lld", (long long)r.tokens);
        print_scope(&r, 13);
    }
    sft_free(&d);
    return status;
}

static int eval_one(const char *path, const Backend *be, const EvalOptions *o, Error *err) {
    ModelSource ck;
    char chosen[4200];
    int skipped;
    if (model_source_open(path, HF_WEIGHTS_LATER, &ck, chosen, sizeof chosen, &skipped, err))
        return -1;
    Model m;
    if (model_source_choose_weights(&ck, o->weights, be, err) ||
        model_source_build(&ck, be, o->batch, &m, err)) {
        model_source_free(&ck);
        return -1;
    }
    printf("%-28s %-4s %8.2fM %8lld", path, m.cfg.causal ? "ar" : "mdm", param_count(&m.cfg) / 1e6,
           (long long)ck.header.step);
    fflush(stdout);
    // prompts take the fine-tuning layout when the model was fine-tuned, unless --chat says
    int chat = o->chat >= 0 ? o->chat : ck.header.train.sft, status = 0;
    if (o->row_len > m.cfg.seq_len)
        status = error_set(err, "--row-len %d is longer than the model's seq_len %d", o->row_len,
                           m.cfg.seq_len);
    if (status == 0 && o->data) status = eval_data(&m, &ck.tokenizer, o, err);
    if (status == 0 && o->sft) status = eval_sft_file(&m, &ck.tokenizer, o, err);
    if (status == 0 && o->choices) {
        ChoiceOptions co = {chat, o->mc, o->cfg, o->seed, o->row_len, o->left_to_right};
        ChoiceResult r;
        status = score_choices(&m, &ck.tokenizer, o->choices, &co, &r, err);
        if (status == 0) print_accuracy(r.accuracy, r.correct, r.items);
    }
    if (status == 0 && o->exact) {
        ExactOptions eo = {.chat = chat, .max_items = o->windows};
        ExactResult r;
        status = exact_match(&m, &ck.tokenizer, o->exact, &eo, &r, err);
        if (status == 0) print_accuracy(r.accuracy, r.correct, r.items);
        if (status == 0 && r.items < r.available) printf(" of %d", r.available);
    }
    printf("\n");
    model_free(&m);
    model_source_free(&ck);
    return status;
}

int cmd_eval(int argc, char **argv) {
    const char *models = NULL;
    EvalOptions o = {.split = "val", .device = "auto", .weights = "auto", .likelihood = "elbo", .windows = 0,
                     .mc = 32, .batch = 16, .chat = -1, .val_frac = 0.05f, .seed = 1234};
    Flag flags[] = {
        {"model", FLAG_STRING, &models, "run directories or checkpoints, comma-separated (required)",
         FLAG_FREE, 0},
        {"data", FLAG_STRING, &o.data, "held-out likelihood on shards or a text file",
         FLAG_FREE, 0},
        {"split", FLAG_STRING, &o.split, "val (val shards, or the --val-frac tail) or train",
         FLAG_FREE, 0},
        {"val-frac", FLAG_FLOAT, &o.val_frac, "held-out tail of data without val shards",
         FLAG_FREE, 0},
        {"windows", FLAG_INT, &o.windows,
         "score only this many windows (spread evenly) or the first this many SFT / exact "
         "items; 0: all (the table shows N/M when cut)", FLAG_FREE, 0},
        {"sft", FLAG_STRING, &o.sft, "prompt/response JSONL: -log p(response | prompt)",
         FLAG_FREE, 0},
        {"choices", FLAG_STRING, &o.choices, "multiple-choice JSONL: accuracy", FLAG_FREE, 0},
        {"exact", FLAG_STRING, &o.exact, "prompt/response JSONL: exact match of greedy answers",
         FLAG_FREE, 0},
        {"chat", FLAG_INT, &o.chat, "choices: 1 SFT layout, 0 plain text (default: by model)",
         FLAG_FREE, 0},
        {"row-len", FLAG_INT, &o.row_len,
         "--sft / SFT-layout --choices: rows of this many tokens, the answer EOS-padded (an MDM "
         "scores the padding too); 0: the model's seq_len, the rows dllm fine-tunes on",
         FLAG_FREE, 0},
        {"mc", FLAG_INT, &o.mc, "mdm: Monte-Carlo mask draws per window / continuation",
         FLAG_FREE, 0},
        {"cfg", FLAG_FLOAT, &o.cfg, "mdm choices: classifier-free guidance scale", FLAG_FREE, 0},
        {"likelihood", FLAG_STRING, &o.likelihood,
         "mdm choices: elbo (LLaDA's Monte-Carlo bound) or left-to-right (each token predicted "
         "with what follows masked: what dllm serve's logprobs and lm-evaluation-harness use)",
         FLAG_FREE, 0},
        {"seed", FLAG_U64, &o.seed, "seeds the mask draws", FLAG_FREE, 0},
        {"batch", FLAG_INT, &o.batch, "rows per forward pass", FLAG_FREE, 0},
        {"device", FLAG_STRING, &o.device,
         "auto (cuda when a GPU is present), cpu, cuda (bf16 activations) or cuda-fp32",
         FLAG_FREE, 0},
        {"weights", FLAG_STRING, &o.weights, WEIGHTS_FLAG_HELP, FLAG_FREE, 0},
    };
    int n_flags = sizeof flags / sizeof flags[0];
    int rc = flags_parse_command(flags, n_flags, argc, argv,
                                 "usage: dllm eval --model A[,B...] [--data D] [--sft F] "
                                 "[--choices F]");
    if (rc) return rc < 0;
    if (!models) return cli_fail("eval: --model is required (see --help)");
    if (!o.data && !o.sft && !o.choices && !o.exact)
        return cli_fail("eval: give --data, --sft, --choices and/or --exact");
    if (strcmp(o.split, "val") != 0 && strcmp(o.split, "train") != 0)
        return cli_fail("eval: --split must be val or train");
    if (o.windows < 0 || o.mc < 1 || o.batch < 1 || o.cfg < 0.0f || o.row_len < 0)
        return cli_fail("eval: --windows and --row-len must be >= 0, --mc and --batch >= 1, "
                        "--cfg >= 0");
    Error err;
    static const char *const likelihoods[] = {"elbo", "left-to-right"};
    o.left_to_right = flags_choice("likelihood", o.likelihood, likelihoods, 2, &err);
    if (o.left_to_right < 0) return cli_fail(err.msg);
    if (o.left_to_right && o.cfg > 0.0f)
        return cli_fail("eval: --cfg goes with the ELBO (--likelihood elbo)");
    const Backend *be = backend_by_name(o.device, &err);
    if (!be) return cli_fail(err.msg);
    char list[8192];
    snprintf(list, sizeof list, "%s", models);
    const char *paths[64];
    int n = flags_split_list(list, paths, 64);
    print_header(&o);
    for (int i = 0; i < n; i++)
        if (eval_one(paths[i], be, &o, &err)) {
            printf("\n");
            return cli_fail(err.msg);
        }
    return 0;
}

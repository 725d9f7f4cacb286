// dllm eval: checkpoints (or run directories) side by side, one table row each:
//   --data    held-out likelihood in nats/token (MDM: the ELBO bound; AR: exact) and perplexity
//   --sft     -log p(response | prompt) per answer token on prompt/response JSONL
//   --choices multiple-choice accuracy (JSONL items with "choices" and "answer")
//   --exact   exact-match accuracy of generated answers on prompt/response JSONL
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/flags.h"
#include "kernels/backend.h"
#include "model/model.h"
#include "train/exact_match.h"
#include "train/checkpoint.h"
#include "train/choices.h"
#include "train/data.h"
#include "train/eval.h"
#include "train/run_dir.h"
#include "train/sft.h"

typedef struct {
    const char *data, *sft, *choices, *exact, *split, *device;
    int windows, mc, batch, chat;
    float cfg, val_frac;
    uint64_t seed;
} EvalOptions;

static void print_header(const EvalOptions *o) {
    printf("%-28s %-4s %9s %8s", "model", "kind", "params", "step");
    if (o->data) printf(" | %10s %10s %9s", "nats/tok", "ppl", "tokens");
    if (o->sft) printf(" | %12s %9s", "sft nats/tok", "tokens");
    if (o->choices) printf(" | %8s %9s", "accuracy", "correct");
    if (o->exact) printf(" | %8s %9s", "exact", "correct");
    printf("\n");
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
    if (status == 0)
        printf(" | %10.4f %s%9.2f %9lld", r.nats_per_token, m->cfg.causal ? " " : "<",
               r.ppl, (long long)r.tokens);
    dataset_close(&ds);
    return status;
}

static int eval_sft_file(Model *m, const Tokenizer *t, const EvalOptions *o, Error *err) {
    SftData d;
    if (sft_load(&d, o->sft, t, m->cfg.seq_len, err)) return -1;
    EvalResult r;
    int status = eval_sft(m, &d, o->windows, o->mc, o->seed, &r, err);
    if (status == 0) printf(" | %12.4f %9lld", r.nats_per_token, (long long)r.tokens);
    sft_free(&d);
    return status;
}

static int eval_one(const char *path, const Backend *be, const EvalOptions *o, Error *err) {
    Checkpoint ck;
    char chosen[4200];
    int skipped;
    if (checkpoint_load_latest(path, HF_WEIGHTS_LATER, &ck, chosen, sizeof chosen, &skipped, err))
        return -1;
    Model m;
    if (checkpoint_model(&ck, be, o->batch, &m, err)) {
        checkpoint_free(&ck);
        return -1;
    }
    printf("%-28s %-4s %8.2fM %8lld", path, m.cfg.causal ? "ar" : "mdm", param_count(&m.cfg) / 1e6,
           (long long)ck.header.step);
    fflush(stdout);
    // prompts take the fine-tuning layout when the model was fine-tuned, unless --chat says
    int chat = o->chat >= 0 ? o->chat : ck.header.train.sft, status = 0;
    if (o->data) status = eval_data(&m, &ck.tokenizer, o, err);
    if (status == 0 && o->sft) status = eval_sft_file(&m, &ck.tokenizer, o, err);
    if (status == 0 && o->choices) {
        ChoiceOptions co = {chat, o->mc, o->cfg, o->seed};
        ChoiceResult r;
        status = score_choices(&m, &ck.tokenizer, o->choices, &co, &r, err);
        if (status == 0) printf(" | %7.1f%% %4d/%-4d", 100.0 * r.accuracy, r.correct, r.items);
    }
    if (status == 0 && o->exact) {
        ExactOptions eo = {.chat = chat, .max_items = o->windows};
        ExactResult r;
        status = exact_match(&m, &ck.tokenizer, o->exact, &eo, &r, err);
        if (status == 0) printf(" | %7.1f%% %4d/%-4d", 100.0 * r.accuracy, r.correct, r.items);
    }
    printf("\n");
    model_free(&m);
    checkpoint_free(&ck);
    return status;
}

int cmd_eval(int argc, char **argv) {
    const char *models = NULL;
    EvalOptions o = {.split = "val", .device = "auto", .windows = 64, .mc = 32, .batch = 16,
                     .chat = -1, .val_frac = 0.05f, .seed = 1234};
    Flag flags[] = {
        {"model", FLAG_STRING, &models, "run directories or checkpoints, comma-separated (required)", 0},
        {"data", FLAG_STRING, &o.data, "held-out likelihood on shards or a text file", 0},
        {"split", FLAG_STRING, &o.split, "val (val shards, or the --val-frac tail) or train", 0},
        {"val-frac", FLAG_FLOAT, &o.val_frac, "held-out tail of data without val shards", 0},
        {"windows", FLAG_INT, &o.windows, "windows (or SFT examples) scored, 0: all", 0},
        {"sft", FLAG_STRING, &o.sft, "prompt/response JSONL: -log p(response | prompt)", 0},
        {"choices", FLAG_STRING, &o.choices, "multiple-choice JSONL: accuracy", 0},
        {"exact", FLAG_STRING, &o.exact, "prompt/response JSONL: exact match of greedy answers", 0},
        {"chat", FLAG_INT, &o.chat, "choices: 1 SFT layout, 0 plain text (default: by model)", 0},
        {"mc", FLAG_INT, &o.mc, "mdm: Monte-Carlo mask draws per window / continuation", 0},
        {"cfg", FLAG_FLOAT, &o.cfg, "mdm choices: classifier-free guidance scale", 0},
        {"seed", FLAG_U64, &o.seed, "seeds the mask draws", 0},
        {"batch", FLAG_INT, &o.batch, "rows per forward pass", 0},
        {"device", FLAG_STRING, &o.device,
         "auto (cuda when a GPU is present), cpu, cuda (bf16 activations) or cuda-fp32", 0},
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
    if (o.windows < 0 || o.mc < 1 || o.batch < 1 || o.cfg < 0.0f)
        return cli_fail("eval: --windows must be >= 0, --mc and --batch >= 1, --cfg >= 0");
    Error err;
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

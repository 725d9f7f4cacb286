// dllm train: flags -> model and training configs -> trainer loop -> checkpoint.
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli/commands.h"
#include "cli/flags.h"
#include "kernels/backend.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "train/checkpoint.h"
#include "train/data.h"
#include "train/trainer.h"

static const char *const objective_names[] = {"mdm", "ar"};
static const char *const schedule_names[] = {"cosine", "wsd"};
static const char *const order_names[] = {"random", "sequential"};

// Flags that a checkpoint fixes: giving one together with --resume is an error.
static const char *const fixed_on_resume[] = {
    "objective", "n-layer",  "n-head",       "d-model",  "d-ff",      "seq-len",
    "batch-size", "grad-accum", "warmup",    "lr",       "min-lr",    "schedule",
    "decay-frac", "weight-decay", "beta1",   "beta2",    "adam-eps",  "grad-clip",
    "mask-eps",  "random-length-prob", "seed", "order", "tokenizer",
};

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    const char *data, *tokenizer, *out, *resume, *device, *objective, *schedule, *order;
    int log_every, eval_every, eval_batches, save_every;
    float val_frac;
} TrainOptions;

// Runs the loop from tr->step to tc.steps, logging, evaluating and saving along the way.
static int run_training(Trainer *tr, const TokenData *val, const Tokenizer *t,
                        const TrainOptions *o, Error *err) {
    const TrainConfig *tc = &tr->tc;
    double t0 = now_seconds();
    while (tr->step < tc->steps) {
        double t_step = now_seconds();
        StepStats st = trainer_step(tr);
        double dt = now_seconds() - t_step;
        int64_t s = tr->step;
        if (s % o->log_every == 0 || s == tc->steps || s == 1) {
            double tokens = (double)tc->batch_size * tc->grad_accum * st.seq_len;
            printf("step %6lld/%lld | loss %.4f | lr %.2e | grad norm %.3f | %.1f ms | %.0f tok/s\n",
                   (long long)s, (long long)tc->steps, st.loss, st.lr, st.grad_norm, dt * 1e3,
                   tokens / dt);
            fflush(stdout);
        }
        if (val && o->eval_every > 0 && (s % o->eval_every == 0 || s == tc->steps)) {
            float vl = trainer_eval_loss(tr, val, o->eval_batches, tc->seed);
            printf("step %6lld | val loss %.4f\n", (long long)s, vl);
            fflush(stdout);
        }
        if (o->save_every > 0 && s % o->save_every == 0 && s < tc->steps) {
            if (checkpoint_save(o->out, tr, t, err)) return -1;
            printf("saved %s at step %lld\n", o->out, (long long)s);
        }
    }
    if (checkpoint_save(o->out, tr, t, err)) return -1;
    printf("done: %lld steps in %.1f s, saved %s\n", (long long)tc->steps, now_seconds() - t0,
           o->out);
    return 0;
}

// The run's tokenizer: the checkpoint's on --resume, else --tokenizer, else the one beside
// the shards, else bytes for a text file.
static int load_tokenizer(const TrainOptions *o, const Dataset *ds, Checkpoint *ck,
                          Tokenizer *t, Error *err) {
    if (o->resume) {
        *t = ck->tokenizer;
        memset(&ck->tokenizer, 0, sizeof ck->tokenizer);
        return 0;
    }
    if (o->tokenizer) return tokenizer_load(t, o->tokenizer, err);
    if (ds->tokenizer_path[0]) return tokenizer_load(t, ds->tokenizer_path, err);
    if (ds->text) {
        tokenizer_init_bytes(t);
        return 0;
    }
    return error_set(err, "%s: the shards come with no tokenizer.model: pass --tokenizer",
                     o->data);
}

int cmd_train(int argc, char **argv) {
    ModelConfig mc = model_config_default();
    TrainConfig tc = train_config_default();
    TrainOptions o = {.out = "dllm.ckpt", .device = "auto", .objective = "mdm",
                      .schedule = "cosine", .order = "random", .log_every = 10, .eval_every = 100,
                      .eval_batches = 4, .save_every = 0, .val_frac = 0.05f};
    Flag flags[] = {
        {"data", FLAG_STRING, &o.data,
         "shard directory (dllm prepare, llm.c), one .bin shard, or a text file read as bytes "
         "(required)", 0},
        {"tokenizer", FLAG_STRING, &o.tokenizer,
         "SentencePiece .model or 'bytes' (default: the shard directory's tokenizer.model)", 0},
        {"order", FLAG_STRING, &o.order, "random or sequential windows", 0},
        {"out", FLAG_STRING, &o.out, "checkpoint to write (at the end and every --save-every)", 0},
        {"resume", FLAG_STRING, &o.resume, "continue from this checkpoint (fixes the configs)", 0},
        {"device", FLAG_STRING, &o.device, "auto (cuda when a GPU is present), cpu or cuda", 0},
        {"objective", FLAG_STRING, &o.objective, "mdm (masked diffusion) or ar (baseline)", 0},
        {"n-layer", FLAG_INT, &mc.n_layer, "transformer layers", 0},
        {"n-head", FLAG_INT, &mc.n_head, "attention heads", 0},
        {"d-model", FLAG_INT, &mc.d_model, "model width", 0},
        {"d-ff", FLAG_INT, &mc.d_ff, "SwiGLU hidden width", 0},
        {"seq-len", FLAG_INT, &mc.seq_len, "tokens per training sequence", 0},
        {"batch-size", FLAG_INT, &tc.batch_size, "sequences per micro-batch", 0},
        {"grad-accum", FLAG_INT, &tc.grad_accum, "micro-batches per optimizer step", 0},
        {"steps", FLAG_INT64, &tc.steps, "optimizer steps in the run (may grow on --resume)", 0},
        {"warmup", FLAG_INT64, &tc.warmup_steps, "linear warmup steps", 0},
        {"lr", FLAG_FLOAT, &tc.lr, "peak learning rate", 0},
        {"min-lr", FLAG_FLOAT, &tc.min_lr, "final learning rate", 0},
        {"schedule", FLAG_STRING, &o.schedule, "cosine or wsd (warmup-stable-decay)", 0},
        {"decay-frac", FLAG_FLOAT, &tc.decay_frac, "wsd: fraction of steps spent decaying", 0},
        {"weight-decay", FLAG_FLOAT, &tc.weight_decay, "AdamW decoupled weight decay", 0},
        {"beta1", FLAG_FLOAT, &tc.beta1, "AdamW beta1", 0},
        {"beta2", FLAG_FLOAT, &tc.beta2, "AdamW beta2", 0},
        {"adam-eps", FLAG_FLOAT, &tc.adam_eps, "AdamW epsilon", 0},
        {"grad-clip", FLAG_FLOAT, &tc.grad_clip, "global gradient norm limit (0: off)", 0},
        {"mask-eps", FLAG_FLOAT, &tc.mask_eps, "mdm: t ~ U(mask-eps, 1)", 0},
        {"random-length-prob", FLAG_FLOAT, &tc.random_length_prob,
         "mdm: chance a step trains on a random shorter length (LLaDA: 0.01)", 0},
        {"seed", FLAG_U64, &tc.seed, "seeds init, data order and masking", 0},
        {"val-frac", FLAG_FLOAT, &o.val_frac,
         "tail of the data held out for validation when there are no val shards", 0},
        {"eval-every", FLAG_INT, &o.eval_every, "steps between validation losses (0: never)", 0},
        {"eval-batches", FLAG_INT, &o.eval_batches, "batches per validation loss", 0},
        {"log-every", FLAG_INT, &o.log_every, "steps between log lines", 0},
        {"save-every", FLAG_INT, &o.save_every, "steps between checkpoints (0: only at the end)", 0},
    };
    int n_flags = sizeof flags / sizeof flags[0];
    int rc = flags_parse_command(flags, n_flags, argc, argv,
                                 "usage: dllm train --data FILE [flags]");
    if (rc) return rc < 0;
    Error err;
    if (!o.data) return cli_fail("train: --data FILE is required (see --help)");
    if (o.log_every < 1 || o.eval_batches < 1 || o.eval_every < 0 || o.save_every < 0)
        return cli_fail("train: --log-every and --eval-batches must be >= 1, --eval-every and "
                    "--save-every >= 0");
    if (!(o.val_frac >= 0.0f && o.val_frac < 1.0f)) return cli_fail("train: --val-frac must be in [0, 1)");

    const Backend *be = backend_by_name(o.device, &err);
    if (!be) return cli_fail(err.msg);

    Checkpoint ck = {0};
    if (o.resume) {
        for (size_t i = 0; i < sizeof fixed_on_resume / sizeof fixed_on_resume[0]; i++)
            if (flags_find(flags, n_flags, fixed_on_resume[i])->set) {
                snprintf(err.msg, sizeof err.msg,
                         "train: --%s cannot be combined with --resume (the checkpoint fixes it)",
                         fixed_on_resume[i]);
                return cli_fail(err.msg);
            }
        if (checkpoint_load(o.resume, &ck, &err)) return cli_fail(err.msg);
        int64_t steps = tc.steps;
        mc = ck.header.model;
        tc = ck.header.train;
        if (flags_find(flags, n_flags, "steps")->set) tc.steps = steps;
    } else {
        int obj = flags_choice("objective", o.objective, objective_names, 2, &err);
        int sched = flags_choice("schedule", o.schedule, schedule_names, 2, &err);
        int order = flags_choice("order", o.order, order_names, 2, &err);
        if (obj < 0 || sched < 0 || order < 0) return cli_fail(err.msg);
        tc.objective = (Objective)obj;
        tc.schedule = (LrSchedule)sched;
        tc.order = (DataOrder)order;
        mc.causal = tc.objective == OBJECTIVE_AR;
    }

    Dataset ds;
    if (dataset_open(&ds, o.data, o.val_frac, &err)) {
        checkpoint_free(&ck);
        return cli_fail(err.msg);
    }
    Tokenizer tok = {0};
    int status = load_tokenizer(&o, &ds, &ck, &tok, &err);
    if (status == 0 && !o.resume) {
        mc.vocab_size = tok.vocab_size;
        mc.mask_token_id = tok.mask_id;
    }
    if (status == 0) status = dataset_check(&ds, &tok, mc.vocab_size, &err);
    int eval = o.eval_every > 0 && ds.val.n > 0;
    if (status == 0 && eval && ds.val.n < (size_t)mc.seq_len + 1)
        status = error_set(&err, "%s: %zu validation tokens, fewer than seq_len + 1 = %d "
                                 "(raise --val-frac, or --eval-every 0)",
                           o.data, ds.val.n, mc.seq_len + 1);
    Model model;
    Trainer tr;
    if (status == 0) status = model_create(&model, &mc, be, tc.batch_size, &err);
    if (status == 0) {
        status = trainer_init(&tr, &model, &tc, &ds.train, &err);
        if (status == 0) {
            if (o.resume) {
                checkpoint_restore(&ck, &tr);
                printf("resumed %s at step %lld\n", o.resume, (long long)tr.step);
            } else {
                model_init_params(&model, seed_for_init(tc.seed));
            }
            model_config_print(stdout, &mc);
            train_config_print(stdout, &tc);
            printf("params: %zu | device %s | data %s: %zu train + %zu val tokens | "
                   "tokenizer: %s, %d tokens\n", model.n_params, be->name, o.data, ds.train.n,
                   ds.val.n, tok.kind == TOKENIZER_BYTES ? "bytes" : "sentencepiece",
                   tok.vocab_size);
            status = run_training(&tr, eval ? &ds.val : NULL, &tok, &o, &err) == 0 ? 0 : 1;
            trainer_free(&tr);
        }
        model_free(&model);
    }
    if (status) cli_fail(err.msg);
    tokenizer_free(&tok);
    dataset_close(&ds);
    checkpoint_free(&ck);
    return status ? 1 : 0;
}

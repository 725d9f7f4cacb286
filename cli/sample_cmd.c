// dllm sample: checkpoint + prompt -> generated text, by parallel denoising (MDM) or token by
// token (AR); --show animates the denoising, --trace records every step as JSON lines.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/flags.h"
#include "common/json.h"
#include "common/progress.h"
#include "kernels/backend.h"
#include "model/model.h"
#include "sampler/pick.h"
#include "sampler/sampler.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"
#include "store/model_source.h"

static const char *const remasking_names[] = {"low_confidence", "random"};
static const char *const cache_names[] = {"none", "prefix", "dual", "auto"};

typedef struct {
    FILE *trace;      // JSON lines, or NULL
    int show;         // draw a frame per step
    int tty;          // frames redraw in place on a terminal
    const Tokenizer *tokenizer;
} Observer;

// Prompts as token ids.
typedef struct {
    int chat;  // laid out as an SFT prompt (tokenizer/chat.h)
    int n;
    int **ids;
    int *lens;
} Prompts;

static void prompts_free(Prompts *p) {
    for (int i = 0; i < p->n; i++) free(p->ids[i]);
    free(p->ids);
    free(p->lens);
    memset(p, 0, sizeof *p);
}

static int prompts_add(Prompts *p, const Tokenizer *t, const char *text, size_t len, Error *err) {
    int **ids = realloc(p->ids, (size_t)(p->n + 1) * sizeof *p->ids);
    if (ids) p->ids = ids;
    int *lens = realloc(p->lens, (size_t)(p->n + 1) * sizeof *p->lens);
    if (lens) p->lens = lens;
    if (!ids || !lens) return error_set(err, "out of memory for %d prompts", p->n + 1);
    size_t n;
    if (encode_prompt(t, p->chat, text, len, &p->ids[p->n], &n, err)) return -1;
    p->lens[p->n++] = (int)n;
    return 0;
}

static int one_prompt(const char *text, const Tokenizer *t, int chat, Prompts *p, Error *err) {
    memset(p, 0, sizeof *p);
    p->chat = chat;
    return prompts_add(p, t, text, strlen(text), err);
}

// One prompt per non-empty line.
static int read_prompt_file(const char *path, const Tokenizer *t, int chat, Prompts *p,
                            Error *err) {
    memset(p, 0, sizeof *p);
    p->chat = chat;
    FILE *f = fopen(path, "r");
    if (!f) return error_set(err, "%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) > 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
        if (len > 0 && prompts_add(p, t, line, (size_t)len, err)) break;
    }
    free(line);
    fclose(f);
    if (len > 0) return -1;  // stopped on an encoding error
    if (p->n == 0) return error_set(err, "%s: no prompts (one per line)", path);
    return 0;
}

static void write_trace(FILE *f, const Tokenizer *tok, const StepEvent *ev) {
    fprintf(f, "{\"step\": %d, \"block\": %d, \"committed\": [", ev->step, ev->block);
    int first = 1;
    char piece[TOKENIZER_PIECE_MAX];
    for (int b = 0; b < ev->B; b++)
        for (int t = 0; t < ev->T; t++) {
            size_t i = (size_t)b * ev->T + t;
            if (!ev->committed[i]) continue;
            fprintf(f, "%s{\"seq\": %d, \"pos\": %d, \"token\": %d, \"text\": ", first ? "" : ", ",
                    b, t, ev->tokens[i]);
            size_t len;
            const char *text = tokenizer_piece_len(tok, ev->tokens[i], piece, &len);
            json_write_bytes(f, text, len);
            fprintf(f, ", \"confidence\": ");
            json_write_number(f, "%.4f", ev->confidence[i]);
            fputc('}', f);
            first = 0;
        }
    fprintf(f, "]");
    if (ev->drafted >= 0)
        fprintf(f, ", \"drafted\": %ld, \"accepted\": %ld", ev->drafted, ev->accepted);
    fprintf(f, "}\n");
}

// One frame: every sequence with masked positions as a shaded block and this step's tokens
// in reverse video.
static void draw_frame(const Observer *o, const StepEvent *ev) {
    if (o->tty) printf("\033[H\033[2J");
    printf("step %d (block %d)\n", ev->step + 1, ev->block);
    char piece[TOKENIZER_PIECE_MAX];
    for (int b = 0; b < ev->B; b++) {
        for (int t = 0; t < ev->T; t++) {
            size_t i = (size_t)b * ev->T + t;
            int token = ev->tokens[i];
            if (token == o->tokenizer->mask_id) {
                fputs(o->tty ? "\xe2\x96\x91" : "_", stdout);  // U+2591 light shade
                continue;
            }
            const char *text = tokenizer_piece(o->tokenizer, token, piece);
            if (strcmp(text, "\n") == 0) text = "\xe2\x86\xb5";  // U+21B5, keeps the frame on one line
            if (ev->committed[i] && o->tty) printf("\033[7m%s\033[0m", text);
            else if (ev->committed[i]) printf("[%s]", text);
            else fputs(text, stdout);
        }
        printf("\n");
    }
    fflush(stdout);
    if (o->tty) nanosleep(&(struct timespec){0, 60 * 1000000L}, NULL);
}

static int observe(void *user, const StepEvent *ev) {
    Observer *o = user;
    if (o->trace) write_trace(o->trace, o->tokenizer, ev);
    if (o->show) draw_frame(o, ev);
    return 0;
}

// What the command line asks for.
typedef struct {
    SamplerConfig sc;
    const char *model_path, *draft_path, *prompt, *prompt_file, *trace_path, *weights;
    const Backend *be;
    SamplerKind sampler;  // --draft makes an ar one speculative
    int batch, show, chat, dry_run, max_length;
} SampleOptions;

// Parses and checks the flags: 0, or -1 with the command's exit code in *exit_code (0 after
// --help, else 1 with the error printed).
static int parse_sample_flags(int argc, char **argv, SampleOptions *o, int *exit_code) {
    const char *device = "auto", *sampler = "auto", *remasking = "low_confidence",
               *cache = "auto";
    *o = (SampleOptions){.sc = sampler_config_default(), .prompt = "", .batch = 1, .chat = -1,
                         .weights = "auto"};
    SamplerConfig *sc = &o->sc;
    Flag flags[] = {
        {"model", FLAG_STRING, &o->model_path,
         "a run directory (its newest checkpoint) or a .ckpt file (required)", FLAG_FREE, 0},
        {"prompt", FLAG_STRING, &o->prompt, "text the generation continues", FLAG_FREE, 0},
        {"chat", FLAG_INT, &o->chat,
         "1: lay prompts out as in fine-tuning (BOS <|prompt|> text <|response|>, or the "
         "tokenizer's chat template), 0: plain text (default: 1 for fine-tuned checkpoints)",
         FLAG_FREE, 0},
        {"prompt-file", FLAG_STRING, &o->prompt_file,
         "one prompt per line, all generated together (instead of --prompt)", FLAG_FREE, 0},
        {"device", FLAG_STRING, &device,
         "auto (cuda when a GPU is present), cpu, cuda (bf16 activations) or cuda-fp32",
         FLAG_FREE, 0},
        {"sampler", FLAG_STRING, &sampler, "auto (by the checkpoint), llada or ar", FLAG_FREE, 0},
        {"weights", FLAG_STRING, &o->weights, WEIGHTS_FLAG_HELP, FLAG_FREE, 0},
        {"gen-length", FLAG_INT, &sc->gen_length,
         "tokens to generate (0: the rest of the context, as one block, a token per step); "
         "block diffusion: the most it generates, stopping at EOS", FLAG_FREE, 0},
        {"max-length", FLAG_INT, &o->max_length,
         "block diffusion: generate up to this many tokens, block by block, stopping at EOS "
         "(--gen-length by another name)", FLAG_FREE, 0},
        {"block-length", FLAG_INT, &sc->block_length,
         "llada: tokens per block (divides gen-length); a block diffusion model has its own",
         FLAG_FREE, 0},
        {"steps", FLAG_INT, &sc->steps, "llada: denoising steps over all blocks", FLAG_FREE, 0},
        {"remasking", FLAG_STRING, &remasking, "llada: low_confidence or random", FLAG_FREE, 0},
        {"cfg", FLAG_FLOAT, &sc->cfg_scale, "llada: classifier-free guidance scale (0: off)",
         FLAG_FREE, 0},
        {"threshold", FLAG_FLOAT, &sc->threshold,
         "llada: commit every token at or above this confidence (0: LLaDA's schedule)",
         FLAG_FREE, 0},
        {"factor", FLAG_FLOAT, &sc->factor,
         "llada: Fast-dLLM's dynamic threshold 1 - factor/(n+1) for the n-th token (0: off)",
         FLAG_FREE, 0},
        {"allow-mask", FLAG_INT, &sc->allow_mask,
         "llada: 1 = exact LLaDA: [MASK] may be picked, confidence over the whole vocabulary "
         "(0: banned, docs/sampling.md)", FLAG_FREE, 0},
        {"cache", FLAG_STRING, &cache,
         "llada: none, prefix or dual block cache (Fast-dLLM's approximations); block diffusion: "
         "none, or its exact cache of committed blocks; auto: llada none, block diffusion cached",
         FLAG_FREE, 0},
        {"draft", FLAG_STRING, &o->draft_path,
         "speculative decoding of an AR model: a smaller AR, MDM or block diffusion model (the "
         "same tokenizer) drafts, the --model verifies; the output is the --model's own",
         FLAG_FREE, 0},
        {"draft-length", FLAG_INT, &sc->draft_length, "--draft: tokens drafted per verify",
         FLAG_FREE, 0},
        {"draft-steps", FLAG_INT, &sc->draft_steps,
         "--draft with a diffusion drafter: denoising passes per draft", FLAG_FREE, 0},
        {"draft-context", FLAG_INT, &sc->draft_context,
         "--draft with a diffusion drafter: it sees each row's last this many tokens (0: all; "
         "it recomputes them every pass)", FLAG_FREE, 0},
        {"temperature", FLAG_FLOAT, &sc->temperature, "0 is greedy", FLAG_FREE, 0},
        {"top-k", FLAG_INT, &sc->top_k, "ar: keep the k most likely tokens (0: all)", FLAG_FREE, 0},
        {"top-p", FLAG_FLOAT, &sc->top_p, "ar: nucleus probability (1: all)", FLAG_FREE, 0},
        {"seed", FLAG_U64, &sc->seed, "sampling seed", FLAG_FREE, 0},
        {"batch", FLAG_INT, &o->batch, "samples per prompt; all rows share each forward pass",
         FLAG_FREE, 0},
        {"show", FLAG_INT, &o->show, "1: draw the sequence after every step", FLAG_FREE, 0},
        {"trace", FLAG_STRING, &o->trace_path, "write one JSON line per step to this file",
         FLAG_FREE, 0},
        {"dry-run", FLAG_INT, &o->dry_run,
         "1: print the model and the memory plan for these prompts and settings, allocate "
         "nothing (a Hugging Face directory's weights are not read)", FLAG_FREE, 0},
    };
    int rc = flags_parse_command(flags, sizeof flags / sizeof flags[0], argc, argv,
                                 "usage: dllm sample --model CKPT --prompt TEXT [flags]");
    if (rc) {
        *exit_code = rc < 0;
        return -1;
    }
    Error err;
    *exit_code = 1;
    o->sampler = (SamplerKind)flags_choice("sampler", sampler, SAMPLER_NAMES, 3, &err);
    int remask = flags_choice("remasking", remasking, remasking_names, 2, &err);
    int cache_mode = flags_choice("cache", cache, cache_names, 4, &err);
    int gen_set = flags_find(flags, sizeof flags / sizeof flags[0], "gen-length")->set;
    if (o->max_length != 0 && (gen_set || o->max_length < 0)) {
        error_set(&err, "sample: give --max-length (> 0) or --gen-length, not both");
    } else if (!o->model_path) {
        error_set(&err, "sample: --model CKPT is required (see --help)");
    } else if ((int)o->sampler >= 0 && remask >= 0 && cache_mode >= 0) {
        sc->remasking = (Remasking)remask;
        sc->cache = (CacheMode)cache_mode;
        if (o->max_length > 0) sc->gen_length = o->max_length;
        if (o->batch < 1) error_set(&err, "sample: --batch must be >= 1");
        else if ((o->be = backend_by_name(device, &err))) return 0;
    }
    cli_fail(err.msg);
    return -1;
}

// The model, sized for its rows, which depend on the prompts, which need the checkpoint's
// tokenizer: the tokenizer is read first, then the prompts, then the model is made.
// The context the rows need: the longest prompt and the generation (the model's whole
// context for --gen-length 0). The model is sized for it, not for its trained maximum.
static int context_needed(const SampleOptions *o, const Prompts *pr, int seq_len, int block) {
    int P = max_prompt_length(pr->lens, pr->n);
    int T = o->sc.gen_length > 0 ? P + o->sc.gen_length : seq_len;
    if (block > 0) T = (T + block - 1) / block * block;  // whole blocks (seq_len is some)
    return T < seq_len ? T : seq_len;
}

// --dry-run: the model and what sampling would allocate (weights kept as model_source_build
// keeps them).
static void print_plan(const SampleOptions *o, const ModelSource *ck, int rows) {
    const ModelConfig *c = &ck->header.model;
    const Backend *be = model_source_backend(ck, o->be);
    ModelMode mode = model_source_mode(ck, o->be);
    model_config_print(stdout, c);
    printf("sampling: %d rows of %d tokens, %s weights, %s activations\n", rows, c->seq_len,
           mode == MODEL_PACKED ? "packed ternary"
           : mode == MODEL_Q8   ? "8-bit"
           : mode == MODEL_Q4   ? "4-bit"
           : be == backend_cpu_bf16_pairs() ? "bf16 (bf16 projection inputs)"
           : be->weight_bytes == 2 ? "bf16"
                                   : "fp32",
           be->act_bytes == 2 ? "bf16" : "fp32");
    MemoryPlan plan = model_memory_plan(c, be, rows, mode);
    memory_plan_print(stdout, &plan, be->name);
}

// The checkpoint at path: the model's or the drafter's (a Hugging Face directory without its
// weights for a dry run).
static int load_checkpoint(const SampleOptions *o, const char *path, ModelSource *ck,
                           Error *err) {
    char chosen[4200];
    int skipped;
    return model_source_open(path, o->dry_run ? HF_CONFIG_ONLY : HF_WEIGHTS_LATER,
                             ck, chosen, sizeof chosen, &skipped, err);
}

static int load_model_and_prompts(SampleOptions *o, Model *m, Tokenizer *tok, Prompts *pr,
                                  Error *err) {
    ModelSource ck;
    if (load_checkpoint(o, o->model_path, &ck, err)) return -1;
    if (model_source_choose_weights(&ck, o->weights, o->be, err)) {
        model_source_free(&ck);
        return -1;
    }
    *tok = ck.tokenizer;
    memset(&ck.tokenizer, 0, sizeof ck.tokenizer);
    if (o->chat < 0) o->chat = ck.header.train.sft;
    int rc = o->prompt_file ? read_prompt_file(o->prompt_file, tok, o->chat, pr, err)
                            : one_prompt(o->prompt, tok, o->chat, pr, err);
    int n_rows = pr->n * o->batch, rows = o->sc.cfg_scale > 0.0f ? 2 * n_rows : n_rows;
    if (rc == 0)
        ck.header.model.seq_len =
            context_needed(o, pr, ck.header.model.seq_len, ck.header.model.block_size);
    if (rc == 0 && o->dry_run) print_plan(o, &ck, rows);
    else if (rc == 0) rc = model_source_build(&ck, o->be, rows, m, err);
    model_source_free(&ck);
    if (rc || o->dry_run) {
        prompts_free(pr);
        tokenizer_free(tok);
        return rc ? -1 : 1;
    }
    o->sc.eos_id = tok->eos_id;
    if (o->sampler == SAMPLER_AUTO) o->sampler = sampler_for_model(m);
    if (o->draft_path && o->sampler != SAMPLER_AR) {
        model_free(m);
        prompts_free(pr);
        tokenizer_free(tok);
        return error_set(err, "--draft: speculative decoding needs an AR --model to verify; "
                         "%s is a diffusion model", o->model_path);
    }
    if (o->draft_path) o->sampler = SAMPLER_SPECULATIVE;
    return 0;
}

// The drafter for --draft, sized like the target for the same rows.
static int load_draft(const SampleOptions *o, const Prompts *pr, Model *draft, Error *err) {
    ModelSource ck;
    if (load_checkpoint(o, o->draft_path, &ck, err)) return -1;
    ck.header.model.seq_len =
        context_needed(o, pr, ck.header.model.seq_len, ck.header.model.block_size);
    int rc = model_source_build(&ck, o->be, pr->n * o->batch, draft, err);
    model_source_free(&ck);
    return rc;
}

// Every prompt `batch` times, and room for the generated rows.
typedef struct {
    int n, P, T;
    const int **prompts;
    int *lens, *out, *lengths;
} Rows;

static void rows_free(Rows *r) {
    free(r->prompts), free(r->lens), free(r->out), free(r->lengths);
}

static int rows_make(Rows *r, const Prompts *pr, int batch, SamplerConfig *sc, int seq_len,
                     Error *err) {
    memset(r, 0, sizeof *r);
    r->n = pr->n * batch;
    r->prompts = malloc((size_t)r->n * sizeof *r->prompts);
    r->lens = malloc((size_t)r->n * sizeof(int));
    if (!r->prompts || !r->lens) return error_set(err, "out of memory for %d rows", r->n);
    for (int i = 0; i < r->n; i++) {
        r->prompts[i] = pr->ids[i / batch];
        r->lens[i] = pr->lens[i / batch];
    }
    r->P = max_prompt_length(r->lens, r->n);
    if (sc->gen_length == 0) {  // the rest of the context, in one block, a token per step
        sc->gen_length = seq_len - r->P > 0 ? seq_len - r->P : 1;
        sc->block_length = sc->steps = sc->gen_length;
    }
    r->T = r->P + sc->gen_length;
    r->out = malloc((size_t)r->n * r->T * sizeof(int));
    r->lengths = malloc((size_t)r->n * sizeof(int));
    if (!r->out || !r->lengths) return error_set(err, "out of memory for %d rows", r->n);
    return 0;
}

// Generates the rows, writing the trace (if asked) through a temporary file.
static int generate(const SampleOptions *o, Model *m, Model *draft, const Tokenizer *tok,
                    Rows *r, SampleStats *st, Error *err) {
    char tmp_path[4096] = "";
    Observer obs = {NULL, o->show, isatty(STDOUT_FILENO), tok};
    if (o->trace_path) {
        snprintf(tmp_path, sizeof tmp_path, "%s.tmp", o->trace_path);
        obs.trace = fopen(tmp_path, "w");
        if (!obs.trace) return error_set(err, "%s: %s", tmp_path, strerror(errno));
    }
    StepCallback cb = (o->show || obs.trace) ? observe : NULL;
    int rc = sampler_run(o->sampler, m, draft, &o->sc, r->prompts, r->lens, r->n, r->out,
                         r->lengths, st, cb, &obs, err);
    if (rc && strstr(err->msg, PICK_NOT_FINITE)) {  // name the model: which file is broken
        Error why = *err;
        const char *path = strstr(why.msg, "draft model") ? o->draft_path : o->model_path;
        error_set(err, "%s: %s", path, why.msg);
    }
    if (obs.trace) {
        int ok = fclose(obs.trace) == 0 && rc == 0;
        if (ok && rename(tmp_path, o->trace_path) != 0)
            rc = error_set(err, "%s: %s", o->trace_path, strerror(errno));
        if (!ok || rc) remove(tmp_path);
    }
    return rc;
}

// Each row's prompt and generated text on stdout; the summary line on stderr.
// Drops, in place, the ids a padded vocabulary has beyond the tokenizer's (released models
// round their embedding up; a model should never pick those rows, an untrained one may);
// returns how many are left.
static size_t drop_untokenizable(int *ids, size_t n, int tokenizer_vocab, long *dropped) {
    size_t kept = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < tokenizer_vocab) ids[kept++] = ids[i];
    *dropped += (long)(n - kept);
    return kept;
}

static int print_samples(const SampleOptions *o, const Tokenizer *tok, const Rows *r,
                         const SampleStats *st, double seconds, Error *err) {
    long generated = 0, dropped = 0;
    for (int i = 0; i < r->n; i++) {
        if (r->n > 1) printf("--- prompt %d, sample %d\n", i / o->batch, i % o->batch);
        char *text;
        int *row = r->out + (size_t)i * r->T + (r->P - r->lens[i]);
        size_t n = drop_untokenizable(row, (size_t)(r->lens[i] + r->lengths[i]),
                                      tok->vocab_size, &dropped);
        if (tokenizer_decode(tok, row, n, &text, err)) return -1;
        printf("%s\n", text);
        free(text);
        generated += r->lengths[i];
    }
    fflush(stdout);
    if (dropped)
        fprintf(stderr, "note: %ld generated ids past the tokenizer's %d tokens (the model's "
                "padded vocabulary) were left out of the text\n", dropped, tok->vocab_size);
    if (o->sampler == SAMPLER_SPECULATIVE) {
        fprintf(stderr,
                "speculative sampler: %d target passes, %d draft passes, %ld tokens generated "
                "in %d sequences, acceptance length %.2f (of %d drafted + 1), target "
                "passes/token %.3f, draft passes/token %.3f, %.0f tokens/s, %.3f s\n",
                st->nfe, st->draft_nfe, generated, r->n,
                st->verified_rows ? (double)(st->accepted + st->verified_rows) / st->verified_rows
                                  : 0.0,
                o->sc.draft_length, nfe_per_token(st->nfe, r->n, generated),
                nfe_per_token(st->draft_nfe, r->n, generated),
                seconds > 0.0 ? generated / seconds : 0.0, seconds);
        return 0;
    }
    fprintf(stderr,
            "%s sampler: %d steps, %d forward passes, %ld tokens generated in %d sequences, "
            "NFE/token %.3f, %.3f s\n",
            SAMPLER_NAMES[o->sampler], st->steps, st->nfe, generated, r->n,
            nfe_per_token(st->nfe, r->n, generated), seconds);
    return 0;
}

int cmd_sample(int argc, char **argv) {
    SampleOptions o;
    int exit_code;
    if (parse_sample_flags(argc, argv, &o, &exit_code)) return exit_code;
    Error err;
    Model m;
    Tokenizer tok;
    Prompts pr = {0};
    int loaded = load_model_and_prompts(&o, &m, &tok, &pr, &err);
    if (loaded) return loaded < 0 ? cli_fail(err.msg) : 0;  // 1: the dry run is done
    Rows rows;
    SampleStats st;
    Model draft = {0};
    int rc = rows_make(&rows, &pr, o.batch, &o.sc, m.cfg.seq_len, &err);
    if (rc == 0 && o.sampler == SAMPLER_SPECULATIVE) rc = load_draft(&o, &pr, &draft, &err);
    double t0 = now_seconds();
    if (rc == 0) rc = generate(&o, &m, &draft, &tok, &rows, &st, &err);
    if (rc == 0) rc = print_samples(&o, &tok, &rows, &st, now_seconds() - t0, &err);
    rows_free(&rows);
    prompts_free(&pr);
    model_free(&draft);
    model_free(&m);
    tokenizer_free(&tok);
    return rc ? cli_fail(err.msg) : 0;
}

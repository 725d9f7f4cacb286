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
#include "kernels/backend.h"
#include "model/model.h"
#include "sampler/sampler.h"
#include "tokenizer/bytes.h"
#include "train/checkpoint.h"

static const char *const sampler_names[] = {"auto", "llada", "ar"};
static const char *const remasking_names[] = {"low_confidence", "random"};
static const char *const cache_names[] = {"none", "prefix", "dual"};

typedef struct {
    FILE *trace;      // JSON lines, or NULL
    int show;         // draw a frame per step
    int tty;          // frames redraw in place on a terminal
    int prompt_len;
} Observer;

static void print_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static void write_trace(FILE *f, const StepEvent *ev) {
    fprintf(f, "{\"step\": %d, \"block\": %d, \"committed\": [", ev->step, ev->block);
    int first = 1;
    char piece[8];
    for (int b = 0; b < ev->B; b++)
        for (int t = 0; t < ev->T; t++) {
            size_t i = (size_t)b * ev->T + t;
            if (!ev->committed[i]) continue;
            fprintf(f, "%s{\"seq\": %d, \"pos\": %d, \"token\": %d, \"text\": ", first ? "" : ", ",
                    b, t, ev->tokens[i]);
            print_json_string(f, bytes_piece(ev->tokens[i], piece));
            fprintf(f, ", \"confidence\": %.4f}", ev->confidence[i]);
            first = 0;
        }
    fprintf(f, "]}\n");
}

// One frame: every sequence with masked positions as a shaded block and this step's tokens
// in reverse video.
static void draw_frame(const Observer *o, const StepEvent *ev) {
    if (o->tty) printf("\033[H\033[2J");
    printf("step %d (block %d)\n", ev->step + 1, ev->block);
    char piece[8];
    for (int b = 0; b < ev->B; b++) {
        for (int t = 0; t < ev->T; t++) {
            size_t i = (size_t)b * ev->T + t;
            int token = ev->tokens[i];
            if (token == BYTE_MASK) {
                fputs(o->tty ? "\xe2\x96\x91" : "_", stdout);  // U+2591 light shade
                continue;
            }
            const char *text = token == '\n' ? "\xe2\x86\xb5" : bytes_piece(token, piece);
            if (ev->committed[i] && o->tty) printf("\033[7m%s\033[0m", text);
            else if (ev->committed[i]) printf("[%s]", text);
            else fputs(text, stdout);
        }
        printf("\n");
    }
    fflush(stdout);
    if (o->tty) nanosleep(&(struct timespec){0, 60 * 1000000L}, NULL);
}

static void observe(void *user, const StepEvent *ev) {
    Observer *o = user;
    if (o->trace) write_trace(o->trace, ev);
    if (o->show) draw_frame(o, ev);
}

static int fail(const char *msg) {
    fprintf(stderr, "dllm: %s\n", msg);
    return 1;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int cmd_sample(int argc, char **argv) {
    SamplerConfig sc = sampler_config_default();
    sc.eos_id = BYTE_EOS;
    const char *model_path = NULL, *prompt = "", *device = "cpu", *sampler = "auto",
               *remasking = "low_confidence", *cache = "none", *trace_path = NULL;
    int batch = 1, show = 0;
    Flag flags[] = {
        {"model", FLAG_STRING, &model_path, "checkpoint written by dllm train (required)", 0},
        {"prompt", FLAG_STRING, &prompt, "text the generation continues", 0},
        {"device", FLAG_STRING, &device, "backend: cpu or cuda", 0},
        {"sampler", FLAG_STRING, &sampler, "auto (by the checkpoint), llada or ar", 0},
        {"gen-length", FLAG_INT, &sc.gen_length, "tokens to generate", 0},
        {"block-length", FLAG_INT, &sc.block_length, "llada: tokens per block (divides gen-length)", 0},
        {"steps", FLAG_INT, &sc.steps, "llada: denoising steps over all blocks", 0},
        {"remasking", FLAG_STRING, &remasking, "llada: low_confidence or random", 0},
        {"cfg", FLAG_FLOAT, &sc.cfg_scale, "llada: classifier-free guidance scale (0: off)", 0},
        {"threshold", FLAG_FLOAT, &sc.threshold,
         "llada: commit every token at or above this confidence (0: LLaDA's schedule)", 0},
        {"cache", FLAG_STRING, &cache, "llada: none, prefix or dual block cache", 0},
        {"temperature", FLAG_FLOAT, &sc.temperature, "0 is greedy", 0},
        {"top-k", FLAG_INT, &sc.top_k, "ar: keep the k most likely tokens (0: all)", 0},
        {"top-p", FLAG_FLOAT, &sc.top_p, "ar: nucleus probability (1: all)", 0},
        {"seed", FLAG_U64, &sc.seed, "sampling seed", 0},
        {"batch", FLAG_INT, &batch, "samples generated together, one forward pass per step", 0},
        {"show", FLAG_INT, &show, "1: draw the sequence after every step", 0},
        {"trace", FLAG_STRING, &trace_path, "write one JSON line per step to this file", 0},
    };
    int n_flags = sizeof flags / sizeof flags[0];
    Error err;
    int rc = flags_parse(flags, n_flags, argc, argv, &err);
    if (rc == 1) {
        flags_print_help(stdout, "usage: dllm sample --model CKPT --prompt TEXT [flags]", flags,
                         n_flags);
        return 0;
    }
    if (rc < 0) return fail(err.msg);
    if (!model_path) return fail("sample: --model CKPT is required (see --help)");
    int which = flags_choice("sampler", sampler, sampler_names, 3, &err);
    int remask = flags_choice("remasking", remasking, remasking_names, 2, &err);
    int cache_mode = flags_choice("cache", cache, cache_names, 3, &err);
    if (which < 0 || remask < 0 || cache_mode < 0) return fail(err.msg);
    sc.remasking = (Remasking)remask;
    sc.cache = (CacheMode)cache_mode;
    if (batch < 1) return fail("sample: --batch must be >= 1");
    const Backend *be = backend_by_name(device, &err);
    if (!be) return fail(err.msg);

    Model m;
    int rows = sc.cfg_scale > 0.0f ? 2 * batch : batch;
    if (checkpoint_load_model(model_path, be, rows, &m, &err)) return fail(err.msg);
    if (m.cfg.vocab_size != BYTE_VOCAB_SIZE) {
        snprintf(err.msg, sizeof err.msg, "%s: vocabulary of %d tokens, not the byte tokenizer's %d",
                 model_path, m.cfg.vocab_size, BYTE_VOCAB_SIZE);
        model_free(&m);
        return fail(err.msg);
    }
    if (which == 0) which = m.cfg.causal ? 2 : 1;

    int P = (int)strlen(prompt), T = P + sc.gen_length;
    int *prompt_ids = malloc((size_t)(P ? P : 1) * sizeof(int));
    int *out = malloc((size_t)batch * (T > 0 ? T : 1) * sizeof(int));
    int *lengths = malloc((size_t)batch * sizeof(int));
    bytes_encode((const unsigned char *)prompt, (size_t)P, prompt_ids);

    char tmp_path[4096] = "";
    Observer obs = {NULL, show, isatty(STDOUT_FILENO), P};
    if (trace_path) {
        snprintf(tmp_path, sizeof tmp_path, "%s.tmp", trace_path);
        obs.trace = fopen(tmp_path, "w");
        if (!obs.trace) {
            snprintf(err.msg, sizeof err.msg, "%s: %s", tmp_path, strerror(errno));
            free(prompt_ids), free(out), free(lengths), model_free(&m);
            return fail(err.msg);
        }
    }
    SampleStats st;
    double t0 = now_seconds();
    rc = (which == 1 ? llada_generate : ar_generate)(&m, &sc, prompt_ids, P, batch, out, lengths,
                                                     &st, (show || obs.trace) ? observe : NULL,
                                                     &obs, &err);
    double dt = now_seconds() - t0;
    if (obs.trace) {
        int ok = fclose(obs.trace) == 0 && rc == 0;
        if (ok && rename(tmp_path, trace_path) != 0) {
            snprintf(err.msg, sizeof err.msg, "%s: %s", trace_path, strerror(errno));
            rc = -1;
        }
        if (!ok || rc) remove(tmp_path);
    }
    if (rc == 0) {
        char piece[8];
        long generated = 0;
        for (int b = 0; b < batch; b++) {
            if (batch > 1) printf("--- sample %d\n", b);
            fputs(prompt, stdout);
            for (int i = 0; i < lengths[b]; i++)
                fputs(bytes_piece(out[(size_t)b * T + P + i], piece), stdout);
            printf("\n");
            generated += lengths[b];
        }
        fflush(stdout);
        fprintf(stderr,
                "%s sampler: %d steps, %d forward passes, %ld tokens generated in %d sequences, "
                "NFE/token %.3f, %.2f s\n",
                which == 1 ? "llada" : "ar", st.steps, st.nfe, generated, batch,
                (double)st.nfe / sc.gen_length, dt);
    }
    free(prompt_ids), free(out), free(lengths);
    model_free(&m);
    return rc ? fail(err.msg) : 0;
}

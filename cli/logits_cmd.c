// dllm logits --model M --tokens "1 2 3,4 5 6" --out F.safetensors: the model's logits for
// given token ids, one forward pass, written as safetensors (`tokens` [B, T] as F32, `logits`
// [B, T, vocab] F32): what comparing dllm with another implementation of the same weights
// needs (scripts/make_hf_model_fixtures.py does it for exported models).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/flags.h"
#include "model/hf_model.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "store/model_source.h"

enum { MAX_ROWS = 64 };

// "1 2 3,4 5 6": rows of equal length, separated by commas.
static int parse_tokens(const char *text, int vocab, int **ids, int *B, int *T, Error *err) {
    int cap = 256, n = 0, rows = 1, row_len = 0, first_len = -1;
    int *out = malloc(cap * sizeof(int));
    for (const char *p = text; out && *p;) {
        char *end;
        if (*p == ',' || *p == ' ') {
            if (*p == ',') {
                if (first_len >= 0 && row_len != first_len) break;
                first_len = row_len, row_len = 0, rows++;
            }
            p++;
            continue;
        }
        long id = strtol(p, &end, 10);
        if (end == p || id < 0 || id >= vocab) {
            free(out);
            return error_set(err, "logits: --tokens: \"%.20s\" is not a token id below %d", p,
                             vocab);
        }
        if (n == cap) {
            int *grown = realloc(out, (cap *= 2) * sizeof(int));
            if (!grown) free(out);
            out = grown;
        }
        if (out) out[n++] = (int)id;
        row_len++;
        p = end;
    }
    if (!out) return error_set(err, "logits: out of memory");
    if (n == 0 || row_len == 0 || (first_len >= 0 && row_len != first_len) || rows > MAX_ROWS) {
        free(out);
        return error_set(err, "logits: --tokens needs 1-%d comma-separated rows of equal length",
                         MAX_ROWS);
    }
    *ids = out, *B = rows, *T = row_len;
    return 0;
}

static int write_logits(const char *model, const char *tokens, const char *out, Error *err) {
    ModelSource ck;
    char chosen[4200];
    int skipped, *ids = NULL, B = 0, T = 0;
    // ids in, logits out: a Hugging Face directory needs no tokenizer here
    snprintf(chosen, sizeof chosen, "%s", model);
    if (hf_model_dir(model) ? model_source_from_hf_untokenized(model, &ck, err)
                            : model_source_open(model, HF_WEIGHTS_LATER, &ck, chosen,
                                                sizeof chosen, &skipped, err))
        return -1;
    int rc = parse_tokens(tokens, ck.header.model.vocab_size, &ids, &B, &T, err);
    if (rc == 0 && T > ck.header.model.seq_len)
        rc = error_set(err, "logits: %d tokens per row, longer than the model's context (%d)", T,
                       ck.header.model.seq_len);
    Model m;
    if (rc == 0) rc = model_source_build(&ck, &backend_cpu, B, &m, err);
    model_source_free(&ck);
    if (rc) {
        free(ids);
        return -1;
    }
    model_forward(&m, ids, B, T);
    size_t n = (size_t)B * T, V = m.cfg.vocab_size;
    float *logits = malloc(n * V * sizeof(float)), *as_float = malloc(n * sizeof(float));
    if (!logits || !as_float) rc = error_set(err, "logits: out of memory");
    if (rc == 0) {
        m.be->act_to_host(logits, m.acts.logits, n * V);
        for (size_t i = 0; i < n; i++) as_float[i] = (float)ids[i];
        SafetensorsOut t[2] = {{"tokens", 2, {B, T}, as_float}, {"logits", 3, {B, T, (int64_t)V}, logits}};
        rc = safetensors_write(out, t, 2, SAFETENSORS_F32, err);
    }
    if (rc == 0) printf("%s: logits [%d, %d, %zu] of %s\n", out, B, T, V, chosen);
    free(logits), free(as_float), free(ids);
    model_free(&m);
    return rc;
}

int cmd_logits(int argc, char **argv) {
    const char *model = NULL, *tokens = NULL, *out = NULL;
    Flag flags[] = {
        {"model", FLAG_STRING, &model, "a run directory, checkpoint or Hugging Face directory",
         FLAG_FREE, 0},
        {"tokens", FLAG_STRING, &tokens, "token ids: \"1 2 3,4 5 6\" (rows of equal length)",
         FLAG_FREE, 0},
        {"out", FLAG_STRING, &out, "safetensors file to write", FLAG_FREE, 0},
    };
    int rc = flags_parse_command(flags, 3, argc, argv,
                                 "usage: dllm logits --model M --tokens IDS --out F.safetensors");
    if (rc) return rc < 0;
    if (!model || !tokens || !out) return cli_fail("logits: --model, --tokens and --out are required");
    Error err;
    return write_logits(model, tokens, out, &err) ? cli_fail(err.msg) : 0;
}

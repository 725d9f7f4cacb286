// dllm prepare: text or JSONL files -> train/validation token shards (tokenizer/prepare.c).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/flags.h"
#include "tokenizer/prepare.h"

int cmd_prepare(int argc, char **argv) {
    const char *tok_path = NULL, *input = NULL;
    PrepareOptions o = {.field = "text", .val_fraction = 0.005, .shard_tokens = 100000000};
    float val_fraction = (float)o.val_fraction;
    Flag flags[] = {
        {"tokenizer", FLAG_STRING, &tok_path,
         "a SentencePiece .model, a tokenizer.json (or a directory with one), or 'bytes' "
         "(required)", FLAG_FREE, 0},
        {"input", FLAG_STRING, &input, "text or .jsonl files, comma-separated (required)",
         FLAG_FREE, 0},
        {"out", FLAG_STRING, &o.out_dir, "output directory (required)", FLAG_FREE, 0},
        {"field", FLAG_STRING, &o.field, "the JSONL field that holds the text", FLAG_FREE, 0},
        {"val-fraction", FLAG_FLOAT, &val_fraction, "fraction of documents held out", FLAG_FREE, 0},
        {"shard-tokens", FLAG_INT64, &o.shard_tokens, "tokens per shard", FLAG_FREE, 0},
    };
    int n_flags = sizeof flags / sizeof flags[0];
    int rc = flags_parse_command(flags, n_flags, argc, argv,
                                 "usage: dllm prepare --tokenizer M --input FILES --out DIR");
    if (rc) return rc < 0;
    if (!tok_path || !input || !o.out_dir)
        return cli_fail("prepare: --tokenizer, --input and --out are required");
    if (!(val_fraction >= 0 && val_fraction < 1) || o.shard_tokens < 1)
        return cli_fail("prepare: --val-fraction must be in [0, 1), --shard-tokens >= 1");
    Error err;
    o.val_fraction = val_fraction;
    o.progress = isatty(STDERR_FILENO);
    Tokenizer t;
    if (tokenizer_load(&t, tok_path, &err)) return cli_fail(err.msg);
    char *list = strdup(input);
    const char *inputs[256];
    o.inputs = inputs;
    o.n_inputs = flags_split_list(list, inputs, 256);
    PrepareReport r;
    rc = prepare_shards(&t, &o, &r, &err);
    if (rc == 0)
        printf("%s: %lld train tokens (%lld documents, %d shards), %lld validation tokens "
               "(%lld documents, %d shards) from %lld bytes\n", o.out_dir,
               (long long)r.tokens[0], (long long)r.docs[0], r.shards[0],
               (long long)r.tokens[1], (long long)r.docs[1], r.shards[1], (long long)r.bytes);
    else
        cli_fail(err.msg);
    free(list);
    tokenizer_free(&t);
    return rc ? 1 : 0;
}

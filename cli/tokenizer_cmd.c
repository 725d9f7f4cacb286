// dllm tokenizer train|encode|decode: train SentencePiece tokenizers with dllm's reserved
// specials; encode and decode with any tokenizer (bytes, .model, Hugging Face tokenizer.json).
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/flags.h"
#include "common/file.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_train.h"

static int tokenizer_train_cmd(int argc, char **argv) {
    const char *input = NULL, *out = NULL, *type = "bpe";
    TokenizerTrainOptions o = {.vocab_size = 4096, .max_sentence_length = 4192,
                               .max_sentences = 2000000, .threads = omp_get_max_threads()};
    int64_t max_sentences = o.max_sentences;
    Flag flags[] = {
        {"input", FLAG_STRING, &input, "text files, comma-separated (required)", FLAG_FREE, 0},
        {"out", FLAG_STRING, &out, "the model file to write (required)", FLAG_FREE, 0},
        {"vocab", FLAG_INT, &o.vocab_size, "vocabulary size, specials included", FLAG_FREE, 0},
        {"type", FLAG_STRING, &type, "bpe|unigram", FLAG_FREE, 0},
        {"max-sentence-length", FLAG_INT, &o.max_sentence_length,
         "longer lines are split at a space (SentencePiece would drop them)", FLAG_FREE, 0},
        {"max-sentences", FLAG_INT64, &max_sentences, "lines sampled for training", FLAG_FREE, 0},
        {"threads", FLAG_INT, &o.threads, "training threads", FLAG_FREE, 0},
    };
    int n_flags = sizeof flags / sizeof flags[0];
    int rc = flags_parse_command(flags, n_flags, argc, argv,
                                 "usage: dllm tokenizer train --input FILES --out M.model");
    if (rc) return rc < 0;
    Error err;
    if (!input || !out) return cli_fail("tokenizer train: --input and --out are required");
    if (o.vocab_size < 16 || o.max_sentence_length < 64 || max_sentences < 1 || o.threads < 1)
        return cli_fail("tokenizer train: needs --vocab >= 16, --max-sentence-length >= 64, "
                    "--max-sentences >= 1, --threads >= 1");
    char *list = strdup(input);
    const char *inputs[256];
    o.inputs = inputs;
    o.n_inputs = flags_split_list(list, inputs, 256);
    o.type = type;
    o.max_sentences = (long)max_sentences;
    TokenizerTrainReport report;
    rc = tokenizer_train(&o, out, &report, &err);
    free(list);
    if (rc) return cli_fail(err.msg);
    if (report.split_lines > 0)
        fprintf(stderr, "warning: %ld of %ld lines were longer than %d bytes and were split "
                        "at spaces (SentencePiece skips such lines silently)\n",
                report.split_lines, report.lines, o.max_sentence_length);
    Tokenizer t;
    if (tokenizer_load(&t, out, &err)) return cli_fail(err.msg);
    printf("wrote %s: %s, %d pieces from %ld lines | [MASK] %d, BOS %d, EOS %d, PAD %d, "
           "<|prompt|> %d, <|response|> %d\n", out, type, t.vocab_size, report.lines, t.mask_id,
           t.bos_id, t.eos_id, t.pad_id, t.prompt_id, t.response_id);
    tokenizer_free(&t);
    return 0;
}

// encode: text (or a file's bytes) -> ids on one line; decode: ids -> text.
static int tokenizer_convert_cmd(int argc, char **argv, int encode) {
    const char *path = NULL, *text = NULL, *file = NULL;
    int special = 0;
    Flag flags[] = {
        {"tokenizer", FLAG_STRING, &path,
         "a .model file, a tokenizer.json (or a directory with one), or 'bytes' (required)",
         FLAG_FREE, 0},
        {encode ? "text" : "ids", FLAG_STRING, &text,
         encode ? "the text to encode" : "space-separated ids (required)", FLAG_FREE, 0},
        {"file", FLAG_STRING, &file, "encode: a file's bytes instead of --text", FLAG_FREE, 0},
        {"special", FLAG_INT, &special,
         "encode: 1 reads special-token strings as those tokens (rendered chat templates)",
         FLAG_FREE, 0},
    };
    int rc = flags_parse_command(flags, encode ? 4 : 2, argc, argv,
                                 encode ? "usage: dllm tokenizer encode --tokenizer M --text S|--file F"
                                        : "usage: dllm tokenizer decode --tokenizer M --ids S");
    if (rc) return rc < 0;
    Error err;
    if (!path || (!text && !file) || (text && file))
        return cli_fail("tokenizer: needs --tokenizer and one of --text/--file (encode) or --ids "
                        "(decode)");
    Tokenizer t;
    if (tokenizer_load(&t, path, &err)) return cli_fail(err.msg);
    int *ids = NULL;
    size_t n = 0, len = text ? strlen(text) : 0;
    char *decoded = NULL, *contents = NULL;
    if (file) rc = file_read_all(file, &contents, &len, &err);
    if (rc == 0 && encode) {
        const char *src = file ? contents : text;
        rc = special ? tokenizer_encode_special(&t, src, len, &ids, &n, &err)
                     : tokenizer_encode(&t, src, len, &ids, &n, &err);
        for (size_t i = 0; rc == 0 && i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        if (rc == 0) printf("\n");
    } else if (rc == 0) {
        ids = malloc((strlen(text) / 2 + 1) * sizeof(int));
        char *end;
        for (const char *p = text; rc == 0; p = end) {
            long v = strtol(p, &end, 10);
            if (end == p) break;
            if (v < 0 || v >= t.vocab_size)
                rc = error_set(&err, "--ids: %ld is outside the vocabulary (0..%d)", v,
                               t.vocab_size - 1);
            ids[n++] = (int)v;
        }
        if (rc == 0) rc = tokenizer_decode(&t, ids, n, &decoded, &err);
        if (rc == 0) printf("%s\n", decoded);
    }
    free(ids);
    free(decoded);
    free(contents);
    tokenizer_free(&t);
    return rc ? cli_fail(err.msg) : 0;
}

int cmd_tokenizer(int argc, char **argv) {
    const char *usage = "usage: dllm tokenizer train|encode|decode [--flag value ...]";
    if (argc < 1) {
        fprintf(stderr, "%s\n", usage);
        return 2;
    }
    if (strcmp(argv[0], "train") == 0) return tokenizer_train_cmd(argc - 1, argv + 1);
    if (strcmp(argv[0], "encode") == 0) return tokenizer_convert_cmd(argc - 1, argv + 1, 1);
    if (strcmp(argv[0], "decode") == 0) return tokenizer_convert_cmd(argc - 1, argv + 1, 0);
    if (strcmp(argv[0], "--help") == 0) {
        printf("%s\n", usage);
        return 0;
    }
    fprintf(stderr, "dllm: tokenizer: unknown subcommand '%s' (%s)\n", argv[0], usage);
    return 2;
}

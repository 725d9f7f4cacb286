// Tokenizer encoding speed (not a test): MB of text per second on one thread, encoding the
// text a paragraph at a time as `dllm prepare` does, for each tokenizer named, side by side in
// one run on the same text (the first is the baseline of the ratio column).
// Usage: tokenizer_bench [--text FILE] [--tokenizers A,B,...] [--min-mb N]
// Defaults: the corpus's KJV (data/corpus/kjv.txt) or else the Genesis fixture, repeated to at
// least --min-mb MB; the Hugging Face fixtures in the LLaMA-3 and Qwen2 layouts, and the
// byte tokenizer.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/flags.h"
#include "common/file.h"
#include "common/progress.h"
#include "tokenizer/tokenizer.h"

// The text, repeated until it holds at least min_bytes.
static char *load_text(const char *path, size_t min_bytes, size_t *len) {
    char *once;
    size_t n;
    Error err;
    if (file_read_all(path, &once, &n, &err) || n == 0) {
        fprintf(stderr, "tokenizer_bench: %s\n", n == 0 ? "empty text" : err.msg);
        exit(1);
    }
    size_t copies = (min_bytes + n - 1) / n;
    char *text = malloc(copies * n + 1);
    for (size_t i = 0; i < copies; i++) memcpy(text + i * n, once, n);
    text[copies * n] = '\0';
    *len = copies * n;
    free(once);
    return text;
}

// Seconds to encode every paragraph (split at blank lines); *tokens counts the ids.
static double encode_paragraphs(const Tokenizer *t, const char *text, size_t len,
                                size_t *tokens) {
    double t0 = now_seconds();
    *tokens = 0;
    for (size_t at = 0; at < len;) {
        const char *end = strstr(text + at, "\n\n");
        size_t n = end ? (size_t)(end - (text + at)) + 2 : len - at;
        int *ids;
        size_t k;
        Error err;
        if (tokenizer_encode(t, text + at, n, &ids, &k, &err)) {
            fprintf(stderr, "tokenizer_bench: %s\n", err.msg);
            exit(1);
        }
        free(ids);
        *tokens += k;
        at += n;
    }
    return now_seconds() - t0;
}

int main(int argc, char **argv) {
    const char *text_path = NULL;
    const char *list = "tests/fixtures/hf/llama3,tests/fixtures/hf/qwen2,bytes";
    int min_mb = 8;
    Flag flags[] = {
        {"text", FLAG_STRING, &text_path, "text to encode (default: data/corpus/kjv.txt, else "
                                          "tests/fixtures/genesis.txt)", FLAG_FREE, 0},
        {"tokenizers", FLAG_STRING, &list, "tokenizers, comma-separated (the first is the "
                                           "baseline)", FLAG_FREE, 0},
        {"min-mb", FLAG_INT, &min_mb, "repeat the text to at least this many MB", FLAG_FREE, 0},
    };
    int rc = flags_parse_command(flags, 3, argc - 1, argv + 1,
                                 "usage: tokenizer_bench [--text F] [--tokenizers A,B] [--min-mb N]");
    if (rc) return rc < 0;
    if (!text_path)
        text_path = file_size("data/corpus/kjv.txt") > 0 ? "data/corpus/kjv.txt"
                                                         : "tests/fixtures/genesis.txt";
    size_t len;
    char *text = load_text(text_path, (size_t)min_mb << 20, &len);
    printf("encoding %.1f MB of %s, one thread, a paragraph at a time\n", len / 1048576.0,
           text_path);
    printf("%-32s %8s %10s %12s %8s\n", "tokenizer", "vocab", "MB/s", "bytes/token", "ratio");
    char *names = strdup(list), *save = NULL;
    double base = 0;
    for (char *name = strtok_r(names, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
        Tokenizer t;
        Error err;
        if (tokenizer_load(&t, name, &err)) {
            fprintf(stderr, "tokenizer_bench: %s\n", err.msg);
            return 1;
        }
        size_t tokens;
        double seconds = encode_paragraphs(&t, text, len, &tokens);
        double mbs = len / 1048576.0 / seconds;
        if (base == 0) base = mbs;
        printf("%-32s %8d %10.2f %12.2f %8.2f\n", name, t.vocab_size, mbs,
               (double)len / (double)tokens, mbs / base);
        tokenizer_free(&t);
    }
    free(names);
    free(text);
    return 0;
}

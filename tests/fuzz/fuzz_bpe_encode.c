// Arbitrary text through the LLaMA-3- and Qwen2-layout fixture tokenizers: never a crash,
// and without a normalizer (LLaMA-3) decode(encode(x)) == x for every byte string, valid
// UTF-8 or not (special-token strings stay text).
#include <string.h>

#include "tests/fuzz/fuzz.h"
#include "tokenizer/tokenizer.h"

static Tokenizer llama3, qwen2;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    Error err;
    if (tokenizer_load(&llama3, "tests/fixtures/hf/llama3", &err) ||
        tokenizer_load(&qwen2, "tests/fixtures/hf/qwen2", &err)) {
        fprintf(stderr, "fuzz_bpe_encode: %s (run from the project root)\n", err.msg);
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    int *ids;
    size_t n;
    char *back;
    Error err;
    if (tokenizer_encode(&llama3, text, size, &ids, &n, &err)) abort();
    if (tokenizer_decode(&llama3, ids, n, &back, &err)) abort();
    // the round trip (decode returns a C string: inputs holding NUL are only encoded)
    if (!memchr(text, 0, size) && (strlen(back) != size || memcmp(back, text, size) != 0))
        abort();
    free(back);
    free(ids);
    for (int specials = 0; specials <= 1; specials++) {
        int rc = specials ? tokenizer_encode_special(&qwen2, text, size, &ids, &n, &err)
                          : tokenizer_encode(&qwen2, text, size, &ids, &n, &err);
        if (rc) abort();
        if (tokenizer_decode(&qwen2, ids, n, &back, &err)) abort();
        free(back);
        free(ids);
    }
    return 0;
}

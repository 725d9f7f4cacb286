// tokenizer.json itself: the JSON, the model, merges, added tokens, normalizer and
// pre-tokenizer regexes (PCRE2 compiles whatever pattern the file gives). When one loads, it
// must encode and decode.
#include "tests/fuzz/fuzz.h"
#include "tokenizer/bpe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *json = fuzz_text(data, size);
    Error err;
    Bpe *b = bpe_load(json, "fuzz", &err);
    free(json);
    if (!b) return 0;
    static const char text[] = "Hello, world! 12345  tabs\t\nand\xe6\xbc\xa2\xe5\xad\x97 <tool>";
    int *ids;
    size_t n;
    char *back;
    for (int specials = 0; specials <= 1; specials++)
        if (bpe_encode(b, text, sizeof text - 1, specials, &ids, &n, &err) == 0) {
            if (bpe_decode(b, ids, n, &back, &err) == 0) free(back);
            free(ids);
        }
    bpe_free(b);
    return 0;
}

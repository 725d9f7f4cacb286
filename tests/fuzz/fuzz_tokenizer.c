// A tokenizer as a checkpoint carries it: a serialized SentencePiece model (through the C++
// shim) or a Hugging Face bundle (tokenizer.json, tokenizer_config.json, chat template). When
// one loads, it must encode and decode.
#include <string.h>

#include "tests/fuzz/fuzz.h"
#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Tokenizer t;
    Error err;
    if (tokenizer_from_blob(&t, (const char *)data, size, "fuzz", &err) != 0) return 0;
    static const char text[] = "Hello, world! 12345 <|eot_id|> caf\xc3\xa9";
    int *ids;
    size_t n;
    char *back;
    if (tokenizer_encode_special(&t, text, sizeof text - 1, &ids, &n, &err) == 0) {
        if (tokenizer_decode(&t, ids, n, &back, &err) == 0) free(back);
        free(ids);
    }
    tokenizer_free(&t);
    return 0;
}

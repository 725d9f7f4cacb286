// A token shard in dllm's or llm.c's layout: header against size, token ids against a
// vocabulary.
#include "tests/fuzz/fuzz.h"
#include "tokenizer/shard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Shard s;
    Error err;
    if (shard_open(&s, fuzz_file("shard", data, size), &err) == 0) {
        shard_check_vocab(&s, 300, &err);
        shard_close(&s);
    }
    return 0;
}

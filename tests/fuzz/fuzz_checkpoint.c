// A checkpoint file: header, arrays, the tokenizer it carries (SentencePiece or a Hugging Face
// bundle), checksums. Any input: an error or a checkpoint, never a crash.
#include "tests/fuzz/fuzz.h"
#include "store/model_source.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ModelSource src;
    Error err;
    if (checkpoint_load(fuzz_file("ckpt", data, size), &src, &err) == 0) model_source_free(&src);
    return 0;
}

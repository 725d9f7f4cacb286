// A checkpoint file: header, arrays, the tokenizer it carries (SentencePiece or a Hugging Face
// bundle), checksums. Any input: an error or a checkpoint, never a crash.
#include "tests/fuzz/fuzz.h"
#include "train/checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Checkpoint ck;
    Error err;
    if (checkpoint_load(fuzz_file("ckpt", data, size), &ck, &err) == 0) checkpoint_free(&ck);
    return 0;
}

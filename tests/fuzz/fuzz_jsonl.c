// JSONL inputs: SFT and exact-match files ({"prompt", "response"} lines laid out as rows),
// the one-line member readers, and whole documents as trees (config files).
#include "common/json.h"
#include "tests/fuzz/fuzz.h"
#include "tokenizer/tokenizer.h"
#include "dataset/sft.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Tokenizer t;
    tokenizer_init_bytes(&t);
    SftData d;
    Error err;
    if (sft_load(&d, fuzz_file("jsonl", data, size), &t, 48, &err) == 0) sft_free(&d);
    char *text = fuzz_text(data, size), *value, **items;
    size_t len, *lens;
    double number;
    int n;
    if (json_get_string(text, "prompt", &value, &len, &err) == 0) free(value);
    json_get_number(text, "answer", &number, &err);
    if (json_get_strings(text, "choices", &items, &lens, &n, &err) == 0)
        json_free_strings(items, lens, n);
    JsonValue root;
    if (json_parse(text, &root, &err) == 0) json_free(&root);
    free(text);
    return 0;
}

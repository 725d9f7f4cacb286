// A GGUF file: the header, metadata and tensor infos (common/gguf.c), every tensor decoded,
// then the model config, the tokenizer rebuilt from the metadata and the weights read as a
// model does (model/gguf_model.c, tokenizer/gguf_tokenizer.c), as an 8-bit model takes them
// (its Q8_0 and Q4_0 matrices as their rows of blocks), and the file dllm quantize would write
// of it (store/gguf_quantize.c, to /dev/null). Any input: an error or a model, never a crash, a
// read outside the input, or an allocation its tensors do not justify.
#include <stdlib.h>

#include "common/gguf.h"
#include "kernels/ggml_blocks.h"
#include "model/gguf_model.h"
#include "model/params.h"
#include "store/gguf_quantize.h"
#include "tests/fuzz/fuzz.h"
#include "tokenizer/gguf_tokenizer.h"

static int discard(void *user, size_t offset, const float *values, size_t n, Error *err) {
    (void)user, (void)offset, (void)values, (void)n, (void)err;
    return 0;
}

// GGUF rows of matrix i (Q8_0 or Q4_0 blocks): every byte read (ASan catches a short buffer).
static const ModelConfig *fuzz_config;
static int discard_blocks(void *user, int i, int layer, int bits, int row0, int n_rows,
                          const uint8_t *rows, Error *err) {
    (void)user, (void)layer, (void)err, (void)row0;
    ParamSpec specs[N_PARAM_TENSORS];
    param_specs(fuzz_config, specs);
    size_t bytes = (size_t)n_rows * (specs[i].cols / 32) * (bits == 8 ? 34 : 18);
    volatile uint8_t sum = 0;
    for (size_t b = 0; b < bytes; b++) sum += rows[b];
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Gguf g;
    Error err;
    if (gguf_parse(&g, data, size, "fuzz.gguf", &err)) return 0;
    for (size_t i = 0; i < g.n_tensors; i++) {
        const GgufTensor *t = &g.tensors[i];
        float *row = malloc(t->ne[0] * sizeof(float));
        if (!row) abort();
        size_t bytes = ggml_row_bytes(t->type, t->ne[0]), rows = t->bytes / bytes;
        for (size_t r = 0; r < rows; r++) ggml_decode_row(t->type, t->data + r * bytes, row, t->ne[0]);
        free(row);
    }
    FILE *null = fopen("/dev/null", "wb");
    if (!null) abort();
    QuantizeStats stats;
    gguf_quantize_to(null, &g, GGML_Q4_0, &stats, &err);
    fclose(null);
    ModelConfig c;
    HfArch arch;
    int bf16;
    if (gguf_model_config(&g, &c, &arch, &bf16, NULL, &err) == 0) {
        Tokenizer tok;
        if (gguf_tokenizer_load(&tok, &g, &err) == 0) tokenizer_free(&tok);
        fuzz_config = &c;  // (every tensor was decoded above)
        gguf_model_weights(&g, &c, arch, discard, discard_blocks, NULL, &err);
    }
    gguf_close(&g);
    return 0;
}

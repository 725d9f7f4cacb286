// Writes the two files llm.c's CPU trainer (train_gpt2.c) reads, so bench/vs_llmc.sh can time it
// beside dllm on the same tokens and the same shape:
//   llmc_files model OUT --layers L --d-model C --heads H --vocab V --seq-len T
//       a GPT-2 checkpoint in llm.c's layout (header magic 20240326 version 3, then the fp32
//       parameters in its order), random N(0, 0.02) weights, norms 1 and biases 0
//   llmc_files data SHARD OUT
//       a dllm token shard rewritten as an llm.c shard (magic 20240520, uint16 tokens)
// Only the file formats are llm.c's; nothing of its code is here.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/flags.h"
#include "common/rng.h"
#include "tokenizer/shard.h"

static int write_all(FILE *f, const void *p, size_t bytes) {
    return fwrite(p, 1, bytes, f) == bytes;
}

// A tensor of n values: N(0, 0.02) weights, or all `fill` (norm gains 1, biases 0).
static int write_tensor(FILE *f, size_t n, int random, float fill, Rng *rng) {
    float buf[4096];
    while (n > 0) {
        size_t k = n < 4096 ? n : 4096;
        for (size_t i = 0; i < k; i++) buf[i] = random ? 0.02f * rng_normal(rng) : fill;
        if (!write_all(f, buf, k * sizeof(float))) return -1;
        n -= k;
    }
    return 0;
}

static int write_model(const char *path, int L, int C, int H, int V, int T) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int header[256] = {20240326, 3, T, V, L, H, C, V};  // padded vocabulary = vocabulary
    size_t c = C;
    // llm.c's tensor order: wte, wpe, then per kind over all layers: ln1 w b, qkv w b,
    // attention projection w b, ln2 w b, fc w b, fc projection w b; then the final norm w b
    struct { size_t n; int random; float fill; } t[] = {
        {(size_t)V * c, 1, 0}, {(size_t)T * c, 1, 0}, {L * c, 0, 1}, {L * c, 0, 0},
        {L * 3 * c * c, 1, 0}, {L * 3 * c, 0, 0}, {L * c * c, 1, 0}, {L * c, 0, 0},
        {L * c, 0, 1}, {L * c, 0, 0}, {L * 4 * c * c, 1, 0}, {L * 4 * c, 0, 0},
        {L * 4 * c * c, 1, 0}, {L * c, 0, 0}, {c, 0, 1}, {c, 0, 0}};
    Rng rng;
    rng_seed(&rng, 1);
    int ok = write_all(f, header, sizeof header);
    for (size_t i = 0; ok && i < sizeof t / sizeof t[0]; i++)
        ok = !write_tensor(f, t[i].n, t[i].random, t[i].fill, &rng);
    return fclose(f) == 0 && ok ? 0 : -1;
}

static int write_data(const char *shard_path, const char *path) {
    Shard s;
    Error err;
    if (shard_open(&s, shard_path, &err)) {
        fprintf(stderr, "llmc_files: %s\n", err.msg);
        return -1;
    }
    FILE *f = fopen(path, "wb");
    int header[256] = {20240520, 1, (int)s.n};
    int ok = f && write_all(f, header, sizeof header);
    for (size_t i = 0; ok && i < s.n; i++) {
        int id = shard_token(&s, i);
        uint16_t u = (uint16_t)id;
        ok = id < 65536 && write_all(f, &u, sizeof u);
    }
    shard_close(&s);
    return f && fclose(f) == 0 && ok ? 0 : -1;
}

int main(int argc, char **argv) {
    if (argc >= 4 && strcmp(argv[1], "data") == 0) {
        if (!write_data(argv[2], argv[3])) return 0;
        fprintf(stderr, "llmc_files: %s failed\n", argv[3]);
        return 1;
    }
    if (argc < 3 || strcmp(argv[1], "model") != 0) {
        fprintf(stderr, "usage: llmc_files model OUT [flags] | llmc_files data SHARD OUT\n");
        return 2;
    }
    int L = 12, C = 768, H = 12, V = 4096, T = 64;
    Flag flags[] = {{"layers", FLAG_INT, &L, "layers", FLAG_FREE, 0},
                    {"d-model", FLAG_INT, &C, "width", FLAG_FREE, 0},
                    {"heads", FLAG_INT, &H, "attention heads", FLAG_FREE, 0},
                    {"vocab", FLAG_INT, &V, "vocabulary", FLAG_FREE, 0},
                    {"seq-len", FLAG_INT, &T, "positions", FLAG_FREE, 0}};
    int rc = flags_parse_command(flags, 5, argc - 3, argv + 3, "llmc_files model OUT [flags]");
    if (rc) return rc < 0 ? 2 : 0;
    if (write_model(argv[2], L, C, H, V, T)) {
        fprintf(stderr, "llmc_files: %s failed\n", argv[2]);
        return 1;
    }
    return 0;
}

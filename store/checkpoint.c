#include "store/checkpoint.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "common/hash.h"
#include "model/params.h"
#include "store/model_source.h"
#include "store/packed_file.h"

// Header, the three arrays and the tokenizer, with the header's checksum field counted as 0.
static uint64_t checkpoint_checksum(const CheckpointHeader *h, const float *arrays[3],
                                    const char *tokenizer) {
    CheckpointHeader copy = *h;
    copy.checksum = 0;
    uint64_t sum = fnv1a(FNV1A_INIT, &copy, sizeof copy);
    for (int i = 0; i < 3; i++) sum = fnv1a(sum, arrays[i], h->n_params * sizeof(float));
    return fnv1a(sum, tokenizer, h->tokenizer_bytes);
}

int checkpoint_write(const char *path, const CheckpointHeader *fields, const Trainable *p,
                     const Tokenizer *t, Error *err) {
    CheckpointHeader h;
    memcpy(&h, fields, sizeof h);  // padding bytes too (the caller's zeroed): they are summed
    memcpy(h.magic, CHECKPOINT_MAGIC, 8);
    h.version = CHECKPOINT_VERSION;
    h.header_bytes = sizeof h;
    h.n_params = p->n;
    h.tokenizer_bytes = t->blob ? t->blob_bytes : 0;
    h.checksum = 0;
    if (p->opt_lo != 0 || p->opt_n != p->n)
        return error_set(err, "%s: the optimizer state covers values %zu..%zu of %zu (a rank's "
                              "shard): gather it first", path, p->opt_lo, p->opt_lo + p->opt_n,
                         p->n);
    size_t bytes = p->n * sizeof(float);
    float *host = malloc(3 * bytes);
    if (!host) return error_set(err, "%s: out of memory for the checkpoint", path);
    const float *device[3] = {p->params, p->adam_m, p->adam_v};
    const float *arrays[3];
    for (int i = 0; i < 3; i++) {
        p->be->to_host(host + i * p->n, device[i], bytes);
        arrays[i] = host + i * p->n;
    }
    // a diverged run must never overwrite good checkpoints with garbage
    for (size_t i = 0; i < 3 * p->n; i++)
        if (!isfinite(host[i])) {
            free(host);
            return error_set(err, "%s: not saved: the model holds non-finite values", path);
        }
    h.checksum = checkpoint_checksum(&h, arrays, t->blob);

    AtomicFile f;
    if (atomic_open(&f, path, err)) {
        free(host);
        return -1;
    }
    fwrite(&h, sizeof h, 1, f.f);
    fwrite(host, bytes, 3, f.f);
    if (h.tokenizer_bytes) fwrite(t->blob, 1, h.tokenizer_bytes, f.f);
    free(host);
    return atomic_commit(&f, err);
}

static int validate_header(const char *path, const CheckpointHeader *h, long file_size,
                           Error *err) {
    if (memcmp(h->magic, CHECKPOINT_MAGIC, 8) != 0)
        return error_set(err, "%s: not a dllm checkpoint (wrong magic)", path);
    if (h->version != CHECKPOINT_VERSION)
        return error_set(err, "%s: unsupported checkpoint version %u (this build reads %d)", path,
                         h->version, CHECKPOINT_VERSION);
    if (h->header_bytes != sizeof *h)
        return error_set(err, "%s: header size %u, expected %zu", path, h->header_bytes,
                         sizeof *h);
    Error why;
    if (model_config_validate(&h->model, &why))
        return error_set(err, "%s: bad model config: %s", path, why.msg);
    if (train_config_validate(&h->train, &why))
        return error_set(err, "%s: bad training config: %s", path, why.msg);
    if (h->lora.rank != 0 && lora_config_validate(&h->lora, &why))
        return error_set(err, "%s: bad LoRA config: %s", path, why.msg);
    size_t needed = h->lora.rank ? lora_param_count(&h->model, &h->lora) : param_count(&h->model);
    if (h->n_params != needed)
        return error_set(err, "%s: %llu %s stored, the config needs %zu", path,
                         (unsigned long long)h->n_params,
                         h->lora.rank ? "adapter values" : "parameters", needed);
    long expected = (long)sizeof *h + 3L * (long)(h->n_params * sizeof(float)) +
                    (long)h->tokenizer_bytes;
    return file_size_check(path, file_size, expected, err);
}

int checkpoint_load(const char *path, ModelSource *src, Error *err) {
    memset(src, 0, sizeof *src);
    src->kind = SOURCE_CHECKPOINT;
    FILE *f = fopen(path, "rb");
    if (!f) return error_set(err, "%s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long file_size = ftell(f);
    rewind(f);
    CheckpointHeader *h = &src->header;
    char magic[8];
    int packed = fread(magic, 1, 8, f) == 8 && memcmp(magic, PACKED_MAGIC, 8) == 0;
    rewind(f);
    if (packed) return packed_file_read(path, f, file_size, src, err);
    if (fread(h, sizeof *h, 1, f) != 1) {
        fclose(f);
        if (file_size >= 8 && memcmp(h->magic, CHECKPOINT_MAGIC, 8) != 0)
            return error_set(err, "%s: not a dllm checkpoint (wrong magic)", path);
        return error_set(err, "%s: truncated: %ld bytes, shorter than the %zu-byte header", path,
                         file_size, sizeof *h);
    }
    if (validate_header(path, h, file_size, err)) {
        fclose(f);
        return -1;
    }
    size_t n = h->n_params;
    float *data = malloc(3 * n * sizeof(float) + h->tokenizer_bytes);
    if (!data) {
        fclose(f);
        return error_set(err, "%s: out of memory for %zu parameters", path, n);
    }
    size_t got = fread(data, sizeof(float), 3 * n, f);
    char *tokenizer = (char *)(data + 3 * n);
    if (got == 3 * n && fread(tokenizer, 1, h->tokenizer_bytes, f) != h->tokenizer_bytes) got = 0;
    fclose(f);
    src->params = data;
    src->adam_m = data + n;
    src->adam_v = data + 2 * n;
    const float *arrays[3] = {src->params, src->adam_m, src->adam_v};
    if (got != 3 * n) {
        model_source_free(src);
        return error_set(err, "%s: read failed after %zu of %zu values", path, got, 3 * n);
    }
    if (checkpoint_checksum(h, arrays, tokenizer) != h->checksum) {
        model_source_free(src);
        return error_set(err, "%s: corrupt: checksum mismatch", path);
    }
    return model_source_adopt_tokenizer(src, tokenizer, h->tokenizer_bytes, path, err);
}


#include "store/packed_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "common/hash.h"
#include "model/packed.h"
#include "model/params.h"

// Header (checksum field 0), then the body: the arrays and the tokenizer, one block.
static uint64_t packed_checksum(const PackedHeader *h, const void *body, size_t body_bytes) {
    PackedHeader copy = *h;
    copy.checksum = 0;
    return fnv1a(fnv1a(FNV1A_INIT, &copy, sizeof copy), body, body_bytes);
}

static size_t body_bytes(const PackedHeader *h) {
    return (size_t)(h->n_dense + h->n_scales) * sizeof(float) + (size_t)h->code_bytes +
           (size_t)h->tokenizer_bytes;
}

int packed_file_save(const char *path, const ModelConfig *c, int64_t step, const float *params,
                     const Tokenizer *t, Error *err) {
    PackedHeader h;
    memset(&h, 0, sizeof h);  // padding bytes too: they are part of the checksum
    memcpy(h.magic, PACKED_MAGIC, 8);
    h.version = PACKED_VERSION;
    h.header_bytes = sizeof h;
    h.model = *c;
    h.step = step;
    h.n_dense = param_count_packed(c);
    h.n_scales = (uint64_t)packed_scale_count(c);
    h.code_bytes = packed_bytes(c);
    h.tokenizer_bytes = t->blob ? t->blob_bytes : 0;
    size_t bytes = body_bytes(&h);
    char *body = malloc(bytes);
    if (!body) return error_set(err, "%s: out of memory packing the model", path);
    float *dense = (float *)(void *)body, *scales = dense + h.n_dense;
    uint8_t *codes = (uint8_t *)(scales + h.n_scales);
    packed_from_params(c, params, dense, scales, codes);
    if (h.tokenizer_bytes) memcpy(codes + h.code_bytes, t->blob, h.tokenizer_bytes);
    h.checksum = packed_checksum(&h, body, bytes);
    AtomicFile f;
    int rc = atomic_open(&f, path, err);
    if (rc == 0) {
        fwrite(&h, sizeof h, 1, f.f);
        fwrite(body, 1, bytes, f.f);
        rc = atomic_commit(&f, err);
    }
    free(body);
    return rc;
}

static int check_header(const char *path, const PackedHeader *h, long file_size, Error *err) {
    if (h->version != PACKED_VERSION)
        return error_set(err, "%s: unsupported packed ternary version %u (this build reads %d)",
                         path, h->version, PACKED_VERSION);
    if (h->header_bytes != sizeof *h)
        return error_set(err, "%s: header size %u, expected %zu", path, h->header_bytes,
                         sizeof *h);
    Error why;
    if (model_config_validate(&h->model, &why))
        return error_set(err, "%s: bad model config: %s", path, why.msg);
    if (!h->model.ternary)
        return error_set(err, "%s: bad model config: a packed model must be ternary", path);
    const ModelConfig *c = &h->model;
    if (h->n_dense != param_count_packed(c) || h->n_scales != (uint64_t)packed_scale_count(c) ||
        h->code_bytes != packed_bytes(c))
        return error_set(err, "%s: %llu floats, %llu scales and %llu packed bytes stored, the "
                         "config needs %zu, %zu and %zu", path,
                         (unsigned long long)h->n_dense, (unsigned long long)h->n_scales,
                         (unsigned long long)h->code_bytes, param_count_packed(c),
                         packed_scale_count(c), packed_bytes(c));
    return file_size_check(path, file_size, (long)sizeof *h + (long)body_bytes(h), err);
}

int packed_file_read(const char *path, FILE *f, long file_size, ModelSource *src, Error *err) {
    memset(src, 0, sizeof *src);
    PackedHeader h;
    if (fread(&h, sizeof h, 1, f) != 1) {
        fclose(f);
        return error_set(err, "%s: truncated: %ld bytes, shorter than the %zu-byte header", path,
                         file_size, sizeof h);
    }
    if (check_header(path, &h, file_size, err)) {
        fclose(f);
        return -1;
    }
    size_t bytes = body_bytes(&h);
    char *body = malloc(bytes ? bytes : 1);
    if (!body) {
        fclose(f);
        return error_set(err, "%s: out of memory for %zu bytes", path, bytes);
    }
    size_t got = fread(body, 1, bytes, f);
    fclose(f);
    if (got != bytes || packed_checksum(&h, body, bytes) != h.checksum) {
        free(body);
        return got != bytes ? error_set(err, "%s: read failed after %zu of %zu bytes", path, got,
                                        bytes)
                            : error_set(err, "%s: corrupt: checksum mismatch", path);
    }
    CheckpointHeader *ch = &src->header;  // an inference-only checkpoint at step 0
    memcpy(ch->magic, CHECKPOINT_MAGIC, 8);
    ch->version = CHECKPOINT_VERSION;
    ch->header_bytes = sizeof *ch;
    ch->model = h.model;
    ch->train = train_config_default();
    ch->train.objective = h.model.block_size > 0 ? OBJECTIVE_BD3
                          : h.model.causal      ? OBJECTIVE_AR
                                                : OBJECTIVE_MDM;
    ch->n_params = h.n_dense;
    ch->step = h.step;
    src->params = (float *)(void *)body;  // model_source_free frees this one block
    src->packed_scales = src->params + h.n_dense;
    src->packed_codes = (uint8_t *)(src->packed_scales + h.n_scales);
    src->kind = SOURCE_PACKED;
    const char *tokenizer = (const char *)src->packed_codes + h.code_bytes;
    return model_source_adopt_tokenizer(src, tokenizer, h.tokenizer_bytes, path, err);
}

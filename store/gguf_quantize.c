#include "store/gguf_quantize.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/ggml_blocks.h"
#include "kernels/qblocks.h"

// llama.cpp's llama_ftype for "mostly" one type, and the quantisation version it writes
enum { FTYPE_MOSTLY_Q4_0 = 2, FTYPE_MOSTLY_Q8_0 = 7, QUANTIZATION_VERSION = 2 };
enum { CHUNK_ROWS = 256 };  // rows decoded and quantised at once

static const char FILE_TYPE[] = "general.file_type";
static const char QUANT_VERSION[] = "general.quantization_version";

// The type tensor t gets: `to` for a matrix of whole blocks, its own type otherwise.
static GgmlType new_type(const GgufTensor *t, GgmlType to) {
    return t->n_dims >= 2 && t->ne[0] % QB_BLOCK == 0 ? to : t->type;
}

static size_t tensor_rows(const GgufTensor *t) {
    return (size_t)(t->ne[1] * t->ne[2] * t->ne[3]);
}

// Bytes of tensor t's data in the output.
static size_t new_bytes(const GgufTensor *t, GgmlType to) {
    return ggml_row_bytes(new_type(t, to), t->ne[0]) * tensor_rows(t);
}

static int key_is(const GgufKv *kv, const char *key) {
    return kv->key_len == strlen(key) && memcmp(kv->key, key, kv->key_len) == 0;
}

// Writes n bytes; a failed write is remembered in *ok (checked once, at the end).
static void put(FILE *f, const void *p, size_t n, int *ok) {
    if (n && fwrite(p, 1, n, f) != n) *ok = 0;
}
static void put_u32(FILE *f, uint32_t v, int *ok) { put(f, &v, 4, ok); }
static void put_u64(FILE *f, uint64_t v, int *ok) { put(f, &v, 8, ok); }
static void put_string(FILE *f, const char *s, size_t n, int *ok) {
    put_u64(f, n, ok);
    put(f, s, n, ok);
}
static void put_padding(FILE *f, size_t at, size_t alignment, int *ok) {
    static const uint8_t zeros[64];
    for (size_t pad = (alignment - at % alignment) % alignment; pad > 0;) {
        size_t n = pad < sizeof zeros ? pad : sizeof zeros;
        put(f, zeros, n, ok);
        pad -= n;
    }
}

static void put_u32_kv(FILE *f, const char *key, uint32_t v, int *ok) {
    put_string(f, key, strlen(key), ok);
    put_u32(f, GGUF_U32, ok);
    put_u32(f, v, ok);
}

// A metadata entry as the file holds it: key, type, (an array's element type and count), value.
static void put_kv(FILE *f, const GgufKv *kv, int *ok) {
    put_string(f, kv->key, kv->key_len, ok);
    put_u32(f, kv->type, ok);
    if (kv->type == GGUF_ARRAY) {
        put_u32(f, kv->elem, ok);
        put_u64(f, kv->count, ok);
    }
    put(f, kv->value, (size_t)(kv->end - kv->value), ok);
}

// Header, metadata and tensor infos; *at: the bytes written, so the data can be aligned.
static void put_head(FILE *f, const Gguf *g, GgmlType to, size_t alignment, size_t *at, int *ok) {
    int has_file_type = 0, has_version = 0;
    for (size_t i = 0; i < g->n_kv; i++)
        has_file_type |= key_is(&g->kv[i], FILE_TYPE),
            has_version |= key_is(&g->kv[i], QUANT_VERSION);
    long start = ftell(f);
    put(f, "GGUF", 4, ok);
    put_u32(f, 3, ok);
    put_u64(f, g->n_tensors, ok);
    put_u64(f, g->n_kv + !has_file_type + !has_version, ok);
    uint32_t ftype = to == GGML_Q8_0 ? FTYPE_MOSTLY_Q8_0 : FTYPE_MOSTLY_Q4_0;
    for (size_t i = 0; i < g->n_kv; i++) {
        if (key_is(&g->kv[i], FILE_TYPE)) put_u32_kv(f, FILE_TYPE, ftype, ok);
        else if (key_is(&g->kv[i], QUANT_VERSION))
            put_u32_kv(f, QUANT_VERSION, QUANTIZATION_VERSION, ok);
        else put_kv(f, &g->kv[i], ok);
    }
    if (!has_file_type) put_u32_kv(f, FILE_TYPE, ftype, ok);
    if (!has_version) put_u32_kv(f, QUANT_VERSION, QUANTIZATION_VERSION, ok);
    uint64_t offset = 0;
    for (size_t i = 0; i < g->n_tensors; i++) {
        const GgufTensor *t = &g->tensors[i];
        put_string(f, t->name, strlen(t->name), ok);
        put_u32(f, (uint32_t)t->n_dims, ok);
        for (int d = 0; d < t->n_dims; d++) put_u64(f, t->ne[d], ok);
        put_u32(f, new_type(t, to), ok);
        put_u64(f, offset, ok);
        offset += (new_bytes(t, to) + alignment - 1) / alignment * alignment;
    }
    *at = (size_t)(ftell(f) - start);
}

// Rows of t decoded and quantised to `to`, CHUNK_ROWS at a time, threads over the rows.
static int put_quantised(FILE *f, const GgufTensor *t, GgmlType to, int *ok, Error *err) {
    size_t n = t->ne[0], rows = tensor_rows(t), in_row = ggml_row_bytes(t->type, n);
    size_t out_row = ggml_row_bytes(to, n);
    int bits = to == GGML_Q8_0 ? 8 : 4;
    float *x = malloc(CHUNK_ROWS * n * sizeof(float));
    uint8_t *q = malloc(CHUNK_ROWS * out_row);
    if (!x || !q) {
        free(x), free(q);
        return error_set(err, "quantize: out of memory for tensor %s", t->name);
    }
    int bad = -1;  // a row holding a NaN or an infinity (the first of its chunk)
    for (size_t r0 = 0; r0 < rows && bad < 0; r0 += CHUNK_ROWS) {
        int count = (int)(rows - r0 < CHUNK_ROWS ? rows - r0 : CHUNK_ROWS), first_bad = count;
#pragma omp parallel for reduction(min : first_bad)
        for (int r = 0; r < count; r++) {
            ggml_decode_row(t->type, t->data + (r0 + r) * in_row, x + (size_t)r * n, n);
            if (qb_quantize_row(bits, q + (size_t)r * out_row, x + (size_t)r * n, n))
                first_bad = r < first_bad ? r : first_bad;
        }
        if (first_bad < count) bad = (int)r0 + first_bad;
        else put(f, q, (size_t)count * out_row, ok);
    }
    free(x), free(q);
    if (bad >= 0)
        return error_set(err, "quantize: tensor %s holds a non-finite value (row %d), which has "
                              "no %s code", t->name, bad, bits == 8 ? "Q8_0" : "Q4_0");
    return 0;
}

// Matrices already in a block type: requantising adds a second rounding, so it is refused.
static int check_requantising(const Gguf *g, GgmlType to, Error *err) {
    for (size_t i = 0; i < g->n_tensors; i++) {
        const GgufTensor *t = &g->tensors[i];
        if (new_type(t, to) == to && t->type != GGML_F32 && t->type != GGML_F16 &&
            t->type != GGML_BF16)
            return error_set(err, "quantize: %s holds %s in %s already; quantize the F32, F16 "
                                  "or BF16 file (requantising rounds twice)", g->path, t->name,
                             ggml_type_name(t->type));
    }
    return 0;
}

int gguf_quantize_to(FILE *f, const Gguf *g, GgmlType to, QuantizeStats *stats, Error *err) {
    if (to != GGML_Q8_0 && to != GGML_Q4_0)
        return error_set(err, "quantize: writes Q8_0 or Q4_0, not %s", ggml_type_name(to));
    if (check_requantising(g, to, err)) return -1;
    int64_t alignment = 32;
    if (gguf_get_int(g, "general.alignment", &alignment, err) < 0) return -1;
    int ok = 1;
    size_t at;
    put_head(f, g, to, (size_t)alignment, &at, &ok);
    put_padding(f, at, (size_t)alignment, &ok);
    memset(stats, 0, sizeof *stats);
    for (size_t i = 0; i < g->n_tensors && ok; i++) {
        const GgufTensor *t = &g->tensors[i];
        size_t bytes = new_bytes(t, to);
        if (new_type(t, to) == t->type) {
            put(f, t->data, t->bytes, &ok);
            stats->kept++;
        } else {
            if (put_quantised(f, t, to, &ok, err)) return -1;
            stats->quantised++;
        }
        stats->in_bytes += t->bytes, stats->out_bytes += bytes;
        put_padding(f, bytes, (size_t)alignment, &ok);
    }
    return ok ? 0 : error_set(err, "quantize: writing failed (disk full?)");
}

int gguf_quantize(const char *in_path, const char *out_path, GgmlType to, QuantizeStats *stats,
                  Error *err) {
    Gguf g;
    if (gguf_open(&g, in_path, err)) return -1;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", out_path);
    FILE *f = fopen(tmp, "wb");
    int rc = f ? gguf_quantize_to(f, &g, to, stats, err)
               : error_set(err, "quantize: cannot write %s", tmp);
    if (f && fclose(f) && rc == 0) rc = error_set(err, "quantize: writing %s failed", tmp);
    if (rc == 0 && rename(tmp, out_path))
        rc = error_set(err, "quantize: cannot rename %s to %s", tmp, out_path);
    if (rc && f) unlink(tmp);
    gguf_close(&g);
    return rc;
}

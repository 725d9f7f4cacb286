#include "common/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAGIC "GGUF"

// Bytes of the fixed-size value types (0: string or array).
static const size_t TYPE_BYTES[GGUF_N_TYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

// ggml's type names, for refusing by name.
static const char *const GGML_NAMES[] = {
    "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K",
    "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL",
    "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16", "Q4_0_4_4",
    "Q4_0_4_8", "Q4_0_8_8", "TQ1_0", "TQ2_0", "IQ4_NL_4_4", "IQ4_NL_4_8", "IQ4_NL_8_8", "MXFP4"};

const char *ggml_type_name(uint32_t type) {
    return type < sizeof GGML_NAMES / sizeof *GGML_NAMES ? GGML_NAMES[type] : "an unknown type";
}

size_t ggml_row_bytes(GgmlType type, uint64_t n) {
    switch (type) {
    case GGML_F32: return n * 4;
    case GGML_F16:
    case GGML_BF16: return n * 2;
    case GGML_Q8_0: return n % 32 ? 0 : n / 32 * 34;
    case GGML_Q4_0: return n % 32 ? 0 : n / 32 * 18;
    case GGML_Q4_K: return n % 256 ? 0 : n / 256 * 144;
    case GGML_Q5_K: return n % 256 ? 0 : n / 256 * 176;
    case GGML_Q6_K: return n % 256 ? 0 : n / 256 * 210;
    }
    return 0;
}

int gguf_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char magic[4];
    int yes = fread(magic, 1, 4, f) == 4 && memcmp(magic, GGUF_MAGIC, 4) == 0;
    fclose(f);
    return yes;
}

// A cursor over the file: every read checks the bytes left.
typedef struct {
    const uint8_t *p, *end;
    const char *what;
    Error *err;
} Cursor;

static int take(Cursor *c, void *out, size_t n, const char *field) {
    if ((size_t)(c->end - c->p) < n)
        return error_set(c->err, "%s: ends inside %s", c->what, field);
    memcpy(out, c->p, n);
    c->p += n;
    return 0;
}

static int skip_string(Cursor *c, const char **s, size_t *len, const char *field) {
    uint64_t n = 0;
    if (take(c, &n, 8, field)) return -1;
    if (n > (uint64_t)(c->end - c->p))
        return error_set(c->err, "%s: %s claims %llu bytes past the end of the file", c->what,
                         field, (unsigned long long)n);
    *s = (const char *)c->p, *len = n;
    c->p += n;
    return 0;
}

// A value of type t (an array's elements when count > 1 or an array), checked and skipped.
static int skip_values(Cursor *c, GgufType t, uint64_t count, const char *key) {
    if (t >= GGUF_N_TYPES || t == GGUF_ARRAY)  // arrays of arrays: no tokenizer field has them
        return error_set(c->err, "%s: metadata %s has value type %u, which dllm does not read",
                         c->what, key, (unsigned)t);
    if (t != GGUF_STRING) {
        if (count > (uint64_t)(c->end - c->p) / TYPE_BYTES[t])
            return error_set(c->err, "%s: metadata %s claims %llu values past the end of the "
                                     "file", c->what, key, (unsigned long long)count);
        c->p += count * TYPE_BYTES[t];
        return 0;
    }
    for (uint64_t i = 0; i < count; i++) {
        const char *s;
        size_t n;
        if (skip_string(c, &s, &n, key)) return -1;
    }
    return 0;
}

static int read_kv(Cursor *c, GgufKv *kv) {
    uint32_t type = 0;
    if (skip_string(c, &kv->key, &kv->key_len, "a metadata key") ||
        take(c, &type, 4, "a metadata type"))
        return -1;
    char key[128];
    snprintf(key, sizeof key, "%.*s", (int)(kv->key_len < 100 ? kv->key_len : 100), kv->key);
    kv->type = type, kv->count = 1, kv->elem = type;
    if (type == GGUF_ARRAY) {
        uint32_t elem = 0;
        if (take(c, &elem, 4, key) || take(c, &kv->count, 8, key)) return -1;
        kv->elem = elem;
        kv->value = c->p;
        if (skip_values(c, kv->elem, kv->count, key)) return -1;
        kv->end = c->p;
        return 0;
    }
    kv->value = c->p;
    if (skip_values(c, kv->type, 1, key)) return -1;
    kv->end = c->p;
    return 0;
}

static int read_tensor_info(Cursor *c, GgufTensor *t, uint64_t *offset) {
    const char *name;
    size_t len;
    uint32_t n_dims = 0, type = 0;
    if (skip_string(c, &name, &len, "a tensor name")) return -1;
    if (len >= sizeof t->name)
        return error_set(c->err, "%s: a tensor name of %zu bytes (dllm reads up to %zu)",
                         c->what, len, sizeof t->name - 1);
    memcpy(t->name, name, len);
    t->name[len] = '\0';
    if (take(c, &n_dims, 4, t->name)) return -1;
    if (n_dims < 1 || n_dims > 4)
        return error_set(c->err, "%s: tensor %s has %u dimensions (1 to 4)", c->what, t->name,
                         n_dims);
    t->n_dims = (int)n_dims;
    uint64_t values = 1;
    for (int d = 0; d < 4; d++) {
        t->ne[d] = 1;
        if (d < t->n_dims && take(c, &t->ne[d], 8, t->name)) return -1;
        if (t->ne[d] == 0 || t->ne[d] > (1ull << 40) || values > (1ull << 40) / t->ne[d])
            return error_set(c->err, "%s: tensor %s has a dimension of %llu", c->what, t->name,
                             (unsigned long long)t->ne[d]);
        values *= t->ne[d];
    }
    if (take(c, &type, 4, t->name) || take(c, offset, 8, t->name)) return -1;
    t->type = (GgmlType)type;
    size_t row = type <= GGML_BF16 ? ggml_row_bytes(t->type, t->ne[0]) : 0;
    if (row == 0)
        return error_set(c->err, "%s: tensor %s is %s%s; dllm reads F32, F16, BF16, Q8_0, Q4_0, "
                                 "Q4_K, Q5_K and Q6_K", c->what, t->name, ggml_type_name(type),
                         ggml_row_bytes(t->type, 256) && type <= GGML_BF16
                             ? " with rows that are not whole blocks" : "");
    t->bytes = row * (values / t->ne[0]);
    return 0;
}

int gguf_parse(Gguf *g, const uint8_t *data, size_t size, const char *what, Error *err) {
    memset(g, 0, sizeof *g);
    snprintf(g->path, sizeof g->path, "%s", what);
    g->map = data, g->size = size;
    Cursor c = {data, data + size, g->path, err};
    char magic[4];
    uint64_t n_tensors = 0, n_kv = 0;
    if (take(&c, magic, 4, "the magic") || memcmp(magic, GGUF_MAGIC, 4) != 0)
        return error_set(err, "%s: not a GGUF file", what);
    if (take(&c, &g->version, 4, "the version")) return -1;
    if (g->version != 2 && g->version != 3)
        return error_set(err, "%s: GGUF version %u (dllm reads 2 and 3; a big-endian file "
                              "reads as a huge version)", what, g->version);
    if (take(&c, &n_tensors, 8, "the tensor count") || take(&c, &n_kv, 8, "the metadata count"))
        return -1;
    // every entry takes at least 12 bytes (metadata) / 24 (tensor info): bounds the counts
    if (n_kv > size / 12 || n_tensors > size / 24)
        return error_set(err, "%s: %llu metadata entries and %llu tensors cannot fit in %zu "
                              "bytes", what, (unsigned long long)n_kv,
                         (unsigned long long)n_tensors, size);
    g->kv = calloc(n_kv ? n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *g->tensors);
    uint64_t *offsets = calloc(n_tensors ? n_tensors : 1, sizeof *offsets);
    int rc = g->kv && g->tensors && offsets ? 0 : error_set(err, "%s: out of memory", what);
    for (uint64_t i = 0; i < n_kv && rc == 0; i++, g->n_kv++) rc = read_kv(&c, &g->kv[i]);
    for (uint64_t i = 0; i < n_tensors && rc == 0; i++, g->n_tensors++)
        rc = read_tensor_info(&c, &g->tensors[i], &offsets[i]);
    int64_t alignment = 32;
    if (rc == 0 && gguf_get_int(g, "general.alignment", &alignment, err) < 0) rc = -1;
    if (rc == 0 && (alignment < 1 || alignment > 1 << 20 || (alignment & (alignment - 1))))
        rc = error_set(err, "%s: general.alignment %lld is not a power of two up to 2^20", what,
                       (long long)alignment);
    size_t start = (size_t)(c.p - data);
    start = (start + (size_t)alignment - 1) / (size_t)alignment * (size_t)alignment;
    for (size_t i = 0; i < g->n_tensors && rc == 0; i++) {
        GgufTensor *t = &g->tensors[i];
        if (offsets[i] % (uint64_t)alignment || start > size || offsets[i] > size - start ||
            t->bytes > size - start - offsets[i])
            rc = error_set(err, "%s: tensor %s's data (%zu bytes at offset %llu) is misaligned "
                                "or runs past the end of the file", what, t->name, t->bytes,
                           (unsigned long long)offsets[i]);
        else t->data = data + start + offsets[i];
        for (size_t j = 0; j < i && rc == 0; j++)
            if (strcmp(g->tensors[j].name, t->name) == 0)
                rc = error_set(err, "%s: tensor %s appears twice", what, t->name);
    }
    free(offsets);
    if (rc) {
        free(g->kv), free(g->tensors);
        memset(g, 0, sizeof *g);
    }
    return rc;
}

int gguf_open(Gguf *g, const char *path, Error *err) {
    memset(g, 0, sizeof *g);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return error_set(err, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < 24) {
        close(fd);
        return error_set(err, "%s: not a GGUF file (%lld bytes)", path, (long long)st.st_size);
    }
    // MAP_PRIVATE: a kernel may later rearrange weights in its own pages without touching the
    // file; pages never written stay the page cache's
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return error_set(err, "%s: mmap: %s", path, strerror(errno));
    if (gguf_parse(g, map, (size_t)st.st_size, path, err)) {
        munmap(map, (size_t)st.st_size);
        return -1;
    }
    g->mapped = 1;
    return 0;
}

void gguf_close(Gguf *g) {
    if (g->mapped) munmap((void *)g->map, g->size);
    free(g->kv);
    free(g->tensors);
    memset(g, 0, sizeof *g);
}

const GgufKv *gguf_find(const Gguf *g, const char *key) {
    size_t n = strlen(key);
    for (size_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key_len == n && memcmp(g->kv[i].key, key, n) == 0) return &g->kv[i];
    return NULL;
}

// A fixed-size value at p of type t as int64 (floats and arrays excluded by the callers).
static int64_t int_value(const uint8_t *p, GgufType t) {
    switch (t) {
    case GGUF_U8: case GGUF_BOOL: return *p;
    case GGUF_I8: return (int8_t)*p;
    case GGUF_U16: { uint16_t v; memcpy(&v, p, 2); return v; }
    case GGUF_I16: { int16_t v; memcpy(&v, p, 2); return v; }
    case GGUF_U32: { uint32_t v; memcpy(&v, p, 4); return v; }
    case GGUF_I32: { int32_t v; memcpy(&v, p, 4); return v; }
    case GGUF_U64: { uint64_t v; memcpy(&v, p, 8); return v > INT64_MAX ? INT64_MAX : (int64_t)v; }
    case GGUF_I64: { int64_t v; memcpy(&v, p, 8); return v; }
    default: return 0;
    }
}

static double float_value(const uint8_t *p, GgufType t) {
    if (t == GGUF_F32) {
        float v;
        memcpy(&v, p, 4);
        return v;
    }
    if (t == GGUF_F64) {
        double v;
        memcpy(&v, p, 8);
        return v;
    }
    return (double)int_value(p, t);
}

static int is_integer(GgufType t) {
    return t <= GGUF_I32 || t == GGUF_U64 || t == GGUF_I64;
}

int gguf_get_int(const Gguf *g, const char *key, int64_t *out, Error *err) {
    const GgufKv *kv = gguf_find(g, key);
    if (!kv) return 1;
    if (!is_integer(kv->type) || kv->type == GGUF_BOOL)
        return error_set(err, "%s: metadata %s is not an integer", g->path, key);
    *out = int_value(kv->value, kv->type);
    return 0;
}

int gguf_get_float(const Gguf *g, const char *key, double *out, Error *err) {
    const GgufKv *kv = gguf_find(g, key);
    if (!kv) return 1;
    if (kv->type != GGUF_F32 && kv->type != GGUF_F64 && !is_integer(kv->type))
        return error_set(err, "%s: metadata %s is not a number", g->path, key);
    *out = float_value(kv->value, kv->type);
    return 0;
}

int gguf_get_bool(const Gguf *g, const char *key, int *out, Error *err) {
    const GgufKv *kv = gguf_find(g, key);
    if (!kv) return 1;
    if (kv->type != GGUF_BOOL)
        return error_set(err, "%s: metadata %s is not a bool", g->path, key);
    *out = *kv->value != 0;
    return 0;
}

int gguf_get_string(const Gguf *g, const char *key, const char **s, size_t *len, Error *err) {
    const GgufKv *kv = gguf_find(g, key);
    if (!kv) return 1;
    if (kv->type != GGUF_STRING)
        return error_set(err, "%s: metadata %s is not a string", g->path, key);
    gguf_string_at(kv->value, s, len);
    return 0;
}

const uint8_t *gguf_string_at(const uint8_t *p, const char **s, size_t *len) {
    uint64_t n;
    memcpy(&n, p, 8);
    *s = (const char *)p + 8, *len = n;
    return p + 8 + n;
}

int64_t gguf_array_int(const GgufKv *kv, uint64_t i) {
    return int_value(kv->value + i * TYPE_BYTES[kv->elem], kv->elem);
}

double gguf_array_float(const GgufKv *kv, uint64_t i) {
    return float_value(kv->value + i * TYPE_BYTES[kv->elem], kv->elem);
}

GgufTensor *gguf_tensor(const Gguf *g, const char *name) {
    for (size_t i = 0; i < g->n_tensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0) return &g->tensors[i];
    return NULL;
}

const GgufTensor *gguf_unused(const Gguf *g) {
    for (size_t i = 0; i < g->n_tensors; i++)
        if (!g->tensors[i].used) return &g->tensors[i];
    return NULL;
}

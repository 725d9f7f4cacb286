#include "model/safetensors.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/bf16.h"
#include "common/file.h"
#include "common/json.h"

#define MAX_HEADER_BYTES (100u << 20)  // the format's own limit

static const char *dtype_names[] = {"F32", "F16", "BF16"};
static const size_t dtype_bytes[] = {4, 2, 2};

const char *safetensors_dtype_name(SafetensorsDtype d) { return dtype_names[d]; }

// A JSON number that is a whole number in [0, limit].
static int whole_number(const JsonValue *v, double limit, uint64_t *out) {
    if (!v || v->type != JSON_NUMBER || v->number < 0 || v->number > limit ||
        v->number != (double)(uint64_t)v->number)
        return 0;
    *out = (uint64_t)v->number;
    return 1;
}

// One header entry into t (name already set); data_bytes is the size of the byte area.
static int parse_entry(const char *path, const JsonValue *v, SafetensorsTensor *t,
                       size_t data_bytes, Error *err) {
    const char *dtype = json_member_string(v, "dtype");
    const JsonValue *shape = json_member(v, "shape"), *offsets = json_member(v, "data_offsets");
    if (!dtype || !shape || shape->type != JSON_ARRAY || !offsets ||
        offsets->type != JSON_ARRAY || offsets->n != 2)
        return error_set(err, "%s: tensor %s: header entry needs dtype, shape and data_offsets",
                         path, t->name);
    int d = -1;
    for (int i = 0; i < 3; i++)
        if (strcmp(dtype, dtype_names[i]) == 0) d = i;
    if (d < 0)
        return error_set(err, "%s: tensor %s has dtype %s; dllm reads F32, F16 and BF16", path,
                         t->name, dtype);
    if (shape->n > SAFETENSORS_MAX_DIMS)
        return error_set(err, "%s: tensor %s has %d dimensions (at most %d)", path, t->name,
                         shape->n, SAFETENSORS_MAX_DIMS);
    t->dtype = (SafetensorsDtype)d;
    t->ndim = shape->n;
    double count = 1.0;
    for (int i = 0; i < shape->n; i++) {
        uint64_t dim;
        if (!whole_number(&shape->items[i], 1e15, &dim))
            return error_set(err, "%s: tensor %s: bad shape", path, t->name);
        t->shape[i] = (int64_t)dim;
        count *= (double)dim;
    }
    uint64_t begin, end;
    if (!whole_number(&offsets->items[0], 9e15, &begin) ||
        !whole_number(&offsets->items[1], 9e15, &end) || begin > end)
        return error_set(err, "%s: tensor %s: bad data_offsets", path, t->name);
    if (end > data_bytes)
        return error_set(err, "%s: tensor %s ends at byte %llu, past the end of the file's data "
                         "(%zu bytes): truncated?", path, t->name, (unsigned long long)end,
                         data_bytes);
    if ((double)(end - begin) != count * dtype_bytes[d])
        return error_set(err, "%s: tensor %s: %llu bytes for a %s tensor of %.0f values", path,
                         t->name, (unsigned long long)(end - begin), dtype, count);
    t->offset = begin;
    t->bytes = end - begin;
    return 0;
}

static int by_offset(const void *a, const void *b) {
    const SafetensorsTensor *x = *(SafetensorsTensor *const *)a, *y = *(SafetensorsTensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

// The tensors of one file tile its data area, as the safetensors library requires: sorted by
// offset, each starts where the one before ends, the first at 0, the last ends at the area's
// end. Shared bytes, gaps and bytes after the last tensor are refused.
static int check_coverage(const char *path, SafetensorsTensor *t, int n, size_t data_bytes,
                          Error *err) {
    SafetensorsTensor **order = malloc((size_t)(n ? n : 1) * sizeof *order);
    if (!order) return error_set(err, "%s: out of memory", path);
    for (int i = 0; i < n; i++) order[i] = &t[i];
    qsort(order, (size_t)n, sizeof *order, by_offset);
    int rc = 0;
    size_t end = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (i > 0 && order[i]->offset < end)
            rc = error_set(err, "%s: tensors %s and %s overlap", path, order[i - 1]->name,
                           order[i]->name);
        else if (order[i]->offset > end)
            rc = error_set(err, "%s: %zu bytes before tensor %s belong to no tensor", path,
                           order[i]->offset - end, order[i]->name);
        end = order[i]->offset + order[i]->bytes;
    }
    if (!rc && end < data_bytes)
        rc = error_set(err, "%s: %zu bytes after the tensors' data belong to no tensor (the "
                            "file is not fully covered)", path, data_bytes - end);
    free(order);
    return rc;
}

// Maps one file and appends its tensors to st.
static int open_file(Safetensors *st, const char *path, Error *err) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return error_set(err, "%s: cannot open", path);
    struct stat sb;
    if (fstat(fd, &sb) != 0 || sb.st_size < 8) {
        close(fd);
        return error_set(err, "%s: too short for a safetensors file", path);
    }
    size_t size = (size_t)sb.st_size;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return error_set(err, "%s: cannot map", path);
    int f = st->n_files;
    char **paths = realloc(st->paths, (f + 1) * sizeof *paths);
    void **maps = paths ? realloc(st->maps, (f + 1) * sizeof *maps) : NULL;
    size_t *sizes = maps ? realloc(st->map_bytes, (f + 1) * sizeof *sizes) : NULL;
    if (paths) st->paths = paths;
    if (maps) st->maps = maps;
    if (sizes) st->map_bytes = sizes;
    if (!sizes || !(st->paths[f] = strdup(path))) {
        munmap(map, size);
        return error_set(err, "%s: out of memory", path);
    }
    st->maps[f] = map;
    st->map_bytes[f] = size;
    st->n_files++;

    uint64_t header_bytes = 0;
    for (int i = 0; i < 8; i++) header_bytes |= (uint64_t)((unsigned char *)map)[i] << (8 * i);
    if (header_bytes > size - 8 || header_bytes > MAX_HEADER_BYTES)
        return error_set(err, "%s: header length %llu runs past the end of the file (%zu bytes)",
                         path, (unsigned long long)header_bytes, size);
    char *text = malloc(header_bytes + 1);
    if (!text) return error_set(err, "%s: out of memory", path);
    memcpy(text, (char *)map + 8, header_bytes);
    text[header_bytes] = '\0';
    JsonValue root;
    Error why;
    int rc = json_parse(text, &root, &why);
    free(text);
    if (rc) return error_set(err, "%s: header: %s", path, why.msg);
    if (root.type != JSON_OBJECT) {
        json_free(&root);
        return error_set(err, "%s: header is not a JSON object", path);
    }
    int first = st->n_tensors;
    SafetensorsTensor *grown = realloc(st->tensors, (first + root.n + 1) * sizeof *grown);
    if (!grown) {
        json_free(&root);
        return error_set(err, "%s: out of memory", path);
    }
    st->tensors = grown;
    const unsigned char *data = (const unsigned char *)map + 8 + header_bytes;
    size_t data_bytes = size - 8 - header_bytes;
    for (int i = 0; i < root.n && !rc; i++) {
        if (strcmp(root.keys[i], "__metadata__") == 0) continue;
        if (safetensors_find(st, root.keys[i])) {
            rc = error_set(err, "%s: tensor %s appears twice", path, root.keys[i]);
            break;
        }
        SafetensorsTensor *t = &st->tensors[st->n_tensors];
        memset(t, 0, sizeof *t);
        t->file = f;
        if (!(t->name = strdup(root.keys[i]))) {
            rc = error_set(err, "%s: out of memory", path);
            break;
        }
        st->n_tensors++;
        rc = parse_entry(path, &root.items[i], t, data_bytes, err);
    }
    json_free(&root);
    if (rc) return -1;
    if (check_coverage(path, st->tensors + first, st->n_tensors - first, data_bytes, err))
        return -1;
    for (int i = first; i < st->n_tensors; i++) st->tensors[i].data = data + st->tensors[i].offset;
    return 0;
}

// dir/name into out; -1 when it does not fit
static int join(char *out, size_t cap, const char *dir, const char *name) {
    int n = snprintf(out, cap, "%s/%s", dir, name);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

// A sharded model: the index's weight_map names a file for every tensor.
static int open_index(Safetensors *st, const char *dir, const char *index, Error *err) {
    char *text;
    size_t n;
    if (file_read_all(index, &text, &n, err)) return -1;
    JsonValue root;
    Error why;
    int rc = json_parse(text, &root, &why);
    free(text);
    if (rc) return error_set(err, "%s: %s", index, why.msg);
    const JsonValue *map = json_member(&root, "weight_map");
    if (!map || map->type != JSON_OBJECT) {
        json_free(&root);
        return error_set(err, "%s: no weight_map object", index);
    }
    char path[4096];
    for (int i = 0; i < map->n && !rc; i++) {
        const JsonValue *file = &map->items[i];
        if (file->type != JSON_STRING || strchr(file->string, '/') ||
            join(path, sizeof path, dir, file->string)) {
            rc = error_set(err, "%s: weight_map entry %s is not a file name", index, map->keys[i]);
            break;
        }
        int opened = 0;
        for (int f = 0; f < st->n_files; f++) opened |= strcmp(st->paths[f], path) == 0;
        if (!opened && access(path, R_OK) != 0)
            rc = error_set(err, "%s: names %s, which is missing", index, path);
        else if (!opened)
            rc = open_file(st, path, err);
        if (rc) break;
        const SafetensorsTensor *t = safetensors_find(st, map->keys[i]);
        if (!t || strcmp(st->paths[t->file], path) != 0)
            rc = error_set(err, "%s: names %s for tensor %s, which that file lacks", index, path,
                           map->keys[i]);
    }
    json_free(&root);
    return rc;
}

int safetensors_open(Safetensors *st, const char *path, Error *err) {
    memset(st, 0, sizeof *st);
    struct stat sb;
    if (stat(path, &sb) != 0) return error_set(err, "%s: no such file or directory", path);
    int rc;
    if (!S_ISDIR(sb.st_mode)) {
        rc = open_file(st, path, err);
    } else {
        char single[4096], index[4096];
        if (join(single, sizeof single, path, "model.safetensors") ||
            join(index, sizeof index, path, "model.safetensors.index.json"))
            return error_set(err, "%s: path too long", path);
        if (access(single, R_OK) == 0)
            rc = open_file(st, single, err);
        else if (access(index, R_OK) == 0)
            rc = open_index(st, path, index, err);
        else
            rc = error_set(err, "%s: no model.safetensors or model.safetensors.index.json", path);
    }
    if (rc) safetensors_close(st);
    return rc;
}

void safetensors_close(Safetensors *st) {
    for (int i = 0; i < st->n_tensors; i++) free(st->tensors[i].name);
    for (int f = 0; f < st->n_files; f++) {
        munmap(st->maps[f], st->map_bytes[f]);
        free(st->paths[f]);
    }
    free(st->tensors);
    free(st->paths);
    free(st->maps);
    free(st->map_bytes);
    memset(st, 0, sizeof *st);
}

SafetensorsTensor *safetensors_find(const Safetensors *st, const char *name) {
    for (int i = 0; i < st->n_tensors; i++)
        if (strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
    return NULL;
}

// "[a, b, c]"
static void format_shape(char *out, size_t cap, const int64_t *shape, int ndim) {
    size_t at = (size_t)snprintf(out, cap, "[");
    for (int i = 0; i < ndim && at < cap; i++)
        at += (size_t)snprintf(out + at, cap - at, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (at < cap) snprintf(out + at, cap - at, "]");
}

int safetensors_read(const Safetensors *st, const char *name, const int64_t *shape, int ndim,
                     float *dst, Error *err) {
    SafetensorsTensor *t = safetensors_find(st, name);
    const char *where = st->n_files ? st->paths[0] : "safetensors";
    if (!t) return error_set(err, "%s: missing tensor %s", where, name);
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        char have[128], want[128];
        format_shape(have, sizeof have, t->shape, t->ndim);
        format_shape(want, sizeof want, shape, ndim);
        return error_set(err, "%s: tensor %s has shape %s, expected %s", st->paths[t->file], name,
                         have, want);
    }
    size_t n = t->bytes / dtype_bytes[t->dtype];
    if (t->dtype == SAFETENSORS_F32) {
        memcpy(dst, t->data, t->bytes);
    } else {
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, t->data + 2 * i, 2);
            dst[i] = t->dtype == SAFETENSORS_BF16 ? bf16_to_float(h) : f16_to_float(h);
        }
    }
    t->used = 1;
    file_map_drop(t->data, t->bytes);  // copied: the file's pages need not stay resident
    return 0;
}

const char *safetensors_unused(const Safetensors *st) {
    for (int i = 0; i < st->n_tensors; i++)
        if (!st->tensors[i].used) return st->tensors[i].name;
    return NULL;
}

static size_t count_values(const SafetensorsOut *t) {
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
    return n;
}

int safetensors_write(const char *path, const SafetensorsOut *tensors, int n,
                      SafetensorsDtype dtype, Error *err) {
    if (dtype != SAFETENSORS_F32 && dtype != SAFETENSORS_BF16)
        return error_set(err, "%s: dllm writes F32 or BF16", path);
    size_t cap = 256, at = 0, offset = 0;
    for (int i = 0; i < n; i++) cap += strlen(tensors[i].name) + 64 + 24 * SAFETENSORS_MAX_DIMS;
    char *header = malloc(cap);
    if (!header) return error_set(err, "%s: out of memory", path);
    at += (size_t)snprintf(header + at, cap - at, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < n; i++) {
        size_t bytes = count_values(&tensors[i]) * dtype_bytes[dtype];
        at += (size_t)snprintf(header + at, cap - at, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[",
                               tensors[i].name, dtype_names[dtype]);
        for (int d = 0; d < tensors[i].ndim; d++)
            at += (size_t)snprintf(header + at, cap - at, "%s%lld", d ? "," : "",
                                   (long long)tensors[i].shape[d]);
        at += (size_t)snprintf(header + at, cap - at, "],\"data_offsets\":[%zu,%zu]}", offset,
                               offset + bytes);
        offset += bytes;
    }
    at += (size_t)snprintf(header + at, cap - at, "}");
    while (at % 8) header[at++] = ' ';  // the data starts 8-byte aligned
    AtomicFile f;
    if (atomic_open(&f, path, err)) {
        free(header);
        return -1;
    }
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)at >> (8 * i));
    fwrite(len, 1, 8, f.f);
    fwrite(header, 1, at, f.f);
    free(header);
    for (int i = 0; i < n; i++) {
        size_t count = count_values(&tensors[i]);
        if (dtype == SAFETENSORS_F32) {
            fwrite(tensors[i].data, sizeof(float), count, f.f);
            continue;
        }
        for (size_t j = 0; j < count; j++) {
            uint16_t h = float_to_bf16(tensors[i].data[j]);
            fwrite(&h, 2, 1, f.f);
        }
    }
    return atomic_commit(&f, err);
}

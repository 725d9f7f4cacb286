// GGUF, llama.cpp's model file (version 2 and 3): a header, typed metadata (key -> value), the
// tensors' names, shapes, types and offsets, then their data, aligned. The file is memory-mapped
// and nothing is copied: a tensor's data is a pointer into the map. Parsing checks every count,
// string and offset against the file's size, so any input gives an error naming the file and
// what is wrong, never a read outside it. Tensor types other than those below are refused by
// name (Q3_K, IQ2_XS, ...). Little-endian files only.
//   header: "GGUF", uint32 version, uint64 tensor count, uint64 metadata count
//   metadata: string key, uint32 type, value (arrays: uint32 element type, uint64 count, values)
//   tensor: string name, uint32 dims, uint64 ne[dims] (ne[0] the row length), uint32 type,
//           uint64 offset from the data start (general.alignment, default 32)
//   a string: uint64 length, bytes (no NUL)
#ifndef DLLM_GGUF_H
#define DLLM_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

typedef enum {
    GGUF_U8, GGUF_I8, GGUF_U16, GGUF_I16, GGUF_U32, GGUF_I32, GGUF_F32, GGUF_BOOL, GGUF_STRING,
    GGUF_ARRAY, GGUF_U64, GGUF_I64, GGUF_F64, GGUF_N_TYPES
} GgufType;

// The tensor types dllm reads (ggml's numbering).
typedef enum {
    GGML_F32 = 0, GGML_F16 = 1, GGML_Q4_0 = 2, GGML_Q8_0 = 8, GGML_Q4_K = 12, GGML_Q5_K = 13,
    GGML_Q6_K = 14, GGML_BF16 = 30
} GgmlType;

typedef struct {
    const char *key;        // not NUL-terminated: key_len bytes
    size_t key_len;
    GgufType type;
    GgufType elem;          // an array's element type
    uint64_t count;         // an array's length (1 otherwise)
    const uint8_t *value;   // the value's bytes (an array's first element; a string's length)
    const uint8_t *end;     // just past the value's bytes (its last element's)
} GgufKv;

typedef struct {
    char name[96];          // NUL-terminated (longer names are refused)
    int n_dims;
    uint64_t ne[4];         // ne[0]: values per row; the rest 1 past n_dims
    GgmlType type;
    size_t bytes;
    const uint8_t *data;
    int used;               // set by the reader that consumes it (gguf_unused)
} GgufTensor;

typedef struct {
    char path[4096];
    const uint8_t *map;
    size_t size;
    int mapped;             // 1: map is an mmap of path (gguf_close unmaps it)
    uint32_t version;
    GgufKv *kv;
    size_t n_kv;
    GgufTensor *tensors;
    size_t n_tensors;
} Gguf;

// 1 when the file at path starts with GGUF's magic.
int gguf_file(const char *path);
int gguf_open(Gguf *g, const char *path, Error *err);
// The same over bytes in memory (not copied: they must outlive g); `what` names them in errors.
int gguf_parse(Gguf *g, const uint8_t *data, size_t size, const char *what, Error *err);
void gguf_close(Gguf *g);

const char *ggml_type_name(uint32_t type);
// Bytes of one row of n values of a type dllm reads (0: n is not a whole number of blocks).
size_t ggml_row_bytes(GgmlType type, uint64_t n);

const GgufKv *gguf_find(const Gguf *g, const char *key);
// Typed lookups: 0 and the value (any integer type that fits; float for F32 / F64), 1 when the
// key is absent (out untouched), -1 with err naming the key when its type does not fit.
int gguf_get_int(const Gguf *g, const char *key, int64_t *out, Error *err);
int gguf_get_float(const Gguf *g, const char *key, double *out, Error *err);
int gguf_get_bool(const Gguf *g, const char *key, int *out, Error *err);
// A string value (not NUL-terminated) and its length.
int gguf_get_string(const Gguf *g, const char *key, const char **s, size_t *len, Error *err);
// The string at p (an array's element) and where the next begins. Parsing checked the bounds.
const uint8_t *gguf_string_at(const uint8_t *p, const char **s, size_t *len);
// An array element of a fixed-size type as an int64 / double.
int64_t gguf_array_int(const GgufKv *kv, uint64_t i);
double gguf_array_float(const GgufKv *kv, uint64_t i);

GgufTensor *gguf_tensor(const Gguf *g, const char *name);
// The first tensor nothing marked used, or NULL.
const GgufTensor *gguf_unused(const Gguf *g);

#endif

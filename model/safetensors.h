// safetensors files, the weight format of Hugging Face model directories: an 8-byte
// little-endian header length, a JSON header naming every tensor (dtype, shape, byte range),
// then the raw tensor bytes. Reading maps the files (a sharded model's
// model.safetensors.index.json names one file per tensor) and validates the whole header
// before any tensor is used: known dtypes, byte ranges inside the file that match the shape
// and do not overlap. Writing goes through a temporary file and a rename.
#ifndef DLLM_SAFETENSORS_H
#define DLLM_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define SAFETENSORS_MAX_DIMS 4

typedef enum { SAFETENSORS_F32, SAFETENSORS_F16, SAFETENSORS_BF16 } SafetensorsDtype;

typedef struct {
    char *name;
    SafetensorsDtype dtype;
    int ndim;
    int64_t shape[SAFETENSORS_MAX_DIMS];
    const unsigned char *data;  // inside the mapped file
    size_t offset, bytes;       // where in the file's data area
    int file;                   // index into Safetensors.paths
    int used;                   // set when read: an import checks that nothing is left over
} SafetensorsTensor;

typedef struct {
    int n_files;
    char **paths;
    void **maps;
    size_t *map_bytes;
    SafetensorsTensor *tensors;
    int n_tensors;
} Safetensors;

// path: a .safetensors file, or a directory holding model.safetensors or a sharded
// model.safetensors.index.json. Errors name the file (and tensor) and the problem.
int safetensors_open(Safetensors *st, const char *path, Error *err);
void safetensors_close(Safetensors *st);
// The tensor called name, or NULL.
SafetensorsTensor *safetensors_find(const Safetensors *st, const char *name);
// Reads tensor name, which must have exactly the shape given, into dst as fp32 (F16 and BF16
// are widened exactly) and marks it used.
int safetensors_read(const Safetensors *st, const char *name, const int64_t *shape, int ndim,
                     float *dst, Error *err);
// The first tensor nothing read, or NULL.
const char *safetensors_unused(const Safetensors *st);
const char *safetensors_dtype_name(SafetensorsDtype d);

// One tensor to write: fp32 values on the host, stored as the file's dtype.
typedef struct {
    const char *name;
    int ndim;
    int64_t shape[SAFETENSORS_MAX_DIMS];
    const float *data;
} SafetensorsOut;

// Writes n tensors to path in dtype F32 or BF16 (rounded to nearest even), atomically.
int safetensors_write(const char *path, const SafetensorsOut *tensors, int n,
                      SafetensorsDtype dtype, Error *err);

#endif

// Whole-file reads, and writes that never leave a partial file behind: an AtomicFile writes
// `path.tmp` and renames it over `path` only when everything was written.
#ifndef DLLM_FILE_H
#define DLLM_FILE_H

#include <stddef.h>
#include <stdio.h>

#include "common/error.h"

typedef struct {
    FILE *f;
    char path[4096];
    char tmp[4100];
} AtomicFile;

int atomic_open(AtomicFile *a, const char *path, Error *err);
// Closes and renames; on any failure removes the temporary file and names the problem.
int atomic_commit(AtomicFile *a, Error *err);
void atomic_abort(AtomicFile *a);

// Reads a whole file into a malloc'd buffer (NUL-terminated, the NUL not counted in *n).
int file_read_all(const char *path, char **data, size_t *n, Error *err);
// The size of a file in bytes, or -1.
long long file_size(const char *path);
// 0 when a file of `size` bytes is exactly `expected` long; else "truncated" or "trailing
// bytes", naming path.
int file_size_check(const char *path, long size, long expected, Error *err);
// 1 when path is a directory.
int file_is_dir(const char *path);

// Hands back the pages wholly inside [data, data + n) of a read-only file mapping once they
// are read (a model's weights copied out of its file): they leave the process's resident
// memory and are read from the file again if touched.
void file_map_drop(const void *data, size_t n);

// mkdir -p: creates dir and its missing parents.
int make_dirs(const char *dir, Error *err);

#endif

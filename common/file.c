#include "common/file.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int atomic_open(AtomicFile *a, const char *path, Error *err) {
    memset(a, 0, sizeof *a);
    if (strlen(path) >= sizeof a->path) return error_set(err, "%.200s...: path too long", path);
    strcpy(a->path, path);
    snprintf(a->tmp, sizeof a->tmp, "%s.tmp", path);
    a->f = fopen(a->tmp, "wb");
    if (!a->f) return error_set(err, "%s: %s", a->tmp, strerror(errno));
    return 0;
}

int atomic_commit(AtomicFile *a, Error *err) {
    int failed = ferror(a->f);
    failed = (fclose(a->f) != 0) || failed;
    a->f = NULL;
    if (failed || rename(a->tmp, a->path) != 0) {
        int e = errno;
        remove(a->tmp);
        return error_set(err, "%s: write failed: %s", a->path, e ? strerror(e) : "I/O error");
    }
    return 0;
}

void atomic_abort(AtomicFile *a) {
    if (a->f) fclose(a->f);
    a->f = NULL;
    remove(a->tmp);
}

int file_read_all(const char *path, char **data, size_t *n, Error *err) {
    *data = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return error_set(err, "%s: %s", path, strerror(errno));
    long long size = file_size(path);
    char *buf = malloc(size > 0 ? (size_t)size + 1 : 1);
    if (!buf) {
        fclose(f);
        return error_set(err, "%s: out of memory for %lld bytes", path, size);
    }
    size_t got = size > 0 ? fread(buf, 1, (size_t)size, f) : 0;
    fclose(f);
    if ((long long)got != (size > 0 ? size : 0)) {
        free(buf);
        return error_set(err, "%s: read %zu of %lld bytes", path, got, size);
    }
    buf[got] = '\0';
    *data = buf;
    *n = got;
    return 0;
}

int file_size_check(const char *path, long size, long expected, Error *err) {
    if (size < expected)
        return error_set(err, "%s: truncated: %ld bytes, expected %ld", path, size, expected);
    if (size > expected)
        return error_set(err, "%s: %ld trailing bytes after the data", path, size - expected);
    return 0;
}

long long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

int file_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int make_dirs(const char *dir, Error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char c = *p;
        *p = '\0';
        if (mkdir(path, 0777) != 0 && errno != EEXIST)
            return error_set(err, "%s: cannot create: %s", path, strerror(errno));
        *p = c;
        if (c == '\0') return 0;
    }
}

void file_map_drop(const void *data, size_t n) {
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), start = (uintptr_t)data;
    uintptr_t first = (start + page - 1) / page * page, end = (start + n) / page * page;
    if (end > first) madvise((void *)first, end - first, MADV_DONTNEED);
}

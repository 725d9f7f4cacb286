#include "tokenizer/shard.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEADER_BYTES (SHARD_HEADER_INTS * sizeof(int32_t))

// Reads the token count, width and provenance from a header; the file names the format.
static int parse_header(Shard *s, const int32_t *h, Error *err) {
    if (h[0] == SHARD_MAGIC) {
        if (h[1] != SHARD_VERSION)
            return error_set(err, "%s: unsupported shard version %d (this build reads %d)",
                             s->path, h[1], SHARD_VERSION);
        if (h[2] != 2 && h[2] != 4)
            return error_set(err, "%s: bad token width %d", s->path, h[2]);
        s->width = h[2];
        s->vocab_size = h[3];
        s->n = (size_t)(uint32_t)h[4] | (size_t)(uint32_t)h[5] << 32;
        s->tokenizer_hash = (uint64_t)(uint32_t)h[6] | (uint64_t)(uint32_t)h[7] << 32;
    } else if (h[0] == LLMC_MAGIC_U16 || h[0] == LLMC_MAGIC_U32) {
        int want = h[0] == LLMC_MAGIC_U16 ? 1 : 7;
        if (h[1] != want)
            return error_set(err, "%s: llm.c shard with magic %d has version %d, expected %d",
                             s->path, h[0], h[1], want);
        s->width = h[0] == LLMC_MAGIC_U16 ? 2 : 4;
        s->n = (size_t)(uint32_t)h[2];
    } else {
        return error_set(err, "%s: not a token shard (magic %d; dllm writes %d, llm.c %d/%d)",
                         s->path, h[0], SHARD_MAGIC, LLMC_MAGIC_U16, LLMC_MAGIC_U32);
    }
    return 0;
}

int shard_open(Shard *s, const char *path, Error *err) {
    memset(s, 0, sizeof *s);
    snprintf(s->path, sizeof s->path, "%s", path);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return error_set(err, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < (off_t)HEADER_BYTES) {
        close(fd);
        return error_set(err, "%s: truncated: %lld bytes, shorter than the %zu-byte header",
                         path, (long long)st.st_size, HEADER_BYTES);
    }
    s->map_bytes = (size_t)st.st_size;
    void *map = mmap(NULL, s->map_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return error_set(err, "%s: cannot map: %s", path, strerror(errno));
    s->map = map;
    s->tokens = s->map + HEADER_BYTES;
    if (parse_header(s, (const int32_t *)s->map, err)) {
        shard_close(s);
        return -1;
    }
    size_t expected = HEADER_BYTES + s->n * (size_t)s->width;
    if (s->map_bytes != expected) {
        error_set(err, "%s: %s: %zu bytes, the header's %zu tokens need %zu", path,
                  s->map_bytes < expected ? "truncated" : "trailing bytes", s->map_bytes, s->n,
                  expected);
        shard_close(s);
        return -1;
    }
    return 0;
}

void shard_close(Shard *s) {
    if (s->map) munmap((void *)s->map, s->map_bytes);
    memset(s, 0, sizeof *s);
}

int shard_check_vocab(const Shard *s, int vocab_size, Error *err) {
    for (size_t i = 0; i < s->n; i++) {
        int id = shard_token(s, i);
        if (id < 0 || id >= vocab_size)
            return error_set(err, "%s: token %d at position %zu is outside the vocabulary of %d",
                             s->path, id, i, vocab_size);
    }
    return 0;
}

static void fill_header(const ShardWriter *w, int32_t *h) {
    memset(h, 0, HEADER_BYTES);
    h[0] = SHARD_MAGIC;
    h[1] = SHARD_VERSION;
    h[2] = w->width;
    h[3] = w->vocab_size;
    h[4] = (int32_t)(uint32_t)(w->n & 0xffffffffu);
    h[5] = (int32_t)(uint32_t)(w->n >> 32);
    h[6] = (int32_t)(uint32_t)(w->tokenizer_hash & 0xffffffffu);
    h[7] = (int32_t)(uint32_t)(w->tokenizer_hash >> 32);
    h[8] = w->eos_id;
}

int shard_writer_open(ShardWriter *w, const char *path, int vocab_size, int eos_id,
                      uint64_t tokenizer_hash, Error *err) {
    memset(w, 0, sizeof *w);
    w->width = vocab_size <= 65536 ? 2 : 4;
    w->vocab_size = vocab_size;
    w->eos_id = eos_id;
    w->tokenizer_hash = tokenizer_hash;
    if (atomic_open(&w->file, path, err)) return -1;
    int32_t h[SHARD_HEADER_INTS];
    fill_header(w, h);  // a placeholder until the count is known
    fwrite(h, HEADER_BYTES, 1, w->file.f);
    return 0;
}

int shard_writer_append(ShardWriter *w, const int *ids, size_t n, Error *err) {
    unsigned char buf[4096 * 4];
    for (size_t i = 0; i < n;) {
        size_t k = 0;
        for (; i < n && k + (size_t)w->width <= sizeof buf; i++, k += (size_t)w->width) {
            if (ids[i] < 0 || ids[i] >= w->vocab_size)
                return error_set(err, "%s: token %d is outside the vocabulary of %d",
                                 w->file.path, ids[i], w->vocab_size);
            if (w->width == 2) {
                uint16_t v = (uint16_t)ids[i];
                memcpy(buf + k, &v, 2);
            } else {
                uint32_t v = (uint32_t)ids[i];
                memcpy(buf + k, &v, 4);
            }
        }
        if (fwrite(buf, 1, k, w->file.f) != k)
            return error_set(err, "%s: write failed: %s", w->file.tmp, strerror(errno));
    }
    w->n += n;
    return 0;
}

int shard_writer_close(ShardWriter *w, Error *err) {
    int32_t h[SHARD_HEADER_INTS];
    fill_header(w, h);
    if (fseek(w->file.f, 0, SEEK_SET) != 0 || fwrite(h, HEADER_BYTES, 1, w->file.f) != 1) {
        atomic_abort(&w->file);
        return error_set(err, "%s: write failed: %s", w->file.path, strerror(errno));
    }
    return atomic_commit(&w->file, err);
}

void shard_writer_abort(ShardWriter *w) { atomic_abort(&w->file); }

// Token shards: the files `dllm prepare` writes and training reads.
// dllm's own layout is llm.c's: a header of 256 little-endian int32, then the tokens as uint16
// or uint32. Header words: [0] magic 20261124, [1] version 1, [2] token width in bytes (2|4),
// [3] vocabulary size, [4..5] token count (low, high 32 bits), [6..7] tokenizer hash (low,
// high), [8] EOS id (ends every document). llm.c's own shards read as they are: magic 20240520
// version 1 (uint16 tokens) and magic 20240801 version 7 (uint32 tokens), [2] = token count.
#ifndef DLLM_SHARD_H
#define DLLM_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/file.h"

#define SHARD_MAGIC 20261124
#define SHARD_VERSION 1
#define SHARD_HEADER_INTS 256
#define LLMC_MAGIC_U16 20240520
#define LLMC_MAGIC_U32 20240801

typedef struct {
    char path[4096];
    const unsigned char *map;  // the whole file, mapped read-only
    size_t map_bytes;
    const void *tokens;        // after the header
    size_t n;                  // token count
    int width;                 // 2 or 4 bytes per token
    int vocab_size;            // 0 when the file does not say (llm.c shards)
    uint64_t tokenizer_hash;   // 0 when the file does not say
} Shard;

// Maps a shard and checks its header against its size.
int shard_open(Shard *s, const char *path, Error *err);
void shard_close(Shard *s);
static inline int shard_token(const Shard *s, size_t i) {
    return s->width == 2 ? ((const uint16_t *)s->tokens)[i] : (int)((const uint32_t *)s->tokens)[i];
}
// Fails naming the file and position of the first id >= vocab_size.
int shard_check_vocab(const Shard *s, int vocab_size, Error *err);

typedef struct {
    AtomicFile file;
    int width, vocab_size, eos_id;
    uint64_t tokenizer_hash;
    size_t n;
} ShardWriter;

// Tokens are stored as uint16 when the vocabulary fits, else uint32.
int shard_writer_open(ShardWriter *w, const char *path, int vocab_size, int eos_id,
                      uint64_t tokenizer_hash, Error *err);
int shard_writer_append(ShardWriter *w, const int *ids, size_t n, Error *err);
// Writes the final header and renames the file into place.
int shard_writer_close(ShardWriter *w, Error *err);
void shard_writer_abort(ShardWriter *w);

#endif

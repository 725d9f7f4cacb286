// Training data: token sequences from shards (dllm's or llm.c's) or a text file read as
// bytes, and the windows of seq_len tokens the trainer draws from them.
#ifndef DLLM_DATA_H
#define DLLM_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "tokenizer/shard.h"
#include "tokenizer/tokenizer.h"
#include "common/rng.h"

// A run of tokens in memory (a mapped shard, or ids read from a text file).
typedef struct {
    const void *tokens;
    int width;  // bytes per token: 2 (uint16) or 4 (uint32 / int)
    size_t n;
} Segment;

// One split as a sequence of segments read as if concatenated.
typedef struct {
    Segment *segs;
    int n_segs;
    size_t n;   // tokens in all segments
    int *owned; // ids this TokenData allocated, freed with it
} TokenData;

// A view of n ids held by the caller (not copied).
int data_from_ids(TokenData *d, const int *ids, size_t n, Error *err);
void data_free(TokenData *d);
// out[0..len) = tokens start..start+len-1 of the concatenation.
void data_copy(const TokenData *d, size_t start, size_t len, int *out);
// B windows of len tokens, each at a uniformly drawn offset.
void data_random_windows(const TokenData *d, Rng *rng, int B, int len, int *out);
// B consecutive windows from *pos on; *pos moves past them and wraps to 0 at the end.
void data_sequential_windows(const TokenData *d, uint64_t *pos, int B, int len, int *out);

typedef struct {
    Shard *shards;
    int n_shards;
    TokenData train, val;
    uint64_t tokenizer_hash;    // from the shard headers; 0 when they do not say
    int text;                   // 1: a text file read as bytes
    char path[4096];            // as opened
    char tokenizer_path[4200];  // DIR/tokenizer.model, or DIR with a tokenizer.json, else ""
} Dataset;

// path is a directory of shards (*train*.bin, *val*.bin, as dllm prepare and llm.c write
// them), one shard file, or a text file read as bytes. When there are no validation shards,
// the last val_frac of the tokens is held out.
int dataset_open(Dataset *ds, const char *path, double val_frac, Error *err);
// Checks every token id against the model's vocabulary, and the shards' tokenizer (or, for a
// text file, bytes) against the model's. Shards that declare a vocabulary no larger than the model's need no scan.
int dataset_check(const Dataset *ds, const Tokenizer *t, int vocab_size, Error *err);
void dataset_close(Dataset *ds);

#endif

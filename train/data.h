// Training text as one array of token ids, and random windows drawn from it.
#ifndef DLLM_DATA_H
#define DLLM_DATA_H

#include <stddef.h>

#include "common/error.h"
#include "train/rng.h"

typedef struct {
    int *tokens;
    size_t n;
    int owns;  // 1 if tokens was allocated by data_load_bytes (a split is a view)
} TokenData;

// Reads a whole file as bytes (tokenizer/bytes.h ids).
int data_load_bytes(TokenData *d, const char *path, Error *err);
void data_free(TokenData *d);
// The last val_frac of the tokens become the validation view, the rest the training view.
void data_split(const TokenData *all, double val_frac, TokenData *train, TokenData *val);
// Copies B windows of len tokens, each starting at a uniformly drawn offset, into out[B * len].
void data_random_windows(const TokenData *d, Rng *rng, int B, int len, int *out);

#endif

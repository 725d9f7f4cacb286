#include "train/data.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/bytes.h"

int data_load_bytes(TokenData *d, const char *path, Error *err) {
    memset(d, 0, sizeof *d);
    FILE *f = fopen(path, "rb");
    if (!f) return error_set(err, "%s: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return error_set(err, "%s: cannot seek: %s", path, strerror(errno));
    }
    long size = ftell(f);
    rewind(f);
    unsigned char *bytes = malloc(size > 0 ? (size_t)size : 1);
    d->tokens = malloc((size > 0 ? (size_t)size : 1) * sizeof(int));
    if (!bytes || !d->tokens) {
        free(bytes);
        fclose(f);
        data_free(d);
        return error_set(err, "%s: out of memory for %ld bytes", path, size);
    }
    size_t got = fread(bytes, 1, (size_t)size, f);
    fclose(f);
    if (got != (size_t)size) {
        free(bytes);
        data_free(d);
        return error_set(err, "%s: read %zu of %ld bytes", path, got, size);
    }
    bytes_encode(bytes, got, d->tokens);
    free(bytes);
    d->n = got;
    d->owns = 1;
    return 0;
}

void data_free(TokenData *d) {
    if (d->owns) free(d->tokens);
    memset(d, 0, sizeof *d);
}

void data_split(const TokenData *all, double val_frac, TokenData *train, TokenData *val) {
    size_t n_val = (size_t)(all->n * val_frac);
    *train = (TokenData){all->tokens, all->n - n_val, 0};
    *val = (TokenData){all->tokens + (all->n - n_val), n_val, 0};
}

void data_random_windows(const TokenData *d, Rng *rng, int B, int len, int *out) {
    for (int b = 0; b < B; b++) {
        size_t start = rng_below(rng, d->n - (size_t)len + 1);
        memcpy(out + (size_t)b * len, d->tokens + start, (size_t)len * sizeof(int));
    }
}

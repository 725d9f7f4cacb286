#include "dataset/data.h"

#include <errno.h>
#include <stdio.h>
#include <glob.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/file.h"
#include "tokenizer/bytes.h"
#include "tokenizer/hf_tokenizer.h"

static int add_segment(TokenData *d, Segment s, Error *err) {
    Segment *grown = realloc(d->segs, (size_t)(d->n_segs + 1) * sizeof *grown);
    if (!grown) return error_set(err, "out of memory");
    d->segs = grown;
    d->segs[d->n_segs++] = s;
    d->n += s.n;
    return 0;
}

int data_from_ids(TokenData *d, const int *ids, size_t n, Error *err) {
    memset(d, 0, sizeof *d);
    return add_segment(d, (Segment){ids, 4, n}, err);
}

void data_free(TokenData *d) {
    free(d->segs);
    free(d->owned);
    memset(d, 0, sizeof *d);
}

static int segment_token(const Segment *s, size_t i) {
    return s->width == 2 ? ((const uint16_t *)s->tokens)[i] : ((const int *)s->tokens)[i];
}

void data_copy(const TokenData *d, size_t start, size_t len, int *out) {
    int k = 0;
    while (start >= d->segs[k].n) start -= d->segs[k++].n;
    for (size_t i = 0; i < len; i++, start++) {
        while (start == d->segs[k].n) {
            k++;
            start = 0;
        }
        out[i] = segment_token(&d->segs[k], start);
    }
}

void data_random_windows(const TokenData *d, Rng *rng, int B, int len, int *out) {
    for (int b = 0; b < B; b++)
        data_copy(d, rng_below(rng, d->n - (size_t)len + 1), (size_t)len, out + (size_t)b * len);
}

void data_sequential_windows(const TokenData *d, uint64_t *pos, int B, int len, int *out) {
    for (int b = 0; b < B; b++) {
        if (*pos + (uint64_t)len > d->n) *pos = 0;
        data_copy(d, *pos, (size_t)len, out + (size_t)b * len);
        *pos += (uint64_t)len;
    }
}

// Tokens [lo, hi) of src as a new TokenData sharing its memory.
static int data_range(const TokenData *src, size_t lo, size_t hi, TokenData *out, Error *err) {
    memset(out, 0, sizeof *out);
    size_t base = 0;
    for (int k = 0; k < src->n_segs; base += src->segs[k++].n) {
        const Segment *s = &src->segs[k];
        size_t a = lo > base ? lo - base : 0, b = hi - base < s->n ? hi - base : s->n;
        if (hi <= base || a >= b) continue;
        Segment part = {(const char *)s->tokens + a * (size_t)s->width, s->width, b - a};
        if (add_segment(out, part, err)) return -1;
    }
    return 0;
}

static int open_shards(Dataset *ds, const char *pattern, TokenData *split, Error *err) {
    glob_t g;
    if (glob(pattern, 0, NULL, &g) != 0) return 0;  // no match: an empty split
    int rc = 0;
    for (size_t i = 0; i < g.gl_pathc && rc == 0; i++) {
        Shard *grown = realloc(ds->shards, (size_t)(ds->n_shards + 1) * sizeof *grown);
        if (!grown) {
            rc = error_set(err, "out of memory");
            break;
        }
        ds->shards = grown;
        Shard *s = &ds->shards[ds->n_shards];
        if ((rc = shard_open(s, g.gl_pathv[i], err))) break;
        ds->n_shards++;
        if (s->tokenizer_hash && ds->tokenizer_hash && s->tokenizer_hash != ds->tokenizer_hash)
            rc = error_set(err, "%s: made with a different tokenizer than %s", s->path,
                           ds->shards[0].path);
        if (s->tokenizer_hash) ds->tokenizer_hash = s->tokenizer_hash;
        if (rc == 0) rc = add_segment(split, (Segment){s->tokens, s->width, s->n}, err);
    }
    globfree(&g);
    return rc;
}

// Holds out the last val_frac of all (a view) as validation and keeps the rest for training.
static int split_tail(Dataset *ds, TokenData *all, double val_frac, Error *err) {
    size_t n_val = (size_t)(all->n * val_frac);
    int rc = data_range(all, 0, all->n - n_val, &ds->train, err);
    if (rc == 0) rc = data_range(all, all->n - n_val, all->n, &ds->val, err);
    ds->train.owned = all->owned;  // the views share the ids; train frees them
    all->owned = NULL;
    data_free(all);
    return rc;
}

static int open_text(Dataset *ds, const char *path, double val_frac, Error *err) {
    char *text;
    size_t n;
    if (file_read_all(path, &text, &n, err)) return -1;
    TokenData all;
    int *ids = malloc((n ? n : 1) * sizeof(int));
    int rc = ids ? 0 : error_set(err, "%s: out of memory for %zu tokens", path, n);
    if (rc == 0) {
        bytes_encode((const unsigned char *)text, n, ids);
        rc = data_from_ids(&all, ids, n, err);
        all.owned = ids;
    }
    free(text);
    if (rc) {
        free(ids);
        return -1;
    }
    ds->text = 1;
    return split_tail(ds, &all, val_frac, err);
}

int dataset_open(Dataset *ds, const char *path, double val_frac, Error *err) {
    memset(ds, 0, sizeof *ds);
    snprintf(ds->path, sizeof ds->path, "%s", path);
    struct stat st;
    if (stat(path, &st) != 0) return error_set(err, "%s: %s", path, strerror(errno));
    int rc;
    if (S_ISDIR(st.st_mode)) {
        char pattern[4200];
        snprintf(pattern, sizeof pattern, "%s/*train*.bin", path);
        rc = open_shards(ds, pattern, &ds->train, err);
        snprintf(pattern, sizeof pattern, "%s/*val*.bin", path);
        if (rc == 0) rc = open_shards(ds, pattern, &ds->val, err);
        if (rc == 0 && ds->train.n == 0)
            rc = error_set(err, "%s: no training shards (*train*.bin) in the directory", path);
        snprintf(ds->tokenizer_path, sizeof ds->tokenizer_path, "%s/tokenizer.model", path);
        if (file_size(ds->tokenizer_path) < 0)  // a Hugging Face tokenizer's files, or none
            snprintf(ds->tokenizer_path, sizeof ds->tokenizer_path, "%s",
                     hf_tokenizer_path(path) ? path : "");
        if (rc == 0 && ds->val.n == 0) {
            TokenData all = ds->train;
            memset(&ds->train, 0, sizeof ds->train);
            rc = split_tail(ds, &all, val_frac, err);
        }
    } else if (strlen(path) > 4 && strcmp(path + strlen(path) - 4, ".bin") == 0) {
        TokenData all = {0};
        rc = open_shards(ds, path, &all, err);
        if (rc == 0) rc = split_tail(ds, &all, val_frac, err);
    } else {
        rc = open_text(ds, path, val_frac, err);
    }
    if (rc) dataset_close(ds);
    return rc;
}

int dataset_check(const Dataset *ds, const Tokenizer *t, int vocab_size, Error *err) {
    if (ds->text && t && t->kind != TOKENIZER_BYTES)
        return error_set(err, "%s: a text file is read as bytes, but the tokenizer is not "
                              "the byte tokenizer: tokenize it with dllm prepare first", ds->path);
    for (int i = 0; i < ds->n_shards; i++) {
        const Shard *s = &ds->shards[i];
        if (s->tokenizer_hash && t && s->tokenizer_hash != t->hash)
            return error_set(err, "%s: tokenized with a different tokenizer than the model's",
                             s->path);
        if (s->vocab_size == 0 || s->vocab_size > vocab_size)
            if (shard_check_vocab(s, vocab_size, err)) return -1;
    }
    return 0;
}

void dataset_close(Dataset *ds) {
    data_free(&ds->train);
    data_free(&ds->val);
    for (int i = 0; i < ds->n_shards; i++) shard_close(&ds->shards[i]);
    free(ds->shards);
    memset(ds, 0, sizeof *ds);
}

// Text files -> token shards, the work of `dllm prepare`.
// Documents: in a plain text file, paragraphs separated by blank lines; in a .jsonl file, one
// object per line with the text in a string field. Each document is encoded and followed by
// EOS. A document goes to validation when a hash of its text falls under the validation
// fraction, so the split is deterministic and does not depend on file order.
// Streaming: memory holds one document at a time, whatever the input size.
#ifndef DLLM_PREPARE_H
#define DLLM_PREPARE_H

#include <stdint.h>

#include "common/error.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    const char *const *inputs;
    int n_inputs;
    const char *field;       // JSONL field holding the text
    double val_fraction;
    int64_t shard_tokens;    // a new shard starts after this many tokens
    const char *out_dir;     // receives train_NNNNNN.bin, val_NNNNNN.bin and the tokenizer's
                             // files (tokenizer.model, or tokenizer.json + config)
    int progress;            // draw a progress bar on stderr
} PrepareOptions;

typedef struct {
    int64_t docs[2], tokens[2];  // [0] train, [1] validation
    int shards[2];
    int64_t bytes;               // input bytes read
} PrepareReport;

int prepare_shards(const Tokenizer *t, const PrepareOptions *o, PrepareReport *r, Error *err);

#endif

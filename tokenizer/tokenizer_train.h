// Training a SentencePiece tokenizer with dllm's reserved specials, from plain text files.
#ifndef DLLM_TOKENIZER_TRAIN_H
#define DLLM_TOKENIZER_TRAIN_H

#include "common/error.h"

typedef struct {
    const char *const *inputs;  // text files, one sentence or paragraph per line
    int n_inputs;
    int vocab_size;
    const char *type;          // "bpe" or "unigram"
    int max_sentence_length;   // bytes; longer lines are split at a space before the limit
    long max_sentences;        // SentencePiece samples at most this many lines
    int threads;
} TokenizerTrainOptions;

typedef struct {
    long lines, split_lines;  // lines read, and lines split for being too long
} TokenizerTrainReport;

// Trains and writes the model to out_path (atomically). SentencePiece silently drops lines
// over max_sentence_length, so long lines are split first and counted in the report.
int tokenizer_train(const TokenizerTrainOptions *o, const char *out_path,
                    TokenizerTrainReport *report, Error *err);

#endif

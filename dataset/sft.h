// Supervised fine-tuning data: JSONL lines {"prompt": ..., "response": ...} laid out as
// tokenizer/chat.h says, one row of exactly seq_len tokens per example (EOS-padded), with the
// prompt length of each row. The rows are what the SFT batches draw from, and what SFT
// validation scores.
#ifndef DLLM_SFT_H
#define DLLM_SFT_H

#include "common/error.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    int n, T;          // examples, tokens per row
    int *tokens;       // [n, T]
    int *prompt_len;   // [n] tokens up to and including <|response|>: never masked
    int *answer_len;   // [n] response tokens + the first EOS (validation's tokens)
    int truncated;     // responses cut to fit the row
    int owned;         // 1: this struct allocated the arrays
} SftData;

// Reads every line of path; a line that is not an object with string members "prompt" and
// "response", or whose prompt leaves no room for an answer in T tokens, fails naming
// path:line. Responses too long for the row are cut (counted in truncated).
int sft_load(SftData *d, const char *path, const Tokenizer *t, int T, Error *err);
// The same file as plain text, for a model that never saw the chat layout: each row is the
// prompt's tokens then the response's, EOS-padded; answer_len counts the response alone.
int sft_load_text(SftData *d, const char *path, const Tokenizer *t, int T, Error *err);
// Examples [start, start + n) of d as a view (not owned).
SftData sft_view(const SftData *d, int start, int n);
void sft_free(SftData *d);

#endif

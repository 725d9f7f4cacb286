// Exact-match accuracy through the samplers: for each {"prompt", "response"} line, generate an
// answer greedily (MDM: LLaDA's sampler over the rest of the row, one token per step; AR: token
// by token) and count it right when the text up to the first EOS equals the response.
#ifndef DLLM_EXACT_MATCH_H
#define DLLM_EXACT_MATCH_H

#include "common/error.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    int chat;          // 1: prompts in the SFT layout (tokenizer/chat.h)
    int block_length;  // MDM: 0 decodes the whole answer as one block
    int max_items;     // 0: all
    int show;          // print every wrong answer to stdout
    int tokens_per_step;  // MDM: 0 or 1 commits one token per step; k: gen_length / k steps
    float threshold;      // MDM: > 0 decodes by confidence threshold (Fast-dLLM) instead
} ExactOptions;

typedef struct {
    int items, correct;
    double accuracy;
    long long nfe, tokens;  // forward passes and generated positions, for NFE per token
    double seconds;         // generation wall time
} ExactResult;

// The model needs room for batches of up to its max_batch prompts.
int exact_match(Model *m, const Tokenizer *t, const char *path, const ExactOptions *o,
                ExactResult *r, Error *err);

#endif

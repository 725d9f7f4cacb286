// Exact-match accuracy through the samplers: for each {"prompt", "response"} line, generate an
// answer greedily (MDM: LLaDA's sampler over the rest of the row, one token per step; AR: token
// by token) and count it right when the text up to the first EOS equals the response.
#ifndef DLLM_EXACT_MATCH_H
#define DLLM_EXACT_MATCH_H

#include "common/error.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    int chat;          // 1: prompts in the SFT layout (tokenizer/chat.h); 0: plain text, the
                       // answer is the generated rest of the prompt's line
    int blocks;        // MDM: the answer area is decoded in about this many blocks, left to
                       // right: the nearest divisor of its length, because a fine-tuned model
                       // needs its rows at the trained length (cutting 3 padding positions off
                       // took a 4x4 sudoku model from 84% to 0%)
    int max_items;     // 0: all
    int show;          // print every wrong answer to stdout
    int tokens_per_step;  // MDM: 0 or 1 commits one token per step; k: gen_length / k steps
    float threshold;      // MDM: > 0 decodes by confidence threshold (Fast-dLLM) instead
} ExactOptions;

typedef struct {
    int items, correct;
    int available;          // items in the file (items < available: --max-items cut it)
    double accuracy;
    long long nfe, tokens;  // forward passes each answer went through, summed, and the tokens
                            // generated (up to EOS): nfe / tokens is sampler.h's NFE per token
    double seconds;         // generation wall time
    int blocks_used;        // MDM: the most blocks any batch was decoded in
} ExactResult;

// The model needs room for batches of up to its max_batch prompts.
int exact_match(Model *m, const Tokenizer *t, const char *path, const ExactOptions *o,
                ExactResult *r, Error *err);

#endif

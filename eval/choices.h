// Multiple-choice evaluation: JSONL items {"prompt": ..., "choices": [...], "answer": i}, each
// choice scored as a continuation of the prompt (eval/eval.h: exact log-likelihood for AR,
// LLaDA's Monte-Carlo bound for MDM), the most likely choice taken as the model's answer.
#ifndef DLLM_CHOICES_H
#define DLLM_CHOICES_H

#include <stdint.h>

#include "common/error.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    int chat;        // 1: the SFT layout (tokenizer/chat.h): each choice is scored as the
                     // answer row it makes, EOS-padded to the context as in fine-tuning;
                     // 0: plain text, the choice alone
    int mc;          // MDM: mask draws per choice
    float cfg;       // MDM: classifier-free guidance scale (0: off)
    uint64_t seed;   // the same draws for every choice of an item
    int row_len;     // chat layout: rows padded to this many tokens (0: the model's seq_len)
    int left_to_right;  // MDM: score_left_to_right instead of LLaDA's ELBO
} ChoiceOptions;

typedef struct {
    int items, correct;
    double accuracy;
} ChoiceResult;

// Scores every item of path. A malformed line, an answer index out of range or an item too
// long for the context fails naming path:line.
int score_choices(Model *m, const Tokenizer *t, const char *path, const ChoiceOptions *o,
                  ChoiceResult *r, Error *err);

#endif

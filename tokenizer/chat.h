// The layout of prompt/response pairs (SFT data, chat prompts, multiple-choice items), the
// same for every tokenizer:
//     BOS <|prompt|> prompt-text <|response|> response-text EOS [EOS ...]
// The prompt part runs up to and including <|response|>; the trailing EOS tokens pad a row to
// the context length and are trained as part of the response (LLaDA), so a diffusion model
// learns where its answer ends.
#ifndef DLLM_CHAT_H
#define DLLM_CHAT_H

#include <stddef.h>

#include "common/error.h"
#include "tokenizer/tokenizer.h"

// The prompt part of the layout for text: a malloc'd array of *n ids.
int chat_encode_prompt(const Tokenizer *t, const char *text, size_t len, int **ids, size_t *n,
                       Error *err);

// A prompt as the model expects it: in the layout above when chat is set, else plain text.
int encode_prompt(const Tokenizer *t, int chat, const char *text, size_t len, int **ids,
                      size_t *n, Error *err);

#endif

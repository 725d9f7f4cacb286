// The layout of prompt/response pairs (SFT data, chat prompts, multiple-choice items).
// dllm's own tokenizers use its markers:
//     BOS <|prompt|> prompt-text <|response|> response-text EOS [EOS ...]
// A Hugging Face tokenizer uses its model's chat template (tokenizer/chat_template.h): the
// prompt part is the template applied to one user message with the generation prompt, the
// response part the answer as the template writes it followed by its end-of-turn token
// (<|eot_id|>, <|im_end|>).
// The prompt part runs up to where the answer starts; the trailing EOS tokens pad a row to the
// context length and are trained as part of the response (LLaDA), so a diffusion model learns
// where its answer ends.
#ifndef DLLM_CHAT_H
#define DLLM_CHAT_H

#include <stddef.h>

#include "common/error.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

// The prompt part of the layout for text: a malloc'd array of *n ids.
int chat_encode_prompt(const Tokenizer *t, const char *text, size_t len, int **ids, size_t *n,
                       Error *err);
// The response part without the EOS padding: a malloc'd array of *n ids, room for one more.
int chat_encode_response(const Tokenizer *t, const char *text, size_t len, int **ids,
                         size_t *n, Error *err);

// A conversation (system, user and assistant messages, the last the user's) as the prompt of
// the next assistant turn: the model's chat template, or in dllm's layout each user turn as a
// prompt part (system text joined to the user text after it by a blank line) and each
// assistant turn as a response followed by one EOS:
//     BOS <|prompt|> s\n\nu1 <|response|> a1 EOS <|prompt|> u2 <|response|>
int chat_encode_conversation(const Tokenizer *t, const ChatMessage *m, int n, int **ids,
                             size_t *n_ids, Error *err);

// A prompt as the model expects it: in the layout above when chat is set, else plain text.
int encode_prompt(const Tokenizer *t, int chat, const char *text, size_t len, int **ids,
                      size_t *n, Error *err);

#endif

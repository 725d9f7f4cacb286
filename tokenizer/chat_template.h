// Chat layouts. dllm's own tokenizers use its markers (tokenizer/chat.h); a Hugging Face
// tokenizer's layout comes from the Jinja chat_template in its tokenizer_config.json, which dllm
// recognises rather than interprets: the LLaMA-3 header family (LLaMA-3-Instruct, LLaDA-8B-
// Instruct) and the ChatML family (Qwen2, Qwen2.5, Dream; with the default system message the
// template writes when the conversation has none). Anything else is refused when a chat layout
// is asked for, with a hint to use --chat 0.
#ifndef DLLM_CHAT_TEMPLATE_H
#define DLLM_CHAT_TEMPLATE_H

#include <stddef.h>

#include "common/error.h"

typedef enum { CHAT_NONE, CHAT_DLLM, CHAT_LLAMA3, CHAT_CHATML } ChatKind;

typedef struct {
    ChatKind kind;
    char bos[64];        // LLAMA3: the bos_token text the first message starts with
    char system[1024];   // CHATML: the default system message, when has_system
    int has_system;
    char why[200];       // CHAT_NONE: why there is no layout
} ChatTemplate;

typedef struct {
    const char *role;    // "system", "user" or "assistant"
    const char *content;
} ChatMessage;

// Recognises a Jinja template (NULL: none); bos_token may be NULL. Never fails: a template it
// does not know gives CHAT_NONE with the reason in c->why.
void chat_template_recognize(ChatTemplate *c, const char *jinja, const char *bos_token);

// The text apply_chat_template(messages, tokenize=False, add_generation_prompt) gives, malloc'd.
int chat_template_render(const ChatTemplate *c, const ChatMessage *m, int n,
                         int add_generation_prompt, char **text, Error *err);

// What an assistant turn is followed by in the layout (its end-of-turn token), "" for none,
// and the turn's text as the template writes it (LLaMA-3 trims it): [*start, *start + *len).
const char *chat_template_end_of_turn(const ChatTemplate *c);
void chat_template_turn_text(const ChatTemplate *c, const char *text, size_t len,
                             size_t *start, size_t *out_len);

#endif

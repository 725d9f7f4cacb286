// What the server sends back: OpenAI's JSON bodies (completion, chat completion, error,
// model list), their streamed chunks as Server-Sent Events, and dllm's own step events.
#ifndef DLLM_SERVE_RESPONSE_H
#define DLLM_SERVE_RESPONSE_H

#include <stddef.h>

#include "serve/request.h"

// A growing NUL-terminated string; a failed allocation sets `failed` and drops what follows.
typedef struct {
    char *s;
    size_t len, cap;
    int failed;
} Text;

void text_append(Text *t, const char *s, size_t n);
void text_printf(Text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// s (n bytes) as a JSON string literal, quotes included; invalid UTF-8 bytes become U+FFFD.
void text_json_string(Text *t, const char *s, size_t n);
void text_free(Text *t);

// One finished choice.
typedef struct {
    const char *text;
    size_t len;
    const char *finish_reason;  // "stop" or "length"
    const char *logprobs;       // OpenAI's logprobs object (JSON text), or NULL: null
} Choice;

// The identity of a response: its id ("cmpl-..." / "chatcmpl-..."), creation time, model.
typedef struct {
    const char *id;
    long created;
    const char *model;
    int chat;
} ResponseHead;

void response_completion(Text *t, const ResponseHead *h, const Choice *choices, int n,
                         int prompt_tokens, int completion_tokens);
// One streamed chunk for choice `index`: text (may be empty), finish_reason or NULL; the
// first chunk of a chat choice also carries the assistant role.
void response_chunk(Text *t, const ResponseHead *h, int index, const char *text, size_t len,
                    const char *finish_reason, int first);
// dllm's extension event for a diffusion step: `event: dllm.step` with the step number, the
// positions committed and every choice's current text ([MASK]s as U+2591).
void response_step_event(Text *t, int step, int passes, const int *committed_pos,
                         int n_committed, char *const *texts, int n);
// The stream's last chunk when asked for (stream_options.include_usage): no choices, the usage.
void response_usage_chunk(Text *t, const ResponseHead *h, int prompt_tokens,
                          int completion_tokens);
void response_done(Text *t);  // "data: [DONE]"
// {"error": {"message", "type", "param", "code"}}
void response_error(Text *t, const RequestError *e);
void response_models(Text *t, const char *model, long created);

#endif

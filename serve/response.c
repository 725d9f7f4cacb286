#include "serve/response.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"

static int reserve(Text *t, size_t more) {
    if (t->failed) return -1;
    if (t->len + more + 1 <= t->cap) return 0;
    size_t cap = t->cap ? t->cap : 256;
    while (cap < t->len + more + 1) cap *= 2;
    char *s = realloc(t->s, cap);
    if (!s) return t->failed = 1, -1;
    t->s = s, t->cap = cap;
    return 0;
}

void text_append(Text *t, const char *s, size_t n) {
    if (reserve(t, n)) return;
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = '\0';
}

void text_printf(Text *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || reserve(t, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(t->s + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

void text_json_string(Text *t, const char *s, size_t n) {
    text_append(t, "\"", 1);
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            text_append(t, esc, 2), i++;
        } else if (c == '\n') {
            text_append(t, "\\n", 2), i++;
        } else if (c < 0x20 || c == 0x7F) {
            text_printf(t, "\\u%04x", c), i++;
        } else {
            size_t len = utf8_sequence_length(u + i, n - i);
            if (len == 0) text_append(t, "\\ufffd", 6), i++;
            else text_append(t, s + i, len), i += len;
        }
    }
    text_append(t, "\"", 1);
}

void text_free(Text *t) {
    free(t->s);
    memset(t, 0, sizeof *t);
}

static void usage(Text *t, int prompt_tokens, int completion_tokens) {
    text_printf(t, "\"usage\": {\"prompt_tokens\": %d, \"completion_tokens\": %d, "
                "\"total_tokens\": %d}", prompt_tokens, completion_tokens,
                prompt_tokens + completion_tokens);
}

static void head(Text *t, const ResponseHead *h, const char *object) {
    text_printf(t, "{\"id\": \"%s\", \"object\": \"%s\", \"created\": %ld, \"model\": ", h->id,
                object, h->created);
    text_json_string(t, h->model, strlen(h->model));
}

void response_completion(Text *t, const ResponseHead *h, const Choice *choices, int n,
                         int prompt_tokens, int completion_tokens) {
    head(t, h, h->chat ? "chat.completion" : "text_completion");
    text_printf(t, ", \"choices\": [");
    for (int i = 0; i < n; i++) {
        const char *logprobs = choices[i].logprobs ? choices[i].logprobs : "null";
        text_printf(t, "%s{\"index\": %d, ", i ? ", " : "", i);
        if (h->chat) {
            text_printf(t, "\"message\": {\"role\": \"assistant\", \"content\": ");
            text_json_string(t, choices[i].text, choices[i].len);
            text_printf(t, "}, \"logprobs\": %s", logprobs);
        } else {
            text_printf(t, "\"text\": ");
            text_json_string(t, choices[i].text, choices[i].len);
            text_printf(t, ", \"logprobs\": %s", logprobs);
        }
        text_printf(t, ", \"finish_reason\": \"%s\"}", choices[i].finish_reason);
    }
    text_printf(t, "], ");
    usage(t, prompt_tokens, completion_tokens);
    text_printf(t, "}");
}

void response_chunk(Text *t, const ResponseHead *h, int index, const char *text, size_t len,
                    const char *finish_reason, int first) {
    text_printf(t, "data: ");
    head(t, h, h->chat ? "chat.completion.chunk" : "text_completion");
    text_printf(t, ", \"choices\": [{\"index\": %d, ", index);
    if (h->chat) {
        text_printf(t, "\"delta\": {%s", first ? "\"role\": \"assistant\"" : "");
        if (len || !finish_reason) {
            text_printf(t, "%s\"content\": ", first ? ", " : "");
            text_json_string(t, text, len);
        }
        text_printf(t, "}");
    } else {
        text_printf(t, "\"text\": ");
        text_json_string(t, text, len);
        text_printf(t, ", \"logprobs\": null");
    }
    if (finish_reason) text_printf(t, ", \"finish_reason\": \"%s\"}]}\n\n", finish_reason);
    else text_printf(t, ", \"finish_reason\": null}]}\n\n");
}

void response_usage_chunk(Text *t, const ResponseHead *h, int prompt_tokens,
                          int completion_tokens) {
    text_printf(t, "data: ");
    head(t, h, h->chat ? "chat.completion.chunk" : "text_completion");
    text_printf(t, ", \"choices\": [], ");
    usage(t, prompt_tokens, completion_tokens);
    text_printf(t, "}\n\n");
}

void response_step_event(Text *t, int step, int passes, const int *committed_pos,
                         int n_committed, char *const *texts, int n) {
    text_printf(t, "event: dllm.step\ndata: {\"step\": %d, \"passes\": %d, \"committed\": [",
                step, passes);
    for (int i = 0; i < n_committed; i++) text_printf(t, "%s%d", i ? ", " : "", committed_pos[i]);
    text_printf(t, "], \"texts\": [");
    for (int i = 0; i < n; i++) {
        if (i) text_printf(t, ", ");
        text_json_string(t, texts[i], strlen(texts[i]));
    }
    text_printf(t, "]}\n\n");
}

void response_done(Text *t) { text_printf(t, "data: [DONE]\n\n"); }

void response_error(Text *t, const RequestError *e) {
    const char *type = e->status == 401   ? "authentication_error"
                       : e->status == 404 ? "not_found_error"
                       : e->status == 503 ? "server_busy"
                       : e->status >= 500 ? "server_error"
                                          : "invalid_request_error";
    text_printf(t, "{\"error\": {\"message\": ");
    text_json_string(t, e->message, strlen(e->message));
    text_printf(t, ", \"type\": \"%s\", \"param\": ", type);
    if (e->param[0]) text_json_string(t, e->param, strlen(e->param));
    else text_printf(t, "null");
    text_printf(t, ", \"code\": null}}");
}

void response_models(Text *t, const char *model, long created) {
    text_printf(t, "{\"object\": \"list\", \"data\": [{\"id\": ");
    text_json_string(t, model, strlen(model));
    text_printf(t, ", \"object\": \"model\", \"created\": %ld, \"owned_by\": \"dllm\"}]}", created);
}

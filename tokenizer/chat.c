#include "tokenizer/chat.h"

#include <stdlib.h>
#include <string.h>

int encode_prompt(const Tokenizer *t, int chat, const char *text, size_t len, int **ids,
                      size_t *n, Error *err) {
    return chat ? chat_encode_prompt(t, text, len, ids, n, err)
                : tokenizer_encode(t, text, len, ids, n, err);
}

// The model's template around one user message (the text may hold NULs: cut at the first).
static int template_prompt(const Tokenizer *t, const char *text, size_t len, int **ids,
                           size_t *n, Error *err) {
    char *content = strndup(text, len), *rendered = NULL;
    if (!content) return error_set(err, "out of memory");
    ChatMessage m = {"user", content};
    int rc = chat_template_render(&t->chat, &m, 1, 1, &rendered, err);
    if (rc == 0) rc = tokenizer_encode_special(t, rendered, strlen(rendered), ids, n, err);
    free(content);
    free(rendered);
    return rc;
}

int chat_encode_prompt(const Tokenizer *t, const char *text, size_t len, int **ids, size_t *n,
                       Error *err) {
    if (t->chat.kind != CHAT_DLLM) return template_prompt(t, text, len, ids, n, err);
    int *body;
    size_t k;
    if (tokenizer_encode(t, text, len, &body, &k, err)) return -1;
    *ids = malloc((k + 3) * sizeof(int));
    if (!*ids) {
        free(body);
        return error_set(err, "out of memory");
    }
    (*ids)[0] = t->bos_id;
    (*ids)[1] = t->prompt_id;
    memcpy(*ids + 2, body, k * sizeof(int));
    (*ids)[k + 2] = t->response_id;
    *n = k + 3;
    free(body);
    return 0;
}

int chat_encode_response(const Tokenizer *t, const char *text, size_t len, int **ids,
                         size_t *n, Error *err) {
    if (t->chat.kind == CHAT_DLLM) return tokenizer_encode(t, text, len, ids, n, err);
    if (t->chat.kind == CHAT_NONE)
        return error_set(err, "%s: SFT needs a chat layout", t->chat.why);
    size_t start, k;
    chat_template_turn_text(&t->chat, text, len, &start, &k);
    if (tokenizer_encode(t, text + start, k, ids, n, err)) return -1;
    int end = tokenizer_token_id(t, chat_template_end_of_turn(&t->chat));
    if (end < 0) {
        free(*ids);
        return error_set(err, "the tokenizer has no %s token, which its chat template ends a "
                              "turn with", chat_template_end_of_turn(&t->chat));
    }
    (*ids)[(*n)++] = end;  // tokenizer_encode leaves room for one more
    int *grown = realloc(*ids, (*n + 1) * sizeof(int));
    if (grown) *ids = grown;
    return grown ? 0 : error_set(err, "out of memory");
}

// Appends the ids of text (encoded without special tokens) to *ids.
static int append_text(const Tokenizer *t, const char *text, int **ids, size_t *n,
                       size_t *cap, Error *err) {
    int *part;
    size_t k;
    if (tokenizer_encode(t, text, strlen(text), &part, &k, err)) return -1;
    if (*n + k + 4 > *cap) {
        size_t grown_cap = 2 * (*n + k + 4);
        int *grown = realloc(*ids, grown_cap * sizeof(int));
        if (!grown) {
            free(part);
            return error_set(err, "out of memory");
        }
        *ids = grown, *cap = grown_cap;
    }
    memcpy(*ids + *n, part, k * sizeof(int));
    *n += k;
    free(part);
    return 0;
}

// dllm's layout of a conversation (chat.h): consecutive system and user texts are joined and
// encoded as one prompt part, as a fine-tuning row's prompt is.
static int dllm_conversation(const Tokenizer *t, const ChatMessage *m, int n, int **ids,
                             size_t *n_ids, Error *err) {
    size_t len = 0, cap = 64;
    *ids = malloc(cap * sizeof(int));
    if (!*ids) return error_set(err, "out of memory");
    (*ids)[len++] = t->bos_id;
    int rc = 0;
    for (int i = 0; rc == 0 && i < n;) {
        if (strcmp(m[i].role, "assistant") == 0) {  // a response and its EOS
            (*ids)[len++] = t->response_id;
            rc = append_text(t, m[i].content, ids, &len, &cap, err);
            (*ids)[len++] = t->eos_id;
            i++;
            continue;
        }
        size_t bytes = 0;  // the prompt part: this and the next non-assistant texts
        int end = i;
        for (; end < n && strcmp(m[end].role, "assistant") != 0; end++)
            bytes += strlen(m[end].content) + 2;
        char *joined = malloc(bytes + 1);
        if (!joined) {
            rc = error_set(err, "out of memory");
            break;
        }
        joined[0] = '\0';
        for (int k = i; k < end; k++) {
            if (k > i) strcat(joined, "\n\n");
            strcat(joined, m[k].content);
        }
        (*ids)[len++] = t->prompt_id;
        rc = append_text(t, joined, ids, &len, &cap, err);
        free(joined);
        i = end;
    }
    if (rc) {
        free(*ids);
        *ids = NULL;
        return -1;
    }
    (*ids)[len++] = t->response_id;
    *n_ids = len;
    return 0;
}

int chat_encode_conversation(const Tokenizer *t, const ChatMessage *m, int n, int **ids,
                             size_t *n_ids, Error *err) {
    if (n < 1 || strcmp(m[n - 1].role, "user") != 0)
        return error_set(err, "a conversation ends with the user's message");
    for (int i = 0; i < n; i++)
        if (strcmp(m[i].role, "system") && strcmp(m[i].role, "user") &&
            strcmp(m[i].role, "assistant"))
            return error_set(err, "message %d: role '%.40s' (dllm knows system, user and "
                                  "assistant)", i, m[i].role);
    if (t->chat.kind == CHAT_DLLM) return dllm_conversation(t, m, n, ids, n_ids, err);
    char *rendered = NULL;
    if (chat_template_render(&t->chat, m, n, 1, &rendered, err)) return -1;
    int rc = tokenizer_encode_special(t, rendered, strlen(rendered), ids, n_ids, err);
    free(rendered);
    return rc;
}

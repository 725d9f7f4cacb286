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

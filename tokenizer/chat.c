#include "tokenizer/chat.h"

#include <stdlib.h>
#include <string.h>

int encode_prompt(const Tokenizer *t, int chat, const char *text, size_t len, int **ids,
                      size_t *n, Error *err) {
    return chat ? chat_encode_prompt(t, text, len, ids, n, err)
                : tokenizer_encode(t, text, len, ids, n, err);
}

int chat_encode_prompt(const Tokenizer *t, const char *text, size_t len, int **ids, size_t *n,
                       Error *err) {
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

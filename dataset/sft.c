#include "dataset/sft.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "tokenizer/chat.h"

// Lays out one example as a row of T tokens; -1 when the prompt leaves no room. Plain text
// (chat 0): the prompt's and the response's tokens as they are, the response's EOS not counted.
static int add_example(SftData *d, const Tokenizer *t, int chat, const char *prompt,
                       size_t prompt_bytes, const char *response, size_t response_bytes,
                       Error *err) {
    int *p, *r;
    size_t np, nr;
    if (chat ? chat_encode_prompt(t, prompt, prompt_bytes, &p, &np, err)
             : tokenizer_encode(t, prompt, prompt_bytes, &p, &np, err))
        return -1;
    if (chat ? chat_encode_response(t, response, response_bytes, &r, &nr, err)
             : tokenizer_encode(t, response, response_bytes, &r, &nr, err)) {
        free(p);
        return -1;
    }
    int T = d->T, status = 0;
    if (np + 1 > (size_t)T) {
        status = error_set(err, "the prompt is %zu tokens: no room for an answer in seq_len %d",
                           np, T);
    } else {
        int room = T - (int)np - 1;  // response tokens that fit before the first EOS
        if ((int)nr > room) {
            nr = (size_t)room;
            d->truncated++;
        }
        d->tokens = realloc(d->tokens, (size_t)(d->n + 1) * T * sizeof(int));
        d->prompt_len = realloc(d->prompt_len, (size_t)(d->n + 1) * sizeof(int));
        d->answer_len = realloc(d->answer_len, (size_t)(d->n + 1) * sizeof(int));
        int *row = d->tokens + (size_t)d->n * T;
        memcpy(row, p, np * sizeof(int));
        memcpy(row + np, r, nr * sizeof(int));
        for (int i = (int)(np + nr); i < T; i++) row[i] = t->eos_id;
        d->prompt_len[d->n] = (int)np;
        d->answer_len[d->n] = (int)nr + chat;
        d->n++;
    }
    free(p);
    free(r);
    return status;
}

static int load_rows(SftData *d, const char *path, const Tokenizer *t, int T, int chat,
                     Error *err) {
    memset(d, 0, sizeof *d);
    d->T = T;
    d->owned = 1;
    FILE *f = fopen(path, "r");
    if (!f) return error_set(err, "%s: %s", path, strerror(errno));
    char *line = NULL, *fields[2] = {NULL, NULL};
    size_t cap = 0, lens[2];
    int line_no = 0, status = 0;
    Error why;
    while (status == 0 && getline(&line, &cap, f) > 0) {
        line_no++;
        if (strspn(line, " \t\r\n") == strlen(line)) continue;
        static const char *const keys[2] = {"prompt", "response"};
        for (int k = 0; k < 2 && status == 0; k++) {
            int rc = json_get_string(line, keys[k], &fields[k], &lens[k], &why);
            if (rc == 1) rc = error_set(&why, "no \"%s\" member", keys[k]);
            if (rc) status = error_set(err, "%s:%d: %s", path, line_no, why.msg);
        }
        if (status == 0 &&
            add_example(d, t, chat, fields[0], lens[0], fields[1], lens[1], &why))
            status = error_set(err, "%s:%d: %s", path, line_no, why.msg);
        for (int k = 0; k < 2; k++) {
            free(fields[k]);
            fields[k] = NULL;
        }
    }
    free(line);
    fclose(f);
    if (status == 0 && d->n == 0) status = error_set(err, "%s: no examples", path);
    if (status) sft_free(d);
    return status;
}

int sft_load(SftData *d, const char *path, const Tokenizer *t, int T, Error *err) {
    return load_rows(d, path, t, T, 1, err);
}

int sft_load_text(SftData *d, const char *path, const Tokenizer *t, int T, Error *err) {
    return load_rows(d, path, t, T, 0, err);
}

SftData sft_view(const SftData *d, int start, int n) {
    SftData v = *d;
    v.n = n;
    v.tokens = d->tokens + (size_t)start * d->T;
    v.prompt_len = d->prompt_len + start;
    v.answer_len = d->answer_len + start;
    v.owned = 0;
    return v;
}

void sft_free(SftData *d) {
    if (d->owned) {
        free(d->tokens);
        free(d->prompt_len);
        free(d->answer_len);
    }
    memset(d, 0, sizeof *d);
}

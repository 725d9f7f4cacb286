#include "eval/choices.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "tokenizer/chat.h"
#include "eval/eval.h"

// The index of the choice with the lowest -log p(choice | prompt).
static int best_choice(Model *m, const Tokenizer *t, const ChoiceOptions *o, const char *prompt,
                       size_t prompt_len, char **choices, const size_t *choice_lens, int n,
                       int *best, Error *err) {
    int *p, *seq = NULL;
    size_t np;
    if (encode_prompt(t, o->chat, prompt, prompt_len, &p, &np, err)) return -1;
    double best_nll = 0.0;
    int status = 0;
    for (int c = 0; c < n && status == 0; c++) {
        int *ids;
        size_t nc;
        // in the chat layout a choice is an answer: with the template's end-of-turn token
        if (o->chat ? chat_encode_response(t, choices[c], choice_lens[c], &ids, &nc, err)
                    : tokenizer_encode(t, choices[c], choice_lens[c], &ids, &nc, err)) {
            status = -1;
            break;
        }
        // a fine-tuned model has learned rows of the full context, the answer followed by EOS
        // padding: in that layout a choice is scored as the whole answer row it would make
        size_t len = np + nc, row = o->row_len > 0 ? (size_t)o->row_len : (size_t)m->cfg.seq_len;
        if (o->chat && len < row) len = row;
        seq = realloc(seq, len * sizeof(int));
        memcpy(seq, p, np * sizeof(int));
        memcpy(seq + np, ids, nc * sizeof(int));
        for (size_t i = np + nc; i < len; i++) seq[i] = t->eos_id;
        free(ids);
        double nll;
        if (nc == 0) status = error_set(err, "choice %d is empty", c);
        else if (o->left_to_right) status = score_left_to_right(m, seq, (int)len, (int)np, &nll,
                                                                err);
        else status = score_continuation(m, seq, (int)len, (int)np, o->mc, o->cfg, o->seed, &nll,
                                         err);
        if (status == 0 && (c == 0 || nll < best_nll)) best_nll = nll, *best = c;
    }
    free(seq);
    free(p);
    return status;
}

// Parses one item and scores it; *correct says whether the model picked the answer.
static int score_item(Model *m, const Tokenizer *t, const ChoiceOptions *o, const char *line,
                      int *correct, Error *err) {
    char *prompt, **choices;
    size_t prompt_len, *choice_lens;
    int n;
    double answer;
    int rc = json_get_string(line, "prompt", &prompt, &prompt_len, err);
    if (rc) return rc == 1 ? error_set(err, "no \"prompt\" member") : -1;
    rc = json_get_strings(line, "choices", &choices, &choice_lens, &n, err);
    if (rc == 0) {
        rc = json_get_number(line, "answer", &answer, err);
        if (rc == 1) rc = error_set(err, "no \"answer\" member");
        else if (rc == 0 && !(answer >= 0 && answer < n && answer == (int)answer))
            rc = error_set(err, "answer %g is not an index into the %d choices", answer, n);
        int best = 0;
        if (rc == 0)
            rc = best_choice(m, t, o, prompt, prompt_len, choices, choice_lens, n, &best, err);
        *correct = rc == 0 && best == (int)answer;
        json_free_strings(choices, choice_lens, n);
    } else if (rc == 1) {
        rc = error_set(err, "no \"choices\" member");
    }
    free(prompt);
    return rc;
}

int score_choices(Model *m, const Tokenizer *t, const char *path, const ChoiceOptions *o,
                  ChoiceResult *r, Error *err) {
    memset(r, 0, sizeof *r);
    FILE *f = fopen(path, "r");
    if (!f) return error_set(err, "%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    int line_no = 0, status = 0;
    while (status == 0 && getline(&line, &cap, f) > 0) {
        line_no++;
        if (strspn(line, " \t\r\n") == strlen(line)) continue;
        int correct = 0;
        Error why;
        if (score_item(m, t, o, line, &correct, &why)) {
            status = error_set(err, "%s:%d: %s", path, line_no, why.msg);
            break;
        }
        r->items++;
        r->correct += correct;
    }
    free(line);
    fclose(f);
    if (status == 0 && r->items == 0) status = error_set(err, "%s: no items", path);
    if (status == 0) status = m->be->device_error(err);
    r->accuracy = r->items ? (double)r->correct / r->items : 0.0;
    return status;
}

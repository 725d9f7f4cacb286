#include "eval/exact_match.h"

#include <stdlib.h>
#include <string.h>

#include "common/progress.h"
#include "sampler/sampler.h"
#include "dataset/sft.h"

// The divisor of n closest to want (the larger one on a tie).
static int nearest_divisor(int n, int want) {
    int best = 1;
    for (int d = 1; d <= n; d++)
        if (n % d == 0 && abs(d - want) <= abs(best - want)) best = d;
    return best;
}

// Generates answers for items [start, start + n) of d and counts the exact matches.
static int score_batch(Model *m, const Tokenizer *t, const SftData *d, char **answers,
                       int start, int n, const ExactOptions *o, ExactResult *r, Error *err) {
    const int *prompts[n];
    int lens[n];
    for (int i = 0; i < n; i++) {
        prompts[i] = d->tokens + (size_t)(start + i) * d->T;
        lens[i] = d->prompt_len[start + i];
    }
    int P = max_prompt_length(lens, n);
    SamplerConfig sc = sampler_config_default();
    sc.gen_length = m->cfg.seq_len - P;
    if (!o->chat) {
        // plain text: the longest answer and the newline that ends its line, no padding
        int longest = 0;
        for (int i = 0; i < n; i++)
            if (d->answer_len[start + i] > longest) longest = d->answer_len[start + i];
        if (longest + 1 < sc.gen_length) sc.gen_length = longest + 1;
    }
    int blocks = nearest_divisor(sc.gen_length, o->blocks > 1 ? o->blocks : 1);
    sc.block_length = sc.gen_length / blocks;
    if (blocks > r->blocks_used) r->blocks_used = blocks;
    int per_step = o->tokens_per_step > 1 ? o->tokens_per_step : 1;
    sc.steps = sc.gen_length / per_step;
    sc.steps -= sc.steps % blocks;  // the schedule splits steps evenly over the blocks
    if (sc.steps < blocks) sc.steps = blocks;
    sc.threshold = o->threshold;
    sc.eos_id = t->eos_id;
    sc.pad_id = t->pad_id;
    int T = P + sc.gen_length, *out = malloc((size_t)n * T * sizeof(int)), lengths[n];
    SampleStats stats;
    double t0 = now_seconds();
    int rc = sampler_run(SAMPLER_AUTO, m, NULL, &sc, prompts, lens, n, out, lengths, &stats, NULL,
                         NULL, err);
    r->seconds += now_seconds() - t0;
    r->nfe += (long long)stats.nfe * n;  // each sequence of the batch went through every pass
    for (int i = 0; rc == 0 && i < n; i++) {
        r->tokens += lengths[i];
        char *text;
        if ((rc = tokenizer_decode(t, out + (size_t)i * T + P, (size_t)lengths[i], &text, err)))
            break;
        if (!o->chat) text[strcspn(text, "\n")] = '\0';  // the answer is the rest of its line
        int right = strcmp(text, answers[start + i]) == 0;
        r->correct += right;
        if (o->show && !right)
            printf("  wrong: item %d: '%s' instead of '%s'\n", start + i + 1, text,
                   answers[start + i]);
        free(text);
    }
    r->items += n;
    free(out);
    return rc;
}

int exact_match(Model *m, const Tokenizer *t, const char *path, const ExactOptions *o,
                ExactResult *r, Error *err) {
    memset(r, 0, sizeof *r);
    // the rows give the prompt ids; the answers are compared as text, decoded from the rows
    SftData d;
    if ((o->chat ? sft_load : sft_load_text)(&d, path, t, m->cfg.seq_len, err)) return -1;
    int n = o->max_items > 0 && o->max_items < d.n ? o->max_items : d.n;
    r->available = d.n;
    char **answers = calloc((size_t)n, sizeof *answers);
    int status = answers ? 0 : error_set(err, "out of memory");
    for (int i = 0; status == 0 && i < n; i++) {
        const int *row = d.tokens + (size_t)i * d.T + d.prompt_len[i];
        status = tokenizer_decode(t, row, (size_t)d.answer_len[i] - o->chat, &answers[i], err);
    }
    for (int i = 0; status == 0 && i < n; i += m->max_batch)
        status = score_batch(m, t, &d, answers, i, n - i < m->max_batch ? n - i : m->max_batch,
                             o, r, err);
    for (int i = 0; answers && i < n; i++) free(answers[i]);
    free(answers);
    sft_free(&d);
    r->accuracy = r->items ? (double)r->correct / r->items : 0.0;
    return status;
}

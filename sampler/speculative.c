// Speculative decoding: a small drafter proposes the next k tokens of every row, the AR target
// scores all of them in one pass over its KV cache, and each row keeps the longest prefix the
// target agrees with plus one token of the target's own. Greedy, the result is the target's
// greedy output; with temperature, speculative sampling's accept/reject rule (Leviathan et al.
// 2023, Chen et al. 2023) keeps the output distributed exactly as the target's.
//
// The drafter is an AR model (k sequential passes over its own KV cache, each draft token
// drawn from the drafter's distribution q) or a diffusion model (MDM or block diffusion) that
// fills k [MASK]s after the row in `draft_steps` denoising passes, greedily, most confident
// first. A greedy draft is a deterministic function of the accepted text, so its q is a point
// mass, and the accept/reject rule stays exact for any order of filling.
//
// Rows accept different lengths, so each keeps its own position; one pass serves the whole
// batch over the span of rows it needs. To bound that span, a row ahead of the slowest by d
// drafts only k - d tokens (none when d >= k) until the others catch up.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sampler/pick.h"
#include "sampler/sampler.h"

typedef struct {
    int pos;       // generated tokens are final before it; the next one goes here
    int n_draft;   // drafts this round, at pos .. pos + n_draft - 1
    int target_ok; // the target's cache holds the right keys and values before this position
    int draft_ok;  // the AR drafter's, likewise
    int done;      // EOS accepted, or the row is full
} RowState;

typedef struct {
    const SamplerConfig *sc;
    Model *target, *draft;
    int B, T, V, k, mask;
    int *x;              // [B, T] the rows (the caller's out): accepted tokens, then drafts
    int *key_start;      // [B]
    int *draft_x;        // [B, T] a diffusion drafter's window (context, then [MASK]s)
    int *draft_start;    // [B] where each row's context begins in it (padding before)
    RowState *rows;      // [B]
    double *q;           // [B, k, V] the AR drafter's distributions
    double *p;           // [V] the target's distribution at one position
    float *logits;       // [V] one logit row on the host
    Picks picks;         // a diffusion drafter's proposals [B, k]
    Scored *cands;       // [k]
    char *committed;     // [B, T] this round's accepted tokens, for the step event
    float *confidence;   // [B, T] the target's probability of each of them
    Rng rng;
    SampleStats st;
    const Model *not_finite;  // the model whose logits held NaN or infinity, if one did
} Speculator;

// softmax(logits / temperature) into probs, the token `banned` at 0 (temperature 0: a point
// mass on the most likely token).
static void distribution(const float *logits, int V, float temperature, int banned,
                         double *probs) {
    int best = banned == 0 ? 1 : 0;
    for (int i = 0; i < V; i++)
        if (i != banned && logits[i] > logits[best]) best = i;
    if (temperature == 0.0f) {
        memset(probs, 0, (size_t)V * sizeof *probs);
        probs[best] = 1.0;
        return;
    }
    double sum = 0.0;
    for (int i = 0; i < V; i++) {
        probs[i] = i == banned ? 0.0 : exp(((double)logits[i] - logits[best]) / temperature);
        sum += probs[i];
    }
    for (int i = 0; i < V; i++) probs[i] /= sum;
}

// A draw from probs (summing to `total`), or the most likely token at temperature 0.
static int draw(const double *probs, int V, double total, Rng *rng) {
    double r = uniform_open(rng) * total;
    int last = 0;
    for (int i = 0; i < V; i++) {
        if (probs[i] <= 0.0) continue;
        last = i;
        r -= probs[i];
        if (r <= 0.0) return i;
    }
    return last;  // rounding left a sliver of r
}

static int most_likely(const double *probs, int V) {
    int best = 0;
    for (int i = 1; i < V; i++)
        if (probs[i] > probs[best]) best = i;
    return best;
}

// Row `row` of sequence b's logits from the model's last pass of rows_per_seq rows, on the host
// (a NaN or infinity among them is noted in s->not_finite; the round then ends in an error).
static void logit_row(Speculator *s, const Model *m, int b, int rows_per_seq, int row) {
    m->be->act_to_host(s->logits, act_at(m, m->acts.logits, ((size_t)b * rows_per_seq + row) * s->V),
                       (size_t)s->V);
    Error ignored;
    if (logits_check_finite(s->logits, (size_t)s->V, &ignored)) s->not_finite = m;
}

// How many tokens each row drafts this round; returns the most of them (0: none drafts).
static int plan_round(Speculator *s) {
    int slowest = s->T, most = 0;
    for (int b = 0; b < s->B; b++)
        if (!s->rows[b].done && s->rows[b].pos < slowest) slowest = s->rows[b].pos;
    for (int b = 0; b < s->B; b++) {
        RowState *r = &s->rows[b];
        int n = s->k - (r->pos - slowest);           // bounded drift between rows
        if (n > s->T - 1 - r->pos) n = s->T - 1 - r->pos;  // room for the target's own token
        r->n_draft = r->done || n < 0 ? 0 : n;
        if (r->n_draft > most) most = r->n_draft;
    }
    return most;
}

// The AR drafter: pass j draws each row's draft j from the row before it. The pass runs the
// span of rows the batch needs; the first one also refreshes what the last round left stale.
static void draft_ar(Speculator *s, int most) {
    Model *m = s->draft;
    for (int j = 0; j < most; j++) {
        int lo = s->T, hi = 0;
        for (int b = 0; b < s->B; b++) {
            const RowState *r = &s->rows[b];
            if (r->done) continue;
            // the first pass starts at every row's stale cache, later ones at the newest draft
            int from = j == 0 ? r->draft_ok : r->pos + j - 1;
            if ((j == 0 || j < r->n_draft) && from < lo) lo = from;
            if (j < r->n_draft && r->pos + j > hi) hi = r->pos + j;
        }
        if (hi <= lo) continue;
        model_infer(m, s->x, s->key_start, s->B, s->T, lo, hi);
        s->st.draft_nfe++;
        for (int b = 0; b < s->B; b++) {
            RowState *r = &s->rows[b];
            if (r->done || j >= r->n_draft) continue;
            double *q = s->q + ((size_t)b * s->k + j) * s->V;
            logit_row(s, m, b, hi - lo, r->pos + j - 1 - lo);
            distribution(s->logits, s->V, s->sc->temperature, s->mask, q);
            s->x[(size_t)b * s->T + r->pos + j] =
                s->sc->temperature == 0.0f ? most_likely(q, s->V) : draw(q, s->V, 1.0, &s->rng);
        }
    }
    for (int b = 0; b < s->B; b++)
        if (s->rows[b].n_draft > 0) s->rows[b].draft_ok = s->rows[b].pos + s->rows[b].n_draft - 1;
}

// A diffusion drafter: each drafting row's last C tokens (all of them with draft_context 0,
// left-padded to the longest and hidden from attention) followed by [MASK]s, so every row's
// drafts sit at C .. C + n_draft (RoPE sees relative positions only), denoised in draft_steps
// passes: LLaDA's schedule over each row's n_draft positions, most confident first, greedy.
// No cache: each pass recomputes the window, as LLaDA's reference does.
// The context row b's drafts see: its tokens so far, at most draft_context of them.
static int draft_context(const Speculator *s, int b) {
    int have = s->rows[b].pos - s->key_start[b], ctx = s->sc->draft_context;
    return ctx > 0 && ctx < have ? ctx : have;
}

static void draft_diffusion(Speculator *s, int most, int steps) {
    Model *m = s->draft;
    int C = 0, shift = m->cfg.logit_shift;
    for (int b = 0; b < s->B; b++)
        if (s->rows[b].n_draft > 0 && draft_context(s, b) > C) C = draft_context(s, b);
    if (C > s->T - most) C = s->T - most;  // the window fits the model as the rows do
    int W = C + most;
    for (int b = 0; b < s->B; b++) {
        const RowState *r = &s->rows[b];
        int *row = s->draft_x + (size_t)b * W, have = draft_context(s, b);
        int c = r->n_draft == 0 ? 0 : have < C ? have : C;  // a row not drafting: all padding
        s->draft_start[b] = r->n_draft == 0 ? 0 : C - c;
        for (int i = 0; i < C - c; i++) row[i] = s->sc->pad_id;
        memcpy(row + C - c, s->x + (size_t)b * s->T + r->pos - c, (size_t)c * sizeof(int));
        for (int i = C; i < W; i++) row[i] = s->mask;
    }
    int counts[64];
    if (steps > most) steps = most;
    for (int t = 0; t < steps; t++) {
        model_infer_rows(m, s->draft_x, s->draft_start, s->B, W, 0, W, C - shift, W - shift);
        s->st.draft_nfe++;
        Error ignored;
        if (picks_run(&s->picks, m, s->B, most, 0, most, 0.0f, 0.0f, 0, s->mask, &ignored))
            s->not_finite = m;
        for (int b = 0; b < s->B; b++) {
            const RowState *r = &s->rows[b];
            int *row = s->draft_x + (size_t)b * W, n = 0;
            if (r->n_draft == 0) continue;
            llada_transfer_counts(r->n_draft, steps, counts);
            for (int i = 0; i < r->n_draft; i++) {
                if (row[C + i] != s->mask) continue;
                size_t at = (size_t)b * most + i;
                s->cands[n++] = (Scored){s->picks.confidence[at], C + i, s->picks.tokens[at]};
            }
            sort_by_score(s->cands, n);
            for (int i = 0; i < counts[t] && i < n; i++) row[s->cands[i].index] = s->cands[i].token;
        }
    }
    for (int b = 0; b < s->B; b++)
        memcpy(s->x + (size_t)b * s->T + s->rows[b].pos, s->draft_x + (size_t)b * W + C,
               (size_t)s->rows[b].n_draft * sizeof(int));
}

// Commits token `token` at row b's next position, with the target's probability of it.
static void commit(Speculator *s, int b, int token, double prob) {
    RowState *r = &s->rows[b];
    size_t at = (size_t)b * s->T + r->pos;
    s->x[at] = token;
    s->committed[at] = 1;
    s->confidence[at] = (float)prob;
    r->pos++;
    r->done = token == s->sc->eos_id || r->pos == s->T;
}

// The target's verdict on row b's drafts: accept while it agrees (greedy) or by the
// accept/reject rule, then one token of its own (a correction, or the next one after a fully
// accepted draft). `lo` is the first row of the target's pass of `n` rows per sequence.
static void verify_row(Speculator *s, int b, int lo, int n) {
    RowState *r = &s->rows[b];
    int drafted = r->n_draft, start = r->pos, ar_draft = s->draft->cfg.causal;
    float temp = s->sc->temperature;
    for (int i = 0; i <= drafted && !r->done; i++) {
        logit_row(s, s->target, b, n, start + i - 1 - lo);
        distribution(s->logits, s->V, temp, s->mask, s->p);
        if (i == drafted) {  // every draft accepted: the target's next token, free
            int t = temp == 0.0f ? most_likely(s->p, s->V) : draw(s->p, s->V, 1.0, &s->rng);
            commit(s, b, t, s->p[t]);
            break;
        }
        int x = s->x[(size_t)b * s->T + start + i];
        // q(x): the AR drafter's distribution; a greedy draft is a point mass on x
        const double *q = ar_draft && temp > 0.0f ? s->q + ((size_t)b * s->k + i) * s->V : NULL;
        double qx = q ? q[x] : 1.0;
        int accept = temp == 0.0f ? x == most_likely(s->p, s->V)
                                  : uniform_open(&s->rng) * qx < s->p[x];
        if (accept) {
            s->st.accepted++;
            commit(s, b, x, s->p[x]);
            continue;
        }
        // rejected: a draw from the residual max(0, p - q), renormalised
        double total = 0.0;
        for (int v = 0; v < s->V; v++) {
            double rv = s->p[v] - (q ? q[v] : v == x ? 1.0 : 0.0);
            total += s->p[v] = rv > 0.0 ? rv : 0.0;
        }
        int t = temp == 0.0f || total <= 0.0 ? most_likely(s->p, s->V)
                                             : draw(s->p, s->V, total, &s->rng);
        commit(s, b, t, s->p[t] / (total > 0.0 ? total : 1.0));
        break;
    }
    // the newest token has been through neither model; the drafter's keys are right only up
    // to where its drafts were accepted
    r->target_ok = r->pos - 1;
    if (r->draft_ok > r->pos - 1) r->draft_ok = r->pos - 1;
}

// One target pass over the span of rows every row needs (from its first stale row to its last
// draft), then each row's verdict.
static void verify(Speculator *s) {
    int lo = s->T, hi = 0;
    for (int b = 0; b < s->B; b++) {
        const RowState *r = &s->rows[b];
        if (r->done) continue;
        if (r->target_ok < lo) lo = r->target_ok;
        if (r->pos + r->n_draft > hi) hi = r->pos + r->n_draft;
    }
    model_infer(s->target, s->x, s->key_start, s->B, s->T, lo, hi);
    s->st.nfe++;
    memset(s->committed, 0, (size_t)s->B * s->T);
    for (size_t i = 0; i < (size_t)s->B * s->T; i++) s->confidence[i] = NAN;
    for (int b = 0; b < s->B; b++) {
        if (s->rows[b].done) continue;
        s->st.drafted += s->rows[b].n_draft;
        s->st.verified_rows++;
        verify_row(s, b, lo, hi - lo);
    }
}

static int all_done(const Speculator *s) {
    for (int b = 0; b < s->B; b++)
        if (!s->rows[b].done) return 0;
    return 1;
}

static void speculator_free(Speculator *s) {
    free(s->key_start), free(s->draft_x), free(s->draft_start), free(s->rows), free(s->q);
    free(s->p), free(s->logits), free(s->cands), free(s->committed), free(s->confidence);
    picks_free(&s->picks, s->draft->be);
}

// Both models must read and write the same token ids.
static int check_models(const Model *target, const Model *draft, const SamplerConfig *sc,
                        int B, int T, Error *err) {
    if (!target->cfg.causal)
        return error_set(err, "speculative decoding needs an AR target; this one is a "
                         "masked-diffusion model");
    if (draft->cfg.vocab_size != target->cfg.vocab_size ||
        draft->cfg.mask_token_id != target->cfg.mask_token_id)
        return error_set(err, "the draft model's vocabulary (%d tokens, [MASK] %d) differs from "
                         "the target's (%d, [MASK] %d): they must share a tokenizer",
                         draft->cfg.vocab_size, draft->cfg.mask_token_id,
                         target->cfg.vocab_size, target->cfg.mask_token_id);
    if (T > draft->cfg.seq_len)
        return error_set(err, "the draft model's context of %d tokens is shorter than the %d "
                         "this generation needs", draft->cfg.seq_len, T);
    if (B > draft->max_batch)
        return error_set(err, "%d sequences exceed the draft model's batch room of %d", B,
                         draft->max_batch);
    if (sc->draft_length < 1 || sc->draft_length > 64)
        return error_set(err, "--draft-length must be in [1, 64]");
    if (sc->draft_steps < 1)
        return error_set(err, "--draft-steps must be >= 1");
    if (sc->draft_context < 0)
        return error_set(err, "--draft-context must be >= 0 (0: the whole row)");
    if (sc->top_k != 0 || sc->top_p < 1.0f)
        return error_set(err, "speculative decoding samples by temperature alone (no --top-k "
                         "or --top-p)");
    return 0;
}

int speculative_generate(Model *target, Model *draft, const SamplerConfig *sc,
                         const int *const *prompts, const int *prompt_lens, int B, int *out,
                         int *lengths, SampleStats *stats, StepCallback cb, void *user,
                         Error *err) {
    if (sampler_check_config(target, sc, prompt_lens, B, B, err)) return -1;
    for (int b = 0; b < B; b++)
        if (prompt_lens[b] < 1)
            return error_set(err, "speculative decoding needs a prompt of at least one token");
    int P = max_prompt_length(prompt_lens, B), T = P + sc->gen_length;
    if (check_models(target, draft, sc, B, T, err)) return -1;
    int V = target->cfg.vocab_size, k = sc->draft_length;
    Speculator s = {.sc = sc, .target = target, .draft = draft, .B = B, .T = T, .V = V,
                    .k = k, .mask = target->cfg.mask_token_id, .x = out};
    s.key_start = malloc((size_t)B * sizeof(int));
    s.draft_x = malloc((size_t)B * T * sizeof(int));
    s.draft_start = malloc((size_t)B * sizeof(int));
    s.rows = calloc((size_t)B, sizeof *s.rows);
    s.q = draft->cfg.causal ? malloc((size_t)B * k * V * sizeof(double)) : NULL;
    s.p = malloc((size_t)V * sizeof(double));
    s.logits = malloc((size_t)V * sizeof(float));
    s.cands = malloc((size_t)k * sizeof(Scored));
    s.committed = malloc((size_t)B * T);
    s.confidence = malloc((size_t)B * T * sizeof(float));
    if (!s.key_start || !s.draft_x || !s.draft_start || !s.rows || (draft->cfg.causal && !s.q) || !s.p || !s.logits ||
        !s.cands || !s.committed || !s.confidence ||
        (!draft->cfg.causal && picks_alloc(&s.picks, draft->be, B * k))) {
        speculator_free(&s);
        return error_set(err, "out of memory for the speculative sampler");
    }
    rng_seed(&s.rng, sc->seed);
    layout_rows(sc, prompts, prompt_lens, B, T, P, s.mask, out, s.key_start);
    for (int b = 0; b < B; b++) s.rows[b] = (RowState){.pos = P};
    while (!all_done(&s)) {
        int most = plan_round(&s);
        if (most > 0 && draft->cfg.causal) draft_ar(&s, most);
        else if (most > 0) draft_diffusion(&s, most, sc->draft_steps);
        long drafted = s.st.drafted, accepted = s.st.accepted;
        verify(&s);
        if (s.not_finite) {
            speculator_free(&s);
            return logits_not_finite(err, s.not_finite == draft ? "draft model"
                                                                 : "target model");
        }
        if (cb) {
            StepEvent ev = {s.st.steps, 0, B, T, out, s.committed, s.confidence,
                            s.st.drafted - drafted, s.st.accepted - accepted};
            if (cb(user, &ev)) {
                speculator_free(&s);
                return error_set(err, SAMPLER_STOPPED);
            }
        }
        s.st.steps++;
    }
    for (int b = 0; b < B; b++)  // rejected drafts past an EOS read as not generated
        for (int i = s.rows[b].pos; i < T; i++) out[(size_t)b * T + i] = s.mask;
    trim_at_eos(out, B, T, P, sc->eos_id, lengths);
    if (stats) *stats = s.st;
    speculator_free(&s);
    int rc = target->be->device_error(err);
    return rc ? rc : draft->be->device_error(err);
}

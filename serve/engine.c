#include "serve/engine.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/progress.h"
#include "common/rng.h"
#include "sampler/sampler.h"
#include "tokenizer/chat.h"

typedef enum { JOB_QUEUED, JOB_RUNNING, JOB_FINISHED } JobState;

struct Job {
    ServeRequest req;
    int rows;                 // choices: n for each prompt
    int **prompt_ids;         // [n_prompts] each prompt's ids (a chat: one)
    int *prompt_lens;
    int n_prompts;
    int prompt_len;           // the longest
    int prompt_tokens;        // all prompts' ids (the usage)
    char id[48];
    long created;
    JobState state;
    int refs;                 // the HTTP side and the worker
    int cancelled;            // the client went away
    int status;               // 200, or the error's
    RequestError error;
    Text *texts;              // [n] each choice's text (finished: cut at EOS / stop)
    Text *logprobs;           // [n] each choice's logprobs object (JSON), when asked for
    const char **finish;      // [n] "stop" or "length"
    size_t *sent;             // [n] bytes of each text already streamed
    int completion_tokens, passes;
    int batched;              // requests in its batch
    Text stream;              // Server-Sent Events not yet read by the HTTP side
    size_t stream_read;
    double t_queued, t_started, t_finished;
    pthread_cond_t changed;
    Job *next;
};

struct Engine {
    EngineConfig cfg;
    pthread_t worker;
    pthread_mutex_t lock;
    pthread_cond_t work;
    Job *head, *tail;
    int queued, stopping;
    unsigned long serial;
    Rng seeds;  // a fresh seed for each request that names none
};

static void job_free(Job *j) {
    for (int i = 0; j->texts && i < j->rows; i++) text_free(&j->texts[i]);
    for (int i = 0; j->logprobs && i < j->rows; i++) text_free(&j->logprobs[i]);
    free(j->logprobs);
    request_free(&j->req);
    for (int i = 0; j->prompt_ids && i < j->n_prompts; i++) free(j->prompt_ids[i]);
    free(j->prompt_ids), free(j->prompt_lens);
    free(j->texts), free(j->finish), free(j->sent);
    text_free(&j->stream);
    pthread_cond_destroy(&j->changed);
    free(j);
}

static void release_locked(Job *j) {
    if (--j->refs == 0) job_free(j);
}

// ---- generation (worker thread, lock not held unless said) ----

enum { GROUP_MAX = 16 };  // requests sharing one batch

// A batch: compatible requests whose rows share every forward pass (jobs[i]'s n rows start at
// row first[i]); what the step callback needs.
typedef struct {
    Engine *e;
    Job *jobs[GROUP_MAX];
    int first[GROUP_MAX + 1];  // first[n_jobs] = B
    int n_jobs, B, T, P;
    int finished_all;          // every choice of an AR run met a stop string: it may end
} Run;

static ResponseHead head_of(const Engine *e, const Job *j) {
    return (ResponseHead){j->id, j->created, e->cfg.limits.model_id, j->req.chat};
}

// How many of row `row`'s generated tokens count: up to the first EOS or [MASK].
static int generated_tokens(const Run *run, const int *out, int row) {
    const Tokenizer *tok = run->e->cfg.tokenizer;
    const int *ids = out + (size_t)row * run->T + run->P;
    int n = 0, gen = run->T - run->P;
    while (n < gen && ids[n] != tok->eos_id && ids[n] != tok->mask_id && ids[n] < tok->vocab_size)
        n++;
    return n;
}

// Row `row`'s generated text so far: tokens from P up to the first EOS or [MASK], decoded; cut
// at the first of job j's stop strings. *stopped: EOS or a stop string ended it. Returns the
// token count.
static int row_text(const Run *run, const Job *j, const int *out, int row, Text *t,
                    int *stopped) {
    const Tokenizer *tok = run->e->cfg.tokenizer;
    const int *ids = out + (size_t)row * run->T + run->P;
    int n = generated_tokens(run, out, row), gen = run->T - run->P;
    *stopped = n < gen && ids[n] == tok->eos_id;
    char *text = NULL;
    Error err;
    t->len = 0;
    if (tokenizer_decode(tok, ids, (size_t)n, &text, &err) == 0) {
        size_t len = strlen(text), cut = request_cut_at_stop(&j->req, text, len);
        if (cut < len) *stopped = 1;
        text_append(t, text, cut);
        free(text);
    }
    if (!t->s) text_append(t, "", 0);
    return n;
}

// How much of a growing text can be streamed: none of a possible stop string's start, nor an
// unfinished UTF-8 character.
static size_t safe_prefix(const ServeRequest *r, const Text *t) {
    size_t keep = 0;
    for (int i = 0; i < r->n_stops; i++)
        if (strlen(r->stops[i]) - 1 > keep) keep = strlen(r->stops[i]) - 1;
    size_t n = t->len > keep ? t->len - keep : 0;
    while (n > 0 && ((unsigned char)t->s[n] & 0xC0) == 0x80) n--;  // back to a lead byte
    return n;
}

// A diffusion step of job k's rows as dllm's event: each rendered piece by piece, [MASK] as
// U+2591; the committed positions are its first choice's.
static void diffusion_step_event(Run *run, int k, const StepEvent *ev, Text *out) {
    const Tokenizer *tok = run->e->cfg.tokenizer;
    int n = run->first[k + 1] - run->first[k], n_committed = 0;
    char **texts = calloc((size_t)n, sizeof *texts);
    int *committed = malloc((size_t)run->T * sizeof(int));
    char piece[TOKENIZER_PIECE_MAX];
    for (int c = 0; texts && committed && c < n; c++) {
        size_t row = (size_t)(run->first[k] + c) * run->T;
        Text t = {0};
        for (int p = run->P; p < run->T; p++) {
            int id = ev->tokens[row + p];
            if (c == 0 && ev->committed[row + p]) committed[n_committed++] = p - run->P;
            if (id == tok->eos_id) break;
            if (id == tok->mask_id) text_append(&t, "\xe2\x96\x91", 3);
            else if (id < tok->vocab_size) {
                const char *s = tokenizer_piece(tok, id, piece);
                text_append(&t, s, strlen(s));
            }
        }
        if (!t.s) text_append(&t, "", 0);
        texts[c] = t.s;
    }
    if (texts && committed)
        response_step_event(out, ev->step, ev->step + 1, committed, n_committed, texts, n);
    for (int c = 0; texts && c < n; c++) free(texts[c]);
    free(texts), free(committed);
}

// A step of job k: each choice's newly final text as OpenAI chunks: the tokens from the first
// generated position up to the first still-masked one (an AR model's text so far; a diffusion
// model never changes a committed token, so its text streams block by block, as LLaDA's
// semi-autoregressive blocks complete). Returns 1 when all its choices have stopped.
static int prefix_chunks(Run *run, int k, const StepEvent *ev, Text *out) {
    Job *j = run->jobs[k];
    ResponseHead h = head_of(run->e, j);
    int all = 1;
    for (int c = 0; c < j->rows; c++) {
        int stopped;
        row_text(run, j, ev->tokens, run->first[k] + c, &j->texts[c], &stopped);
        size_t upto = stopped ? j->texts[c].len : safe_prefix(&j->req, &j->texts[c]);
        if (upto > j->sent[c])
            response_chunk(out, &h, c, j->texts[c].s + j->sent[c], upto - j->sent[c], NULL,
                           j->sent[c] == 0);
        if (upto > j->sent[c]) j->sent[c] = upto;
        all &= stopped;
    }
    return all;
}

static int on_step(void *user, const StepEvent *ev) {
    Run *run = user;
    Engine *e = run->e;
    Text events[GROUP_MAX];
    int all_stopped = !e->cfg.limits.diffusion;
    for (int k = 0; k < run->n_jobs; k++) {
        Job *j = run->jobs[k];
        events[k] = (Text){0};
        // a choice's final prefix only grows: stream it, and end an AR run once every choice
        // has met a stop string; a diffusion step is shown whole, when asked for
        if (j->req.stream && j->req.stream_steps) diffusion_step_event(run, k, ev, &events[k]);
        else if (j->req.stream || (!e->cfg.limits.diffusion && j->req.n_stops))
            all_stopped &= prefix_chunks(run, k, ev, &events[k]);
        else all_stopped = 0;
        if (!j->req.stream) events[k].len = 0;
    }
    run->finished_all = all_stopped;
    pthread_mutex_lock(&e->lock);
    int all_cancelled = 1;
    for (int k = 0; k < run->n_jobs; k++) {
        Job *j = run->jobs[k];
        j->passes = ev->step + 1;
        all_cancelled &= j->cancelled;
        if (events[k].len) {
            text_append(&j->stream, events[k].s, events[k].len);
            pthread_cond_broadcast(&j->changed);
        }
    }
    int stop = all_cancelled || all_stopped ||
               now_seconds() - run->jobs[0]->t_started > e->cfg.time_limit;
    pthread_mutex_unlock(&e->lock);
    for (int k = 0; k < run->n_jobs; k++) text_free(&events[k]);
    return stop;
}

// The logits that predict token t of seq (t >= 1) given the tokens before it, into row (host,
// vocab floats). An AR model: row t - 1 of one pass over seq. A diffusion model, left to right:
// position t with itself and everything after it masked (the likelihood of decoding the text
// one token at a time in order, which any split into context and continuation sums correctly),
// its passes run for a batch of positions at a time into rows (max_batch x len tokens).
typedef struct {
    Model *m;
    const int *seq;
    int len, mask_id;
    int *rows;       // diffusion: the batch's inputs
    int first, n;    // diffusion: positions [first, first + n) are in the last pass
} Scorer;

static void predicted_logits(Scorer *s, int t, float *row) {
    Model *m = s->m;
    int V = m->cfg.vocab_size, shift = m->cfg.logit_shift;
    if (m->cfg.causal) {
        if (s->n == 0) model_forward(m, s->seq, 1, s->len), s->n = 1;
        m->be->act_to_host(row, act_at(m, m->acts.logits, (size_t)(t - 1) * V), (size_t)V);
        return;
    }
    if (t >= s->first + s->n) {  // the next batch of positions
        s->first = t;
        s->n = s->len - t < m->max_batch ? s->len - t : m->max_batch;
        for (int b = 0; b < s->n; b++)
            for (int i = 0; i < s->len; i++)
                s->rows[(size_t)b * s->len + i] = i < t + b ? s->seq[i] : s->mask_id;
        model_infer(m, s->rows, NULL, s->n, s->len, 0, s->len);
    }
    size_t at = ((size_t)(t - s->first) * s->len + (size_t)(t - shift)) * V;
    m->be->act_to_host(row, act_at(m, m->acts.logits, at), (size_t)V);
}

// One token of a chat logprobs object: its text, log-probability and UTF-8 bytes.
static void chat_token(Text *t, const char *piece, size_t len, double logprob) {
    text_printf(t, "{\"token\": ");
    text_json_string(t, piece, len);
    text_printf(t, ", \"logprob\": %.9g, \"bytes\": [", logprob);
    for (size_t i = 0; i < len; i++) text_printf(t, "%s%u", i ? ", " : "", (unsigned char)piece[i]);
    text_printf(t, "]");
}

// OpenAI's logprobs object for tokens [first, len) of seq: each token's log-probability given
// those before it (none for position 0: null; Scorer says how) and the `top` most likely tokens
// there; /v1/completions' layout (tokens, token_logprobs, top_logprobs, text_offset), or a chat
// completion's (content: a list of tokens with their alternatives).
static int logprobs_json(Engine *e, const int *seq, int len, int first, int top, int chat,
                         Text *out) {
    Model *m = e->cfg.model;
    const Tokenizer *tok = e->cfg.tokenizer;
    int V = m->cfg.vocab_size;
    float *row = malloc((size_t)V * sizeof(float));
    Scorer s = {m, seq, len, m->cfg.mask_token_id, NULL, 0, 0};
    if (!m->cfg.causal) s.rows = malloc((size_t)m->max_batch * len * sizeof(int));
    if (!row || (!m->cfg.causal && !s.rows)) {
        free(row), free(s.rows);
        return -1;
    }
    Text tokens = {0}, lps = {0}, tops = {0}, offsets = {0}, content = {0};
    char piece[TOKENIZER_PIECE_MAX];
    size_t offset = 0;
    for (int t = first; t < len; t++) {
        const char *sep = t > first ? ", " : "";
        size_t plen;
        const char *p = seq[t] < tok->vocab_size ? tokenizer_piece_len(tok, seq[t], piece, &plen)
                                                 : (plen = 0, "");
        text_printf(&tokens, "%s", sep);
        text_json_string(&tokens, p, plen);
        text_printf(&offsets, "%s%zu", sep, offset);
        offset += plen;
        if (t == 0) {  // nothing before the first token
            text_printf(&lps, "%snull", sep);
            text_printf(&tops, "%snull", sep);
            continue;
        }
        predicted_logits(&s, t, row);
        double max = row[0], sum = 0.0;
        for (int v = 1; v < V; v++) max = row[v] > max ? row[v] : max;
        for (int v = 0; v < V; v++) sum += exp((double)row[v] - max);
        double lse = max + log(sum);
        text_printf(&lps, "%s%.9g", sep, (double)row[seq[t]] - lse);
        text_printf(&content, "%s", sep);
        chat_token(&content, p, plen, (double)row[seq[t]] - lse);
        text_printf(&content, ", \"top_logprobs\": [");
        text_printf(&tops, "%s{", sep);
        int chosen[REQUEST_MAX_TOP_LOGPROBS];
        for (int k = 0; k < top; k++) {  // the k-th most likely (ties: the lower id)
            int best = -1;
            for (int v = 0; v < V; v++) {
                int taken = 0;
                for (int i = 0; i < k; i++) taken |= chosen[i] == v;
                if (!taken && (best < 0 || row[v] > row[best])) best = v;
            }
            chosen[k] = best;
            p = best < tok->vocab_size ? tokenizer_piece_len(tok, best, piece, &plen)
                                       : (plen = 0, "");
            text_printf(&tops, "%s", k ? ", " : "");
            text_json_string(&tops, p, plen);
            text_printf(&tops, ": %.9g", (double)row[best] - lse);
            text_printf(&content, "%s", k ? ", " : "");
            chat_token(&content, p, plen, (double)row[best] - lse);
            text_printf(&content, "}");
        }
        text_printf(&tops, "}");
        text_printf(&content, "]}");
    }
    if (chat)
        text_printf(out, "{\"content\": [%s], \"refusal\": null}", content.s ? content.s : "");
    else
        text_printf(out, "{\"tokens\": [%s], \"token_logprobs\": [%s], \"top_logprobs\": [%s], "
                    "\"text_offset\": [%s]}", tokens.s ? tokens.s : "", lps.s ? lps.s : "",
                    tops.s ? tops.s : "", offsets.s ? offsets.s : "");
    text_free(&tokens), text_free(&lps), text_free(&tops), text_free(&offsets);
    text_free(&content);
    free(row), free(s.rows);
    return out->failed ? -1 : 0;
}

// Choice c of job k with echo and logprobs: the prompt's text before the completion's, the
// tokens' log-probabilities (the prompt's too with echo). -1 when out of memory.
static int score_choice(Run *run, int k, int c, const int *out) {
    Job *j = run->jobs[k];
    const ServeRequest *r = &j->req;
    int p = c / r->n, plen = j->prompt_lens[p];
    int gen = generated_tokens(run, out, run->first[k] + c), len = plen + gen;
    int *seq = malloc((size_t)len * sizeof(int));
    if (!seq) return -1;
    memcpy(seq, j->prompt_ids[p], (size_t)plen * sizeof(int));
    memcpy(seq + plen, out + (size_t)(run->first[k] + c) * run->T + run->P,
           (size_t)gen * sizeof(int));
    int rc = r->logprobs >= 0 ? logprobs_json(run->e, seq, len, r->echo ? 0 : plen, r->logprobs,
                                              r->chat, &j->logprobs[c])
                              : 0;
    if (rc == 0 && r->echo) {  // the prompt as given (ids: decoded), then the completion
        char *decoded = NULL;
        Error err;
        const char *prompt = r->chat ? NULL : r->prompts[p].text;
        if (!prompt && tokenizer_decode(run->e->cfg.tokenizer, seq, (size_t)plen, &decoded,
                                        &err) == 0)
            prompt = decoded;
        Text t = {0};
        text_append(&t, prompt ? prompt : "", prompt ? strlen(prompt) : 0);
        text_append(&t, j->texts[c].s, j->texts[c].len);
        text_free(&j->texts[c]);
        j->texts[c] = t;
        free(decoded);
        rc = t.failed ? -1 : 0;
    }
    free(seq);
    return rc;
}

// Job k's outcome after the run (rc: the sampler's): its choices, or its error.
static void finish_job(Run *run, int k, int rc, const Error *err, const int *out,
                       const SampleStats *st) {
    Engine *e = run->e;
    Job *j = run->jobs[k];
    const ServeRequest *r = &j->req;
    int ok = rc == 0 || run->finished_all;  // every choice met a stop string: a success
    ResponseHead h = head_of(e, j);
    Text tail = {0};
    int completion = 0;
    for (int c = 0; ok && c < j->rows; c++) {
        int stopped;
        completion += row_text(run, j, out, run->first[k] + c, &j->texts[c], &stopped);
        j->finish[c] = stopped ? "stop" : "length";
        if (r->stream) {
            response_chunk(&tail, &h, c, j->texts[c].s + j->sent[c], j->texts[c].len - j->sent[c],
                           j->finish[c], j->sent[c] == 0);
            j->sent[c] = j->texts[c].len;
        }
    }
    Error why = *err;
    for (int c = 0; ok && (r->logprobs >= 0 || r->echo) && c < j->rows; c++)
        if (score_choice(run, k, c, out)) ok = 0, error_set(&why, "out of memory scoring tokens");
    pthread_mutex_lock(&e->lock);
    j->completion_tokens = completion;
    j->passes = st->nfe;
    if (ok) {
        j->status = 200;
    } else {
        // stopped: its client left (499, as web servers log it) or its time ran out (504)
        int stopped = strcmp(why.msg, SAMPLER_STOPPED) == 0;
        j->status = j->error.status = j->cancelled ? 499 : stopped ? 504 : 500;
        snprintf(j->error.message, sizeof j->error.message, "%.290s",
                 j->cancelled ? "the client closed the connection"
                 : stopped    ? "the request ran past the server's time limit"
                              : why.msg);
        if (r->stream) {  // the stream's headers are sent: the error is an event
            text_printf(&tail, "event: error\ndata: ");
            response_error(&tail, &j->error);
            text_printf(&tail, "\n\n");
        }
    }
    if (r->stream && ok && r->include_usage)
        response_usage_chunk(&tail, &h, j->prompt_tokens, completion);
    if (r->stream) response_done(&tail);
    text_append(&j->stream, tail.s ? tail.s : "", tail.len);
    j->state = JOB_FINISHED;
    j->t_finished = now_seconds();
    pthread_cond_broadcast(&j->changed);
    pthread_mutex_unlock(&e->lock);
    text_free(&tail);
}

// Runs a group of compatible jobs (lock not held) as one batch of their rows, prompts
// right-aligned at the longest (the samplers pad and hide the left of shorter ones).
static void run_group(Run *run) {
    Engine *e = run->e;
    const ServeRequest *r = &run->jobs[0]->req;
    int B = run->B, P = 0;
    for (int k = 0; k < run->n_jobs; k++)
        if (run->jobs[k]->prompt_len > P) P = run->jobs[k]->prompt_len;
    run->P = P, run->T = P + r->max_tokens;
    const int **prompts = malloc((size_t)B * sizeof *prompts);
    int *lens = malloc((size_t)B * sizeof(int)), *out = malloc((size_t)B * run->T * sizeof(int));
    int *lengths = malloc((size_t)B * sizeof(int));
    SamplerConfig sc = r->sc;
    sc.eos_id = e->cfg.tokenizer->eos_id;
    SampleStats st = {0};
    Error err = {0};
    int rc = -1;
    if (prompts && lens && out && lengths) {
        for (int k = 0; k < run->n_jobs; k++)
            for (int b = run->first[k]; b < run->first[k + 1]; b++)
                prompts[b] = run->jobs[k]->prompt_ids[(b - run->first[k]) / run->jobs[k]->req.n],
                lens[b] = run->jobs[k]->prompt_lens[(b - run->first[k]) / run->jobs[k]->req.n];
        // max_tokens 0 (echo): the prompts are scored, nothing is generated
        rc = r->max_tokens == 0 ? 0
                                : sampler_run(SAMPLER_AUTO, e->cfg.model, NULL, &sc, prompts,
                                              lens, B, out, lengths, &st, on_step, run, &err);
    } else {
        snprintf(err.msg, sizeof err.msg, "out of memory for %d rows", B);
    }
    for (int k = 0; k < run->n_jobs; k++) finish_job(run, k, rc, &err, out, &st);
    free(prompts), free(lens), free(out), free(lengths);
}

// Two requests can share a batch when the sampler runs both the same way, and neither asks
// for a seeded sample (its draws would depend on its rows' place in the batch).
static int compatible(const ServeRequest *a, const ServeRequest *b) {
    const SamplerConfig *x = &a->sc, *y = &b->sc;
    int seeded = (x->temperature > 0.0f && a->seeded) || (y->temperature > 0.0f && b->seeded);
    return !seeded && a->max_tokens == b->max_tokens && x->temperature == y->temperature &&
           x->top_p == y->top_p && x->steps == y->steps && x->block_length == y->block_length &&
           x->remasking == y->remasking && x->threshold == y->threshold &&
           x->cache == y->cache && x->cfg_scale == y->cfg_scale;
}

// Takes the queue's first job and the queued ones compatible with it that fit the batch
// (lock held).
static void take_group(Engine *e, Run *run) {
    *run = (Run){.e = e};
    Job **link = &e->head;
    while (*link && run->n_jobs < GROUP_MAX) {
        Job *j = *link;
        if (run->n_jobs > 0 && (!compatible(&run->jobs[0]->req, &j->req) ||
                                run->B + j->rows > e->cfg.model->max_batch)) {
            link = &j->next;
            continue;
        }
        *link = j->next;  // out of the queue, into the group
        e->queued--;
        j->state = JOB_RUNNING;
        j->t_started = now_seconds();
        run->first[run->n_jobs] = run->B;
        run->jobs[run->n_jobs++] = j;
        run->B += j->rows;
    }
    run->first[run->n_jobs] = run->B;
    for (int k = 0; k < run->n_jobs; k++) run->jobs[k]->batched = run->n_jobs;
    e->tail = NULL;
    for (Job *j = e->head; j; j = j->next) e->tail = j;
}

// Rows the queued requests need (lock held).
static int queued_rows(const Engine *e) {
    int rows = 0;
    for (const Job *j = e->head; j; j = j->next) rows += j->rows;
    return rows;
}

static void timed_wait(pthread_cond_t *cond, pthread_mutex_t *lock, double seconds) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    long ns = until.tv_nsec + (long)(seconds * 1e9);
    until.tv_sec += ns / 1000000000L;
    until.tv_nsec = ns % 1000000000L;
    pthread_cond_timedwait(cond, lock, &until);
}

static void *worker_main(void *arg) {
    Engine *e = arg;
    pthread_mutex_lock(&e->lock);
    for (;;) {
        while (!e->head && !e->stopping) pthread_cond_wait(&e->work, &e->lock);
        if (!e->head) break;
        // a moment for more requests to arrive and share the batch
        double until = now_seconds() + e->cfg.batch_wait;
        while (e->cfg.batch_wait > 0.0 && !e->stopping && now_seconds() < until &&
               queued_rows(e) < e->cfg.model->max_batch)
            timed_wait(&e->work, &e->lock, until - now_seconds());
        Run run;
        take_group(e, &run);
        pthread_mutex_unlock(&e->lock);
        run_group(&run);
        pthread_mutex_lock(&e->lock);
        for (int k = 0; k < run.n_jobs; k++) release_locked(run.jobs[k]);
    }
    pthread_mutex_unlock(&e->lock);
    return NULL;
}

Engine *engine_start(const EngineConfig *cfg, Error *err) {
    Engine *e = calloc(1, sizeof *e);
    if (!e) return error_set(err, "out of memory"), NULL;
    e->cfg = *cfg;
    rng_seed(&e->seeds, (uint64_t)(now_seconds() * 1e6) ^ ((uint64_t)getpid() << 32));
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->work, NULL);
    if (pthread_create(&e->worker, NULL, worker_main, e) != 0) {
        free(e);
        error_set(err, "cannot start the worker thread");
        return NULL;
    }
    return e;
}

void engine_stop(Engine *e) {
    pthread_mutex_lock(&e->lock);
    e->stopping = 1;
    for (Job *j = e->head, *next; j; j = next) {  // queued: refused as the server goes down
        next = j->next;
        j->state = JOB_FINISHED;
        j->status = j->error.status = 503;
        j->t_finished = now_seconds();
        snprintf(j->error.message, sizeof j->error.message, "the server is shutting down");
        pthread_cond_broadcast(&j->changed);
        release_locked(j);
    }
    e->head = e->tail = NULL;
    pthread_cond_broadcast(&e->work);
    pthread_mutex_unlock(&e->lock);
    pthread_join(e->worker, NULL);
    pthread_mutex_destroy(&e->lock);
    pthread_cond_destroy(&e->work);
    free(e);
}

// The job's prompts as ids: the conversation in the model's chat layout; each text prompt
// (in the chat layout for a fine-tuned model); token ids checked against the vocabulary.
// 0, or -1 with *re filled (400).
static int encode_prompts(Engine *e, Job *j, RequestError *re) {
    const ServeRequest *q = &j->req;
    const Tokenizer *tok = e->cfg.tokenizer;
    int vocab = e->cfg.model->cfg.vocab_size;
    Error err = {0};
    int rc = 0;
    for (int p = 0; rc == 0 && p < j->n_prompts; p++) {
        size_t n = 0;
        const Prompt *in = q->chat ? NULL : &q->prompts[p];
        if (q->chat)
            rc = chat_encode_conversation(tok, q->messages, q->n_messages, &j->prompt_ids[p], &n,
                                          &err);
        else if (in->text)
            rc = encode_prompt(tok, e->cfg.chat_layout, in->text, strlen(in->text),
                               &j->prompt_ids[p], &n, &err);
        else if (!(j->prompt_ids[p] = malloc((size_t)(in->n_ids ? in->n_ids : 1) * sizeof(int))))
            rc = error_set(&err, "out of memory");
        for (int i = 0; rc == 0 && in && !in->text && i < in->n_ids; i++) {
            if (in->ids[i] >= vocab)
                rc = error_set(&err, "token id %d is past the model's vocabulary of %d",
                               in->ids[i], vocab);
            else
                j->prompt_ids[p][n++] = in->ids[i];
        }
        if (rc == 0 && n == 0) rc = error_set(&err, "the prompt is empty");
        j->prompt_lens[p] = (int)n;
        j->prompt_tokens += (int)n;
        if ((int)n > j->prompt_len) j->prompt_len = (int)n;
    }
    if (rc == 0) return 0;
    re->status = 400;
    snprintf(re->message, sizeof re->message, "%.290s", err.msg);
    snprintf(re->param, sizeof re->param, "%s", q->chat ? "messages" : "prompt");
    return -1;
}

Job *engine_submit(Engine *e, ServeRequest *r, RequestError *re) {
    Job *j = calloc(1, sizeof *j);
    if (!j) {
        re->status = 500;
        snprintf(re->message, sizeof re->message, "out of memory");
        return NULL;
    }
    j->req = *r;
    memset(r, 0, sizeof *r);
    pthread_cond_init(&j->changed, NULL);
    j->rows = request_rows(&j->req);
    j->n_prompts = j->req.chat ? 1 : j->req.n_prompts;
    j->texts = calloc((size_t)j->rows, sizeof *j->texts);
    j->finish = calloc((size_t)j->rows, sizeof *j->finish);
    j->sent = calloc((size_t)j->rows, sizeof *j->sent);
    j->logprobs = calloc((size_t)j->rows, sizeof *j->logprobs);
    j->prompt_ids = calloc((size_t)j->n_prompts, sizeof *j->prompt_ids);
    j->prompt_lens = calloc((size_t)j->n_prompts, sizeof *j->prompt_lens);
    if (!j->texts || !j->finish || !j->sent || !j->logprobs || !j->prompt_ids ||
        !j->prompt_lens) {
        re->status = 500;
        snprintf(re->message, sizeof re->message, "out of memory");
    } else if (encode_prompts(e, j, re) == 0 &&
               request_check_length(&j->req, j->prompt_len, &e->cfg.limits, re) == 0) {
        pthread_mutex_lock(&e->lock);
        if (e->queued >= e->cfg.queue_max || e->stopping) {
            pthread_mutex_unlock(&e->lock);
            re->status = 503;
            snprintf(re->message, sizeof re->message,
                     "the server is busy (%d requests queued): retry later", e->cfg.queue_max);
            re->param[0] = '\0';
        } else {
            snprintf(j->id, sizeof j->id, "%s-%lu", j->req.chat ? "chatcmpl" : "cmpl",
                     ++e->serial);
            if (!j->req.seeded) j->req.sc.seed = rng_next(&e->seeds);
            j->created = (long)time(NULL);
            j->refs = 2;
            j->t_queued = now_seconds();
            if (e->tail) e->tail->next = j;
            else e->head = j;
            e->tail = j;
            e->queued++;
            pthread_cond_signal(&e->work);
            pthread_mutex_unlock(&e->lock);
            return j;
        }
    }
    job_free(j);
    return NULL;
}

void engine_cancel(Engine *e, Job *j) {
    pthread_mutex_lock(&e->lock);
    j->cancelled = 1;
    pthread_mutex_unlock(&e->lock);
}

int engine_wait(Engine *e, Job *j, double seconds) {
    pthread_mutex_lock(&e->lock);
    if (j->state != JOB_FINISHED) timed_wait(&j->changed, &e->lock, seconds);
    int done = j->state == JOB_FINISHED;
    pthread_mutex_unlock(&e->lock);
    return done;
}

long engine_read_stream(Engine *e, Job *j, char *buf, size_t max, double seconds) {
    pthread_mutex_lock(&e->lock);
    if (j->stream_read == j->stream.len && j->state != JOB_FINISHED) timed_wait(&j->changed, &e->lock, seconds);
    long n = (long)(j->stream.len - j->stream_read);
    if (n > (long)max) n = (long)max;
    if (n > 0) memcpy(buf, j->stream.s + j->stream_read, (size_t)n);
    j->stream_read += (size_t)(n > 0 ? n : 0);
    if (n == 0 && j->state == JOB_FINISHED) n = -1;
    pthread_mutex_unlock(&e->lock);
    return n;
}

int engine_response(Engine *e, Job *j, Text *body) {
    pthread_mutex_lock(&e->lock);
    int status = j->status;
    if (status == 200) {
        Choice *choices = calloc((size_t)j->rows, sizeof *choices);
        for (int b = 0; choices && b < j->rows; b++)
            choices[b] = (Choice){j->texts[b].s, j->texts[b].len, j->finish[b],
                                  j->req.logprobs >= 0 ? j->logprobs[b].s : NULL};
        ResponseHead h = head_of(e, j);
        if (choices)
            response_completion(body, &h, choices, j->rows, j->prompt_tokens,
                                j->completion_tokens);
        free(choices);
    } else {
        response_error(body, &j->error);
    }
    pthread_mutex_unlock(&e->lock);
    return status;
}

void engine_summary(Engine *e, Job *j, JobSummary *s) {
    pthread_mutex_lock(&e->lock);
    *s = (JobSummary){"", j->prompt_tokens, j->completion_tokens, j->passes, j->status, j->batched,
                      (j->t_started ? j->t_started : j->t_finished) - j->t_queued,
                      j->t_finished && j->t_started ? j->t_finished - j->t_started : 0.0};
    snprintf(s->id, sizeof s->id, "%s", j->id);
    pthread_mutex_unlock(&e->lock);
}

void engine_release(Engine *e, Job *j) {
    pthread_mutex_lock(&e->lock);
    release_locked(j);
    pthread_mutex_unlock(&e->lock);
}

int engine_queued(Engine *e) {
    pthread_mutex_lock(&e->lock);
    int n = e->queued;
    pthread_mutex_unlock(&e->lock);
    return n;
}

const Tokenizer *engine_tokenizer(const Engine *e) {
    return e->cfg.tokenizer;
}

#include "eval/eval.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/stats.h"

void mask_exact_count(int *inputs, float *weights, int from, int len, int count, int mask_id,
                      float w, Rng *rng) {
    // partial Fisher-Yates over the positions, carried out in place on a list of them
    int n = len - from;
    int order[n];
    for (int i = 0; i < n; i++) order[i] = from + i;
    for (int i = 0; i < count; i++) {
        int j = i + (int)rng_below(rng, (uint64_t)(n - i));
        int pick = order[j];
        order[j] = order[i];
        order[i] = pick;
        inputs[pick] = mask_id;
        weights[pick] = w;
    }
}

int stratified_mask_count(int n, int k, int mc, Rng *rng) {
    double t = (k + (double)rng_uniform(rng)) / mc;
    int count = (int)ceil(t * n);
    return count < 1 ? 1 : count > n ? n : count;
}

typedef struct {
    int *inputs, *targets;
    float *weights;
} RowBuffers;

static int rows_alloc(RowBuffers *rb, size_t n, Error *err) {
    rb->inputs = malloc(n * sizeof(int));
    rb->targets = malloc(n * sizeof(int));
    rb->weights = calloc(n, sizeof(float));
    if (rb->inputs && rb->targets && rb->weights) return 0;
    free(rb->inputs);
    free(rb->targets);
    free(rb->weights);
    return error_set(err, "out of memory for %zu evaluation positions", n);
}

static void rows_free(RowBuffers *rb) {
    free(rb->inputs);
    free(rb->targets);
    free(rb->weights);
}

// Window w of `windows` spread evenly over the `avail` non-overlapping windows of data.
static size_t window_offset(int w, int windows, size_t avail, int len) {
    return (size_t)((double)w * avail / windows) * (size_t)len;
}

int eval_heldout(Model *m, const TokenData *data, int max_windows, int mc, uint64_t seed,
                 EvalResult *r, Error *err) {
    int T = m->cfg.seq_len, W = T + 1, causal = m->cfg.causal;
    // A shifted MDM (logit row i predicts position i + 1) reads window tokens 0..T-1 and scores
    // 1..T-1: position 0 is its context, as in training.
    int shift = !causal && m->cfg.logit_shift, scored = T - shift;
    // A block diffusion model scores each block given the clean blocks before it, all blocks of a
    // window in one pass of the two-copy layout (model_forward_pairs): half the rows per pass.
    int L = m->cfg.block_size, copies = L > 0 ? 2 : 1;
    size_t avail = data->n / (size_t)W;
    if (avail == 0)
        return error_set(err, "%zu tokens to evaluate, fewer than one window of seq_len + 1 = %d",
                         data->n, W);
    if (!causal && mc < 1) return error_set(err, "mask draws per window must be >= 1");
    if (causal) mc = 1;
    size_t want = max_windows > 0 && (size_t)max_windows < avail ? (size_t)max_windows : avail;
    if (want > (size_t)(INT_MAX / mc)) want = (size_t)(INT_MAX / mc);  // rows must fit an int
    int windows = (int)want;
    int rows = windows * mc, B = m->max_batch / copies;
    if (B < 1) return error_set(err, "a block diffusion model is scored 2 rows per window: "
                                     "its batch must be >= 2");
    RowBuffers rb;
    if (rows_alloc(&rb, (size_t)B * copies * T, err)) return -1;
    int *win = malloc((size_t)W * sizeof(int));
    double *row_loss = malloc((size_t)B * sizeof(double));
    double *per_window = calloc((size_t)windows, sizeof(double));  // its estimate / windows
    if (!win || !row_loss || !per_window) {
        free(win);
        free(row_loss);
        free(per_window);
        rows_free(&rb);
        return error_set(err, "out of memory");
    }
    Rng rng;
    rng_seed(&rng, seed);
    double total = 0.0;
    for (int r0 = 0; r0 < rows; r0 += B) {
        int nb = rows - r0 < B ? rows - r0 : B;
        for (int b = 0; b < nb; b++) {
            int row = r0 + b, w = row / mc;
            size_t at = (size_t)b * copies * T;
            int *in = rb.inputs + at, *tg = rb.targets + at;
            float *wt = rb.weights + at;
            data_copy(data, window_offset(w, windows, avail, W), (size_t)W, win);
            // every objective scores window tokens 1..T
            memcpy(tg, win + 1, (size_t)T * sizeof(int));
            if (L > 0) {
                // the clean copy, then the noisy one: each block's NELBO estimate is
                // (L / count) x the CE summed over its `count` masked positions
                memcpy(in, win + 1, (size_t)T * sizeof(int));
                memcpy(in + T, win + 1, (size_t)T * sizeof(int));
                memcpy(tg + T, win + 1, (size_t)T * sizeof(int));
                memset(wt, 0, (size_t)2 * T * sizeof(float));
                for (int k = 0; k < T / L; k++) {
                    int count = stratified_mask_count(L, row % mc, mc, &rng);
                    mask_exact_count(in + T, wt + T, k * L, (k + 1) * L, count,
                                     m->cfg.mask_token_id,
                                     (float)L / ((float)count * T * mc * windows), &rng);
                }
            } else if (causal) {
                memcpy(in, win, (size_t)T * sizeof(int));
                for (int i = 0; i < T; i++) wt[i] = 1.0f / ((float)T * windows);
            } else {
                // per window the estimate of NELBO / scored is sum(CE over the masked) / count
                memcpy(in, win + 1 - shift, (size_t)T * sizeof(int));
                memcpy(tg, in, (size_t)T * sizeof(int));
                memset(wt, 0, (size_t)T * sizeof(float));
                int count = stratified_mask_count(scored, row % mc, mc, &rng);
                mask_exact_count(in, wt, shift, T, count, m->cfg.mask_token_id,
                                 1.0f / ((float)count * mc * windows), &rng);
            }
        }
        if (L > 0) model_forward_pairs(m, rb.inputs, nb, T);
        else model_forward(m, rb.inputs, nb, T);
        total += model_loss_rows(m, rb.targets, rb.weights, row_loss);
        for (int b = 0; b < nb; b++) per_window[(r0 + b) / mc] += row_loss[b];
    }
    // a window's own estimate is windows x its share; every window scores as many tokens, so
    // the standard error is that of the mean of the window estimates
    for (int w = 0; w < windows; w++) per_window[w] *= windows;
    r->std_error = stats_std(per_window, windows) / sqrt(windows);
    free(row_loss);
    free(per_window);
    free(win);
    rows_free(&rb);
    r->nats_per_token = total;
    r->ppl = exp(total);
    r->tokens = (int64_t)windows * scored;
    r->windows = windows;
    r->available = avail;
    r->mc = mc;
    return m->be->device_error(err);
}

static int score_ar(Model *m, const int *tokens, int len, int from, double *nll, Error *err) {
    if (from < 1) return error_set(err, "an AR model needs at least one prompt token to score after");
    if (len - 1 > m->cfg.seq_len)
        return error_set(err, "%d tokens do not fit the context of %d (+1)", len, m->cfg.seq_len);
    int T = len - 1;
    RowBuffers rb;
    if (rows_alloc(&rb, (size_t)T, err)) return -1;
    memcpy(rb.inputs, tokens, (size_t)T * sizeof(int));
    memcpy(rb.targets, tokens + 1, (size_t)T * sizeof(int));
    for (int i = from - 1; i < T; i++) rb.weights[i] = 1.0f;  // predictions of tokens from..len-1
    model_forward(m, rb.inputs, 1, T);
    *nll = model_loss(m, rb.targets, rb.weights);
    rows_free(&rb);
    return 0;
}

// Guided logits (1 + cfg) * cond - cfg * uncond, into the n conditional rows, on the device.
static void guide_logits(Model *m, int rows, int len, float cfg) {
    size_t n = (size_t)rows * len * m->cfg.vocab_size;
    m->be->guide(m->acts.logits, act_at(m, m->acts.logits, n), 1.0f + cfg, n);
}

static int score_mdm(Model *m, const int *tokens, int len, int from, int mc, float cfg,
                     uint64_t seed, double *nll, Error *err) {
    if (len > m->cfg.seq_len)
        return error_set(err, "%d tokens do not fit the context of %d", len, m->cfg.seq_len);
    if (mc < 1) return error_set(err, "mask draws must be >= 1");
    int guided = cfg > 0.0f, per_draw = guided ? 2 : 1, per_batch = m->max_batch / per_draw;
    if (per_batch < 1) return error_set(err, "guidance needs room for 2 rows in the model");
    int n = len - from;
    RowBuffers rb;
    if (rows_alloc(&rb, (size_t)m->max_batch * len, err)) return -1;
    Rng rng;
    rng_seed(&rng, seed);
    double total = 0.0;
    for (int k0 = 0; k0 < mc; k0 += per_batch) {
        int nb = mc - k0 < per_batch ? mc - k0 : per_batch;
        for (int b = 0; b < nb * per_draw; b++) {
            memcpy(rb.inputs + (size_t)b * len, tokens, (size_t)len * sizeof(int));
            memcpy(rb.targets + (size_t)b * len, tokens, (size_t)len * sizeof(int));
            memset(rb.weights + (size_t)b * len, 0, (size_t)len * sizeof(float));
        }
        for (int b = 0; b < nb; b++) {
            // one draw's estimate of -log p is sum(CE over the masked) * n / count
            int *in = rb.inputs + (size_t)b * len;
            int count = stratified_mask_count(n, k0 + b, mc, &rng);
            mask_exact_count(in, rb.weights + (size_t)b * len, from, len, count,
                             m->cfg.mask_token_id, (float)n / count / mc, &rng);
            if (guided) {  // the unconditional twin: same masks, prompt masked too, no loss
                int *twin = rb.inputs + (size_t)(nb + b) * len;
                memcpy(twin, in, (size_t)len * sizeof(int));
                for (int i = 0; i < from; i++) twin[i] = m->cfg.mask_token_id;
            }
        }
        model_forward(m, rb.inputs, nb * per_draw, len);
        if (guided) guide_logits(m, nb, len, cfg);
        total += model_loss(m, rb.targets, rb.weights);
    }
    rows_free(&rb);
    *nll = total;
    return 0;
}

int score_left_to_right(Model *m, const int *tokens, int len, int from, double *nll,
                        Error *err) {
    if (from < 1 || from >= len)
        return error_set(err, "nothing to score: prompt of %d tokens, sequence of %d", from, len);
    if (len > m->cfg.seq_len)
        return error_set(err, "%d tokens do not fit the context of %d", len, m->cfg.seq_len);
    if (m->cfg.causal) return score_ar(m, tokens, len, from, nll, err);
    int B = m->max_batch;
    RowBuffers rb;
    if (rows_alloc(&rb, (size_t)B * len, err)) return -1;
    double *row_loss = malloc((size_t)B * sizeof(double));
    if (!row_loss) {
        rows_free(&rb);
        return error_set(err, "out of memory");
    }
    *nll = 0.0;
    for (int t0 = from; t0 < len; t0 += B) {  // a row per position: it and what follows masked
        int n = len - t0 < B ? len - t0 : B;
        memset(rb.weights, 0, (size_t)n * len * sizeof(float));
        for (int b = 0; b < n; b++) {
            int t = t0 + b, *in = rb.inputs + (size_t)b * len;
            for (int i = 0; i < len; i++) in[i] = i < t ? tokens[i] : m->cfg.mask_token_id;
            memcpy(rb.targets + (size_t)b * len, tokens, (size_t)len * sizeof(int));
            rb.weights[(size_t)b * len + t] = 1.0f;
        }
        model_forward(m, rb.inputs, n, len);
        model_loss_rows(m, rb.targets, rb.weights, row_loss);
        for (int b = 0; b < n; b++) *nll += row_loss[b];
    }
    free(row_loss);
    rows_free(&rb);
    return 0;
}

int score_continuation(Model *m, const int *tokens, int len, int from, int mc, float cfg,
                       uint64_t seed, double *nll, Error *err) {
    if (from < 0 || from >= len)
        return error_set(err, "nothing to score: prompt of %d tokens, sequence of %d", from, len);
    // the MDM estimate below would read a block diffusion model under the wrong conditioning
    if (m->cfg.block_size > 0)
        return error_set(err, "scoring a continuation (--sft, --choices) is not built for block "
                              "diffusion models; their held-out likelihood is (--data)");
    if (m->cfg.causal) return score_ar(m, tokens, len, from, nll, err);
    return score_mdm(m, tokens, len, from, mc, cfg, seed, nll, err);
}

int eval_sft(Model *m, const SftData *d, int max_examples, int mc, uint64_t seed, EvalResult *r,
             Error *err) {
    int n = max_examples > 0 && max_examples < d->n ? max_examples : d->n;
    if (n < 1) return error_set(err, "no SFT examples to evaluate");
    double *nll = malloc((size_t)n * sizeof(double)), *answer = malloc((size_t)n * sizeof(double));
    if (!nll || !answer) {
        free(nll);
        free(answer);
        return error_set(err, "out of memory");
    }
    double total = 0.0;
    int64_t tokens = 0;
    int status = 0;
    for (int i = 0; i < n; i++) {
        const int *row = d->tokens + (size_t)i * d->T;
        // An MDM learned rows of seq_len tokens, the answer followed by EOS padding, and
        // generates the padding too: its likelihood of an answer is that of the whole padded
        // row after the prompt (scored on a shorter row it sees a context it never trained on).
        // An AR model reads left to right: the answer and its first EOS are the whole story.
        int p = d->prompt_len[i], len = m->cfg.causal ? p + d->answer_len[i] : d->T;
        if (score_continuation(m, row, len, p, mc, 0.0f, seed + (uint64_t)i, &nll[i], err)) {
            status = -1;
            break;
        }
        total += nll[i];
        tokens += d->answer_len[i];
        answer[i] = d->answer_len[i];
    }
    // examples differ in length: the standard error of a ratio of sums
    if (status == 0) r->std_error = stats_ratio_se(nll, answer, n);
    free(nll);
    free(answer);
    if (status) return -1;
    r->nats_per_token = total / (double)tokens;
    r->ppl = exp(r->nats_per_token);
    r->tokens = tokens;
    r->windows = n;
    r->available = d->n;
    r->mc = m->cfg.causal ? 1 : mc;
    return m->be->device_error(err);
}

#include "train/trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/progress.h"
#include "train/objective.h"
#include "train/optimizer.h"

uint64_t seed_for_init(uint64_t seed) { return seed * 4 + 1; }
uint64_t seed_for_data(uint64_t seed) { return seed * 4 + 2; }
uint64_t seed_for_mask(uint64_t seed) { return seed * 4 + 3; }

// What both kinds of training data share: config checks, RNG streams, batch buffers.
static int trainer_setup(Trainer *tr, Model *m, const TrainConfig *tc, Error *err) {
    memset(tr, 0, sizeof *tr);
    if (train_config_validate(tc, err)) return -1;
    int want_causal = tc->objective == OBJECTIVE_AR, bd3 = tc->objective == OBJECTIVE_BD3;
    if (m->cfg.causal != want_causal || (m->cfg.block_size > 0) != bd3)
        return error_set(err, "the %s objective needs %s attention",
                         want_causal ? "ar" : bd3 ? "bd3" : "mdm",
                         want_causal ? "causal" : bd3 ? "block-causal (block_size > 0)"
                                                      : "bidirectional");
    // a bd3 batch is 2 copies of each sequence (model_forward_pairs)
    if (tc->batch_size * train_copies(tc) > m->max_batch)
        return error_set(err, "batch size %d exceeds the model's %d%s", tc->batch_size,
                         m->max_batch, bd3 ? " (bd3 needs room for 2 x batch size)" : "");
    tr->tc = *tc;
    tr->model = m;
    rng_seed(&tr->rng_data, seed_for_data(tc->seed));
    rng_seed(&tr->rng_mask, seed_for_mask(tc->seed));
    size_t n = (size_t)tc->batch_size * (bd3 ? 2 * m->cfg.seq_len : m->cfg.seq_len + 1);
    tr->windows = malloc(n * sizeof(int));
    tr->inputs = malloc(n * sizeof(int));
    tr->targets = malloc(n * sizeof(int));
    tr->weights = malloc(n * sizeof(float));
    tr->row_prompt = malloc((size_t)tc->batch_size * sizeof(int));
    tr->row_answer = malloc((size_t)tc->batch_size * sizeof(int));
    tr->losses = malloc((size_t)tc->grad_accum * sizeof(float));
    Trainable p = model_trainable(m);
    tr->grad_be = p.be;
    if (tc->grad_accum > 1) tr->grad_sum = p.be->alloc(p.n * sizeof(float));
    if (!tr->windows || !tr->inputs || !tr->targets || !tr->weights || !tr->row_prompt ||
        !tr->row_answer || !tr->losses || (tc->grad_accum > 1 && !tr->grad_sum)) {
        trainer_free(tr);
        return error_set(err, "out of memory for the batch buffers");
    }
    return 0;
}

int trainer_init(Trainer *tr, Model *m, const TrainConfig *tc, const TokenData *data, Error *err) {
    size_t window = (size_t)m->cfg.seq_len + 1;
    if (data->n < window)
        return error_set(err, "the training data has %zu tokens, fewer than seq_len + 1 = %zu",
                         data->n, window);
    if (tc->sft) return error_set(err, "an SFT configuration needs SFT data");
    if (trainer_setup(tr, m, tc, err)) return -1;
    tr->data = data;
    return 0;
}

int trainer_init_sft(Trainer *tr, Model *m, const TrainConfig *tc, const SftData *sft,
                     Error *err) {
    if (!tc->sft) return error_set(err, "SFT data needs an SFT configuration");
    if (sft->T != m->cfg.seq_len)
        return error_set(err, "SFT rows of %d tokens for a model of seq_len %d", sft->T,
                         m->cfg.seq_len);
    if (sft->n < 1) return error_set(err, "no SFT examples");
    if (trainer_setup(tr, m, tc, err)) return -1;
    tr->sft = sft;
    return 0;
}

size_t trainer_sum_bytes(size_t n, int grad_accum, int ranks) {
    if (ranks == 1) return grad_accum > 1 ? n * sizeof(float) : 0;
    size_t lo, len;  // rank 0 holds the largest shard
    comm_shard(n, ranks, 0, &lo, &len);
    return (1 + (size_t)ranks) * len * sizeof(float);
}

int trainer_join(Trainer *tr, Comm *c, Error *err) {
    tr->comm = c;
    if (c->size == 1) return 0;
    if (tr->tc.grad_accum % c->size)
        return error_set(err, "%d micro-batches per step (grad_accum) do not split over %d ranks: "
                              "give a multiple of %d", tr->tc.grad_accum, c->size, c->size);
    Trainable p = model_trainable(tr->model);
    size_t lo, len;
    comm_shard(p.n, c->size, c->rank, &lo, &len);
    // ZeRO-1: this rank sums, clips and updates its shard alone, with its shard of AdamW's m, v
    if (model_shard_optimizer(tr->model, lo, len, err)) return -1;
    if (tr->grad_sum) p.be->free(tr->grad_sum);
    tr->grad_sum = p.be->alloc((len ? len : 1) * sizeof(float));
    tr->shards = p.be->alloc((size_t)c->size * (len ? len : 1) * sizeof(float));
    if (!tr->grad_sum || !tr->shards)
        return error_set(err, "out of memory for the gradient shards of %d ranks", c->size);
    return 0;
}

void trainer_free(Trainer *tr) {
    if (tr->grad_sum) tr->grad_be->free(tr->grad_sum);
    if (tr->shards) tr->grad_be->free(tr->shards);
    free(tr->losses);
    free(tr->windows);
    free(tr->inputs);
    free(tr->targets);
    free(tr->weights);
    free(tr->row_prompt);
    free(tr->row_answer);
    memset(tr, 0, sizeof *tr);
}

// Copies B windows of len tokens: from *pos on when pos is given, else at random offsets.
static void draw_windows(Trainer *tr, int len) {
    if (tr->tc.order == ORDER_SEQUENTIAL)
        data_sequential_windows(tr->data, &tr->data_pos, tr->tc.batch_size, len, tr->windows);
    else
        data_random_windows(tr->data, &tr->rng_data, tr->tc.batch_size, len, tr->windows);
}

// Draws B SFT examples (in order, or at random) and applies the objective's SFT weighting:
// rows of seq_len positions for MDM, seq_len - 1 for AR.
static void make_sft_batch(Trainer *tr) {
    const TrainConfig *tc = &tr->tc;
    const SftData *d = tr->sft;
    int B = tc->batch_size, T = d->T;
    for (int b = 0; b < B; b++) {
        int i = tc->order == ORDER_SEQUENTIAL ? (int)(tr->data_pos++ % (uint64_t)d->n)
                                              : (int)rng_below(&tr->rng_data, (uint64_t)d->n);
        memcpy(tr->windows + (size_t)b * T, d->tokens + (size_t)i * T, (size_t)T * sizeof(int));
        tr->row_prompt[b] = d->prompt_len[i];
        tr->row_answer[b] = d->answer_len[i];
    }
    if (tc->objective == OBJECTIVE_AR) {
        sft_ar_batch(tr->windows, tr->row_prompt, tr->row_answer, B, T, tr->inputs, tr->targets,
                     tr->weights);
        return;
    }
    sft_mdm_batch(tr->windows, tr->row_prompt, B, T, tr->model->cfg.mask_token_id, tc->mask_eps,
                  tc->cfg_drop, &tr->rng_mask, tr->inputs, tr->targets, tr->weights, NULL);
}

// Draws one micro-batch of length T from the training data into inputs/targets/weights.
static void make_batch(Trainer *tr, int T) {
    const TrainConfig *tc = &tr->tc;
    int B = tc->batch_size;
    if (tc->objective == OBJECTIVE_MDM) {
        draw_windows(tr, T);
        mdm_noise_batch(tr->windows, B, T, tr->model->cfg.logit_shift,
                        tr->model->cfg.mask_token_id, tc->mask_eps, tc->t_sampling,
                        &tr->rng_mask, tr->inputs, tr->targets, tr->weights, NULL);
    } else if (tc->objective == OBJECTIVE_BD3) {
        draw_windows(tr, T);
        bd3_noise_batch(tr->windows, B, T, tr->model->cfg.block_size,
                        tr->model->cfg.mask_token_id, tc->mask_eps, tc->t_max, tc->t_sampling,
                        &tr->rng_mask, tr->inputs, tr->targets, tr->weights);
    } else {
        draw_windows(tr, T + 1);
        ar_shift_batch(tr->windows, B, T, tr->inputs, tr->targets, tr->weights);
    }
}

int trainer_row_length(const Trainer *tr) {
    int T = tr->model->cfg.seq_len;
    return tr->sft && tr->tc.objective == OBJECTIVE_AR ? T - 1 : T;
}

// Adds this round's micro-batch gradients (one per rank, each rank's in m's grads) into
// grad_sum in micro-batch order: a rank alone adds its own; ranks first send each other the
// shards they own, and each sums its shard.
static int sum_round(Trainer *tr, const Trainable *p) {
    Comm *c = tr->comm;
    if (!c || c->size == 1) {
        p->be->accumulate(tr->grad_sum, p->grads, p->n);
        return 0;
    }
    // this rank's shard is the part its optimizer state covers (trainer_join)
    if (comm_exchange_shards(c, p->grads, tr->shards, p->n, &tr->error)) return -1;
    for (int r = 0; r < c->size; r++)
        p->be->accumulate(tr->grad_sum, tr->shards + (size_t)r * p->opt_n, p->opt_n);
    return 0;
}

// The step's micro-batches, this rank's computed and their gradients summed into grad_sum
// (one micro-batch: left in m's grads; ranks: this rank's shard of the sum); each
// micro-batch's loss in tr->losses.
static int run_micro_batches(Trainer *tr, int seq_len, const Trainable *p, double *compute_s) {
    const TrainConfig *tc = &tr->tc;
    Model *m = tr->model;
    int ranks = tr->comm ? tr->comm->size : 1, rank = tr->comm ? tr->comm->rank : 0;
    int bd3 = tc->objective == OBJECTIVE_BD3;
    size_t n = (size_t)tc->batch_size * seq_len * train_copies(tc);
    if (tr->grad_sum) p->be->zero(tr->grad_sum, p->opt_n * sizeof(float));
    for (int micro = 0; micro < tc->grad_accum; micro++) {
        // every rank draws every micro-batch, so the data and mask streams stay those of one
        // process
        if (tr->sft) make_sft_batch(tr);
        else make_batch(tr, seq_len);
        if (micro % ranks != rank) continue;
        // each micro-batch carries 1/grad_accum of the step's loss
        for (size_t i = 0; i < n; i++) tr->weights[i] /= (float)tc->grad_accum;
        double t0 = now_seconds();
        m->aux_scale = 1.0f / (float)tc->grad_accum;  // the load-balancing loss's share too
        model_zero_grad(m);
        if (bd3) model_forward_pairs(m, tr->inputs, tc->batch_size, seq_len);
        else model_forward(m, tr->inputs, tc->batch_size, seq_len);
        tr->losses[micro] = model_loss_backward(m, tr->targets, tr->weights);  // syncs
        *compute_s += now_seconds() - t0;
        if (tr->grad_sum && sum_round(tr, p)) return -1;
    }
    if (ranks == 1) return 0;
    // every rank's losses
    float *mine = malloc((size_t)tc->grad_accum * sizeof(float));
    float *all = malloc((size_t)tc->grad_accum * ranks * sizeof(float));
    int rc = !mine || !all ? error_set(&tr->error, "out of memory for %d losses", tc->grad_accum)
                           : 0;
    int rounds = tc->grad_accum / ranks;
    for (int k = 0; rc == 0 && k < rounds; k++) mine[k] = tr->losses[k * ranks + rank];
    if (rc == 0)
        rc = comm_gather_host(tr->comm, mine, all, (size_t)rounds * sizeof(float), &tr->error);
    for (int micro = 0; rc == 0 && micro < tc->grad_accum; micro++)
        tr->losses[micro] = all[(micro % ranks) * rounds + micro / ranks];
    free(mine);
    free(all);
    return rc;
}

// The norm of the job's summed gradient, each rank holding its shard of it in m's grads: the
// sums of squares of every rank's chunks, added in chunk order (one process's order).
static int job_grad_norm(Trainer *tr, const Trainable *p, float *norm) {
    Comm *c = tr->comm;
    size_t chunks = (p->n + SUM_SQUARES_CHUNK - 1) / SUM_SQUARES_CHUNK;
    size_t most = (chunks + (size_t)c->size - 1) / (size_t)c->size;  // rank 0's count
    double *mine = calloc(most ? most : 1, sizeof(double));
    double *all = malloc((most ? most : 1) * (size_t)c->size * sizeof(double));
    int rc = !mine || !all ? error_set(&tr->error, "out of memory for %zu partial sums", chunks)
                           : 0;
    if (rc == 0 && p->opt_n) p->be->sum_squares_chunks(mine, p->grads + p->opt_lo, p->opt_n);
    if (rc == 0) rc = comm_gather_host(c, mine, all, most * sizeof(double), &tr->error);
    double total = 0.0;
    for (int r = 0; rc == 0 && r < c->size; r++) {
        size_t lo, len;
        comm_shard(p->n, c->size, r, &lo, &len);
        for (size_t k = 0; k < (len + SUM_SQUARES_CHUNK - 1) / SUM_SQUARES_CHUNK; k++)
            total += all[(size_t)r * most + k];
    }
    *norm = (float)sqrt(total);
    free(mine);
    free(all);
    return rc;
}

StepStats trainer_step(Trainer *tr) {
    const TrainConfig *tc = &tr->tc;
    Model *m = tr->model;
    StepStats st = {0};
    // LLaDA trains a small share of batches on random shorter lengths, so the model also
    // sees sequences that do not fill the context.
    st.seq_len = trainer_row_length(tr);
    if (!tr->sft && tc->objective == OBJECTIVE_MDM && tc->random_length_prob > 0.0f &&
        rng_uniform(&tr->rng_mask) < tc->random_length_prob)
        st.seq_len = 1 + (int)rng_below(&tr->rng_mask, (uint64_t)m->cfg.seq_len);

    // DiffuLLaMA's annealing, as a window: step s of the first anneal_steps sees keys up to
    // seq_len * s / anneal_steps positions past each query, so an adapted AR model starts from
    // the causal attention it was trained with
    if (tc->anneal_steps > 0 && tr->step < tc->anneal_steps)
        m->window = (int)((int64_t)m->cfg.seq_len * tr->step / tc->anneal_steps);
    Trainable p = model_trainable(m);
    st.failed = run_micro_batches(tr, st.seq_len, &p, &st.compute_s) != 0;
    m->window = -1;  // evaluation and sampling see the model's own attention
    if (st.failed) return st;
    for (int micro = 0; micro < tc->grad_accum; micro++) st.loss += tr->losses[micro];
    int ranks = tr->comm ? tr->comm->size : 1;
    // the summed gradient (a rank: its shard) where the optimizer reads it
    if (tr->grad_sum)
        p.be->copy_rows(p.grads + p.opt_lo, 0, tr->grad_sum, 0, p.opt_n * sizeof(float), 1);
    st.lr = lr_at(tc, tr->step);
    tr->step++;
    if (ranks == 1) st.grad_norm = grad_norm(m);
    else if ((st.failed = job_grad_norm(tr, &p, &st.grad_norm) != 0)) return st;
    // a non-finite loss or gradient would poison the weights and the optimizer state for good:
    // the update is skipped (the step still counts, so the schedule and data move on)
    st.skipped = !isfinite(st.loss) || !isfinite(st.grad_norm);
    if (st.skipped) return st;
    optimizer_step(m, tc, st.grad_norm, st.lr, tr->step);
    // each rank updated its shard: the new weights to every rank
    if (ranks > 1) st.failed = comm_gather_shards(tr->comm, p.params, p.n, &tr->error) != 0;
    return st;
}

int trainer_save(const char *path, const Trainer *tr, const Tokenizer *t, Error *err) {
    CheckpointHeader h;
    memset(&h, 0, sizeof h);  // padding bytes too: they are part of the checksum
    h.model = tr->model->cfg;
    h.train = tr->tc;
    h.lora = tr->model->lora;
    h.step = tr->step;
    h.rng_data = tr->rng_data;
    h.rng_mask = tr->rng_mask;
    h.data_pos = tr->data_pos;
    Trainable p = model_trainable(tr->model);
    Comm *c = tr->comm;
    if (!c || c->size == 1) return checkpoint_write(path, &h, &p, t, err);
    // ZeRO-1: AdamW's state gathered from every rank's shard onto rank 0, which writes
    float *full = c->rank == 0 ? p.be->alloc(2 * p.n * sizeof(float)) : NULL;
    if (c->rank == 0 && !full)
        return error_set(err, "%s: out of memory to gather the optimizer state", path);
    int rc = comm_gather_to_root(c, p.adam_m, full, p.n, err);
    if (rc == 0) rc = comm_gather_to_root(c, p.adam_v, full ? full + p.n : NULL, p.n, err);
    if (rc == 0 && c->rank == 0) {
        Trainable whole = p;
        whole.adam_m = full, whole.adam_v = full + p.n, whole.opt_lo = 0, whole.opt_n = p.n;
        rc = checkpoint_write(path, &h, &whole, t, err);
    }
    if (full) p.be->free(full);
    return rc;
}

void trainer_restore(Trainer *tr, const ModelSource *src) {
    Trainable p = model_trainable(tr->model);
    size_t bytes = p.n * sizeof(float);
    p.be->to_device(p.params, src->params, bytes);
    p.be->to_device(p.adam_m, src->adam_m + p.opt_lo, p.opt_n * sizeof(float));
    p.be->to_device(p.adam_v, src->adam_v + p.opt_lo, p.opt_n * sizeof(float));
    tr->step = src->header.step;
    tr->rng_data = src->header.rng_data;
    tr->rng_mask = src->header.rng_mask;
    tr->data_pos = src->header.data_pos;
}

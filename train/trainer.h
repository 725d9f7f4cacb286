// The training loop's state and one optimizer step: draw windows, apply the objective
// (masking for MDM, shifting for AR, a clean and a block-masked copy for BD3), forward, loss,
// backward, accumulate, clip, AdamW.
#ifndef DLLM_TRAINER_H
#define DLLM_TRAINER_H

#include <stdint.h>

#include "model/model.h"
#include "dataset/data.h"
#include "common/rng.h"
#include "dist/comm.h"
#include "dataset/sft.h"
#include "store/model_source.h"
#include "store/train_config.h"

typedef struct {
    TrainConfig tc;
    Model *model;
    const TokenData *data;  // pretraining windows, or
    const SftData *sft;     // SFT examples (one of the two is set)
    int64_t step;   // optimizer steps done
    Rng rng_data;   // window offsets (random order)
    uint64_t data_pos;  // next window (sequential order)
    Rng rng_mask;   // MDM t, masks and random lengths
    // host batch buffers, batch_size * (seq_len + 1) (bd3: batch_size * 2 seq_len)
    int *windows, *inputs, *targets;
    float *weights;
    int *row_prompt, *row_answer;  // SFT: prompt and answer length of each row, batch_size each
    // A step's micro-batches are numbered 0 .. grad_accum - 1 and drawn in that order by every
    // rank; rank r computes micro-batches r, r + ranks, ... Their gradients are summed in
    // micro-batch order, each computed from zero, so a step's weights do not depend on how its
    // micro-batches were spread over ranks.
    Comm *comm;        // the job's ranks (trainer_join; NULL: this process alone)
    float *grad_sum;   // grad_accum > 1: the step's gradient (trainable values, backend memory;
                       // ranks: this rank's shard of it)
    float *shards;     // ranks > 1: this rank's shard of every rank's micro-batch gradient
    float *losses;     // [grad_accum]: each micro-batch's loss (host)
    const Backend *grad_be;  // the table grad_sum and shards live on
    Error error;       // why the last step failed (StepStats.failed)
} Trainer;

typedef struct {
    float loss;       // nats/token (MDM: the weighted masked loss; AR: mean next-token CE)
    float grad_norm;  // before clipping
    float lr;
    int seq_len;      // length used (shorter than the model's on random-length steps)
    int skipped;      // 1: the loss or a gradient was not finite and no update was made
    int failed;       // 1: an exchange with the other ranks failed (Trainer.error says why)
    double compute_s; // seconds this rank spent in its micro-batches' forward and backward passes
} StepStats;

// The model must be created (and its parameters set) with the objective's attention:
// bidirectional for MDM, causal for AR, block_size > 0 and room for 2 x batch_size sequences
// for BD3. Seeds the data and masking streams from tc->seed.
int trainer_init(Trainer *tr, Model *m, const TrainConfig *tc, const TokenData *data, Error *err);
// The same for fine-tuning on SFT rows (tc->sft set; rows of the model's seq_len).
int trainer_init_sft(Trainer *tr, Model *m, const TrainConfig *tc, const SftData *sft,
                     Error *err);
// Makes the trainer one rank of the job c (after trainer_init): each rank computes
// grad_accum / ranks of the step's micro-batches (grad_accum must be a multiple of the ranks).
int trainer_join(Trainer *tr, Comm *c, Error *err);
// Bytes a rank of a job of `ranks` adds to the model's memory plan for summing gradients of n
// trainable values over grad_accum micro-batches.
size_t trainer_sum_bytes(size_t n, int grad_accum, int ranks);
void trainer_free(Trainer *tr);
StepStats trainer_step(Trainer *tr);
// Positions of a training row: seq_len, or seq_len - 1 for AR fine-tuning (inputs predict the
// next token). A step trains batch_size x grad_accum rows of it (LLaDA's random-length
// batches, about 1%, are shorter).
int trainer_row_length(const Trainer *tr);

// Writes the trainer's model (a LoRA run: its adapters), optimizer state, step, RNG streams and
// data position as a checkpoint (store/checkpoint.h) with the tokenizer t. In a job of several
// ranks every rank calls it (each sends its shard of the optimizer state) and rank 0 writes.
int trainer_save(const char *path, const Trainer *tr, const Tokenizer *t, Error *err);
// Copies a checkpoint's weights (a LoRA one: the adapters) and optimizer state into the
// trainer's model, created with src->header.model (and src->header.lora), and its step and RNG
// streams into the trainer.
void trainer_restore(Trainer *tr, const ModelSource *src);

// The seeds of the separate random streams, derived from the run's one seed.
uint64_t seed_for_init(uint64_t seed);
uint64_t seed_for_data(uint64_t seed);
uint64_t seed_for_mask(uint64_t seed);

#endif

// Training hyperparameters: everything besides the model shape that decides a run.
// Saved in checkpoints so a resumed run continues with exactly the same settings.
#ifndef DLLM_TRAIN_CONFIG_H
#define DLLM_TRAIN_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "common/error.h"

// The training objectives (train/objective.h turns windows into inputs, targets and weights).
typedef enum { OBJECTIVE_MDM = 0, OBJECTIVE_AR = 1, OBJECTIVE_BD3 = 2 } Objective;
// How an MDM batch draws its B mask rates: independently, or low-discrepancy (MDLM): one
// uniform u, then t_b from (u + b / B) mod 1, so every batch spans the whole range evenly.
typedef enum { T_UNIFORM = 0, T_STRATIFIED = 1 } TSampling;
typedef enum { SCHEDULE_COSINE = 0, SCHEDULE_WSD = 1 } LrSchedule;
// Where training windows come from: uniformly drawn offsets, or one pass after another.
typedef enum { ORDER_RANDOM = 0, ORDER_SEQUENTIAL = 1 } DataOrder;

typedef struct {
    Objective objective;
    int batch_size;          // sequences per micro-batch
    int grad_accum;          // micro-batches per optimizer step
    int64_t steps;           // optimizer steps in the whole run
    int64_t warmup_steps;    // linear warmup from 0 to lr
    float lr;                // peak learning rate
    float min_lr;            // where cosine / the WSD decay ends
    LrSchedule schedule;     // cosine, or warmup-stable-decay
    float decay_frac;        // WSD: fraction of steps spent decaying at the end
    float weight_decay;      // decoupled (AdamW), on matrices only
    float beta1, beta2, adam_eps;
    float grad_clip;         // global gradient norm limit; 0 turns clipping off
    float mask_eps;          // MDM: t ~ U(mask_eps, 1); BD3: t ~ U(mask_eps, t_max)
    TSampling t_sampling;    // MDM: the batch's t independent, or stratified across it
    float random_length_prob;  // MDM: chance that a micro-batch is cut to a random length
    uint64_t seed;           // seeds init, data order and masking (each its own stream)
    DataOrder order;
    int sft;                 // 1: fine-tuning on prompt/response rows (prompt never masked)
    float cfg_drop;          // MDM SFT: share of rows trained with the prompt masked (for CFG)
    float t_max;             // BD3: the largest mask rate (1; BD3-LM's clipped schedule: lower)
    int64_t anneal_steps;    // MDM: attention widens from causal to bidirectional over these
                             // first steps (an AR model adapted to diffusion; 0: off)
} TrainConfig;

TrainConfig train_config_default(void);
// Rows a training sequence takes in the model: 2 for bd3 (a clean and a noisy copy, in one
// pass), else 1. The model needs room for batch_size times this many sequences.
int train_copies(const TrainConfig *tc);
int train_config_validate(const TrainConfig *tc, Error *err);
void train_config_print(FILE *f, const TrainConfig *tc);
// Learning rate for optimizer step `step` (0-based).
float lr_at(const TrainConfig *tc, int64_t step);

#endif

// The rules that turn what a user asks for into a new run's model and objective: which
// objective an --init model trains with, an AR model adapted to diffusion (bidirectional or
// block-causal attention, Dream's logit shift), bd3's blocks, and the weight kind.
#ifndef DLLM_SETUP_H
#define DLLM_SETUP_H

#include "common/error.h"
#include "model/config.h"
#include "model/lora.h"
#include "store/train_config.h"

typedef struct {
    Objective objective;  // as asked (used when objective_given, or for a fresh model)
    int objective_given;  // 0: an --init model keeps its own objective
    int block_size;       // bd3: positions per block (0: the --init model's, else 4)
    int logit_shift;      // mdm: 0 or 1 (-1: 1 when adapting an AR model, else the model's)
    int ternary;          // 1: ternary weights, 0: fp32 (-1: the --init model's, or fp32)
} TrainChoices;

// Settles tc->objective and mc for a new run: mc holds the fresh model's shape, or the --init
// model's config when init_name is not NULL. An AR model may become an mdm or a bd3 model
// (same weights, another attention mask); a diffusion model never becomes AR. *adapting is 1
// when an AR model is being adapted to diffusion.
int train_settle_model(const TrainChoices *ch, const char *init_name, ModelConfig *mc,
                       TrainConfig *tc, int *adapting, Error *err);

typedef struct {
    int rank;             // 0: no adapters
    float alpha;          // 0: the rank (scale 1)
    const char *targets;  // "q,k,v,o,gate,up,down" or a subset; NULL: all
} LoraChoices;

// A new run's adapters: rank 0 without --lora-rank, else rank-r adapters on the --init model
// at init_path (its own adapters, init_lora, refused: merge them first), whose absolute path
// the run's checkpoints keep as the base. init_name is the --init flag as given.
int train_settle_lora(const LoraChoices *ch, const LoraConfig *init_lora, const char *init_name,
                      const char *init_path, LoraConfig *lc, Error *err);

#endif

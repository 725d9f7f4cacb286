// LoRA adapters (Hu et al. 2021) on a frozen base: each adapted projection W [out, in] gains a
// trainable low-rank update, y = x W^T + (alpha / rank) (x A^T) B^T with A [rank, in] and
// B [out, rank]. PEFT's initialisation: A uniform in +-1/sqrt(in) (kaiming_uniform with
// a = sqrt(5)), B zero, so a fresh adapter leaves the base's outputs exactly as they were.
// Every adapter of a model lives in one flat float buffer (and its gradients and AdamW m and v
// in three more of the same layout): per layer, per adapted target in LoraTarget order, per
// unit (below), A then B.
#ifndef DLLM_LORA_H
#define DLLM_LORA_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "model/config.h"

#include "model/params.h"

// The projections adapters sit on (model/params.h's, in the same order).
typedef enum {
    LORA_Q = PROJ_Q, LORA_K = PROJ_K, LORA_V = PROJ_V, LORA_O = PROJ_O, LORA_GATE = PROJ_GATE,
    LORA_UP = PROJ_UP, LORA_DOWN = PROJ_DOWN, N_LORA_TARGETS = N_PROJECTIONS
} LoraTarget;

#define LORA_BASE_PATH 1024

typedef struct {
    int32_t rank;      // 0: no adapters
    float alpha;       // the update's scale is alpha / rank
    uint32_t targets;  // bit 1 << LoraTarget for each adapted projection
    char base[LORA_BASE_PATH];  // the base model the adapters sit on (a path, absolute)
} LoraConfig;

// "q", "k", "v", "o", "gate", "up", "down"
extern const char *const lora_target_names[N_LORA_TARGETS];
// "q,k,v" -> targets; a name not in the list, or an empty list, is an error naming it.
int lora_parse_targets(const char *list, uint32_t *targets, Error *err);
// targets -> "q,k,v"
void lora_format_targets(uint32_t targets, char *out, size_t cap);
// Rank >= 1, alpha > 0 and finite, some target, a base path.
int lora_config_validate(const LoraConfig *lc, Error *err);
float lora_scale(const LoraConfig *lc);

// An adapter sits on each "unit" of a target: the projection itself, except the gate, up and
// down targets of a mixture of experts' MoE layer, which adapt every routed expert (units
// 0 .. E - 1) and the shared expert (unit E, when there is one), each with its own A and B.
int lora_units(const ModelConfig *c, int layer, int t);
void lora_unit_shape(const ModelConfig *c, int layer, int t, int u, int *in, int *out);
// Rows an adapted target keeps per token of a pass: 1, or for a mixture of experts
// n_active + 1 (an MoE layer's expert rows and its shared expert's).
int lora_rows_per_token(const ModelConfig *c);
// Adapter values in all, and where layer l's A of target t (of its unit u) starts (B follows).
size_t lora_param_count(const ModelConfig *c, const LoraConfig *lc);
size_t lora_offset(const ModelConfig *c, const LoraConfig *lc, int layer, int t);
size_t lora_unit_offset(const ModelConfig *c, const LoraConfig *lc, int layer, int t, int u);
// Targets adapted (the number of bits set).
int lora_n_targets(const LoraConfig *lc);

// PEFT's initialisation, from seed: the same seed gives the same bits.
void lora_init(float *adapters, const ModelConfig *c, const LoraConfig *lc, uint64_t seed);
// Folds the adapters into host fp32 weights (param_count(c) floats): W += scale * B A, each
// element's sum over the rank in a fixed order.
void lora_merge(float *params, const float *adapters, const ModelConfig *c, const LoraConfig *lc);

#endif

#include "train/setup.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

// An --init model's own objective: causal is AR, blocks are bd3, else mdm.
static Objective own_objective(const ModelConfig *c) {
    return c->causal ? OBJECTIVE_AR : c->block_size ? OBJECTIVE_BD3 : OBJECTIVE_MDM;
}

int train_settle_model(const TrainChoices *ch, const char *init_name, ModelConfig *mc,
                       TrainConfig *tc, int *adapting, Error *err) {
    Objective obj = ch->objective;
    if (init_name) {
        if (!mc->causal && ch->objective_given && obj == OBJECTIVE_AR)
            return error_set(err, "train: --objective ar, but %s is a diffusion model (ar -> "
                                  "mdm or bd3 adapts; nothing becomes ar)", init_name);
        if (!ch->objective_given) obj = own_objective(mc);
    }
    tc->objective = obj;
    int bd3 = obj == OBJECTIVE_BD3;
    *adapting = init_name && mc->causal && obj != OBJECTIVE_AR;
    if (*adapting && mc->sliding_window)
        return error_set(err, "train: %s attends through a sliding window of %d keys; adapting "
                              "it to %s attention is not built", init_name, mc->sliding_window,
                         bd3 ? "block-causal" : "bidirectional");
    mc->causal = obj == OBJECTIVE_AR;
    if (ch->block_size < 0 || (ch->block_size > 0 && !bd3))
        return error_set(err, "train: --block-size is for the bd3 objective (> 0)");
    // bd3: --block-size, else an initialising bd3 model's, else 4
    if (!bd3) mc->block_size = 0;
    else if (ch->block_size) mc->block_size = ch->block_size;
    else if (!mc->block_size) mc->block_size = 4;
    if (ch->logit_shift != -1 && ch->logit_shift != 0 && ch->logit_shift != 1)
        return error_set(err, "train: --logit-shift must be 0 or 1");
    if (ch->logit_shift == 1 && (mc->causal || bd3))
        return error_set(err, "train: --logit-shift is for mdm models (an ar model always "
                              "predicts the next position, a bd3 model its own)");
    if (ch->logit_shift != -1 && !mc->causal) mc->logit_shift = ch->logit_shift;
    else if (*adapting) mc->logit_shift = 1;  // keep the AR head's next-token rows
    if (bd3) mc->logit_shift = 0;             // a bd3 block predicts its own positions
    if (ch->ternary >= 0) mc->ternary = ch->ternary;
    return 0;
}

int train_settle_lora(const LoraChoices *ch, const LoraConfig *init_lora, const char *init_name,
                      const char *init_path, LoraConfig *lc, Error *err) {
    memset(lc, 0, sizeof *lc);
    if (init_lora && init_lora->rank)
        return error_set(err, "train: %s holds LoRA adapters: merge them into a model (dllm "
                              "export %s --merge 1 --out DIR) and --init from that", init_path,
                         init_name);
    if (!ch->rank) return 0;
    lc->rank = ch->rank;
    lc->alpha = ch->alpha != 0.0f ? ch->alpha : (float)ch->rank;
    lc->targets = (1u << N_LORA_TARGETS) - 1;
    if (ch->targets && lora_parse_targets(ch->targets, &lc->targets, err)) return -1;
    char resolved[PATH_MAX];
    if (!realpath(init_path, resolved) || strlen(resolved) >= sizeof lc->base)
        return error_set(err, "train: %s: cannot keep its absolute path as the LoRA base",
                         init_path);
    memcpy(lc->base, resolved, strlen(resolved) + 1);
    return lora_config_validate(lc, err);
}

// One optimizer step over the model's flat buffers: global-norm clipping, then AdamW.
#ifndef DLLM_OPTIMIZER_H
#define DLLM_OPTIMIZER_H

#include "model/model.h"
#include "store/train_config.h"

// The global L2 norm of the trainable gradients (model_trainable: the LoRA adapters', else
// every weight's); not finite when any gradient is not.
float grad_norm(const Model *m);
// Clips those gradients from norm to tc->grad_clip (if > 0), then applies AdamW with learning
// rate lr as step t (1-based): to the values the optimizer state covers (a data-parallel rank:
// its shard; the other ranks update theirs).
void optimizer_step(Model *m, const TrainConfig *tc, float norm, float lr, int64_t t);

#endif

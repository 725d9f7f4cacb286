// One optimizer step over the model's flat buffers: global-norm clipping, then AdamW.
#ifndef DLLM_OPTIMIZER_H
#define DLLM_OPTIMIZER_H

#include "model/model.h"
#include "train/train_config.h"

// Clips m->grads to tc->grad_clip (if > 0), applies AdamW with learning rate lr as step t
// (1-based), and returns the gradient norm measured before clipping.
float optimizer_step(Model *m, const TrainConfig *tc, float lr, int64_t t);

#endif

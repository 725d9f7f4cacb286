#include "train/optimizer.h"

#include <math.h>

float grad_norm(const Model *m) {
    Trainable p = model_trainable(m);
    return (float)sqrt(p.be->sum_squares(p.grads, p.n));
}

void optimizer_step(Model *m, const TrainConfig *tc, float norm, float lr, int64_t t) {
    Trainable p = model_trainable(m);
    if (tc->grad_clip > 0.0f && norm > tc->grad_clip)
        p.be->scale(p.grads, p.n, tc->grad_clip / norm);
    if (m->lora.rank > 0) {  // LoRA: every adapter value is a matrix entry, all decayed
        p.be->adamw_update(p.params, p.grads, p.adam_m, p.adam_v, p.n, lr, tc->beta1, tc->beta2,
                           tc->adam_eps, tc->weight_decay, t);
        return;
    }
    const Backend *be = m->be;

    // tensor by tensor, because norm gains and biases get no weight decay
    ParamSpec specs[N_PARAM_TENSORS];
    param_specs(&m->cfg, specs);
    size_t offset = 0;
    for (int i = 0; i < N_PARAM_TENSORS; i++) {
        if (specs[i].size == 0) continue;  // a tensor this config leaves out
        float wd = specs[i].is_norm || specs[i].is_bias ? 0.0f : tc->weight_decay;
        be->adamw_update(m->params + offset, m->grads + offset, m->adam_m + offset,
                         m->adam_v + offset, specs[i].size, lr, tc->beta1, tc->beta2,
                         tc->adam_eps, wd, t);
        offset += specs[i].size;
    }
}

#include "train/optimizer.h"

#include <math.h>

float grad_norm(const Model *m) {
    Trainable p = model_trainable(m);
    return (float)sqrt(p.be->sum_squares(p.grads, p.n));
}

// AdamW on the trainable values [lo, hi) that the optimizer state covers, with weight decay wd.
static void adamw_range(const Trainable *p, size_t lo, size_t hi, const TrainConfig *tc,
                        float wd, float lr, int64_t t) {
    size_t a = lo > p->opt_lo ? lo : p->opt_lo;
    size_t b = hi < p->opt_lo + p->opt_n ? hi : p->opt_lo + p->opt_n;
    if (a >= b) return;
    p->be->adamw_update(p->params + a, p->grads + a, p->adam_m + (a - p->opt_lo),
                        p->adam_v + (a - p->opt_lo), b - a, lr, tc->beta1, tc->beta2,
                        tc->adam_eps, wd, t);
}

void optimizer_step(Model *m, const TrainConfig *tc, float norm, float lr, int64_t t) {
    Trainable p = model_trainable(m);
    if (tc->grad_clip > 0.0f && norm > tc->grad_clip)
        p.be->scale(p.grads + p.opt_lo, p.opt_n, tc->grad_clip / norm);
    if (m->lora.rank > 0) {  // LoRA: every adapter value is a matrix entry, all decayed
        adamw_range(&p, 0, p.n, tc, tc->weight_decay, lr, t);
        return;
    }
    // tensor by tensor, because norm gains and biases get no weight decay
    ParamSpec specs[N_PARAM_TENSORS];
    param_specs(&m->cfg, specs);
    size_t offset = 0;
    for (int i = 0; i < N_PARAM_TENSORS; i++) {
        if (specs[i].size == 0) continue;  // a tensor this config leaves out
        float wd = specs[i].is_norm || specs[i].is_bias ? 0.0f : tc->weight_decay;
        adamw_range(&p, offset, offset + specs[i].size, tc, wd, lr, t);
        offset += specs[i].size;
    }
}

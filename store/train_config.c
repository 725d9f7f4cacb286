#include "store/train_config.h"

#include <math.h>

TrainConfig train_config_default(void) {
    TrainConfig tc = {
        .objective = OBJECTIVE_MDM,
        .batch_size = 16,
        .grad_accum = 1,
        .steps = 1000,
        .warmup_steps = 50,
        .lr = 1e-3f,
        .min_lr = 1e-4f,
        .schedule = SCHEDULE_COSINE,
        .decay_frac = 0.2f,
        .weight_decay = 0.1f,
        .beta1 = 0.9f,
        .beta2 = 0.95f,
        .adam_eps = 1e-8f,
        .grad_clip = 1.0f,
        .mask_eps = 1e-3f,
        .t_sampling = T_STRATIFIED,  // scripts/plans/mdm_recipe.md: lower and tighter than uniform
        .random_length_prob = 0.0f,
        .seed = 1337,
        .order = ORDER_RANDOM,
        .t_max = 1.0f,
    };
    return tc;
}

int train_copies(const TrainConfig *tc) { return tc->objective == OBJECTIVE_BD3 ? 2 : 1; }

int train_config_validate(const TrainConfig *tc, Error *err) {
    if (tc->objective != OBJECTIVE_MDM && tc->objective != OBJECTIVE_AR &&
        tc->objective != OBJECTIVE_BD3)
        return error_set(err, "unknown objective %d", (int)tc->objective);
    if (tc->batch_size < 1) return error_set(err, "batch size must be >= 1");
    if (tc->grad_accum < 1) return error_set(err, "grad accumulation must be >= 1");
    if (tc->steps < 1) return error_set(err, "steps must be >= 1");
    if (tc->warmup_steps < 0) return error_set(err, "warmup steps must be >= 0");
    if (!(tc->lr > 0.0f)) return error_set(err, "lr must be > 0");
    if (!(tc->min_lr >= 0.0f && tc->min_lr <= tc->lr))
        return error_set(err, "min lr must be in [0, lr]");
    if (tc->order != ORDER_RANDOM && tc->order != ORDER_SEQUENTIAL)
        return error_set(err, "unknown data order %d", (int)tc->order);
    if (tc->schedule != SCHEDULE_COSINE && tc->schedule != SCHEDULE_WSD)
        return error_set(err, "unknown lr schedule %d", (int)tc->schedule);
    if (!(tc->decay_frac > 0.0f && tc->decay_frac <= 1.0f))
        return error_set(err, "decay fraction must be in (0, 1]");
    if (!(tc->weight_decay >= 0.0f)) return error_set(err, "weight decay must be >= 0");
    if (!(tc->beta1 >= 0.0f && tc->beta1 < 1.0f && tc->beta2 >= 0.0f && tc->beta2 < 1.0f))
        return error_set(err, "adam betas must be in [0, 1)");
    if (!(tc->adam_eps > 0.0f)) return error_set(err, "adam eps must be > 0");
    if (!(tc->grad_clip >= 0.0f)) return error_set(err, "grad clip must be >= 0");
    if (!(tc->mask_eps > 0.0f && tc->mask_eps < 1.0f))
        return error_set(err, "mask eps must be in (0, 1)");
    if (tc->anneal_steps < 0 || (tc->anneal_steps > 0 && tc->objective != OBJECTIVE_MDM))
        return error_set(err, "attention annealing (anneal steps > 0) is for the mdm objective");
    if (!(tc->t_max > tc->mask_eps && tc->t_max <= 1.0f))
        return error_set(err, "t max must be in (mask eps, 1]");
    if (tc->objective == OBJECTIVE_BD3 && tc->sft)
        return error_set(err, "fine-tuning (--sft) is for the mdm and ar objectives");
    if (tc->t_sampling != T_UNIFORM && tc->t_sampling != T_STRATIFIED)
        return error_set(err, "unknown t sampling %d", (int)tc->t_sampling);
    if (!(tc->random_length_prob >= 0.0f && tc->random_length_prob <= 1.0f))
        return error_set(err, "random length probability must be in [0, 1]");
    if (!(tc->cfg_drop >= 0.0f && tc->cfg_drop < 1.0f))
        return error_set(err, "cfg drop must be in [0, 1)");
    if (tc->cfg_drop > 0.0f && !(tc->sft && tc->objective == OBJECTIVE_MDM))
        return error_set(err, "cfg drop is for MDM fine-tuning (--sft) only");
    return 0;
}

void train_config_print(FILE *f, const TrainConfig *tc) {
    fprintf(f,
            "train: objective %s, batch %d x accum %d, steps %lld, warmup %lld, lr %g -> %g (%s",
            tc->objective == OBJECTIVE_MDM ? "mdm" : tc->objective == OBJECTIVE_AR ? "ar" : "bd3",
            tc->batch_size, tc->grad_accum,
            (long long)tc->steps, (long long)tc->warmup_steps, tc->lr, tc->min_lr,
            tc->schedule == SCHEDULE_COSINE ? "cosine" : "wsd");
    if (tc->schedule == SCHEDULE_WSD) fprintf(f, ", decay over last %g", tc->decay_frac);
    fprintf(f, "), wd %g, betas %g %g, eps %g, clip %g, mask eps %g, %s t, random length %g, "
               "seed %llu, %s order\n",
            tc->weight_decay, tc->beta1, tc->beta2, tc->adam_eps, tc->grad_clip, tc->mask_eps,
            tc->t_sampling == T_STRATIFIED ? "stratified" : "uniform", tc->random_length_prob,
            (unsigned long long)tc->seed,
            tc->order == ORDER_RANDOM ? "random" : "sequential");
    if (tc->anneal_steps > 0)
        fprintf(f, "attention: causal to bidirectional over the first %lld steps\n",
                (long long)tc->anneal_steps);
    if (tc->objective == OBJECTIVE_BD3 && tc->t_max < 1.0f)
        fprintf(f, "bd3: mask rates clipped to [%g, %g)\n", tc->mask_eps, tc->t_max);
    if (tc->sft) fprintf(f, "fine-tuning (SFT): prompts never masked, cfg drop %g\n", tc->cfg_drop);
}

float lr_at(const TrainConfig *tc, int64_t step) {
    if (step < tc->warmup_steps) return tc->lr * (float)(step + 1) / (float)tc->warmup_steps;
    int64_t span = tc->steps - tc->warmup_steps;
    if (span <= 0) return tc->lr;
    double progress = (double)(step - tc->warmup_steps) / (double)span;
    if (progress > 1.0) progress = 1.0;
    double frac;  // 1 at the peak, 0 at min_lr
    if (tc->schedule == SCHEDULE_COSINE) {
        frac = 0.5 * (1.0 + cos(M_PI * progress));
    } else {
        // warmup-stable-decay: flat, then linear down over the last decay_frac of all steps
        double decay_start = 1.0 - (double)tc->decay_frac * tc->steps / span;
        frac = progress <= decay_start ? 1.0 : (1.0 - progress) / (1.0 - decay_start);
        if (frac > 1.0) frac = 1.0;
    }
    return (float)(tc->min_lr + (tc->lr - tc->min_lr) * frac);
}

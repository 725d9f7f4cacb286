#include "model/lora.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/rng.h"
#include "model/params.h"

const char *const lora_target_names[N_LORA_TARGETS] = {"q", "k", "v", "o", "gate", "up", "down"};

int lora_parse_targets(const char *list, uint32_t *targets, Error *err) {
    *targets = 0;
    const char *at = list;
    while (*at) {
        size_t len = strcspn(at, ",");
        int found = -1;
        for (int t = 0; t < N_LORA_TARGETS && found < 0; t++)
            if (strlen(lora_target_names[t]) == len && strncmp(at, lora_target_names[t], len) == 0)
                found = t;
        if (found < 0)
            return error_set(err, "--lora-targets: unknown projection '%.*s' (expected a list of "
                                  "q, k, v, o, gate, up, down)", (int)len, at);
        *targets |= 1u << found;
        at += len + (at[len] == ',');
    }
    if (!*targets) return error_set(err, "--lora-targets: no projection named");
    return 0;
}

void lora_format_targets(uint32_t targets, char *out, size_t cap) {
    size_t used = 0;
    out[0] = '\0';
    for (int t = 0; t < N_LORA_TARGETS; t++)
        if (targets & (1u << t) && used < cap)
            used += snprintf(out + used, cap - used, "%s%s", used ? "," : "",
                             lora_target_names[t]);
}

int lora_config_validate(const LoraConfig *lc, Error *err) {
    if (lc->rank < 1 || lc->rank > 65536)
        return error_set(err, "LoRA rank %d (expected 1 .. 65536)", lc->rank);
    if (!(lc->alpha > 0.0f) || !isfinite(lc->alpha))
        return error_set(err, "LoRA alpha %g (expected > 0)", lc->alpha);
    if (lc->targets == 0 || lc->targets >> N_LORA_TARGETS)
        return error_set(err, "LoRA targets 0x%x (expected a set of q, k, v, o, gate, up, down)",
                         lc->targets);
    if (!memchr(lc->base, '\0', sizeof lc->base) || !lc->base[0])
        return error_set(err, "LoRA adapters without the path of their base model");
    return 0;
}

float lora_scale(const LoraConfig *lc) { return lc->alpha / (float)lc->rank; }

// Values of one layer's adapters of target t: A [rank, in] and B [out, rank].
static size_t target_size(const ModelConfig *c, const LoraConfig *lc, int t) {
    int in, out;
    projection_shape(c, t, &in, &out);
    return (size_t)lc->rank * ((size_t)in + out);
}

static size_t layer_size(const ModelConfig *c, const LoraConfig *lc) {
    size_t n = 0;
    for (int t = 0; t < N_LORA_TARGETS; t++)
        if (lc->targets & (1u << t)) n += target_size(c, lc, t);
    return n;
}

size_t lora_param_count(const ModelConfig *c, const LoraConfig *lc) {
    return lc->rank > 0 ? (size_t)c->n_layer * layer_size(c, lc) : 0;
}

size_t lora_offset(const ModelConfig *c, const LoraConfig *lc, int layer, int t) {
    size_t at = (size_t)layer * layer_size(c, lc);
    for (int u = 0; u < t; u++)
        if (lc->targets & (1u << u)) at += target_size(c, lc, u);
    return at;
}

int lora_n_targets(const LoraConfig *lc) {
    int n = 0;
    for (int t = 0; t < N_LORA_TARGETS; t++) n += (lc->targets >> t) & 1u;
    return n;
}

void lora_init(float *adapters, const ModelConfig *c, const LoraConfig *lc, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed);
    for (int l = 0; l < c->n_layer; l++)
        for (int t = 0; t < N_LORA_TARGETS; t++) {
            if (!(lc->targets & (1u << t))) continue;
            int in, out;
            projection_shape(c, t, &in, &out);
            float *a = adapters + lora_offset(c, lc, l, t), *b = a + (size_t)lc->rank * in;
            float bound = 1.0f / sqrtf((float)in);
            for (size_t i = 0; i < (size_t)lc->rank * in; i++)
                a[i] = bound * (2.0f * rng_uniform(&rng) - 1.0f);
            memset(b, 0, (size_t)out * lc->rank * sizeof(float));
        }
}

void lora_merge(float *params, const float *adapters, const ModelConfig *c, const LoraConfig *lc) {
    ParamSpec specs[N_PARAM_TENSORS];
    param_specs(c, specs);
    float s = lora_scale(lc);
    int r = lc->rank;
    for (int t = 0; t < N_LORA_TARGETS; t++) {
        if (!(lc->targets & (1u << t))) continue;
        int p = projection_param(t), in, out;
        projection_shape(c, t, &in, &out);
        size_t first = 0;  // where the stacked tensor starts in the flat layout
        for (int i = 0; i < p; i++) first += specs[i].size;
        for (int l = 0; l < c->n_layer; l++) {
            float *w = params + first + (size_t)l * out * in;
            const float *a = adapters + lora_offset(c, lc, l, t), *b = a + (size_t)r * in;
#pragma omp parallel for if ((double)out * in * r > 1e6)
            for (int o = 0; o < out; o++)
                for (int i = 0; i < in; i++) {
                    float d = 0.0f;
                    for (int k = 0; k < r; k++) d += b[(size_t)o * r + k] * a[(size_t)k * in + i];
                    w[(size_t)o * in + i] += s * d;
                }
        }
    }
}

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

int lora_rows_per_token(const ModelConfig *c) { return c->n_experts ? c->n_active + 1 : 1; }

int lora_units(const ModelConfig *c, int l, int t) {
    int moe_mlp = t >= LORA_GATE && l >= model_dense_layers(c);
    return moe_mlp ? c->n_experts + (c->d_shared > 0) : 1;
}

void lora_unit_shape(const ModelConfig *c, int l, int t, int u, int *in, int *out) {
    if (lora_units(c, l, t) == 1) {
        projection_shape(c, t, in, out);
        return;
    }
    int C = c->d_model, F = u < c->n_experts ? c->d_expert : c->d_shared;
    *in = t == LORA_DOWN ? F : C;
    *out = t == LORA_DOWN ? C : F;
}

// Values of one unit's adapter: A [rank, in] and B [out, rank].
static size_t unit_size(const ModelConfig *c, const LoraConfig *lc, int l, int t, int u) {
    int in, out;
    lora_unit_shape(c, l, t, u, &in, &out);
    return (size_t)lc->rank * ((size_t)in + out);
}

static size_t target_size(const ModelConfig *c, const LoraConfig *lc, int l, int t) {
    size_t n = 0;
    for (int u = 0; u < lora_units(c, l, t); u++) n += unit_size(c, lc, l, t, u);
    return n;
}

static size_t layer_size(const ModelConfig *c, const LoraConfig *lc, int l) {
    size_t n = 0;
    for (int t = 0; t < N_LORA_TARGETS; t++)
        if (lc->targets & (1u << t)) n += target_size(c, lc, l, t);
    return n;
}

// The adapters of the layers before `layer`: every dense layer's are alike, and every MoE
// layer's (a count, not a loop: a checkpoint header may claim any number of layers).
static size_t layers_size(const ModelConfig *c, const LoraConfig *lc, int layer) {
    int dense = model_dense_layers(c), before = layer < dense ? layer : dense;
    size_t n = (size_t)before * layer_size(c, lc, 0);
    if (layer > dense) n += (size_t)(layer - dense) * layer_size(c, lc, dense);
    return n;
}

size_t lora_param_count(const ModelConfig *c, const LoraConfig *lc) {
    return lc->rank > 0 ? layers_size(c, lc, c->n_layer) : 0;
}

size_t lora_unit_offset(const ModelConfig *c, const LoraConfig *lc, int layer, int t, int u) {
    size_t at = layers_size(c, lc, layer);
    for (int v = 0; v < t; v++)
        if (lc->targets & (1u << v)) at += target_size(c, lc, layer, v);
    for (int w = 0; w < u; w++) at += unit_size(c, lc, layer, t, w);
    return at;
}

size_t lora_offset(const ModelConfig *c, const LoraConfig *lc, int layer, int t) {
    return lora_unit_offset(c, lc, layer, t, 0);
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
            for (int u = 0; u < lora_units(c, l, t); u++) {
                int in, out;
                lora_unit_shape(c, l, t, u, &in, &out);
                float *a = adapters + lora_unit_offset(c, lc, l, t, u);
                float *b = a + (size_t)lc->rank * in;
                float bound = 1.0f / sqrtf((float)in);
                for (size_t i = 0; i < (size_t)lc->rank * in; i++)
                    a[i] = bound * (2.0f * rng_uniform(&rng) - 1.0f);
                memset(b, 0, (size_t)out * lc->rank * sizeof(float));
            }
        }
}

// Where unit u of projection t of layer l sits in the host fp32 weights: the projection, or
// an MoE layer's expert u (the shared expert after the last).
static float *unit_weight(float *params, const ModelConfig *c, int l, int t, int u) {
    ParamTensors p;
    param_tensors_point(&p, params, sizeof(float), c);
    LayerWeights w = layer_weights(&p, c, l, sizeof(float));
    if (lora_units(c, l, t) == 1) return layer_projection(&w, t);
    int in, out;
    lora_unit_shape(c, l, t, u, &in, &out);
    if (u == c->n_experts) return t == LORA_GATE ? w.s_gate : t == LORA_UP ? w.s_up : w.s_down;
    float *stack = t == LORA_GATE ? w.e_gate : t == LORA_UP ? w.e_up : w.e_down;
    return stack + (size_t)u * in * out;
}

void lora_merge(float *params, const float *adapters, const ModelConfig *c, const LoraConfig *lc) {
    float s = lora_scale(lc);
    int r = lc->rank;
    for (int t = 0; t < N_LORA_TARGETS; t++) {
        if (!(lc->targets & (1u << t))) continue;
        for (int l = 0; l < c->n_layer; l++)
            for (int u = 0; u < lora_units(c, l, t); u++) {
                int in, out;
                lora_unit_shape(c, l, t, u, &in, &out);
                float *w = unit_weight(params, c, l, t, u);
                const float *a = adapters + lora_unit_offset(c, lc, l, t, u);
                const float *b = a + (size_t)r * in;
#pragma omp parallel for if ((double)out * in * r > 1e6)
                for (int o = 0; o < out; o++)
                    for (int i = 0; i < in; i++) {
                        float d = 0.0f;
                        for (int k = 0; k < r; k++)
                            d += b[(size_t)o * r + k] * a[(size_t)k * in + i];
                        w[(size_t)o * in + i] += s * d;
                    }
            }
    }
}

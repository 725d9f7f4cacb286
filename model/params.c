#include "model/params.h"

#include <math.h>
#include <string.h>

#include "common/rng.h"

void param_specs(const ModelConfig *c, ParamSpec specs[N_PARAM_TENSORS]) {
    size_t L = c->n_layer, C = c->d_model, F = c->d_ff, V = c->vocab_size;
    size_t KV = model_kv_dim(c), bias = c->qkv_bias ? L : 0, qk = c->qk_norm ? L : 0;
    size_t hd = c->n_head > 0 ? (size_t)model_head_dim(c) : 0, QD = (size_t)c->n_head * hd;
    size_t Lm = model_moe_layers(c), Ld = L - Lm, E = c->n_experts, Fe = c->d_expert;
    size_t Fs = c->d_shared, Ls = Fs ? Lm : 0, Lb = c->expert_bias ? Lm : 0;
    // GPT-2 style: the two projections that write into the residual stream start smaller,
    // so the stream's variance does not grow with depth.
    float std = c->init_std > 0.0f ? c->init_std : 0.02f;
    float resid_std = std / sqrtf(2.0f * c->n_layer);
    // name, layers, rows, cols, is_norm, is_bias, init_std
    struct { const char *name; size_t layers, rows, cols; int is_norm, is_bias; float std; }
        table[N_PARAM_TENSORS] = {
            {"tok_emb", 1, V, C, 0, 0, std},
            {"attn_norm", L, C, 1, 1, 0, 0.0f},
            {"wq", L, QD, C, 0, 0, std},
            {"wk", L, KV, C, 0, 0, std},
            {"wv", L, KV, C, 0, 0, std},
            {"bq", bias, QD, 1, 0, 1, 0.0f},
            {"bk", bias, KV, 1, 0, 1, 0.0f},
            {"bv", bias, KV, 1, 0, 1, 0.0f},
            {"wo", L, C, QD, 0, 0, resid_std},
            {"mlp_norm", L, C, 1, 1, 0, 0.0f},
            {"w_gate", Ld, F, C, 0, 0, std},
            {"w_up", Ld, F, C, 0, 0, std},
            {"w_down", Ld, C, F, 0, 0, resid_std},
            {"final_norm", 1, C, 1, 1, 0, 0.0f},
            {"lm_head", c->tied_embeddings ? 0 : 1, V, C, 0, 0, std},
            {"q_norm", qk, hd, 1, 1, 0, 0.0f},
            {"k_norm", qk, hd, 1, 1, 0, 0.0f},
            {"router", Lm, E, C, 0, 0, std},
            {"expert_bias", Lb, E, 1, 0, 1, 0.0f},
            {"e_gate", Lm, E * Fe, C, 0, 0, std},
            {"e_up", Lm, E * Fe, C, 0, 0, std},
            {"e_down", Lm, E * C, Fe, 0, 0, resid_std},
            {"s_gate", Ls, Fs, C, 0, 0, std},
            {"s_up", Ls, Fs, C, 0, 0, std},
            {"s_down", Ls, C, Fs, 0, 0, resid_std},
        };
    for (int i = 0; i < N_PARAM_TENSORS; i++) {
        ParamSpec s = {table[i].name, table[i].layers * table[i].rows * table[i].cols,
                       (int)table[i].layers, table[i].rows, table[i].cols, table[i].is_norm,
                       table[i].is_bias, table[i].std};
        specs[i] = s;
    }
}

size_t param_count(const ModelConfig *c) {
    ParamSpec specs[N_PARAM_TENSORS];
    param_specs(c, specs);
    size_t n = 0;
    for (int i = 0; i < N_PARAM_TENSORS; i++) n += specs[i].size;
    return n;
}

double train_flops_per_token(const ModelConfig *c, int T) {
    ParamSpec specs[N_PARAM_TENSORS];
    param_specs(c, specs);
    double matmul = (double)c->vocab_size * c->d_model;  // the output head
    for (int i = 0; i < N_PARAM_TENSORS; i++)
        if (param_is_projection(i) || param_is_moe_matrix(i))
            matmul += param_is_expert(i) && specs[i].size
                          ? (double)specs[i].size * c->n_active / c->n_experts
                          : (double)specs[i].size;
    int copies = c->block_size > 0 ? 2 : 1;
    double keys = (double)copies * T;
    return copies * (6.0 * matmul + 12.0 * c->n_layer * keys * model_q_dim(c));
}

int param_is_expert(int i) { return i >= PARAM_E_GATE && i <= PARAM_E_DOWN; }

int param_is_moe_matrix(int i) {
    return i == PARAM_ROUTER || (i >= PARAM_E_GATE && i <= PARAM_S_DOWN);
}

size_t param_count_active(const ModelConfig *c) {
    ParamSpec specs[N_PARAM_TENSORS];
    param_specs(c, specs);
    size_t n = 0;
    for (int i = 0; i < N_PARAM_TENSORS; i++)
        n += param_is_expert(i) && specs[i].size ? specs[i].size / c->n_experts * c->n_active
                                                 : specs[i].size;
    return n;
}

// p advanced by n elements of elem_bytes (NULL stays NULL: a packed model's projections)
static float *advance(const float *p, size_t n, size_t elem_bytes) {
    return p ? (float *)((const char *)p + n * elem_bytes) : NULL;
}

int param_is_projection(int i) {
    for (int t = 0; t < N_PROJECTIONS; t++)
        if (projection_param(t) == i) return 1;
    return 0;
}

size_t param_count_without(const ModelConfig *c, int (*left_out)(int i)) {
    ParamSpec specs[N_PARAM_TENSORS];
    param_specs(c, specs);
    size_t n = 0;
    for (int i = 0; i < N_PARAM_TENSORS; i++)
        if (!left_out(i)) n += specs[i].size;
    return n;
}

size_t param_count_packed(const ModelConfig *c) {
    return param_count_without(c, param_is_projection);
}

void params_copy_unpacked(float *dst, const float *src, const ModelConfig *c, int to_full) {
    ParamSpec specs[N_PARAM_TENSORS];
    param_specs(c, specs);
    for (int i = 0; i < N_PARAM_TENSORS; i++) {
        if (!param_is_projection(i)) {
            memcpy(dst, src, specs[i].size * sizeof(float));
            dst += specs[i].size;
            src += specs[i].size;
        } else if (to_full) {
            dst += specs[i].size;
        } else {
            src += specs[i].size;
        }
    }
}

static int none_left_out(int i) {
    (void)i;
    return 0;
}

static void point(ParamTensors *t, void *base, size_t elem_bytes, const ModelConfig *c,
                  int (*left_out)(int i)) {
    float **fields[N_PARAM_TENSORS] = {
        &t->tok_emb, &t->attn_norm, &t->wq,     &t->wk,     &t->wv,
        &t->bq,      &t->bk,        &t->bv,     &t->wo,     &t->mlp_norm,
        &t->w_gate,  &t->w_up,      &t->w_down, &t->final_norm, &t->lm_head,
        &t->q_norm,  &t->k_norm,   &t->router, &t->expert_bias, &t->e_gate, &t->e_up,
        &t->e_down,  &t->s_gate,   &t->s_up,   &t->s_down,
    };
    ParamSpec specs[N_PARAM_TENSORS];
    param_specs(c, specs);
    float *at = base;
    for (int i = 0; i < N_PARAM_TENSORS; i++) {
        int skip = left_out(i);
        *fields[i] = skip ? NULL : at;
        if (!skip) at = advance(at, specs[i].size, elem_bytes);
    }
    if (c->tied_embeddings) t->lm_head = t->tok_emb;
}

void param_tensors_point(ParamTensors *t, void *base, size_t elem_bytes, const ModelConfig *c) {
    point(t, base, elem_bytes, c, none_left_out);
}

void param_tensors_point_without(ParamTensors *t, float *base, const ModelConfig *c,
                                 int (*left_out)(int i)) {
    point(t, base, sizeof(float), c, left_out);
}

void param_tensors_point_packed(ParamTensors *t, float *base, const ModelConfig *c) {
    point(t, base, sizeof(float), c, param_is_projection);
}

LayerWeights layer_weights(const ParamTensors *t, const ModelConfig *c, int l, size_t elem_bytes) {
    size_t C = c->d_model, F = c->d_ff, KV = model_kv_dim(c), e = elem_bytes;
    size_t hd = model_head_dim(c), QD = model_q_dim(c);
    int bias = c->qkv_bias, qk = c->qk_norm;
    size_t Ld = model_dense_layers(c), dense = (size_t)l < Ld, lm = l - Ld;  // lm: MoE index
    size_t E = c->n_experts, Fe = c->d_expert, Fs = c->d_shared;
    LayerWeights w = {
        .attn_norm = advance(t->attn_norm, l * C, e),
        .wq = advance(t->wq, l * QD * C, e),
        .wk = advance(t->wk, l * KV * C, e),
        .wv = advance(t->wv, l * KV * C, e),
        .bq = bias ? advance(t->bq, l * QD, e) : NULL,
        .bk = bias ? advance(t->bk, l * KV, e) : NULL,
        .bv = bias ? advance(t->bv, l * KV, e) : NULL,
        .wo = advance(t->wo, l * C * QD, e),
        .mlp_norm = advance(t->mlp_norm, l * C, e),
        .w_gate = dense ? advance(t->w_gate, l * F * C, e) : NULL,
        .w_up = dense ? advance(t->w_up, l * F * C, e) : NULL,
        .w_down = dense ? advance(t->w_down, l * C * F, e) : NULL,
        .q_norm = qk ? advance(t->q_norm, l * hd, e) : NULL,
        .k_norm = qk ? advance(t->k_norm, l * hd, e) : NULL,
    };
    if (dense) return w;
    w.router = advance(t->router, lm * E * C, e);
    w.expert_bias = c->expert_bias ? advance(t->expert_bias, lm * E, e) : NULL;
    w.e_gate = advance(t->e_gate, lm * E * Fe * C, e);
    w.e_up = advance(t->e_up, lm * E * Fe * C, e);
    w.e_down = advance(t->e_down, lm * E * C * Fe, e);
    if (Fs) {
        w.s_gate = advance(t->s_gate, lm * Fs * C, e);
        w.s_up = advance(t->s_up, lm * Fs * C, e);
        w.s_down = advance(t->s_down, lm * C * Fs, e);
    }
    return w;
}

int projection_param(int t) {
    static const int index[N_PROJECTIONS] = {2, 3, 4, 8, 10, 11, 12};  // wq .. w_down
    return index[t];
}

float *layer_projection(const LayerWeights *w, int t) {
    float *at[N_PROJECTIONS] = {w->wq, w->wk, w->wv, w->wo, w->w_gate, w->w_up, w->w_down};
    return at[t];
}

void projection_shape(const ModelConfig *c, int t, int *in, int *out) {
    int C = c->d_model, F = c->d_ff, KV = model_kv_dim(c), QD = model_q_dim(c);
    *in = t == PROJ_DOWN ? F : t == PROJ_O ? QD : C;
    *out = t == PROJ_K || t == PROJ_V        ? KV
           : t == PROJ_GATE || t == PROJ_UP ? F
           : t == PROJ_Q                     ? QD
                                             : C;
}

void params_init(float *params, const ModelConfig *c, uint64_t seed) {
    ParamSpec specs[N_PARAM_TENSORS];
    param_specs(c, specs);
    Rng rng;
    rng_seed(&rng, seed);
    for (int i = 0; i < N_PARAM_TENSORS; i++) {
        for (size_t j = 0; j < specs[i].size; j++)
            params[j] = specs[i].is_norm   ? 1.0f
                        : specs[i].is_bias ? 0.0f
                                           : specs[i].init_std * rng_normal(&rng);
        params += specs[i].size;
    }
}

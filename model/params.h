// Where every weight lives. All parameters sit in one contiguous float buffer (and the
// gradients, AdamW m and v each in one more, with the same layout), so the optimizer,
// gradient clipping and checkpoints each treat the model as one flat array.
// Per-layer tensors are stacked over layers: wq holds n_layer [d_model, d_model] matrices.
#ifndef DLLM_PARAMS_H
#define DLLM_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "model/config.h"

typedef struct {
    float *tok_emb;     // [vocab, d_model]
    float *attn_norm;   // [n_layer, d_model]
    float *wq;          // [n_layer, d_model, d_model]
    float *wk;          // [n_layer, d_model, d_model]
    float *wv;          // [n_layer, d_model, d_model]
    float *wo;          // [n_layer, d_model, d_model]
    float *mlp_norm;    // [n_layer, d_model]
    float *w_gate;      // [n_layer, d_ff, d_model]
    float *w_up;        // [n_layer, d_ff, d_model]
    float *w_down;      // [n_layer, d_model, d_ff]
    float *final_norm;  // [d_model]
    float *lm_head;     // [vocab, d_model]
} ParamTensors;

enum { N_PARAM_TENSORS = 12 };

typedef struct {
    const char *name;
    size_t size;       // floats, all layers together
    int is_norm;       // norm gains start at 1 and get no weight decay
    float init_std;    // for the others: normal(0, init_std)
} ParamSpec;

// The size table, in the order of the ParamTensors fields.
void param_specs(const ModelConfig *c, ParamSpec specs[N_PARAM_TENSORS]);
size_t param_count(const ModelConfig *c);
// Points each field of t into base, which holds param_count(c) floats.
void param_tensors_point(ParamTensors *t, float *base, const ModelConfig *c);

// One layer's slices of a ParamTensors (the weights or their gradients).
typedef struct {
    float *attn_norm, *wq, *wk, *wv, *wo, *mlp_norm, *w_gate, *w_up, *w_down;
} LayerWeights;
LayerWeights layer_weights(const ParamTensors *t, const ModelConfig *c, int layer);

// Fills host memory with the initial weights; the same seed gives the same bits.
void params_init(float *params, const ModelConfig *c, uint64_t seed);

#endif

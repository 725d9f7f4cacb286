// Where every weight lives. All parameters sit in one contiguous float buffer (and the
// gradients, AdamW m and v each in one more, with the same layout), so the optimizer,
// gradient clipping and checkpoints each treat the model as one flat array.
// Per-layer tensors are stacked over layers: wq holds n_layer [d_model, d_model] matrices.
// Optional tensors have size 0 when the config leaves them out: the q/k/v biases without
// qkv_bias, the q/k norms without qk_norm, lm_head with tied_embeddings (then the lm_head view points at tok_emb, so the
// LM head's gradient adds into the embedding's). kv_dim = n_kv_head * head size.
#ifndef DLLM_PARAMS_H
#define DLLM_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "model/config.h"

typedef struct {
    float *tok_emb;     // [vocab, d_model]
    float *attn_norm;   // [n_layer, d_model]
    float *wq;          // [n_layer, q_dim, d_model] (q_dim = n_head x head size: d_model unless
                        // head_dim sets it)
    float *wk;          // [n_layer, kv_dim, d_model]
    float *wv;          // [n_layer, kv_dim, d_model]
    float *bq;          // [n_layer, q_dim] (qkv_bias)
    float *bk;          // [n_layer, kv_dim] (qkv_bias)
    float *bv;          // [n_layer, kv_dim] (qkv_bias)
    float *wo;          // [n_layer, d_model, q_dim]
    float *mlp_norm;    // [n_layer, d_model]
    float *w_gate;      // [n_layer, d_ff, d_model]
    float *w_up;        // [n_layer, d_ff, d_model]
    float *w_down;      // [n_layer, d_model, d_ff]
    float *final_norm;  // [d_model]
    float *lm_head;     // [vocab, d_model] (tok_emb when tied_embeddings)
    float *q_norm;      // [n_layer, head size] (qk_norm)
    float *k_norm;      // [n_layer, head size] (qk_norm)
    // mixture of experts (n_experts > 0), Lm = the MoE layers (the last n_layer - dense_layers;
    // w_gate, w_up and w_down then hold the dense layers' alone), E experts of width Fe:
    float *router;      // [Lm, E, d_model]
    float *expert_bias; // [Lm, E] (expert_bias; never trained)
    float *e_gate;      // [Lm, E * Fe, d_model]: expert e's gate is rows e * Fe ..
    float *e_up;        // [Lm, E * Fe, d_model]
    float *e_down;      // [Lm, E * d_model, Fe]: expert e's down is rows e * d_model ..
    float *s_gate;      // [Lm, d_shared, d_model] (the shared expert, d_shared > 0)
    float *s_up;        // [Lm, d_shared, d_model]
    float *s_down;      // [Lm, d_model, d_shared]
} ParamTensors;

enum { N_PARAM_TENSORS = 25 };
enum { PARAM_TOK_EMB = 0, PARAM_LM_HEAD = 14 };
// The mixture of experts' fields' places among them (the MoE layers' tensors, in order).
enum { PARAM_ROUTER = 17, PARAM_EXPERT_BIAS, PARAM_E_GATE, PARAM_E_UP, PARAM_E_DOWN, PARAM_S_GATE,
       PARAM_S_UP, PARAM_S_DOWN };

typedef struct {
    const char *name;
    size_t size;       // floats, all layers together: layers * rows * cols
    int layers;        // n_layer for per-layer tensors, else 1
    size_t rows, cols; // one layer's matrix [rows, cols]; cols = 1 for a vector of rows
    int is_norm;       // norm gains start at 1 and get no weight decay
    int is_bias;       // biases start at 0 and get no weight decay (the expert bias, never
                       // given a gradient, so stays as loaded)
    float init_std;    // for the others: normal(0, init_std)
} ParamSpec;

// The size table, in the order of the ParamTensors fields.
void param_specs(const ModelConfig *c, ParamSpec specs[N_PARAM_TENSORS]);
size_t param_count(const ModelConfig *c);
// The parameters one token's pass reads: all but the routed experts it does not pick (of a
// dense model, param_count).
size_t param_count_active(const ModelConfig *c);
// ParamTensors field i is a routed expert's matrix (e_gate, e_up, e_down), or any matrix of an
// MoE layer's MLP (the router, the experts, the shared expert).
int param_is_expert(int i);
int param_is_moe_matrix(int i);
// Training FLOPs (forward + backward = 3 x forward) per token of rows of T positions: 6 x the
// weights of every matrix product (the seven projections of each layer and the output head;
// of an MoE layer the router, the shared expert and n_active of the E experts,
// tied or not; the embedding lookup is free) + 12 x n_layer x T x q_dim for attention (QK^T
// and AV over all T keys, causal or not: the usual convention). Block diffusion trains each
// token in two rows (the clean and the noisy copy) over 2T keys. LoRA training counts the same
// (an upper bound: a frozen base computes no weight gradients, about a third of the total).
double train_flops_per_token(const ModelConfig *c, int T);
// Points each field of t into base, which holds param_count(c) values of elem_bytes each:
// floats (4), or bf16 weights (2: an inference model on a bf16-weight backend, whose fields
// then point at bf16 values that only that backend's ops read).
void param_tensors_point(ParamTensors *t, void *base, size_t elem_bytes, const ModelConfig *c);

// A layout that keeps some tensors elsewhere (left_out(i) true: a packed model's projections,
// an 8-bit model's matrices): the count of the others, and the fields pointed at them in order
// in base (the ones left out NULL).
size_t param_count_without(const ModelConfig *c, int (*left_out)(int i));
void param_tensors_point_without(ParamTensors *t, float *base, const ModelConfig *c,
                                 int (*left_out)(int i));
// A packed ternary model (model/packed.h) keeps its seven projections packed elsewhere: its
// float weights are the other tensors alone, in the same order ("the unpacked tensors").
int param_is_projection(int i);  // i: a ParamTensors field's index
size_t param_count_packed(const ModelConfig *c);
// Points the fields at base (param_count_packed floats); the projections' fields are NULL.
void param_tensors_point_packed(ParamTensors *t, float *base, const ModelConfig *c);
// The unpacked tensors from a full layout to a packed model's floats (to_full 0), or back into
// a full layout's places (to_full 1; the projections' places untouched).
void params_copy_unpacked(float *dst, const float *src, const ModelConfig *c, int to_full);

// One layer's slices of a ParamTensors (the weights or their gradients).
// An MoE layer has no w_gate, w_up, w_down (NULL) and a dense layer no expert fields.
typedef struct {
    float *attn_norm, *wq, *wk, *wv, *bq, *bk, *bv, *wo, *mlp_norm, *w_gate, *w_up, *w_down;
    float *q_norm, *k_norm;  // NULL without qk_norm
    float *router, *expert_bias, *e_gate, *e_up, *e_down, *s_gate, *s_up, *s_down;
} LayerWeights;
LayerWeights layer_weights(const ParamTensors *t, const ModelConfig *c, int layer,
                           size_t elem_bytes);

// The seven projections of a layer, the linear maps LoRA adapts and BitNet ternarises:
// q, k, v, o, gate, up, down. Where each one's weight sits among the ParamTensors fields, and
// its input and output widths.
enum { PROJ_Q, PROJ_K, PROJ_V, PROJ_O, PROJ_GATE, PROJ_UP, PROJ_DOWN, N_PROJECTIONS };
int projection_param(int t);
// Projection t's slice among a layer's weights (w->wq for PROJ_Q, ...; NULL for an MoE
// layer's gate, up and down).
float *layer_projection(const LayerWeights *w, int t);
void projection_shape(const ModelConfig *c, int t, int *in, int *out);

// Fills host memory with the initial weights; the same seed gives the same bits.
void params_init(float *params, const ModelConfig *c, uint64_t seed);

#endif

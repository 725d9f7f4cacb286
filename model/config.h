// The shape of a transformer: everything needed to size its buffers and run it.
// One struct serves every objective; `causal` is 1 for the autoregressive (AR) baseline, 0 for
// the masked-diffusion model (MDM) and the block diffusion model (block_size > 0).
#ifndef DLLM_CONFIG_H
#define DLLM_CONFIG_H

#include <stdio.h>

#include "common/error.h"
#include "kernels/moe_route.h"

// Largest head size a model may have.
#define MODEL_MAX_HEAD_DIM 128

// Mixture of experts: the routers (ModelConfig.router) and the sizes one row's routing holds.
// ROUTER_SOFTMAX (LLaDA-MoE): probabilities softmax(logits), the n_active largest picked,
// their probabilities the weights (not renormalised). ROUTER_SIGMOID_GROUPED (LLaDA 2.0):
// scores sigmoid(logits); only the topk_groups groups whose two best scores sum highest are
// eligible, the n_active best eligible experts picked; weights = their scores / their sum
// (+1e-20) * routed_scale (a single pick: its score * routed_scale). The expert bias, when
// present, is added to what the picks compare (softmax: to the weights too, as LLaDA-MoE's
// code does).
enum { ROUTER_SOFTMAX = ROUTE_SOFTMAX, ROUTER_SIGMOID_GROUPED = ROUTE_SIGMOID_GROUPED };
#define MODEL_MAX_EXPERTS ROUTE_MAX_EXPERTS
#define MODEL_MAX_ACTIVE 16

// Llama 3's RoPE frequency scaling (transformers' rope_type "llama3"): wavelengths longer
// than original_context / low_freq_factor are divided by factor, shorter than
// original_context / high_freq_factor kept, those between blended. factor 0: none.
typedef struct {
    float factor, low_freq_factor, high_freq_factor;
    int original_context;
} RopeScaling;

typedef struct {
    int n_layer;
    int n_head;
    int n_kv_head;       // key/value heads (grouped-query attention); 0 means n_head
    int d_model;
    int d_ff;            // hidden width of the SwiGLU MLP
    int vocab_size;
    int seq_len;         // longest sequence the model runs on (sizes RoPE and activations)
    int mask_token_id;   // the [MASK] token the MDM is trained to fill in
    int causal;          // 1: causal attention (AR), 0: bidirectional (MDM)
    float rope_theta;
    float norm_eps;
    int qkv_bias;        // 1: the q, k and v projections add a bias (Qwen2, Dream)
    int tied_embeddings; // 1: the LM head is the token embedding (no lm_head tensor)
    int logit_shift;     // 1: position i's token is read from logit row i - 1 (Dream)
    RopeScaling rope_scaling;
    float init_std;      // training from scratch: weights start as normal(0, init_std); 0: 0.02
    int block_size;      // > 0: a block diffusion model (BD3-LM): blocks of this many positions,
                         // each sees the blocks before it (block-causal); 0: AR or MDM
    int ternary;         // 1: BitNet b1.58 layers: the seven projections of every block read
                         // their weights ternarised (per-tensor absmean: {-s, 0, +s}) and their
                         // inputs quantised to 8 bits (per-row absmax); the stored weights stay
                         // fp32 (quantisation-aware training, straight-through gradients);
                         // embeddings, norms, biases and the LM head stay full precision
    int sliding_window;  // > 0: a query sees at most this many keys, itself and those just
                         // before it (Mistral's sliding window; causal models only); 0: all
    int qk_norm;         // 1: each head's query and key are RMS-normalised (a learned gain of
                         // head size per layer) after the projection, before RoPE (Qwen3)
    int head_dim;        // > 0: each head's size, apart from d_model / n_head (Qwen3-0.6B's 128
                         // over 1024 / 16): q is n_head * head_dim wide; 0: d_model / n_head
    int rotary_dim;      // > 0: RoPE turns only each head's first rotary_dim values (a partial
                         // rotary, LLaDA 2.0's half), the rest pass; 0: the whole head
    // Mixture of experts (n_experts > 0; model/moe.h): from layer dense_layers on, a layer's
    // MLP is n_experts SwiGLU experts of width d_expert, of which a router picks n_active per
    // token, plus a shared expert of width d_shared (0: none) that every token passes through;
    // the first dense_layers layers keep the dense MLP of width d_ff.
    int n_experts, n_active, d_expert, d_shared, dense_layers;
    int router;          // ROUTER_SOFTMAX or ROUTER_SIGMOID_GROUPED (model/moe.h)
    int n_groups, topk_groups;  // grouped router: experts in n_groups equal groups, of which
                                // the topk_groups with the best two scores are eligible
    float routed_scale;  // grouped router: the picks' weights, normalised to sum 1, times this
    int expert_bias;     // 1: a per-expert bias (a frozen tensor) added to the routing scores
    float aux_loss_coef; // training: the load-balancing loss coef * E * sum_e f_e P_e over every
                         // MoE layer's rows (f_e: share of the picks, P_e: mean probability)
} ModelConfig;

// What a model is created for. Training keeps every layer's activations for the backward;
// recompute keeps only the residual stream and reruns each layer in the backward; inference
// allocates no gradients, optimizer state or backward scratch, and keeps of the activations
// only the KV cache (every layer's keys and values), one layer's working set and two residual
// slices.
// MODEL_PACKED is inference of a ternary model whose projections are packed (model/packed.h):
// 2 bits a weight, integer matmuls (CPU only), the other tensors fp32 (model/linear.h).
// MODEL_Q8 and MODEL_Q4 are inference with the embedding, the projections and the LM head in
// 8- or 4-bit blocks (kernels/qblocks.h): integer matmuls (CPU only), the norms and biases fp32.
typedef enum {
    MODEL_TRAINING = 0,
    MODEL_RECOMPUTE = 1,
    MODEL_INFERENCE = 2,
    MODEL_PACKED = 3,
    MODEL_Q8 = 4,
    MODEL_Q4 = 5
} ModelMode;

// A small default, good for CPU experiments on byte-level text.
ModelConfig model_config_default(void);
// Key/value heads and the width of a key or value row (n_kv_head * head size).
int model_kv_heads(const ModelConfig *c);
int model_kv_dim(const ModelConfig *c);
// A head's size (head_dim, or d_model / n_head) and the width of q and of the attention's
// output (n_head of them).
int model_head_dim(const ModelConfig *c);
int model_q_dim(const ModelConfig *c);
// Layers with a mixture of experts (0 for a dense model) and with the dense MLP.
int model_moe_layers(const ModelConfig *c);
int model_dense_layers(const ModelConfig *c);
int model_config_validate(const ModelConfig *c, Error *err);
// The attention mask (kernels/attn_mask.h) of the model's own passes: causal (AR; a sliding
// window of causal keys when sliding_window is set), block-causal (block diffusion: committed
// blocks and the one being denoised) or full (MDM).
int model_attention_mask(const ModelConfig *c);
// The values of each head RoPE turns: rotary_dim, or the whole head.
int model_rotary_dim(const ModelConfig *c);
// The rotation frequency of pair i of a head of `half` pairs: rope_theta^(-i / half), scaled.
double model_rope_frequency(const ModelConfig *c, int i, int half);
void model_config_print(FILE *f, const ModelConfig *c);

#endif

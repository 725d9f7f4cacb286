// The transformer, written once over the Backend ops: forward and loss (model.c) and backward
// (backward.c) as straight-line loops over layers; each projection through model/linear.h.
// One model for every objective: config.causal picks bidirectional attention (masked
// diffusion) or causal attention (the AR baseline).
//
// Per layer:  h = x + Wo * attention(rope(Wq * norm(x) + bq), rope(Wk * norm(x) + bk),
//                                    Wv * norm(x) + bv)            (biases only with qkv_bias;
//                                    with qk_norm each head of q and k is normalised before RoPE)
//             x' = h + Wdown * (silu(Wgate * norm(h)) * Wup * norm(h))
// then logits = lm_head * norm(x) after the last layer.
#ifndef DLLM_MODEL_H
#define DLLM_MODEL_H

#include <stdint.h>
#include <stdio.h>

#include "kernels/backend.h"
#include "model/config.h"
#include "model/linear.h"
#include "model/lora.h"
#include "model/params.h"

// What the forward pass keeps for the backward pass, sized for max_batch sequences of
// seq_len tokens. Per-layer arrays hold n_layer slices of B*T rows for the current B, T;
// with recomputation they hold one slice, refilled layer by layer during the backward pass
// from the residual stream (which is always kept for every layer). Act * buffers hold the
// backend's activation type (be->act_bytes per element); float * ones are always fp32.
// A mixture-of-experts layer's working set (model/moe.h), per MoE layer kept like the others
// (one slice with recomputation or for inference). k = n_active, E = n_experts; a "slot" is
// one of a row's k picks (row t's j-th is slot t k + j), and the experts run on the slots in
// expert order (expert 0's slots first, each expert's in slot order).
typedef struct {
    Act *logits;        // [B*T, E] the router's
    float *probs;       // [B*T, E] softmax probabilities or sigmoid scores
    int *pick;          // [B*T * k] each slot's expert
    float *weight;      // [B*T * k] each slot's weight
    int *rows;          // [B*T * k] expert order -> the token row it reads
    int *slot_at;       // [B*T * k] slot -> its place in expert order
    Act *xs, *ys;       // [B*T * k, d_model] the experts' inputs and outputs, in expert order
    Act *gate, *up, *swiglu;     // [B*T * k, d_expert]
    Act *s_gate, *s_up, *s_swiglu;  // [B*T, d_shared] the shared expert
    float *bias;        // [E] a bf16 model's expert bias widened to fp32 (the router reads fp32)
} MoeActs;

typedef struct {
    Act *resid;        // [n_layer + 1, B*T, d_model] residual stream into each layer (+ the output)
    Act *ln1;          // [n_layer, B*T, d_model]
    float *ln1_rstd;   // [n_layer, B*T]
    Act *q;            // [n_layer, B*T, q_dim] after RoPE (q_dim: n_head x head size)
    Act *q_pre, *k_pre;      // qk_norm: [n_layer, B*T, q_dim / kv_dim] before the q/k norms
    float *q_rstd, *k_rstd;  // qk_norm: [n_layer, B*T, n_head / n_kv_head] their 1/rms
    Act *k, *v;        // [n_layer, B*T, kv_dim], k after RoPE (kv_dim = n_kv_head * head size)
    float *lse;        // [n_layer, B, n_head, T] log-sum-exp of each attention row's scores
    Act *att_out;      // [n_layer, B*T, q_dim] attention output before Wo
    Act *resid_mid;    // [n_layer, B*T, d_model] after the attention residual
    Act *ln2;          // [n_layer, B*T, d_model]
    float *ln2_rstd;   // [n_layer, B*T]
    Act *gate, *up;    // [n_layer, B*T, d_ff]
    Act *swiglu;       // [n_layer, B*T, d_ff]
    Act *lnf;          // [B*T, d_model]
    float *lnf_rstd;   // [B*T]
    Act *logits;       // [B*T, vocab]; the backward overwrites them with their gradient
    float *losses;     // [B*T] per-position cross-entropy
    Act *proj;         // [B*T, max(d_model, q_dim)] scratch: a branch output before its residual
                       // add, or fresh keys or values
    // LoRA adapters only (size 0 without): each adapted projection's x A^T, kept for the
    // backward ([n_layer or 1, adapted targets, B*T, rank]), and the scratch a branch's
    // output (or its scaled gradient) passes through ([B*T, max(d_model, d_ff)])
    Act *lora_mid;
    Act *lora_out;
    Act *xq;           // [B*T, max(d_model, d_ff)]: a projection's input quantised to 8 bits
                       // (ternary models only)
    int8_t *xq8;       // [B*T, ternary_padded(max(d_model, d_ff))] and [B*T]: the same as int8
    float *xq8_scale;  // rows and their multipliers (packed ternary models); an 8-bit model's
                       // quantised rows (qb_row_bytes) and block scales (kernels/qblocks.h)
    MoeActs moe;       // mixture of experts only (size 0 without)
} Activations;

// Gradients of activations, one layer at a time (reused across layers).
typedef struct {
    Act *resid;        // [B*T, d_model] gradient of the residual stream
    Act *ln;           // [B*T, d_model]
    Act *q;            // [B*T, q_dim]
    Act *q_pre, *k_pre;  // qk_norm: [B*T, q_dim / kv_dim] gradients before the q/k norms
    Act *k, *v;        // [B*T, kv_dim]
    Act *att_out;      // [B*T, q_dim]
    Act *gate, *up, *swiglu;  // [B*T, d_ff]
    Act *lora_mid;     // [B*T, rank] (LoRA only)
    MoeActs moe;       // mixture of experts: the gradients of logits (as router logits), xs,
                       // ys, gate, up, swiglu, s_gate, s_up, s_swiglu; weight (float)
    float *aux;        // [E] the load-balancing loss's gradient on each probability
} ActivationGrads;

// Bytes of backend memory a model takes, one allocation each. A model with LoRA adapters has
// no grads or optimizer state for its frozen base; `adapters` counts the adapters' weights,
// and when training their gradients and AdamW m and v.
typedef struct {
    size_t params, grads, optimizer, activations, adapters;
} MemoryPlan;

struct Model {
    ModelConfig cfg;
    const Backend *be;  // the base weights' table (a bf16-weight twin for a bf16 base)
    int max_batch;
    ModelMode mode;     // training, training with recomputation, or inference
    WeightKind kind;    // how the projections are stored and read (model/linear.h)
    size_t n_params;
    // params, grads and the optimizer state share one layout (see model/params.h); adam_m
    // and adam_v are the two halves of one allocation
    float *params, *grads, *adam_m, *adam_v;
    ParamTensors p, g;  // views of params and grads
    LinearStore lin;    // the weight kind's own storage and state
    void *acts_memory;  // one allocation: every field below that points to backend memory
    Activations acts;
    ActivationGrads grad_acts;
    float *rope_cos, *rope_sin;  // [seq_len, head_dim / 2]
    int *tokens, *targets;       // [max_batch * seq_len] inputs of the current batch
    float *weights;              // [max_batch * seq_len] loss weight per position
    int *key_start;              // [max_batch] first attended position (left-padded prompts)
    float *host_losses;          // host copy of acts.losses
    int *row_targets;            // with logit_shift: the targets and weights moved to the rows
    float *row_weights;          // that predict them (host, [max_batch * seq_len])
    int B, T;                    // shape of the last forward pass
    int pairs;                   // 1: the last pass was model_forward_pairs (BD3 layout)
    int kv_unkept;               // 1: every layer's keys and values share one slice
                                 // (model_keep_kv)
    // mixture of experts (model/moe.h): the host's copy of a layer's picks while it sorts them,
    // each MoE layer's first slot of each expert in expert order ([Lm, E + 1]: expert e's
    // slots are [offsets[e], offsets[e + 1])), and the load-balancing tally of the last
    // training pass: picks and summed probabilities per expert over every MoE layer's rows
    int *moe_host_pick, *moe_host_rows, *moe_host_slot_at, *moe_offsets;
    float *moe_host_probs;
    double *moe_count, *moe_prob_sum;  // [E] each
    int moe_tally;               // 1: this pass tallies (a training pass; not a recomputation)
    float aux_loss;              // the last training pass's load-balancing loss (unscaled)
    float aux_scale;             // what the backward multiplies it by (1 / micro-batches)
    int window;                  // >= 0: passes attend at most this many keys past each query
                                 // (annealing an adapted AR model; -1: the model's own mask)
    // LoRA (model/lora.h; rank 0: none). With adapters the base is frozen: no gradients or
    // optimizer state for it (grads, adam_m NULL) and training updates the adapters alone.
    LoraConfig lora;
    const Backend *lora_be;      // the fp32-weight table with be's activations (adapters are fp32)
    size_t n_lora;
    float *lora_params, *lora_grads, *lora_adam_m, *lora_adam_v;  // n_lora each (m, v: one buffer)
    // The trainable values the optimizer state covers: [opt_lo, opt_lo + opt_n), all of them
    // unless a data-parallel rank keeps only its shard (model_shard_optimizer, ZeRO-1)
    size_t opt_lo, opt_n;
};

// What training updates and the optimizer steps: the adapters of a LoRA model, else every
// weight; the flat buffers, n values each (adam_m and adam_v: opt_n values, those of
// [opt_lo, opt_lo + opt_n)), on table be.
typedef struct {
    float *params, *grads, *adam_m, *adam_v;
    size_t n;
    const Backend *be;
    size_t opt_lo, opt_n;
} Trainable;
Trainable model_trainable(const Model *m);
// Keeps the optimizer state of trainable values [lo, lo + n) only (a data-parallel rank's
// shard), freshly zeroed; the rest of the state is freed.
int model_shard_optimizer(Model *m, size_t lo, size_t n, Error *err);

// What model_create would allocate for this shape on this backend (nothing is allocated).
MemoryPlan model_memory_plan(const ModelConfig *c, const Backend *be, int max_batch,
                             ModelMode mode);
// The same with LoRA adapters (lc NULL or rank 0: none) on a frozen base.
MemoryPlan model_memory_plan_lora(const ModelConfig *c, const LoraConfig *lc, const Backend *be,
                                  int max_batch, ModelMode mode);
// The activation `index` elements into the buffer a (pointer arithmetic in the backend's
// activation type).
Act *act_at(const Model *m, const Act *a, size_t index);
// "memory: params 1.2 MB | grads ... | total ..." on one line.
void memory_plan_print(FILE *f, const MemoryPlan *plan, const char *device);

// Allocates everything for batches of up to max_batch sequences, once (the sizes are those
// of model_memory_plan); parameters start at 0. MODEL_RECOMPUTE trades a second forward pass
// per layer in model_loss_backward for keeping one layer's activations instead of n_layer;
// a MODEL_INFERENCE model cannot be trained (no model_loss_backward).
int model_create(Model *m, const ModelConfig *c, const Backend *be, int max_batch,
                 ModelMode mode, Error *err);
// The same with LoRA adapters (lc NULL or rank 0: none): the base frozen in be's weight type
// (a bf16-weight twin keeps a bf16 base as it is), the adapters fp32 and at 0 until
// model_init_lora or model_set_lora. MODEL_TRAINING / MODEL_RECOMPUTE then train the adapters.
int model_create_lora(Model *m, const ModelConfig *c, const LoraConfig *lc, const Backend *be,
                      int max_batch, ModelMode mode, Error *err);
void model_free(Model *m);
// Fresh weights (params_init) from seed; -1 when the host copy cannot be allocated.
int model_init_params(Model *m, uint64_t seed, Error *err);
// PEFT's adapter initialisation (lora_init) from seed; uploading n_lora host floats.
int model_init_lora(Model *m, uint64_t seed, Error *err);
void model_set_lora(Model *m, const float *host);
// Uploads n_params host floats as the weights (rounded to bf16 on a bf16-weight backend).
int model_set_weights(Model *m, const float *host, Error *err);
// The same for the n weights starting `first` values into the flat layout.
int model_set_weight_range(Model *m, size_t first, const float *host, size_t n, Error *err);

// 1 for a model created for inference (MODEL_INFERENCE, MODEL_PACKED): no gradients,
// optimizer state or backward scratch.
int model_is_inference(const Model *m);

// Logits for tokens[B*T] (T <= seq_len) into m->acts.logits.
void model_forward(Model *m, const int *tokens, int B, int T);
// Block diffusion training and likelihood (BD3-LM's vectorised form, block_size > 0): each of
// the B sequences is 2T tokens, the clean x0 then its noisy copy xt, both at positions
// 0..T-1 (T <= seq_len), under attn_bd3(block_size), so one pass gives every noisy block the
// clean blocks before it. Needs room for 2B sequences (max_batch >= 2B). Logits of all B x 2T
// rows; model_loss / model_loss_backward read them as after model_forward.
void model_forward_pairs(Model *m, const int *tokens, int B, int T);
// After model_forward: sum over positions of weights[n] * cross-entropy(logits[n], targets[n]).
// The objective decides the weights (0 for positions that do not count). A model with
// logit_shift (Dream) predicts position t at logit row t - 1: the loss reads it there, and
// position 0, with no row before it, is not scored.
float model_loss(Model *m, const int *targets, const float *weights);
// The same loss in double, and each sequence's share of it in row_loss[b], b < the batch
// of the last forward pass (a block diffusion pair counts as one sequence).
double model_loss_rows(Model *m, const int *targets, const float *weights, double *row_loss);
// After model_forward: the same loss, with its gradient added into m->grads. The loss and
// the logits' gradient come from one fused pass that overwrites the logits (no second
// [B*T, vocab] buffer, no stored probabilities).
float model_loss_backward(Model *m, const int *targets, const float *weights);
void model_zero_grad(Model *m);

// Inference with a key/value cache, for the samplers. The cache is the k and v activation
// buffers: every layer's keys and values of B sequences of T positions (so a model_forward in
// between overwrites it). model_infer runs rows [start, end) of each sequence of tokens[B*T]:
// it recomputes their keys and values into the cache, and attends over all T cached positions
// (a causal model: over those up to each row). Logits of the rows land in acts.logits
// [B, end - start, vocab]. (0, T) refreshes the whole cache; a later call on fewer rows reuses
// the other rows' cached keys and values as they were (Fast-dLLM's approximate block cache, and
// the exact AR KV cache, where earlier rows never change). key_start[B] (or NULL) hides each
// sequence's positions before it from attention: left padding, so prompts of different
// lengths can share a batch and give exactly what they give alone.
// A model created with recompute keeps no per-layer cache: it only runs whole rows (0, T).
void model_infer(Model *m, const int *tokens, const int *key_start, int B, int T, int start,
                 int end);
// model_infer with the final norm and LM head (the largest matmul) run only over the rows
// [head_start, head_end) of each sequence (within [start, end)), the rows a sampler reads:
// their logits land in acts.logits [B, head_end - head_start, vocab].
void model_infer_rows(Model *m, const int *tokens, const int *key_start, int B, int T, int start,
                      int end, int head_start, int head_end);
// keep 0: an inference model's layers write their keys and values into one shared slice, for a
// caller whose every pass runs whole rows (0, T) and so never reads a cache (a sampler without
// one): the other layers' slices are never touched (their memory never becomes resident) and
// passes on fewer rows are refused until keep 1 again (the default; the cache is then stale
// until a (0, T) pass).
void model_keep_kv(Model *m, int keep);

#endif

#include "model/config.h"

#include <math.h>

#include "kernels/attn_mask.h"
#include "model/params.h"

ModelConfig model_config_default(void) {
    ModelConfig c = {
        .n_layer = 4,
        .n_head = 4,
        .d_model = 128,
        .d_ff = 352,
        .vocab_size = 262,
        .seq_len = 128,
        .mask_token_id = 256,
        .causal = 0,
        .rope_theta = 10000.0f,
        .norm_eps = 1e-5f,
    };
    return c;
}

int model_kv_heads(const ModelConfig *c) { return c->n_kv_head ? c->n_kv_head : c->n_head; }

int model_head_dim(const ModelConfig *c) {
    return c->head_dim ? c->head_dim : c->d_model / c->n_head;
}

int model_q_dim(const ModelConfig *c) { return c->n_head * model_head_dim(c); }

int model_kv_dim(const ModelConfig *c) { return model_kv_heads(c) * model_head_dim(c); }

static int is_flag(int x);

int model_rotary_dim(const ModelConfig *c) {
    return c->rotary_dim ? c->rotary_dim : model_head_dim(c);
}

int model_moe_layers(const ModelConfig *c) {
    return c->n_experts > 0 ? c->n_layer - c->dense_layers : 0;
}

int model_dense_layers(const ModelConfig *c) { return c->n_layer - model_moe_layers(c); }

static int moe_validate(const ModelConfig *c, Error *err) {
    if (c->n_experts < 0) return error_set(err, "n_experts must be >= 0 (got %d)", c->n_experts);
    if (c->n_experts == 0) {
        if (c->n_active || c->d_expert || c->d_shared || c->dense_layers || c->router ||
            c->n_groups || c->topk_groups || c->routed_scale != 0.0f || c->expert_bias ||
            c->aux_loss_coef != 0.0f)
            return error_set(err, "expert fields (n_active, d_expert, ...) set without n_experts");
        return 0;
    }
    if (c->n_active < 1 || c->n_active > c->n_experts || c->n_active > MODEL_MAX_ACTIVE)
        return error_set(err, "n_active %d must be in [1, min(n_experts %d, %d)]", c->n_active,
                         c->n_experts, MODEL_MAX_ACTIVE);
    if (c->n_experts > MODEL_MAX_EXPERTS)
        return error_set(err, "n_experts %d: at most %d", c->n_experts, MODEL_MAX_EXPERTS);
    if (c->d_expert < 1 || c->d_shared < 0)
        return error_set(err, "d_expert (%d) must be >= 1 and d_shared (%d) >= 0", c->d_expert,
                         c->d_shared);
    if (c->dense_layers < 0 || c->dense_layers >= c->n_layer)
        return error_set(err, "dense_layers %d must be in [0, n_layer %d)", c->dense_layers,
                         c->n_layer);
    if (!is_flag(c->expert_bias))
        return error_set(err, "expert_bias must be 0 or 1 (got %d)", c->expert_bias);
    if (!(c->aux_loss_coef >= 0.0f && c->aux_loss_coef < 1e3f))
        return error_set(err, "aux_loss_coef must be in [0, 1000) (got %g)", c->aux_loss_coef);
    if (c->router == ROUTER_SOFTMAX) {
        if (c->n_groups || c->topk_groups || c->routed_scale != 0.0f)
            return error_set(err, "the softmax router has no groups or routed_scale");
        return 0;
    }
    if (c->router != ROUTER_SIGMOID_GROUPED)
        return error_set(err, "router %d: 0 (softmax) or 1 (sigmoid, grouped)", c->router);
    if (c->n_groups < 1 || c->n_experts % c->n_groups != 0 || c->n_experts / c->n_groups < 2)
        return error_set(err, "n_groups %d must divide n_experts %d into groups of >= 2",
                         c->n_groups, c->n_experts);
    if (c->topk_groups < 1 || c->topk_groups > c->n_groups ||
        c->topk_groups * (c->n_experts / c->n_groups) < c->n_active)
        return error_set(err, "topk_groups %d must be in [1, n_groups %d] and hold n_active %d "
                              "experts", c->topk_groups, c->n_groups, c->n_active);
    if (!(c->routed_scale > 0.0f) || !isfinite(c->routed_scale))
        return error_set(err, "routed_scale must be positive (got %g)", c->routed_scale);
    return 0;
}

static int is_flag(int x) { return x == 0 || x == 1; }

int model_config_validate(const ModelConfig *c, Error *err) {
    if (!(c->init_std >= 0.0f && c->init_std < 10.0f))
        return error_set(err, "init_std must be in [0, 10) (got %g)", c->init_std);
    if (c->n_layer < 1) return error_set(err, "n_layer must be >= 1 (got %d)", c->n_layer);
    if (c->n_head < 1) return error_set(err, "n_head must be >= 1 (got %d)", c->n_head);
    if (c->head_dim < 0) return error_set(err, "head_dim must be >= 0 (got %d)", c->head_dim);
    if (c->d_model < 2 || (!c->head_dim && c->d_model % c->n_head != 0))
        return error_set(err, "d_model (%d) must be a positive multiple of n_head (%d), or "
                              "head_dim given", c->d_model, c->n_head);
    // heads of their own size may make q wider than d_model (Qwen3-0.6B: 16 x 128 over 1024),
    // never by much: a bound that also keeps n_head x head size an int
    if (c->head_dim && (int64_t)c->n_head * c->head_dim > 16 * (int64_t)c->d_model)
        return error_set(err, "n_head x head_dim (%d x %d) must be <= 16 x d_model (%d)",
                         c->n_head, c->head_dim, c->d_model);
    int hd = model_head_dim(c);
    if (hd < 2 || hd % 2 != 0)
        return error_set(err, "head size %d must be even for RoPE", hd);
    // the CUDA attention kernels hold a head's row in registers
    if (hd > MODEL_MAX_HEAD_DIM)
        return error_set(err, "head size %d must be <= %d", hd, MODEL_MAX_HEAD_DIM);
    if (c->n_kv_head < 0 || c->n_head % model_kv_heads(c) != 0)
        return error_set(err, "n_kv_head (%d) must divide n_head (%d)", c->n_kv_head, c->n_head);
    if (c->d_ff < 1) return error_set(err, "d_ff must be >= 1 (got %d)", c->d_ff);
    if (c->vocab_size < 2) return error_set(err, "vocab_size must be >= 2 (got %d)", c->vocab_size);
    if (c->seq_len < 2) return error_set(err, "seq_len must be >= 2 (got %d)", c->seq_len);
    if (!is_flag(c->causal)) return error_set(err, "causal must be 0 or 1 (got %d)", c->causal);
    // an AR model needs no [MASK] (-1: none)
    if (c->mask_token_id < -c->causal || c->mask_token_id >= c->vocab_size)
        return error_set(err, "mask_token_id %d is outside the vocabulary [0, %d)",
                         c->mask_token_id, c->vocab_size);
    const RopeScaling *r = &c->rope_scaling;
    if (r->factor != 0.0f && !(r->factor >= 1.0f && r->low_freq_factor > 0.0f &&
                               r->high_freq_factor > r->low_freq_factor && r->original_context > 0))
        return error_set(err, "rope scaling needs factor >= 1, 0 < low_freq_factor < "
                         "high_freq_factor and an original context > 0");
    if (!is_flag(c->qkv_bias) || !is_flag(c->tied_embeddings) || !is_flag(c->logit_shift))
        return error_set(err, "qkv_bias, tied_embeddings and logit_shift must be 0 or 1");
    if (!(c->rope_theta > 0.0f) || !isfinite(c->rope_theta))
        return error_set(err, "rope_theta must be positive (got %g)", c->rope_theta);
    if (!(c->norm_eps > 0.0f) || !isfinite(c->norm_eps))
        return error_set(err, "norm_eps must be positive (got %g)", c->norm_eps);
    if (c->block_size < 0 || (c->block_size > 0 && c->seq_len % c->block_size != 0))
        return error_set(err, "block_size %d must divide seq_len %d", c->block_size, c->seq_len);
    if (!is_flag(c->ternary) || !is_flag(c->qk_norm))
        return error_set(err, "ternary and qk_norm must be 0 or 1");
    if (c->block_size > 0 && (c->causal || c->logit_shift))
        return error_set(err, "a block diffusion model (block_size %d) has neither causal "
                              "attention nor a logit shift", c->block_size);
    if (c->sliding_window < 0 || (c->sliding_window > 0 && !c->causal))
        return error_set(err, "sliding_window %d: a window of keys (>= 0) for causal attention "
                              "only (a bidirectional one is not built)", c->sliding_window);
    if (c->rotary_dim < 0 || c->rotary_dim % 2 || c->rotary_dim > model_head_dim(c))
        return error_set(err, "rotary_dim %d must be even and at most the head size %d (0: all)",
                         c->rotary_dim, model_head_dim(c));
    if (moe_validate(c, err)) return -1;
    if (c->n_experts && c->ternary)
        return error_set(err, "ternary weights for a mixture of experts are not built");
    return 0;
}

int model_attention_mask(const ModelConfig *c) {
    if (c->causal) return c->sliding_window > 0 ? attn_sliding(c->sliding_window) : ATTN_CAUSAL;
    return c->block_size > 0 ? attn_block(c->block_size) : ATTN_FULL;
}

double model_rope_frequency(const ModelConfig *c, int i, int half) {
    double freq = pow(c->rope_theta, -(double)i / half);
    const RopeScaling *r = &c->rope_scaling;
    if (r->factor == 0.0f) return freq;
    double wavelen = 2.0 * M_PI / freq;
    double low_wavelen = r->original_context / r->low_freq_factor;
    double high_wavelen = r->original_context / r->high_freq_factor;
    if (wavelen < high_wavelen) return freq;            // short wavelengths: unchanged
    if (wavelen > low_wavelen) return freq / r->factor;  // long ones: stretched by factor
    double smooth = (r->original_context / wavelen - r->low_freq_factor) /
                    (r->high_freq_factor - r->low_freq_factor);
    return (1.0 - smooth) * freq / r->factor + smooth * freq;
}

void model_config_print(FILE *f, const ModelConfig *c) {
    fprintf(f,
            "model: n_layer %d, n_head %d (kv %d), d_model %d, d_ff %d, vocab %d, seq_len %d, "
            "mask_id %d, %s attention, rope_theta %g%s, norm_eps %g%s%s%s\n",
            c->n_layer, c->n_head, model_kv_heads(c), c->d_model, c->d_ff, c->vocab_size,
            c->seq_len, c->mask_token_id,
            c->causal         ? "causal"
            : c->block_size ? "block-causal (block diffusion)"
                            : "bidirectional",
            c->rope_theta, c->rope_scaling.factor != 0.0f ? " (llama3 scaling)" : "", c->norm_eps,
            c->qkv_bias ? ", qkv bias" : "", c->tied_embeddings ? ", tied embeddings" : "",
            c->logit_shift ? ", logits shifted by one" : "");
    if (c->qk_norm) fprintf(f, "attention: queries and keys RMS-normalised per head (q/k norms)\n");
    if (c->rotary_dim)
        fprintf(f, "rope: the first %d of each head's %d values (partial rotary)\n", c->rotary_dim,
                model_head_dim(c));
    if (c->head_dim)
        fprintf(f, "heads: %d values each (q and the attention output %d wide)\n", c->head_dim,
                model_q_dim(c));
    if (c->block_size) fprintf(f, "blocks: %d positions each\n", c->block_size);
    if (c->sliding_window)
        fprintf(f, "attention: a sliding window of %d keys (each query and the ones before it)\n",
                c->sliding_window);
    if (c->ternary)
        fprintf(f, "weights: ternary (BitNet b1.58: absmean ternary projections, 8-bit absmax "
                   "inputs; embeddings, norms and LM head full precision)\n");
    if (c->init_std > 0.0f) fprintf(f, "init: weights normal(0, %g)\n", c->init_std);
    if (c->n_experts) {
        fprintf(f, "experts: %d of width %d, %d active per token (%s router", c->n_experts,
                c->d_expert, c->n_active,
                c->router == ROUTER_SOFTMAX ? "softmax" : "sigmoid, grouped");
        if (c->router == ROUTER_SIGMOID_GROUPED)
            fprintf(f, ": %d groups, best %d, scale %g", c->n_groups, c->topk_groups,
                    c->routed_scale);
        fprintf(f, "%s)", c->expert_bias ? ", expert bias" : "");
        if (c->d_shared) fprintf(f, ", a shared expert of width %d", c->d_shared);
        if (c->dense_layers) fprintf(f, "; layers 0..%d dense", c->dense_layers - 1);
        if (c->aux_loss_coef > 0.0f) fprintf(f, "; load-balancing loss %g", c->aux_loss_coef);
        fprintf(f, "\nparameters: %zu in all, %zu read per token (the picked experts')\n",
                param_count(c), param_count_active(c));
    }
}

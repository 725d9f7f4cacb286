#include "model/hf_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file.h"
#include "common/json.h"
#include "model/params.h"

static const char *arch_names[] = {"LLaDA", "Dream", "LLaMA", "Qwen2", "Mistral", "Qwen3",
                                   "LLaDA-MoE", "LLaDA 2.0"};

const char *hf_arch_name(HfArch a) { return arch_names[a]; }

int hf_model_dir(const char *path) {
    char config[4096];
    if (!file_is_dir(path)) return 0;
    snprintf(config, sizeof config, "%s/config.json", path);
    return access(config, R_OK) == 0;
}

// ---- tensor names, in ParamTensors order; %d is the layer ----

static const char *llada_names[N_PARAM_TENSORS] = {
    "model.transformer.wte.weight",
    "model.transformer.blocks.%d.attn_norm.weight",
    "model.transformer.blocks.%d.q_proj.weight",
    "model.transformer.blocks.%d.k_proj.weight",
    "model.transformer.blocks.%d.v_proj.weight",
    "model.transformer.blocks.%d.q_proj.bias",
    "model.transformer.blocks.%d.k_proj.bias",
    "model.transformer.blocks.%d.v_proj.bias",
    "model.transformer.blocks.%d.attn_out.weight",
    "model.transformer.blocks.%d.ff_norm.weight",
    "model.transformer.blocks.%d.ff_proj.weight",
    "model.transformer.blocks.%d.up_proj.weight",
    "model.transformer.blocks.%d.ff_out.weight",
    "model.transformer.ln_f.weight",
    "model.transformer.ff_out.weight",
    NULL,  // LLaDA has no q/k norms
    NULL,
    NULL,  // nor experts
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
};

// LLaMA, Qwen2, Mistral, Qwen3, Dream and LLaDA-MoE share the transformers layout (the expert
// names are LLaDA-MoE's: a routed expert's name holds the layer, then the expert)

static const char *llama_names[N_PARAM_TENSORS] = {
    "model.embed_tokens.weight",
    "model.layers.%d.input_layernorm.weight",
    "model.layers.%d.self_attn.q_proj.weight",
    "model.layers.%d.self_attn.k_proj.weight",
    "model.layers.%d.self_attn.v_proj.weight",
    "model.layers.%d.self_attn.q_proj.bias",
    "model.layers.%d.self_attn.k_proj.bias",
    "model.layers.%d.self_attn.v_proj.bias",
    "model.layers.%d.self_attn.o_proj.weight",
    "model.layers.%d.post_attention_layernorm.weight",
    "model.layers.%d.mlp.gate_proj.weight",
    "model.layers.%d.mlp.up_proj.weight",
    "model.layers.%d.mlp.down_proj.weight",
    "model.norm.weight",
    "lm_head.weight",
    "model.layers.%d.self_attn.q_norm.weight",  // Qwen3
    "model.layers.%d.self_attn.k_norm.weight",
    "model.layers.%d.mlp.gate.weight",
    "model.layers.%d.mlp.expert_bias",
    "model.layers.%d.mlp.experts.%d.gate_proj.weight",
    "model.layers.%d.mlp.experts.%d.up_proj.weight",
    "model.layers.%d.mlp.experts.%d.down_proj.weight",
    "model.layers.%d.shared_expert.gate_proj.weight",
    "model.layers.%d.shared_expert.up_proj.weight",
    "model.layers.%d.shared_expert.down_proj.weight",
};

// LLaDA 2.0: q, k and v (and their biases) are row ranges of one fused tensor
static const char *llada2_names[N_PARAM_TENSORS] = {
    "model.word_embeddings.weight",
    "model.layers.%d.input_layernorm.weight",
    "model.layers.%d.attention.query_key_value.weight",
    "model.layers.%d.attention.query_key_value.weight",
    "model.layers.%d.attention.query_key_value.weight",
    "model.layers.%d.attention.query_key_value.bias",
    "model.layers.%d.attention.query_key_value.bias",
    "model.layers.%d.attention.query_key_value.bias",
    "model.layers.%d.attention.dense.weight",
    "model.layers.%d.post_attention_layernorm.weight",
    "model.layers.%d.mlp.gate_proj.weight",
    "model.layers.%d.mlp.up_proj.weight",
    "model.layers.%d.mlp.down_proj.weight",
    "model.norm.weight",
    "lm_head.weight",
    "model.layers.%d.attention.query_layernorm.weight",
    "model.layers.%d.attention.key_layernorm.weight",
    "model.layers.%d.mlp.gate.weight",
    "model.layers.%d.mlp.gate.expert_bias",
    "model.layers.%d.mlp.experts.%d.gate_proj.weight",
    "model.layers.%d.mlp.experts.%d.up_proj.weight",
    "model.layers.%d.mlp.experts.%d.down_proj.weight",
    "model.layers.%d.mlp.shared_experts.gate_proj.weight",
    "model.layers.%d.mlp.shared_experts.up_proj.weight",
    "model.layers.%d.mlp.shared_experts.down_proj.weight",
};

enum { TOK_EMB = 0, LM_HEAD = 14 };

void hf_expert_tensor_name(HfArch a, int index, int layer, int expert, char *buf, size_t cap) {
    const char *pattern = a == HF_LLADA    ? llada_names[index]
                          : a == HF_LLADA2 ? llada2_names[index]
                                           : llama_names[index];
    snprintf(buf, cap, pattern, layer, expert);
}

void hf_tensor_name(HfArch a, int index, int layer, char *buf, size_t cap) {
    hf_expert_tensor_name(a, index, layer, 0, buf, cap);
}

// The file's layer of layer l of tensor i's stack: an MoE layer's tensors stack the MoE layers
// alone, which follow the dense ones.
static int file_layer(const ModelConfig *c, int i, int l) {
    return param_is_moe_matrix(i) || i == PARAM_EXPERT_BIAS ? l + model_dense_layers(c) : l;
}

// ---- config.json ----

typedef struct {
    char path[4200];
    JsonValue root;
    Error *err;
} Config;

static const JsonValue *member(const Config *c, const char *key) {
    const JsonValue *v = json_member(&c->root, key);
    return v && v->type != JSON_NULL ? v : NULL;  // null means "the default"
}

// An integer member; `fallback` when absent or null, or an error when fallback < -1.
static int get_int(const Config *c, const char *key, int fallback, int *out) {
    const JsonValue *v = member(c, key);
    if (!v && fallback >= -1) {
        *out = fallback;
        return 0;
    }
    if (!v) return error_set(c->err, "%s: missing %s", c->path, key);
    if (v->type != JSON_NUMBER || v->number != floor(v->number))
        return error_set(c->err, "%s: %s must be an integer", c->path, key);
    if (fabs(v->number) > 1e9)
        return error_set(c->err, "%s: %s %.0f is out of range (dllm reads at most 1e9)",
                         c->path, key, v->number);
    *out = (int)v->number;
    return 0;
}

static int get_float(const Config *c, const char *key, float fallback, float *out) {
    const JsonValue *v = member(c, key);
    if (!v) {
        *out = fallback;
        return 0;
    }
    if (v->type != JSON_NUMBER) return error_set(c->err, "%s: %s must be a number", c->path, key);
    *out = (float)v->number;
    return 0;
}

static int get_bool(const Config *c, const char *key, int fallback) {
    const JsonValue *v = member(c, key);
    return v ? v->type == JSON_TRUE : fallback;
}

// A string member must be absent or `want` (case-insensitive: configs spell enums both ways).
static int expect_string(const Config *c, const char *key, const char *want, int required) {
    const JsonValue *v = member(c, key);
    if (!v && !required) return 0;
    if (!v || v->type != JSON_STRING || strcasecmp(v->string, want) != 0)
        return error_set(c->err, "%s: %s is %s; dllm implements %s", c->path, key,
                         v && v->type == JSON_STRING ? v->string : "missing", want);
    return 0;
}

// A feature dllm does not implement, refused by name when the config turns it on.
static int refuse_on(const Config *c, const char *key) {
    const JsonValue *v = member(c, key);
    if (v && v->type != JSON_FALSE)
        return error_set(c->err, "%s: %s is set; dllm does not implement it", c->path, key);
    return 0;
}

static int read_rope(const Config *c, ModelConfig *m);

static int read_llada(const Config *c, ModelConfig *m) {
    int mlp_ratio, max_seq;
    if (get_int(c, "d_model", -2, &m->d_model) || get_int(c, "n_heads", -2, &m->n_head) ||
        get_int(c, "n_layers", -2, &m->n_layer) || get_int(c, "n_kv_heads", 0, &m->n_kv_head) ||
        get_int(c, "mlp_ratio", 4, &mlp_ratio) ||
        get_int(c, "mlp_hidden_size", mlp_ratio * m->d_model, &m->d_ff) ||
        get_int(c, "vocab_size", -2, &m->vocab_size) ||
        get_int(c, "embedding_size", m->vocab_size, &m->vocab_size) ||
        get_int(c, "max_sequence_length", 1024, &max_seq) ||
        get_int(c, "mask_token_id", -2, &m->mask_token_id) || read_rope(c, m) ||
        get_float(c, "rms_norm_eps", 1e-5f, &m->norm_eps))
        return -1;
    if (m->rope_scaling.factor != 0.0f)  // LLaDA's model class has no scaling to apply
        return error_set(c->err, "%s: a llada config with RoPE scaling; LLaDA's model applies "
                                 "none", c->path);
    // the options of LLaDA's (OLMo's) model class that its released models leave off
    if (expect_string(c, "block_type", "llama", 1) ||
        expect_string(c, "activation_type", "silu", 1) ||
        expect_string(c, "layer_norm_type", "rms", 1) || refuse_on(c, "alibi") ||
        refuse_on(c, "include_bias") || refuse_on(c, "attention_layer_norm") ||
        refuse_on(c, "scale_logits") || refuse_on(c, "input_emb_norm") ||
        refuse_on(c, "clip_qkv") || refuse_on(c, "bias_for_layer_norm"))
        return -1;
    if (!get_bool(c, "rope", 0))
        return error_set(c->err, "%s: rope is off; dllm implements rotary positions", c->path);
    if (!get_bool(c, "layer_norm_with_affine", 1))
        return error_set(c->err, "%s: layer_norm_with_affine is off; dllm's norms have gains",
                         c->path);
    if (get_bool(c, "multi_query_attention", 0)) m->n_kv_head = 1;
    m->qkv_bias = get_bool(c, "include_qkv_bias", 0);
    m->tied_embeddings = get_bool(c, "weight_tying", 1);
    m->seq_len = max_seq;
    return 0;
}

// The scaling of a RoPE block: rope_type (or type) default, or llama3 with its four numbers.
// Any other type (yarn, linear, dynamic, ...) is refused by name: dllm would compute without it.
static int read_rope_block(const Config *c, const char *key, const JsonValue *v, int typed,
                           RopeScaling *r) {
    const char *type = json_member_string(v, "rope_type");
    if (!type) type = json_member_string(v, "type");
    if (!type && !typed) type = "default";  // rope_parameters with rope_theta alone
    if (type && strcmp(type, "default") == 0) return 0;
    if (!type || strcmp(type, "llama3") != 0)
        return error_set(c->err, "%s: %s of type %s; dllm implements default and llama3",
                         c->path, key, type ? type : "(none)");
    const char *keys[4] = {"factor", "low_freq_factor", "high_freq_factor",
                           "original_max_position_embeddings"};
    double values[4];
    for (int i = 0; i < 4; i++) {
        const JsonValue *x = json_member(v, keys[i]);
        if (!x || x->type != JSON_NUMBER)
            return error_set(c->err, "%s: %s needs a number %s", c->path, key, keys[i]);
        values[i] = x->number;
    }
    r->factor = (float)values[0];
    r->low_freq_factor = (float)values[1];
    r->high_freq_factor = (float)values[2];
    r->original_context = (int)values[3];
    return 0;
}

// RoPE: transformers < 5 writes rope_theta and rope_scaling (absent, null or a block);
// transformers >= 5 one rope_parameters block holding rope_theta, rope_type and the scaling's
// numbers. A config may hold only one of the two blocks, and a rope_theta beside
// rope_parameters must agree with the one inside.
static int read_rope(const Config *c, ModelConfig *m) {
    const JsonValue *params = member(c, "rope_parameters"), *scaling = member(c, "rope_scaling");
    if (get_float(c, "rope_theta", 10000.0f, &m->rope_theta)) return -1;
    if (params && scaling)
        return error_set(c->err, "%s: both rope_parameters and rope_scaling are set; give one",
                         c->path);
    if (scaling) return read_rope_block(c, "rope_scaling", scaling, 1, &m->rope_scaling);
    if (!params) return 0;
    if (params->type != JSON_OBJECT)
        return error_set(c->err, "%s: rope_parameters must be an object", c->path);
    const JsonValue *theta = json_member(params, "rope_theta");
    if (theta && theta->type != JSON_NUMBER)
        return error_set(c->err, "%s: rope_parameters.rope_theta must be a number", c->path);
    if (theta && member(c, "rope_theta") && (float)theta->number != m->rope_theta)
        return error_set(c->err, "%s: rope_theta %g and rope_parameters.rope_theta %g differ",
                         c->path, m->rope_theta, theta->number);
    if (theta) m->rope_theta = (float)theta->number;
    return read_rope_block(c, "rope_parameters", params, 0, &m->rope_scaling);
}

// transformers 5 names each layer's attention: dllm's is full attention in every layer.
static int read_layer_types(const Config *c) {
    const JsonValue *v = member(c, "layer_types");
    if (!v) return 0;
    if (v->type != JSON_ARRAY) return error_set(c->err, "%s: layer_types must be a list", c->path);
    for (int i = 0; i < v->n; i++)
        if (v->items[i].type != JSON_STRING || strcmp(v->items[i].string, "full_attention") != 0)
            return error_set(c->err, "%s: layer_types[%d] is %s; dllm implements full_attention",
                             c->path, i,
                             v->items[i].type == JSON_STRING ? v->items[i].string : "not a string");
    return 0;
}

// Mistral's sliding window: null or absent is none, and so is one as long as the context.
static int read_sliding_window(const Config *c, ModelConfig *m) {
    if (get_int(c, "sliding_window", 0, &m->sliding_window)) return -1;
    if (m->sliding_window < 0)
        return error_set(c->err, "%s: sliding_window %d must be positive", c->path,
                         m->sliding_window);
    if (m->sliding_window >= m->seq_len) m->sliding_window = 0;  // never masks a key
    return 0;
}

// LLaMA, Qwen2, Mistral, Qwen3 and Dream: the transformers config keys.
static int read_llama_family(const Config *c, HfArch arch, ModelConfig *m) {
    int max_seq, head_dim;
    if (get_int(c, "hidden_size", -2, &m->d_model) ||
        get_int(c, "num_attention_heads", -2, &m->n_head) ||
        get_int(c, "num_hidden_layers", -2, &m->n_layer) ||
        get_int(c, "num_key_value_heads", 0, &m->n_kv_head) ||
        get_int(c, "intermediate_size", -2, &m->d_ff) ||
        get_int(c, "vocab_size", -2, &m->vocab_size) ||
        get_int(c, "max_position_embeddings", 2048, &max_seq) || read_rope(c, m) ||
        get_float(c, "rms_norm_eps", 1e-6f, &m->norm_eps) ||
        get_int(c, "head_dim", m->n_head > 0 ? m->d_model / m->n_head : 0, &head_dim))
        return -1;
    // transformers' classes size heads by head_dim (Qwen3-0.6B: 128 over 1024 / 16); Dream's
    // code by hidden_size / num_attention_heads
    if (m->n_head > 0 && head_dim * m->n_head != m->d_model) {
        if (arch == HF_DREAM)
            return error_set(c->err, "%s: head_dim %d is not hidden_size / num_attention_heads "
                                     "(Dream's code sizes heads by those)", c->path, head_dim);
        m->head_dim = head_dim;
    }
    if (expect_string(c, "hidden_act", "silu", 0) || read_layer_types(c) ||
        refuse_on(c, "use_sliding_window") || refuse_on(c, "attention_bias") ||
        refuse_on(c, "mlp_bias"))
        return -1;
    m->qkv_bias = arch == HF_QWEN2 || arch == HF_DREAM;  // they always have them
    m->tied_embeddings = get_bool(c, "tie_word_embeddings", 0);  // these configs' default
    m->seq_len = max_seq < HF_MAX_SEQ_LEN ? max_seq : HF_MAX_SEQ_LEN;
    if (arch == HF_MISTRAL && read_sliding_window(c, m)) return -1;
    m->qk_norm = arch == HF_QWEN3;
    if (arch == HF_DREAM) {
        m->logit_shift = 1;
        return get_int(c, "mask_token_id", -2, &m->mask_token_id);
    }
    m->causal = 1;
    m->mask_token_id = -1;
    return 0;
}

// LLaDA-MoE's moe_layer_freq: 0 for a dense layer, 1 for an MoE one; dllm's layout has the
// dense layers first (absent: every layer MoE).
static int read_moe_layers(const Config *c, ModelConfig *m) {
    const JsonValue *v = member(c, "moe_layer_freq");
    if (!v) return 0;
    if (v->type != JSON_ARRAY || v->n != m->n_layer)
        return error_set(c->err, "%s: moe_layer_freq must list num_hidden_layers (%d) flags",
                         c->path, m->n_layer);
    for (int i = 0; i < v->n; i++) {
        const JsonValue *x = &v->items[i];
        if (x->type != JSON_NUMBER || (x->number != 0 && x->number != 1))
            return error_set(c->err, "%s: moe_layer_freq[%d] must be 0 or 1", c->path, i);
        if (x->number == 0 && i != m->dense_layers)
            return error_set(c->err, "%s: moe_layer_freq has a dense layer (%d) after an MoE one; "
                                     "dllm's dense layers come first", c->path, i);
        if (x->number == 0) m->dense_layers++;
    }
    return 0;
}

// LLaDA-MoE (model_type "llada" with experts; its modeling_lladamoe.py): bidirectional
// attention with per-head q/k norms, and from the first MoE layer on a softmax router over
// num_experts SwiGLU experts, the top num_experts_per_tok picked with their probabilities as
// weights, a shared expert when shared_expert_intermediate_size is set, and the Switch
// load-balancing loss at router_aux_loss_coef. Like that code, dllm reads nothing of
// norm_topk_prob, moe_router_score_function, routed_scaling_factor, router_num_group and
// router_topk_group (the code always takes the softmax, never renormalises or groups).
static int read_llada_moe(const Config *c, ModelConfig *m) {
    int max_seq;
    float partial;
    if (get_int(c, "hidden_size", -2, &m->d_model) ||
        get_int(c, "num_attention_heads", -2, &m->n_head) ||
        get_int(c, "num_hidden_layers", -2, &m->n_layer) ||
        get_int(c, "num_key_value_heads", 0, &m->n_kv_head) ||
        get_int(c, "dense_intermediate_size", -2, &m->d_ff) ||
        get_int(c, "expert_intermediate_size", -2, &m->d_expert) ||
        get_int(c, "num_experts", -2, &m->n_experts) ||
        get_int(c, "num_experts_per_tok", -2, &m->n_active) ||
        get_int(c, "shared_expert_intermediate_size", 0, &m->d_shared) ||
        get_int(c, "vocab_size", -2, &m->vocab_size) ||
        get_int(c, "max_position_embeddings", 8192, &max_seq) || read_rope(c, m) ||
        get_int(c, "mask_token_id", -2, &m->mask_token_id) ||
        get_float(c, "rms_norm_eps", 1e-5f, &m->norm_eps) ||
        get_float(c, "router_aux_loss_coef", 0.01f, &m->aux_loss_coef) ||
        get_float(c, "partial_rotary_factor", 1.0f, &partial) || read_moe_layers(c, m))
        return -1;
    if (m->rope_scaling.factor != 0.0f)
        return error_set(c->err, "%s: a llada_moe config with RoPE scaling; dllm implements "
                                 "LLaDA-MoE's plain RoPE", c->path);
    if (partial != 1.0f)
        return error_set(c->err, "%s: partial_rotary_factor %g; dllm rotates whole heads (1)",
                         c->path, partial);
    if (expect_string(c, "hidden_act", "silu", 0) || refuse_on(c, "attention_bias") ||
        refuse_on(c, "clip_qkv"))
        return -1;
    if (m->n_experts < 1)
        return error_set(c->err, "%s: num_experts %d; a llada_moe model has experts", c->path,
                         m->n_experts);
    if (m->dense_layers == m->n_layer)
        return error_set(c->err, "%s: moe_layer_freq has no MoE layer", c->path);
    m->router = ROUTER_SOFTMAX;
    m->expert_bias = get_bool(c, "moe_router_enable_expert_bias", 0);
    m->qk_norm = get_bool(c, "qk_layernorm", 1);
    m->tied_embeddings = get_bool(c, "tie_word_embeddings", 0);
    m->seq_len = max_seq < HF_MAX_SEQ_LEN ? max_seq : HF_MAX_SEQ_LEN;
    return 0;
}

// LLaDA 2.0 (model_type llada2_moe; its modeling_llada2_moe.py): a block diffusion model
// (generate() denoises blocks of 32 under a block-causal mask: block_size 32), q/k norms on
// every layer, the rotary on head_dim x partial_rotary_factor values, from layer
// first_k_dense_replace on a mixture of experts: the grouped sigmoid router (n_group,
// topk_group, routed_scaling_factor, the expert bias it always has), num_shared_experts
// experts' worth of shared expert. Its training balances experts through the bias (updated
// outside the model): no auxiliary loss here. mask_token_id must be in the config.
static int read_llada2(const Config *c, ModelConfig *m) {
    int max_seq, head_dim, shared;
    float partial, scale;
    if (get_int(c, "hidden_size", -2, &m->d_model) ||
        get_int(c, "num_attention_heads", -2, &m->n_head) ||
        get_int(c, "num_hidden_layers", -2, &m->n_layer) ||
        get_int(c, "num_key_value_heads", -2, &m->n_kv_head) ||
        get_int(c, "intermediate_size", -2, &m->d_ff) ||
        get_int(c, "moe_intermediate_size", -2, &m->d_expert) ||
        get_int(c, "num_experts", -2, &m->n_experts) ||
        get_int(c, "num_experts_per_tok", -2, &m->n_active) ||
        get_int(c, "num_shared_experts", 0, &shared) ||
        get_int(c, "n_group", -2, &m->n_groups) || get_int(c, "topk_group", -2, &m->topk_groups) ||
        get_int(c, "first_k_dense_replace", 0, &m->dense_layers) ||
        get_int(c, "vocab_size", -2, &m->vocab_size) ||
        get_int(c, "max_position_embeddings", 16384, &max_seq) || read_rope(c, m) ||
        get_int(c, "mask_token_id", -2, &m->mask_token_id) ||
        get_float(c, "rms_norm_eps", 1e-6f, &m->norm_eps) ||
        get_float(c, "partial_rotary_factor", 0.5f, &partial) ||
        get_float(c, "routed_scaling_factor", 2.5f, &scale) ||
        get_int(c, "head_dim", m->n_head > 0 ? m->d_model / m->n_head : 0, &head_dim))
        return -1;
    if (m->n_head > 0 && head_dim * m->n_head != m->d_model) m->head_dim = head_dim;
    if (m->rope_scaling.factor != 0.0f)
        return error_set(c->err, "%s: a llada2_moe config with RoPE scaling; dllm implements "
                                 "LLaDA 2.0's plain RoPE", c->path);
    float rotary = head_dim * partial;
    if (!(partial > 0.0f && partial <= 1.0f) || rotary != (int)rotary || (int)rotary % 2)
        return error_set(c->err, "%s: partial_rotary_factor %g does not turn an even number of a "
                                 "head's %d values", c->path, partial, head_dim);
    if (expect_string(c, "hidden_act", "silu", 0) || refuse_on(c, "use_bias") ||
        refuse_on(c, "norm_head") || refuse_on(c, "use_sliding_window"))
        return -1;
    m->rotary_dim = (int)rotary == head_dim ? 0 : (int)rotary;
    m->qkv_bias = get_bool(c, "use_qkv_bias", 0);
    m->qk_norm = get_bool(c, "use_qk_norm", 1);
    m->d_shared = shared > 0 ? shared * m->d_expert : 0;
    m->router = ROUTER_SIGMOID_GROUPED;
    m->routed_scale = scale;
    m->expert_bias = 1;
    m->tied_embeddings = get_bool(c, "tie_word_embeddings", 0);
    m->seq_len = max_seq < HF_MAX_SEQ_LEN ? max_seq : HF_MAX_SEQ_LEN;
    m->block_size = 32;
    return 0;
}

int hf_config_read(const char *dir, ModelConfig *m, HfArch *arch, int *bf16, Error *err) {
    Config c = {.err = err};
    snprintf(c.path, sizeof c.path, "%s/config.json", dir);
    char *text;
    size_t n;
    if (file_read_all(c.path, &text, &n, err)) return -1;
    Error why;
    int rc = json_parse(text, &c.root, &why);
    free(text);
    if (rc) return error_set(err, "%s: %s", c.path, why.msg);
    const char *type = json_member_string(&c.root, "model_type");
    const char *dtype = json_member_string(&c.root, "torch_dtype");
    if (!dtype) dtype = json_member_string(&c.root, "dtype");  // transformers >= 5
    if (bf16) *bf16 = dtype && strcmp(dtype, "bfloat16") == 0;
    memset(m, 0, sizeof *m);
    static const char *types[] = {"llada", "Dream", "llama", "qwen2", "mistral", "qwen3"};
    int known = 0;
    for (int a = 0; a < 6 && type; a++)
        if (strcasecmp(type, types[a]) == 0) {
            known = 1;
            *arch = (HfArch)a;
            // LLaDA-MoE's config class also says "llada": its experts tell it apart
            if (a == HF_LLADA && json_member(&c.root, "num_experts")) *arch = HF_LLADA_MOE;
            rc = *arch == HF_LLADA       ? read_llada(&c, m)
                 : *arch == HF_LLADA_MOE ? read_llada_moe(&c, m)
                                         : read_llama_family(&c, (HfArch)a, m);
        }
    if (type && strcmp(type, "llada2_moe") == 0) {
        known = 1;
        *arch = HF_LLADA2;
        rc = read_llada2(&c, m);
    }
    if (!type) rc = error_set(err, "%s: no model_type", c.path);
    else if (!known)
        rc = error_set(err, "%s: model_type %s; dllm loads llada (LLaDA and LLaDA-MoE), "
                            "llada2_moe, Dream, llama, qwen2, qwen3 and mistral", c.path, type);
    json_free(&c.root);
    if (rc) return -1;
    if (m->seq_len > HF_MAX_SEQ_LEN) m->seq_len = HF_MAX_SEQ_LEN;
    if (model_config_validate(m, &why)) return error_set(err, "%s: %s", c.path, why.msg);
    return 0;
}

// ---- weights ----

// Tensor index, file layer `layer` (or the whole tensor), from the files into dst.
static int read_tensor(const Safetensors *st, HfArch a, const ParamSpec *s, int index, int layer,
                       float *dst, Error *err) {
    char name[256];
    hf_tensor_name(a, index, layer, name, sizeof name);
    int64_t shape[2] = {(int64_t)s->rows, (int64_t)s->cols};
    return safetensors_read(st, name, shape, s->cols == 1 ? 1 : 2, dst, err);
}

// LLaDA 2.0's fused query_key_value [(H + 2 Hkv) hd, C] (or its bias): q's rows, then k's,
// then v's. Tensor index (wq, wk, wv, bq, bk, bv) of layer l is its row range.
static int read_fused_qkv(const Safetensors *st, const ModelConfig *c, int index, int layer,
                          float *dst, Error *err) {
    int bias = index >= 5, part = (index - 2) % 3;  // 0 q, 1 k, 2 v
    size_t C = c->d_model, KV = model_kv_dim(c), rows = C + 2 * KV, cols = bias ? 1 : C;
    size_t first = part == 0 ? 0 : part == 1 ? C : C + KV, n = part == 0 ? C : KV;
    char name[256];
    hf_tensor_name(HF_LLADA2, index, layer, name, sizeof name);
    float *all = malloc(rows * cols * sizeof(float));
    if (!all) return error_set(err, "out of memory reading %s", name);
    int64_t shape[2] = {(int64_t)rows, (int64_t)cols};
    int rc = safetensors_read(st, name, shape, bias ? 1 : 2, all, err);
    if (rc == 0) memcpy(dst, all + first * cols, n * cols * sizeof(float));
    free(all);
    return rc;
}

// One layer's slice of tensor index: a routed expert's tensor is E files' tensors, one each.
static int read_layer(const Safetensors *st, const ModelConfig *c, HfArch a, const ParamSpec *s,
                      int index, int l, float *dst, Error *err) {
    int layer = file_layer(c, index, l);
    if (a == HF_LLADA2 && index >= 2 && index <= 7)
        return read_fused_qkv(st, c, index, layer, dst, err);
    if (!param_is_expert(index)) return read_tensor(st, a, s, index, layer, dst, err);
    size_t rows = s->rows / c->n_experts;
    int64_t shape[2] = {(int64_t)rows, (int64_t)s->cols};
    for (int e = 0; e < c->n_experts; e++) {
        char name[256];
        hf_expert_tensor_name(a, index, layer, e, name, sizeof name);
        if (safetensors_read(st, name, shape, 2, dst + e * rows * s->cols, err)) return -1;
    }
    return 0;
}

// A tied model's file may still hold the head (some exporters write it): it must then be the
// embedding, or the tie would silently change the model.
static int check_tied_head(const Safetensors *st, HfArch a, const ParamSpec *emb, Error *err) {
    char name[256];
    hf_tensor_name(a, LM_HEAD, 0, name, sizeof name);
    if (!safetensors_find(st, name)) return 0;
    float *head = malloc(emb->size * sizeof(float)), *tok = malloc(emb->size * sizeof(float));
    int rc = head && tok ? 0 : error_set(err, "out of memory reading %s", name);
    if (rc == 0) rc = read_tensor(st, a, emb, LM_HEAD, 0, head, err);
    if (rc == 0) rc = read_tensor(st, a, emb, TOK_EMB, 0, tok, err);
    if (rc == 0 && memcmp(head, tok, emb->size * sizeof(float)) != 0)
        rc = error_set(err, "%s: the embeddings are tied but %s differs from the embedding",
                       st->paths[0], name);
    free(head), free(tok);
    return rc;
}

// Reads every tensor of the layout, one layer's slice at a time, and hands it to sink with its
// offset in the flat parameter layout; then checks that the files hold nothing else.
static int read_weights(const char *dir, const ModelConfig *c, HfArch a, WeightSink sink,
                        void *user, int *all_bf16, Error *err) {
    Safetensors st;
    if (safetensors_open(&st, dir, err)) return -1;
    ParamSpec specs[N_PARAM_TENSORS];
    param_specs(c, specs);
    size_t largest = 1;
    for (int i = 0; i < N_PARAM_TENSORS; i++)
        if (specs[i].rows * specs[i].cols > largest) largest = specs[i].rows * specs[i].cols;
    float *slice = malloc(largest * sizeof(float));
    int rc = slice ? 0 : error_set(err, "%s: out of host memory for a %zu-value tensor", dir,
                                   largest);
    size_t offset = 0;
    for (int i = 0; i < N_PARAM_TENSORS && !rc; i++) {
        size_t n = specs[i].rows * specs[i].cols;
        for (int l = 0; l < specs[i].layers && !rc; l++) {
            rc = read_layer(&st, c, a, &specs[i], i, l, slice, err);
            if (rc == 0) rc = sink(user, offset + l * n, slice, n, err);
        }
        offset += specs[i].size;
    }
    free(slice);
    if (!rc && c->tied_embeddings) rc = check_tied_head(&st, a, &specs[TOK_EMB], err);
    if (all_bf16) {
        *all_bf16 = st.n_tensors > 0;
        for (int i = 0; i < st.n_tensors; i++)
            *all_bf16 &= st.tensors[i].dtype == SAFETENSORS_BF16;
    }
    const char *extra = rc ? NULL : safetensors_unused(&st);
    if (extra)
        rc = error_set(err, "%s: tensor %s is not part of a %s model of this config",
                       st.paths[safetensors_find(&st, extra)->file], extra, hf_arch_name(a));
    safetensors_close(&st);
    return rc;
}

int weight_sink_host(void *params, size_t offset, const float *values, size_t n, Error *err) {
    (void)err;
    memcpy((float *)params + offset, values, n * sizeof(float));
    return 0;
}

int hf_weights_read(const char *dir, const ModelConfig *c, HfArch a, float *params,
                    int *all_bf16, Error *err) {
    return read_weights(dir, c, a, weight_sink_host, params, all_bf16, err);
}

int hf_weights_stream(const char *dir, const ModelConfig *c, HfArch a, WeightSink sink,
                      void *user, Error *err) {
    return read_weights(dir, c, a, sink, user, NULL, err);
}

// ---- export ----

HfArch hf_export_arch(const ModelConfig *c) {
    if (c->n_experts) return HF_LLADA_MOE;
    if (c->causal)
        return c->qk_norm ? HF_QWEN3
               : c->qkv_bias ? HF_QWEN2
               : c->sliding_window ? HF_MISTRAL
                                   : HF_LLAMA;
    return c->logit_shift ? HF_DREAM : HF_LLADA;
}

static void write_llada_config(FILE *f, const ModelConfig *c, int bos_id, int eos_id,
                               const char *dtype) {
    fprintf(f,
            "{\n  \"architectures\": [\"LLaDAModelLM\"],\n  \"model_type\": \"llada\",\n"
            "  \"auto_map\": {\"AutoConfig\": \"configuration_llada.LLaDAConfig\", "
            "\"AutoModel\": \"modeling_llada.LLaDAModelLM\", "
            "\"AutoModelForCausalLM\": \"modeling_llada.LLaDAModelLM\"},\n"
            "  \"d_model\": %d,\n  \"n_heads\": %d,\n  \"n_kv_heads\": %d,\n  \"n_layers\": %d,\n"
            "  \"mlp_hidden_size\": %d,\n  \"mlp_ratio\": 4,\n  \"vocab_size\": %d,\n"
            "  \"embedding_size\": %d,\n  \"max_sequence_length\": %d,\n"
            "  \"mask_token_id\": %d,\n  \"bos_token_id\": %d,\n  \"eos_token_id\": %d,\n"
            "  \"pad_token_id\": %d,\n  \"rope_theta\": %.9g,\n  \"rms_norm_eps\": %.9g,\n"
            "  \"weight_tying\": %s,\n"
            "  \"include_qkv_bias\": %s,\n  \"include_bias\": false,\n"
            "  \"activation_type\": \"silu\",\n  \"block_type\": \"llama\",\n  \"rope\": true,\n"
            "  \"rope_full_precision\": true,\n  \"alibi\": false,\n"
            "  \"layer_norm_type\": \"rms\",\n  \"layer_norm_with_affine\": true,\n"
            "  \"attention_layer_norm\": false,\n  \"scale_logits\": false,\n"
            "  \"input_emb_norm\": false,\n  \"flash_attention\": false,\n"
            "  \"attention_dropout\": 0.0,\n  \"residual_dropout\": 0.0,\n"
            "  \"embedding_dropout\": 0.0,\n  \"init_device\": \"cpu\",\n  \"use_cache\": false,\n"
            "  \"torch_dtype\": \"%s\"\n}\n",
            c->d_model, c->n_head, model_kv_heads(c), c->n_layer, c->d_ff, c->vocab_size,
            c->vocab_size, c->seq_len, c->mask_token_id, bos_id, eos_id, eos_id, c->rope_theta,
            c->norm_eps, c->tied_embeddings ? "true" : "false", c->qkv_bias ? "true" : "false",
            dtype);
}

// x as a JSON number that reads back as a float: 32 -> "32.0"
static void json_float(char out[32], float x) {
    snprintf(out, 32, "%.9g", x);
    if (!strpbrk(out, ".en")) strcat(out, ".0");
}

static void write_llada_moe_config(FILE *f, const ModelConfig *c, int eos_id, const char *dtype) {
    char aux[32];
    json_float(aux, c->aux_loss_coef);
    fprintf(f,
            "{\n  \"architectures\": [\"LLaDAMoEModelLM\"],\n  \"model_type\": \"llada\",\n"
            "  \"auto_map\": {\"AutoConfig\": \"configuration_lladamoe.LLaDAConfig\", "
            "\"AutoModel\": \"modeling_lladamoe.LLaDAMoEModelLM\", "
            "\"AutoModelForCausalLM\": \"modeling_lladamoe.LLaDAMoEModelLM\"},\n"
            "  \"hidden_size\": %d,\n  \"num_attention_heads\": %d,\n"
            "  \"num_key_value_heads\": %d,\n  \"num_hidden_layers\": %d,\n"
            "  \"dense_intermediate_size\": %d,\n  \"expert_intermediate_size\": %d,\n"
            "  \"num_experts\": %d,\n  \"num_experts_per_tok\": %d,\n",
            c->d_model, c->n_head, model_kv_heads(c), c->n_layer, c->d_ff, c->d_expert,
            c->n_experts, c->n_active);
    if (c->d_shared) fprintf(f, "  \"shared_expert_intermediate_size\": %d,\n", c->d_shared);
    else fprintf(f, "  \"shared_expert_intermediate_size\": null,\n");
    fprintf(f, "  \"moe_layer_freq\": [");
    for (int l = 0; l < c->n_layer; l++)
        fprintf(f, "%s%d", l ? ", " : "", l >= c->dense_layers);
    fprintf(f,
            "],\n  \"qk_layernorm\": %s,\n  \"moe_router_score_function\": \"softmax\",\n"
            "  \"moe_router_enable_expert_bias\": %s,\n  \"router_aux_loss_coef\": %s,\n"
            "  \"vocab_size\": %d,\n  \"max_position_embeddings\": %d,\n"
            "  \"rope_theta\": %.9g,\n  \"rope_scaling\": null,\n  \"rms_norm_eps\": %.9g,\n"
            "  \"tie_word_embeddings\": %s,\n  \"hidden_act\": \"silu\",\n"
            "  \"attention_bias\": false,\n  \"partial_rotary_factor\": 1.0,\n"
            "  \"mask_token_id\": %d,\n",
            c->qk_norm ? "true" : "false", c->expert_bias ? "true" : "false", aux, c->vocab_size,
            c->seq_len, c->rope_theta, c->norm_eps, c->tied_embeddings ? "true" : "false",
            c->mask_token_id);
    if (eos_id >= 0) fprintf(f, "  \"eos_token_id\": %d,\n  \"pad_token_id\": %d,\n", eos_id, eos_id);
    fprintf(f, "  \"torch_dtype\": \"%s\"\n}\n", dtype);
}

static void write_llama_config(FILE *f, const ModelConfig *c, HfArch a, int bos_id,
                               int eos_id, const char *dtype) {
    static const char *classes[] = {"", "DreamModel", "LlamaForCausalLM", "Qwen2ForCausalLM",
                                    "MistralForCausalLM", "Qwen3ForCausalLM"};
    static const char *types[] = {"", "Dream", "llama", "qwen2", "mistral", "qwen3"};
    // a scaled RoPE's context is at least the one it was scaled from (transformers warns below)
    const RopeScaling *r = &c->rope_scaling;
    int context = r->factor != 0.0f && r->original_context > c->seq_len ? r->original_context
                                                                        : c->seq_len;
    fprintf(f,
            "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"%s\",\n"
            "  \"hidden_size\": %d,\n  \"num_attention_heads\": %d,\n"
            "  \"num_key_value_heads\": %d,\n  \"num_hidden_layers\": %d,\n"
            "  \"intermediate_size\": %d,\n  \"vocab_size\": %d,\n"
            "  \"max_position_embeddings\": %d,\n  \"rope_theta\": %.9g,\n"
            "  \"rms_norm_eps\": %.9g,\n  \"tie_word_embeddings\": %s,\n"
            "  \"hidden_act\": \"silu\",\n  \"attention_bias\": false,\n  \"mlp_bias\": false,\n",
            classes[a], types[a], c->d_model, c->n_head, model_kv_heads(c), c->n_layer, c->d_ff,
            c->vocab_size, context, c->rope_theta, c->norm_eps,
            c->tied_embeddings ? "true" : "false");
    if (a == HF_QWEN3 || c->head_dim) fprintf(f, "  \"head_dim\": %d,\n", model_head_dim(c));
    if (a == HF_MISTRAL) fprintf(f, "  \"sliding_window\": %d,\n", c->sliding_window);
    else fprintf(f, "  \"use_sliding_window\": false,\n");
    if (a == HF_DREAM)  // the released models' code, which the directory must be given
        fprintf(f, "  \"auto_map\": {\"AutoConfig\": \"configuration_dream.DreamConfig\", "
                   "\"AutoModel\": \"modeling_dream.DreamModel\"},\n");
    if (r->factor != 0.0f) {  // transformers wants these as JSON floats ("32.0", not "32")
        char factor[32], low[32], high[32];
        json_float(factor, r->factor), json_float(low, r->low_freq_factor);
        json_float(high, r->high_freq_factor);
        fprintf(f,
                "  \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": %s, "
                "\"low_freq_factor\": %s, \"high_freq_factor\": %s, "
                "\"original_max_position_embeddings\": %d},\n",
                factor, low, high, r->original_context);
    } else
        fprintf(f, "  \"rope_scaling\": null,\n");
    if (bos_id >= 0) fprintf(f, "  \"bos_token_id\": %d,\n", bos_id);
    if (eos_id >= 0) fprintf(f, "  \"eos_token_id\": %d,\n", eos_id);
    if (a == HF_DREAM)  // Dream's class needs a padding id inside the vocabulary
        fprintf(f, "  \"mask_token_id\": %d,\n  \"pad_token_id\": %d,\n", c->mask_token_id,
                eos_id >= 0 ? eos_id : 0);
    fprintf(f, "  \"torch_dtype\": \"%s\"\n}\n", dtype);
}

int hf_export(const char *dir, const ModelConfig *c, const float *params, int bos_id, int eos_id,
              SafetensorsDtype dtype, Error *err) {
    HfArch a = hf_export_arch(c);
    if (c->ternary)
        return error_set(err, "a ternary model has no Hugging Face layout here (its weights "
                              "are fp32 latents read through quantisers)");
    if (c->rotary_dim)
        return error_set(err, "a model with a partial rotary (LLaDA 2.0's) has no export layout "
                              "here (writing LLaDA 2.0's fused files is not built)");
    if (c->head_dim && (a == HF_LLADA || a == HF_DREAM || a == HF_LLADA_MOE))
        return error_set(err, "a head size apart from d_model / n_head (%d) exports only in the "
                              "transformers AR layouts; %s's code sizes heads by d_model / n_head",
                         c->head_dim, hf_arch_name(a));
    if (c->n_experts && (c->causal || c->router != ROUTER_SOFTMAX || c->logit_shift ||
                         c->qkv_bias || c->sliding_window))
        return error_set(err, "a mixture of experts exports as LLaDA-MoE: a bidirectional "
                              "model with the softmax router and no q/k/v biases, logit shift "
                              "or window");
    if (c->block_size > 0)
        return error_set(err, "a block diffusion model (block_size %d) has no Hugging Face "
                              "layout: LLaDA's, Dream's and LLaMA's attention has no blocks",
                         c->block_size);
    if (a == HF_LLADA && c->rope_scaling.factor != 0.0f)
        return error_set(err, "the LLaDA layout has no RoPE scaling; this model has llama3's");
    if (c->sliding_window && (c->qkv_bias || c->qk_norm))
        return error_set(err, "a model with a sliding window and q/k/v biases or q/k norms has no "
                              "Hugging Face layout here (Mistral has neither)");
    if (c->qk_norm && !c->n_experts && (!c->causal || c->qkv_bias))
        return error_set(err, "q/k norms export only as Qwen3, an AR model without q/k/v biases; "
                              "this one is %s", c->causal ? "biased" : "a diffusion model");
    if (a == HF_DREAM && !c->qkv_bias)
        return error_set(err, "a model read at shifted logits exports as Dream, which has q/k/v "
                              "biases; this one has none");
    if (make_dirs(dir, err)) return -1;
    ParamSpec specs[N_PARAM_TENSORS];
    param_specs(c, specs);
    int n = 0;
    size_t most = (size_t)(N_PARAM_TENSORS + 3 * c->n_experts) * c->n_layer;  // files' tensors
    SafetensorsOut *out = calloc(most, sizeof *out);
    char (*names)[256] = calloc(most, sizeof *names);
    if (!out || !names) {
        free(out), free(names);
        return error_set(err, "out of memory");
    }
    const float *at = params;
    for (int i = 0; i < N_PARAM_TENSORS; i++) {
        size_t slice = specs[i].rows * specs[i].cols;
        int experts = param_is_expert(i) && c->n_experts ? c->n_experts : 1;  // a tensor each
        size_t rows = specs[i].rows / experts;
        for (int l = 0; l < specs[i].layers; l++)
            for (int e = 0; e < experts; e++, n++) {
                hf_expert_tensor_name(a, i, file_layer(c, i, l), e, names[n], sizeof names[n]);
                SafetensorsOut t = {names[n], specs[i].cols == 1 ? 1 : 2,
                                    {(int64_t)rows, (int64_t)specs[i].cols},
                                    at + l * slice + e * rows * specs[i].cols};
                out[n] = t;
            }
        at += specs[i].size;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    int rc = safetensors_write(path, out, n, dtype, err);
    free(out), free(names);
    if (rc) return -1;
    snprintf(path, sizeof path, "%s/config.json", dir);
    AtomicFile f;
    if (atomic_open(&f, path, err)) return -1;
    const char *torch_dtype = dtype == SAFETENSORS_BF16 ? "bfloat16" : "float32";
    if (a == HF_LLADA) write_llada_config(f.f, c, bos_id, eos_id, torch_dtype);
    else if (a == HF_LLADA_MOE) write_llada_moe_config(f.f, c, eos_id, torch_dtype);
    else write_llama_config(f.f, c, a, bos_id, eos_id, torch_dtype);
    if (atomic_commit(&f, err)) return -1;
    if (a != HF_DREAM) return 0;
    // Dream's class will not load without its generation settings
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    if (atomic_open(&f, path, err)) return -1;
    fprintf(f.f, "{\n  \"mask_token_id\": %d,\n  \"pad_token_id\": %d,\n  \"eos_token_id\": %d\n}\n",
            c->mask_token_id, eos_id >= 0 ? eos_id : 0, eos_id);
    return atomic_commit(&f, err);
}

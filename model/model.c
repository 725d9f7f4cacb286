#include "model/model.h"
#include "model/layer.h"
#include "model/moe.h"

#include "common/progress.h"
#include "common/threads.h"
#include "kernels/attn_mask.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// Places `bytes` at *offset of base (256-byte aligned) and returns its address. With base
// NULL it only counts, so one layout function both sizes and carves the activation memory.
static void *carve(char *base, size_t *offset, size_t bytes) {
    size_t at = *offset;
    *offset += (bytes + 255) / 256 * 256;
    return base ? base + at : NULL;
}

static float *carve_floats(char *base, size_t *offset, size_t n) {
    return carve(base, offset, n * sizeof(float));
}

static Act *carve_acts(const Model *m, char *base, size_t *offset, size_t n) {
    return carve(base, offset, n * m->be->act_bytes);
}

// A mixture of experts' working set: S slices (layers kept) of N rows; a gradient set (grads 1)
// has no probabilities or routing, only what the backward writes.
static void carve_moe(const Model *m, char *base, size_t *off, MoeActs *a, size_t S, size_t N,
                      int grads) {
    const ModelConfig *c = &m->cfg;
    size_t E = c->n_experts, k = c->n_active, C = c->d_model, Fe = c->d_expert, Fs = c->d_shared;
    if (!E) S = 0;
    size_t R = grads ? 0 : S;  // routing is kept per slice, never differentiated
    a->logits = carve_acts(m, base, off, S * N * E);
    a->probs = carve_floats(base, off, R * N * E);
    a->pick = carve(base, off, R * N * k * sizeof(int));
    a->weight = carve_floats(base, off, S * N * k);
    a->rows = carve(base, off, R * N * k * sizeof(int));
    a->slot_at = carve(base, off, R * N * k * sizeof(int));
    a->xs = carve_acts(m, base, off, S * N * k * C);
    a->ys = carve_acts(m, base, off, S * N * k * C);
    a->gate = carve_acts(m, base, off, S * N * k * Fe);
    a->up = carve_acts(m, base, off, S * N * k * Fe);
    a->swiglu = carve_acts(m, base, off, S * N * k * Fe);
    a->s_gate = carve_acts(m, base, off, S * N * Fs);
    a->s_up = carve_acts(m, base, off, S * N * Fs);
    a->s_swiglu = carve_acts(m, base, off, S * N * Fs);
    a->bias = carve_floats(base, off, grads ? 0 : E);
}

// Lays out every activation, activation gradient and per-batch buffer in base; returns the
// total bytes.
static size_t layout_activations(Model *m, char *base) {
    const ModelConfig *c = &m->cfg;
    size_t L = c->n_layer, N = (size_t)m->max_batch * c->seq_len, C = c->d_model, F = c->d_ff;
    // layer slices kept: of the working set, of the keys and values, of the residual stream
    int inference = model_is_inference(m);
    size_t K = m->mode == MODEL_TRAINING ? L : 1, KC = inference ? L : K;
    size_t R = inference ? 2 : L + 1;  // inference alternates two residual slices
    size_t V = c->vocab_size, H = c->n_head, KV = model_kv_dim(c), QD = model_q_dim(c);
    size_t off = 0;
    Activations *a = &m->acts;
    a->resid = carve_acts(m, base, &off, R * N * C);
    a->ln1 = carve_acts(m, base, &off, K * N * C);
    a->ln1_rstd = carve_floats(base, &off, K * N);
    a->q = carve_acts(m, base, &off, K * N * QD);
    size_t QK = c->qk_norm ? 1 : 0, Hkv = model_kv_heads(c);
    a->q_pre = carve_acts(m, base, &off, QK * K * N * QD);
    a->k_pre = carve_acts(m, base, &off, QK * K * N * KV);
    a->q_rstd = carve_floats(base, &off, QK * K * N * H);
    a->k_rstd = carve_floats(base, &off, QK * K * N * Hkv);
    a->k = carve_acts(m, base, &off, KC * N * KV);
    a->v = carve_acts(m, base, &off, KC * N * KV);
    a->lse = carve_floats(base, &off, K * N * H);
    a->att_out = carve_acts(m, base, &off, K * N * QD);
    a->resid_mid = carve_acts(m, base, &off, K * N * C);
    a->ln2 = carve_acts(m, base, &off, K * N * C);
    a->ln2_rstd = carve_floats(base, &off, K * N);
    a->gate = carve_acts(m, base, &off, K * N * F);
    a->up = carve_acts(m, base, &off, K * N * F);
    a->swiglu = carve_acts(m, base, &off, K * N * F);
    a->lnf = carve_acts(m, base, &off, N * C);
    a->lnf_rstd = carve_floats(base, &off, N);
    a->logits = carve_acts(m, base, &off, N * V);
    a->losses = carve_floats(base, &off, N);
    a->proj = carve_acts(m, base, &off, N * (QD > C ? QD : C));  // also fresh k or v rows
    // rank 0: no adapters, nothing carved; an MoE layer's adapted targets keep n_active + 1
    // rows per token (its experts' and its shared expert's)
    size_t LR = m->lora.rank, widest = F > C ? F : C, rows = lora_rows_per_token(c);
    if (QD > widest) widest = QD;
    if ((size_t)c->d_expert > widest) widest = c->d_expert;
    if ((size_t)c->d_shared > widest) widest = c->d_shared;
    a->lora_mid = carve_acts(m, base, &off, K * lora_n_targets(&m->lora) * N * rows * LR);
    a->lora_out = carve_acts(m, base, &off, LR ? N * rows * widest : 0);
    size_t xq, xq8, xq8_scale;  // what the weight kind's projection inputs need
    linear_scratch(m->kind, N, widest, &xq, &xq8, &xq8_scale);
    a->xq = carve_acts(m, base, &off, xq);
    a->xq8 = carve(base, &off, xq8);
    a->xq8_scale = carve_floats(base, &off, xq8_scale);
    carve_moe(m, base, &off, &a->moe, m->mode == MODEL_TRAINING ? model_moe_layers(c) : 1, N, 0);
    ActivationGrads *d = &m->grad_acts;
    size_t G = inference ? 0 : 1;  // no backward scratch for inference
    carve_moe(m, base, &off, &d->moe, G, N, 1);
    d->aux = carve_floats(base, &off, G * c->n_experts);
    d->resid = carve_acts(m, base, &off, G * N * C);
    d->ln = carve_acts(m, base, &off, G * N * C);
    d->q = carve_acts(m, base, &off, G * N * QD);
    d->q_pre = carve_acts(m, base, &off, QK * G * N * QD);
    d->k_pre = carve_acts(m, base, &off, QK * G * N * KV);
    d->k = carve_acts(m, base, &off, G * N * KV);
    d->v = carve_acts(m, base, &off, G * N * KV);
    d->att_out = carve_acts(m, base, &off, G * N * QD);
    d->gate = carve_acts(m, base, &off, G * N * F);
    d->up = carve_acts(m, base, &off, G * N * F);
    d->swiglu = carve_acts(m, base, &off, G * N * F);
    d->lora_mid = carve_acts(m, base, &off, G * N * rows * LR);
    size_t rope_n = (size_t)c->seq_len * (model_head_dim(c) / 2);
    m->rope_cos = carve_floats(base, &off, rope_n);
    m->rope_sin = carve_floats(base, &off, rope_n);
    m->weights = carve_floats(base, &off, N);
    m->tokens = carve(base, &off, N * sizeof(int));
    m->targets = carve(base, &off, N * sizeof(int));
    m->key_start = carve(base, &off, (size_t)m->max_batch * sizeof(int));
    return off;
}

MemoryPlan model_memory_plan(const ModelConfig *c, const Backend *be, int max_batch,
                             ModelMode mode) {
    return model_memory_plan_lora(c, NULL, be, max_batch, mode);
}

MemoryPlan model_memory_plan_lora(const ModelConfig *c, const LoraConfig *lc, const Backend *be,
                                  int max_batch, ModelMode mode) {
    Model shape = {.cfg = *c, .be = be, .max_batch = max_batch, .mode = mode,
                   .kind = linear_kind(c, be, mode)};
    if (lc && lc->rank > 0) shape.lora = *lc;
    size_t n = param_count(c), n_lora = lora_param_count(c, &shape.lora);
    size_t train = !model_is_inference(&shape), full = train && !n_lora;  // a LoRA base is frozen
    // adapters: weights, and for training their gradients and AdamW m and v
    MemoryPlan plan = {linear_param_bytes(c, be, shape.kind), full * n * sizeof(float),
                       full * 2 * n * sizeof(float), layout_activations(&shape, NULL),
                       (1 + 3 * train) * n_lora * sizeof(float)};
    return plan;
}

static size_t plan_total(const MemoryPlan *p) {
    return p->params + p->grads + p->optimizer + p->activations + p->adapters;
}

void memory_plan_print(FILE *f, const MemoryPlan *p, const char *device) {
    size_t sizes[6] = {p->params, p->grads, p->optimizer, p->activations, plan_total(p),
                       p->adapters};
    char text[6][32];
    for (int i = 0; i < 6; i++) format_bytes(text[i], sizeof text[i], sizes[i]);
    if (p->adapters) {
        fprintf(f,
                "memory (%s): frozen base %s | LoRA adapters %s (weights, grads, AdamW m and v "
                "when training) | activations %s | total %s\n",
                device, text[0], text[5], text[3], text[4]);
        return;
    }
    fprintf(f,
            "memory (%s, one allocation each): params %s | grads %s | optimizer %s | "
            "activations %s | total %s\n",
            device, text[0], text[1], text[2], text[3], text[4]);
}

// cos/sin of t * theta^(-2i/rot) (rot: the rotated values of a head), computed once in double
// on the host.
static int upload_rope_tables(Model *m) {
    const ModelConfig *c = &m->cfg;
    int half = model_rotary_dim(c) / 2;
    size_t n = (size_t)c->seq_len * half;
    float *cs = malloc(2 * n * sizeof(float));
    if (!cs) return -1;
    for (int t = 0; t < c->seq_len; t++)
        for (int i = 0; i < half; i++) {
            double freq = model_rope_frequency(c, i, half);
            cs[(size_t)t * half + i] = (float)cos(t * freq);
            cs[n + (size_t)t * half + i] = (float)sin(t * freq);
        }
    m->be->to_device(m->rope_cos, cs, n * sizeof(float));
    m->be->to_device(m->rope_sin, cs + n, n * sizeof(float));
    free(cs);
    return 0;
}

int model_create(Model *m, const ModelConfig *c, const Backend *be, int max_batch,
                 ModelMode mode, Error *err) {
    return model_create_lora(m, c, NULL, be, max_batch, mode, err);
}

// The adapters' buffers: weights, and for training their gradients and AdamW state.
static int alloc_lora(Model *m, const LoraConfig *lc, Error *err) {
    if (lora_config_validate(lc, err)) return -1;
    m->lora = *lc;
    m->lora_be = backend_fp32_weights(m->be);
    if (!m->lora_be) return error_set(err, "LoRA: no fp32-weight table beside %s", m->be->name);
    m->n_lora = lora_param_count(&m->cfg, lc);
    size_t bytes = m->n_lora * sizeof(float);
    const Backend *lb = m->lora_be;
    m->lora_params = lb->alloc(bytes);
    if (!model_is_inference(m)) {
        m->lora_grads = lb->alloc(bytes);
        m->lora_adam_m = lb->alloc(2 * bytes);
        m->lora_adam_v = m->lora_adam_m ? m->lora_adam_m + m->n_lora : NULL;
    }
    if (!m->lora_params || (!model_is_inference(m) && (!m->lora_grads || !m->lora_adam_m)))
        return error_set(err, "out of memory for %zu LoRA adapter values", m->n_lora);
    return 0;
}

int model_create_lora(Model *m, const ModelConfig *c, const LoraConfig *lc, const Backend *be,
                      int max_batch, ModelMode mode, Error *err) {
    memset(m, 0, sizeof *m);
    int adapters = lc && lc->rank != 0;  // a negative rank is refused below
    if (model_config_validate(c, err)) return -1;
    if (max_batch < 1) return error_set(err, "batch size must be >= 1 (got %d)", max_batch);
    if (linear_check(c, be, mode, adapters, err)) return -1;
    m->cfg = *c;
    m->be = be;
    m->window = -1;
    m->max_batch = max_batch;
    m->mode = mode;
    m->kind = linear_kind(c, be, mode);
    m->n_params = linear_param_count(c, m->kind);
    if (adapters && alloc_lora(m, lc, err)) {
        model_free(m);
        return -1;
    }
    MemoryPlan plan = model_memory_plan_lora(c, lc, be, max_batch, mode);
    int full = !model_is_inference(m) && !adapters;  // a frozen base: no gradients, no AdamW
    m->params = be->alloc(plan.params);
    m->grads = full ? be->alloc(plan.grads) : NULL;
    m->adam_m = full ? be->alloc(plan.optimizer) : NULL;
    m->adam_v = m->adam_m ? m->adam_m + m->n_params : NULL;
    m->acts_memory = be->alloc(plan.activations);
    if (m->acts_memory) layout_activations(m, m->acts_memory);
    size_t rows = (size_t)max_batch * c->seq_len;
    m->host_losses = malloc(rows * sizeof(float));
    if (c->logit_shift) {
        m->row_targets = malloc(rows * sizeof(int));
        m->row_weights = malloc(rows * sizeof(float));
    }
    m->aux_scale = 1.0f;
    int moe_ok = !c->n_experts || moe_alloc_host(m, rows) == 0;
    int training_state = !full || (m->grads && m->adam_m);
    if (!m->params || !training_state || !m->acts_memory || !m->host_losses ||
        (c->logit_shift && (!m->row_targets || !m->row_weights)) || !moe_ok ||
        upload_rope_tables(m)) {
        model_free(m);
        char total[32];
        format_bytes(total, sizeof total, plan_total(&plan));
        return error_set(err, "out of memory for a %zu-parameter model with batch %d (%s)",
                         m->n_params, max_batch, total);
    }
    linear_point(m);
    if (m->grads) param_tensors_point(&m->g, m->grads, sizeof(float), c);
    m->opt_n = adapters ? m->n_lora : m->n_params;
    return 0;
}

int model_shard_optimizer(Model *m, size_t lo, size_t n, Error *err) {
    int lora = m->lora.rank > 0;
    Trainable t = model_trainable(m);
    float **adam_m = lora ? &m->lora_adam_m : &m->adam_m;
    float **adam_v = lora ? &m->lora_adam_v : &m->adam_v;
    if (!*adam_m || lo + n > t.n)
        return error_set(err, "no optimizer state for values %zu..%zu of %zu", lo, lo + n, t.n);
    t.be->free(*adam_m);
    *adam_m = t.be->alloc(2 * (n ? n : 1) * sizeof(float));
    *adam_v = *adam_m ? *adam_m + n : NULL;
    m->opt_lo = lo;
    m->opt_n = n;
    if (!*adam_m) return error_set(err, "out of memory for the optimizer state of %zu values", n);
    return 0;
}

void model_free(Model *m) {
    if (m->be) {
        void *bufs[] = {m->params, m->grads, m->adam_m, m->acts_memory};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
            if (bufs[i]) m->be->free(bufs[i]);
    }
    if (m->lora_be) {
        void *bufs[] = {m->lora_params, m->lora_grads, m->lora_adam_m};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
            if (bufs[i]) m->lora_be->free(bufs[i]);
    }
    free(m->host_losses);
    free(m->row_targets);
    free(m->row_weights);
    moe_free_host(m);
    memset(m, 0, sizeof *m);
}

int model_init_params(Model *m, uint64_t seed, Error *err) {
    float *host = malloc(m->n_params * sizeof(float));
    if (!host)
        return error_set(err, "out of host memory for the initial weights (%.1f MB)",
                         m->n_params * 4.0 / 1e6);
    params_init(host, &m->cfg, seed);
    int rc = model_set_weights(m, host, err);
    free(host);
    return rc;
}

int model_init_lora(Model *m, uint64_t seed, Error *err) {
    float *host = malloc(m->n_lora * sizeof(float));
    if (!host) return error_set(err, "out of host memory for %zu LoRA values", m->n_lora);
    lora_init(host, &m->cfg, &m->lora, seed);
    model_set_lora(m, host);
    free(host);
    return 0;
}

void model_set_lora(Model *m, const float *host) {
    m->lora_be->to_device(m->lora_params, host, m->n_lora * sizeof(float));
}

Trainable model_trainable(const Model *m) {
    if (m->lora.rank > 0) {
        Trainable t = {m->lora_params, m->lora_grads, m->lora_adam_m, m->lora_adam_v, m->n_lora,
                       m->lora_be, m->opt_lo, m->opt_n};
        return t;
    }
    Trainable t = {m->params, m->grads, m->adam_m, m->adam_v, m->n_params, m->be, m->opt_lo,
                   m->opt_n};
    return t;
}

int model_set_weights(Model *m, const float *host, Error *err) {
    return model_set_weight_range(m, 0, host, param_count(&m->cfg), err);
}

int model_set_weight_range(Model *m, size_t first, const float *host, size_t n, Error *err) {
    return linear_upload(m, first, host, n, err);
}

void model_keep_kv(Model *m, int keep) { m->kv_unkept = !keep; }

int model_is_inference(const Model *m) {
    return m->mode == MODEL_INFERENCE || m->mode == MODEL_PACKED || m->mode == MODEL_Q8 ||
           m->mode == MODEL_Q4;
}

Act *act_at(const Model *m, const Act *a, size_t index) {
    return (char *)a + index * m->be->act_bytes;
}

LayerActs layer_acts(const Model *m, int l) {
    const Activations *a = &m->acts;
    size_t N = (size_t)m->B * m->T, C = m->cfg.d_model, F = m->cfg.d_ff, H = m->cfg.n_head;
    size_t QD = model_q_dim(&m->cfg);
    int inference = model_is_inference(m);
    size_t KV = model_kv_dim(&m->cfg), s = m->mode == MODEL_TRAINING ? (size_t)l : 0;
    size_t Hkv = model_kv_heads(&m->cfg), qk = m->cfg.qk_norm;
    size_t kv = inference && !m->kv_unkept ? (size_t)l : s;  // inference keeps every layer's cache
    size_t r = inference ? (size_t)l % 2 : (size_t)l;  // and alternates two residuals
    LayerActs la = {
        .resid_in = act_at(m, a->resid, r * N * C),
        .ln1 = act_at(m, a->ln1, s * N * C),
        .q = act_at(m, a->q, s * N * QD),
        .k = act_at(m, a->k, kv * N * KV),
        .v = act_at(m, a->v, kv * N * KV),
        .att_out = act_at(m, a->att_out, s * N * QD),
        .resid_mid = act_at(m, a->resid_mid, s * N * C),
        .ln2 = act_at(m, a->ln2, s * N * C),
        .gate = act_at(m, a->gate, s * N * F),
        .up = act_at(m, a->up, s * N * F),
        .swiglu = act_at(m, a->swiglu, s * N * F),
        .resid_out = act_at(m, a->resid, (inference ? (r + 1) % 2 : r + 1) * N * C),
        .ln1_rstd = a->ln1_rstd + s * N,
        .lse = a->lse + s * N * H,
        .ln2_rstd = a->ln2_rstd + s * N,
        .q_pre = qk ? act_at(m, a->q_pre, s * N * QD) : NULL,
        .k_pre = qk ? act_at(m, a->k_pre, s * N * KV) : NULL,
        .q_rstd = qk ? a->q_rstd + s * N * H : NULL,
        .k_rstd = qk ? a->k_rstd + s * N * Hkv : NULL,
    };
    return la;
}

void model_forward(Model *m, const int *tokens, int B, int T) {
    model_infer(m, tokens, NULL, B, T, 0, T);
}

static void forward_rows(Model *m, const int *tokens, const int *key_start, int B, int T,
                         int start, int end, int head_start, int head_end);

void model_forward_pairs(Model *m, const int *tokens, int B, int T) {
    assert(m->cfg.block_size > 0 && 2 * B <= m->max_batch && T <= m->cfg.seq_len);
    m->pairs = 1;  // read by this pass's layers and its backward
    forward_rows(m, tokens, NULL, B, 2 * T, 0, 2 * T, 0, 2 * T);
}

// The attention mask of the last pass: BD3's two-copy layout after model_forward_pairs, a
// window while a trainer anneals it, else the model's own (causal, block-causal or full).
int pass_mask(const Model *m) {
    if (m->pairs) return attn_bd3(m->cfg.block_size);
    return m->window >= 0 ? attn_window(m->window) : model_attention_mask(&m->cfg);
}

// RoPE on rows [start, start + Tq) of the pass's B sequences of T rows: a pairs pass holds both
// copies at positions 0..T/2-1, which to RoPE is 2B sequences of T/2 rows (the layouts agree).
void rope(const Model *m, Act *x, int Tq, int start, int heads, int backward) {
    int B = m->pairs ? 2 * m->B : m->B, T = m->pairs ? Tq / 2 : Tq;
    int hd = model_head_dim(&m->cfg), rot = model_rotary_dim(&m->cfg);
    if (backward) m->be->rope_backward(x, m->rope_cos, m->rope_sin, B, T, start, heads, hd, rot);
    else m->be->rope_forward(x, m->rope_cos, m->rope_sin, B, T, start, heads, hd, rot);
}

// Copies rows [start, end) of each sequence's keys or values (fresh, [B, end - start, C]) into
// their places in a layer's cache ([B, T, C]; C = kv_dim).
static void store_rows(const Model *m, Act *cache, const Act *fresh, int B, int T, int start,
                       int end, int C) {
    size_t Tq = end - start, row = Tq * C * m->be->act_bytes;
    m->be->copy_rows(act_at(m, cache, (size_t)start * C), (size_t)T * C * m->be->act_bytes, fresh,
                     row, row, B);
}

// Layer l on rows [start, end) of the m->B sequences of m->T positions: from its residual
// input to its residual output, keeping what the backward needs.
void layer_forward(Model *m, int l, const int *key_start, int start, int end) {
    const ModelConfig *c = &m->cfg;
    const Backend *be = m->be;
    int B = m->B, T = m->T, Tq = end - start, N = B * Tq, C = c->d_model, F = c->d_ff;
    int H = c->n_head, Hkv = model_kv_heads(c), hd = model_head_dim(c), KV = Hkv * hd;
    int QD = H * hd;
    int whole = Tq == T;  // every row recomputed: keys and values go straight to their place
    Act *proj = m->acts.proj;
    LayerActs a = layer_acts(m, l);
    LayerWeights w = linear_layer_weights(m, l);
    // attention block; keys and values of the computed rows land in the layer's cache
    be->rmsnorm_forward(a.ln1, a.ln1_rstd, a.resid_in, w.attn_norm, N, C, c->norm_eps);
    const Act *x = linear_input(m, a.ln1, N, C);  // q, k and v read the same input
    // Qwen3: each head's q and k RMS-normalised (rows of one head) between projection and RoPE
    int qk = c->qk_norm;
    linear_forward(m, l, LORA_Q, qk ? a.q_pre : a.q, x, w.wq, w.bq, N, C, QD);
    if (qk) be->rmsnorm_forward(a.q, a.q_rstd, a.q_pre, w.q_norm, N * H, hd, c->norm_eps);
    rope(m, a.q, Tq, start, H, 0);
    Act *k = whole ? a.k : proj;
    linear_forward(m, l, LORA_K, qk ? a.k_pre : k, x, w.wk, w.bk, N, C, KV);
    if (qk) be->rmsnorm_forward(k, a.k_rstd, a.k_pre, w.k_norm, N * Hkv, hd, c->norm_eps);
    rope(m, k, Tq, start, Hkv, 0);
    if (!whole) store_rows(m, a.k, proj, B, T, start, end, KV);
    Act *v = whole ? a.v : proj;
    linear_forward(m, l, LORA_V, v, x, w.wv, w.bv, N, C, KV);
    if (!whole) store_rows(m, a.v, proj, B, T, start, end, KV);
    be->attention_forward(a.att_out, a.lse, a.q, a.k, a.v, key_start, B, Tq, T, start, H, Hkv,
                          hd, pass_mask(m));
    linear_forward(m, l, LORA_O, proj, linear_input(m, a.att_out, N, QD), w.wo, NULL, N, QD, C);
    be->add(a.resid_mid, a.resid_in, proj, (size_t)N * C);
    // SwiGLU MLP block (or a mixture of SwiGLU experts)
    be->rmsnorm_forward(a.ln2, a.ln2_rstd, a.resid_mid, w.mlp_norm, N, C, c->norm_eps);
    if (w.router) {
        moe_forward(m, l, a.ln2, proj, N);
        be->add(a.resid_out, a.resid_mid, proj, (size_t)N * C);
        return;
    }
    x = linear_input(m, a.ln2, N, C);  // gate and up read the same input
    linear_forward(m, l, LORA_GATE, a.gate, x, w.w_gate, NULL, N, C, F);
    linear_forward(m, l, LORA_UP, a.up, x, w.w_up, NULL, N, C, F);
    be->swiglu_forward(a.swiglu, a.gate, a.up, (size_t)N * F);
    linear_forward(m, l, LORA_DOWN, proj, linear_input(m, a.swiglu, N, F), w.w_down, NULL, N, F, C);
    be->add(a.resid_out, a.resid_mid, proj, (size_t)N * C);
}

void model_infer(Model *m, const int *tokens, const int *key_start, int B, int T, int start,
                 int end) {
    model_infer_rows(m, tokens, key_start, B, T, start, end, start, end);
}

void model_infer_rows(Model *m, const int *tokens, const int *key_start, int B, int T, int start,
                      int end, int head_start, int head_end) {
    assert(B >= 1 && B <= m->max_batch && T >= 1 && T <= m->cfg.seq_len);
    m->pairs = 0;
    forward_rows(m, tokens, key_start, B, T, start, end, head_start, head_end);
}

// The forward pass of model_infer_rows and model_forward_pairs (m->pairs says which).
static void forward_rows(Model *m, const int *tokens, const int *key_start, int B, int T,
                         int start, int end, int head_start, int head_end) {
    const ModelConfig *c = &m->cfg;
    const Backend *be = m->be;
    assert(0 <= start && start < end && end <= T);
    assert(start <= head_start && head_start < head_end && head_end <= end);
    // no per-layer cache to reuse
    assert((m->mode != MODEL_RECOMPUTE && !m->kv_unkept) || (start == 0 && end == T));
    threads_adapt();
    m->B = B;  // per-layer slices hold B * T rows: the whole cache, or a training batch
    m->T = T;
    int Tq = end - start, N = B * Tq, C = c->d_model;
    be->to_device_rows(m->tokens, (size_t)Tq * sizeof(int), tokens + start, (size_t)T * sizeof(int),
                       (size_t)Tq * sizeof(int), B);
    if (key_start) be->to_device(m->key_start, key_start, (size_t)B * sizeof(int));
    linear_prepare_pass(m);
    linear_embedding_forward(m, m->acts.resid, N);
    moe_begin_pass(m);
    for (int l = 0; l < c->n_layer; l++)
        layer_forward(m, l, key_start ? m->key_start : NULL, start, end);
    moe_end_pass(m, N);
    size_t last = model_is_inference(m) ? (size_t)c->n_layer % 2 : (size_t)c->n_layer;
    Act *resid_final = act_at(m, m->acts.resid, last * B * T * C);
    int Th = head_end - head_start;
    if (Th < Tq) {  // gather each sequence's head rows into the scratch, in order
        size_t row = (size_t)C * be->act_bytes;
        be->copy_rows(m->acts.proj, Th * row, act_at(m, resid_final, (size_t)(head_start - start) * C),
                      Tq * row, Th * row, B);
        resid_final = m->acts.proj;
    }
    // the LM head is the largest matmul: it runs over the head rows alone
    be->rmsnorm_forward(m->acts.lnf, m->acts.lnf_rstd, resid_final, m->p.final_norm, B * Th, C,
                        c->norm_eps);
    linear_head_forward(m, m->acts.logits, m->acts.lnf, B * Th);
}

// Uploads each logit row's target and weight; returns the weights as uploaded. With
// logit_shift, row t of a sequence holds position t + 1's (the last row scores nothing).
const float *upload_targets(Model *m, const int *targets, const float *weights) {
    size_t N = (size_t)m->B * m->T;
    if (m->cfg.logit_shift) {
        for (size_t n = 0; n < N; n++) {
            int last = (int)(n % m->T) == m->T - 1;
            m->row_targets[n] = last ? 0 : targets[n + 1];
            m->row_weights[n] = last ? 0.0f : weights[n + 1];
        }
        targets = m->row_targets;
        weights = m->row_weights;
    }
    m->be->to_device(m->targets, targets, N * sizeof(int));
    m->be->to_device(m->weights, weights, N * sizeof(float));
    return weights;
}

// The weighted sum of the per-position losses, on the host in double; each sequence's share
// in row_loss[b] unless row_loss is NULL.
double weighted_loss(Model *m, const float *weights, double *row_loss) {
    int N = m->B * m->T;
    m->be->to_host(m->host_losses, m->acts.losses, (size_t)N * sizeof(float));
    double loss = 0.0;  // one running sum over all positions, in their order
    for (int b = 0; b < m->B; b++) {
        double row = 0.0;
        for (int n = b * m->T; n < (b + 1) * m->T; n++) {
            if (weights[n] == 0.0f) continue;
            double term = (double)weights[n] * m->host_losses[n];
            loss += term;
            row += term;
        }
        if (row_loss) row_loss[b] = row;
    }
    return loss;
}

double model_loss_rows(Model *m, const int *targets, const float *weights, double *row_loss) {
    weights = upload_targets(m, targets, weights);
    m->be->cross_entropy_forward(m->acts.losses, m->acts.logits, m->targets, m->B * m->T,
                                 m->cfg.vocab_size);
    return weighted_loss(m, weights, row_loss);
}

float model_loss(Model *m, const int *targets, const float *weights) {
    return (float)model_loss_rows(m, targets, weights, NULL);
}

#include "model/model.h"

#include "common/bf16.h"
#include "common/progress.h"
#include "common/threads.h"
#include "kernels/attn_mask.h"
#include "kernels/ternary.h"
#include "model/packed.h"

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

// Lays out every activation, activation gradient and per-batch buffer in base; returns the
// total bytes.
static size_t layout_activations(Model *m, char *base) {
    const ModelConfig *c = &m->cfg;
    size_t L = c->n_layer, N = (size_t)m->max_batch * c->seq_len, C = c->d_model, F = c->d_ff;
    // layer slices kept: of the working set, of the keys and values, of the residual stream
    size_t K = m->recompute || m->inference ? 1 : L, KC = m->inference ? L : K;
    size_t R = m->inference ? 2 : L + 1;  // inference alternates two residual slices
    size_t V = c->vocab_size, H = c->n_head, KV = model_kv_dim(c);
    size_t off = 0;
    Activations *a = &m->acts;
    a->resid = carve_acts(m, base, &off, R * N * C);
    a->ln1 = carve_acts(m, base, &off, K * N * C);
    a->ln1_rstd = carve_floats(base, &off, K * N);
    a->q = carve_acts(m, base, &off, K * N * C);
    a->k = carve_acts(m, base, &off, KC * N * KV);
    a->v = carve_acts(m, base, &off, KC * N * KV);
    a->lse = carve_floats(base, &off, K * N * H);
    a->att_out = carve_acts(m, base, &off, K * N * C);
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
    a->proj = carve_acts(m, base, &off, N * C);
    size_t LR = m->lora.rank, widest = F > C ? F : C;  // rank 0: no adapters, nothing carved
    a->lora_mid = carve_acts(m, base, &off, K * lora_n_targets(&m->lora) * N * LR);
    a->lora_out = carve_acts(m, base, &off, LR ? N * widest : 0);
    a->xq = carve_acts(m, base, &off, c->ternary && !m->packed ? N * widest : 0);
    a->xq8 = carve(base, &off, m->packed ? N * (size_t)ternary_padded((int)widest) : 0);
    a->xq8_scale = carve_floats(base, &off, m->packed ? N : 0);
    ActivationGrads *d = &m->grad_acts;
    size_t G = m->inference ? 0 : 1;  // no backward scratch for inference
    d->resid = carve_acts(m, base, &off, G * N * C);
    d->ln = carve_acts(m, base, &off, G * N * C);
    d->q = carve_acts(m, base, &off, G * N * C);
    d->k = carve_acts(m, base, &off, G * N * KV);
    d->v = carve_acts(m, base, &off, G * N * KV);
    d->att_out = carve_acts(m, base, &off, G * N * C);
    d->gate = carve_acts(m, base, &off, G * N * F);
    d->up = carve_acts(m, base, &off, G * N * F);
    d->swiglu = carve_acts(m, base, &off, G * N * F);
    d->lora_mid = carve_acts(m, base, &off, G * N * LR);
    size_t rope_n = (size_t)c->seq_len * (C / H / 2);
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
    Model shape = {.cfg = *c, .be = be, .max_batch = max_batch,
                   .recompute = mode == MODEL_RECOMPUTE,
                   .inference = mode == MODEL_INFERENCE || mode == MODEL_PACKED,
                   .packed = mode == MODEL_PACKED};
    if (lc && lc->rank > 0) shape.lora = *lc;
    size_t n = param_count(c), n_lora = lora_param_count(c, &shape.lora);
    size_t train = shape.inference ? 0 : 1, full = train && !n_lora;  // a LoRA base is frozen
    // adapters: weights, and for training their gradients and AdamW m and v
    // a ternary model keeps a second copy of its weights: the ternarised ones the layers read
    MemoryPlan plan = {(1 + (size_t)c->ternary) * n * be->weight_bytes, full * n * sizeof(float),
                       full * 2 * n * sizeof(float), layout_activations(&shape, NULL),
                       (1 + 3 * train) * n_lora * sizeof(float)};
    if (shape.packed)  // the unpacked tensors and the scales as floats, then the packed bytes
        plan.params = (param_count_packed(c) + (size_t)packed_scale_count(c)) * sizeof(float) +
                      packed_bytes(c);
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

// cos/sin of t * theta^(-2i/head_dim), computed once in double on the host.
static int upload_rope_tables(Model *m) {
    const ModelConfig *c = &m->cfg;
    int half = c->d_model / c->n_head / 2;
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
    if (!m->inference) {
        m->lora_grads = lb->alloc(bytes);
        m->lora_adam_m = lb->alloc(2 * bytes);
        m->lora_adam_v = m->lora_adam_m ? m->lora_adam_m + m->n_lora : NULL;
    }
    if (!m->lora_params || (!m->inference && (!m->lora_grads || !m->lora_adam_m)))
        return error_set(err, "out of memory for %zu LoRA adapter values", m->n_lora);
    return 0;
}

int model_create_lora(Model *m, const ModelConfig *c, const LoraConfig *lc, const Backend *be,
                      int max_batch, ModelMode mode, Error *err) {
    memset(m, 0, sizeof *m);
    int adapters = lc && lc->rank != 0;  // a negative rank is refused below
    if (model_config_validate(c, err)) return -1;
    if (max_batch < 1) return error_set(err, "batch size must be >= 1 (got %d)", max_batch);
    if (c->ternary && (adapters || be->weight_bytes != sizeof(float)))
        return error_set(err, "a ternary model keeps fp32 weights and takes no LoRA adapters");
    if (mode == MODEL_PACKED && (!c->ternary || adapters || !be->matmul_ternary))
        return error_set(err, "packed ternary weights run on the CPU backend (--device cpu), "
                              "without adapters, for a model trained with --weights ternary");
    if (be->weight_bytes != sizeof(float) && mode != MODEL_INFERENCE && !adapters)
        return error_set(err, "bf16 weights are frozen: training them keeps fp32 weights "
                              "(LoRA adapters train on top of a bf16 base)");
    m->cfg = *c;
    m->be = be;
    m->window = -1;
    m->max_batch = max_batch;
    m->recompute = mode == MODEL_RECOMPUTE;
    m->inference = mode == MODEL_INFERENCE || mode == MODEL_PACKED;
    m->packed = mode == MODEL_PACKED;
    m->n_params = m->packed ? param_count_packed(c) : param_count(c);
    if (adapters && alloc_lora(m, lc, err)) {
        model_free(m);
        return -1;
    }
    MemoryPlan plan = model_memory_plan_lora(c, lc, be, max_batch, mode);
    int full = !m->inference && !adapters;  // a frozen base has no gradients or optimizer state
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
    int training_state = !full || (m->grads && m->adam_m);
    if (!m->params || !training_state || !m->acts_memory || !m->host_losses ||
        (c->logit_shift && (!m->row_targets || !m->row_weights)) || upload_rope_tables(m)) {
        model_free(m);
        char total[32];
        format_bytes(total, sizeof total, plan_total(&plan));
        return error_set(err, "out of memory for a %zu-parameter model with batch %d (%s)",
                         m->n_params, max_batch, total);
    }
    if (m->packed) {  // the unpacked tensors, the scales, then the packed projections
        param_tensors_point_packed(&m->p, m->params, c);
        m->packed_scales = m->params + m->n_params;
        m->packed_codes = (uint8_t *)(m->packed_scales + packed_scale_count(c));
        return 0;
    }
    param_tensors_point(&m->p, m->params, be->weight_bytes, c);
    if (c->ternary) {  // the second half of the params allocation
        m->qparams = m->params + m->n_params;
        param_tensors_point(&m->q, m->qparams, sizeof(float), c);
    }
    if (m->grads) param_tensors_point(&m->g, m->grads, sizeof(float), c);
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
                       m->lora_be};
        return t;
    }
    Trainable t = {m->params, m->grads, m->adam_m, m->adam_v, m->n_params, m->be};
    return t;
}

// A ternary model's projections as its layers read them: each matrix of every layer ternarised
// with its own scale into the copy (the rest of the copy is never read).
static void ternarize_weights(Model *m) {
    const ModelConfig *c = &m->cfg;
    for (int l = 0; l < c->n_layer; l++) {
        LayerWeights w = layer_weights(&m->p, c, l, sizeof(float));
        LayerWeights q = layer_weights(&m->q, c, l, sizeof(float));
        for (int t = 0; t < N_PROJECTIONS; t++) {
            int in, out;
            projection_shape(c, t, &in, &out);
            m->be->ternarize(layer_projection(&q, t), layer_projection(&w, t), (size_t)in * out);
        }
    }
}

// An inference model on a table with panels (the CPU's, fp32 weights) reads its float
// projections and LM head from them; ternary models keep their own paths.
static int uses_panels(const Model *m) {
    return m->inference && !m->packed && !m->cfg.ternary && m->be->matmul_forward_panels &&
           m->be->weight_bytes == sizeof(float);
}

// Every projection, and the LM head unless it is the embedding table, into panels (to_panels
// 1) or back into rows, in place.
static void convert_weights(Model *m, int to_panels) {
    const ModelConfig *c = &m->cfg;
    for (int l = 0; l < c->n_layer; l++) {
        LayerWeights w = layer_weights(&m->p, c, l, sizeof(float));
        for (int t = 0; t < N_PROJECTIONS; t++) {
            int in, out;
            projection_shape(c, t, &in, &out);
            m->be->panels_convert(layer_projection(&w, t), out, in, to_panels);
        }
    }
    if (!c->tied_embeddings)
        m->be->panels_convert(m->p.lm_head, c->vocab_size, c->d_model, to_panels);
    m->panels = to_panels;
}

int model_set_weights(Model *m, const float *host, Error *err) {
    return model_set_weight_range(m, 0, host, m->n_params, err);
}

int model_set_weight_range(Model *m, size_t first, const float *host, size_t n, Error *err) {
    if (m->be->weight_bytes == sizeof(float)) {
        if (m->panels) convert_weights(m, 0);  // rows again; the next pass converts them back
        m->be->to_device(m->params + first, host, n * sizeof(float));
        // an inference model's weights change only here: ternarised once, not every pass
        if (m->cfg.ternary && m->inference && !m->packed) ternarize_weights(m);
        return 0;
    }
    // rounded to bf16 a chunk at a time, so the host never holds a second full copy
    enum { CHUNK = 1 << 20 };
    uint16_t *chunk = malloc(CHUNK * sizeof(uint16_t)), *dst = (uint16_t *)(void *)m->params;
    if (!chunk) return error_set(err, "out of host memory converting weights to bf16");
    for (size_t at = 0; at < n; at += CHUNK) {
        size_t k = n - at < CHUNK ? n - at : CHUNK;
        for (size_t i = 0; i < k; i++) chunk[i] = float_to_bf16(host[at + i]);
        m->be->to_device(dst + first + at, chunk, k * sizeof(uint16_t));
    }
    free(chunk);
    return 0;
}

void model_set_packed(Model *m, const float *dense, const float *scales, const uint8_t *codes) {
    const ModelConfig *c = &m->cfg;
    m->be->to_device(m->params, dense, m->n_params * sizeof(float));
    m->be->to_device(m->packed_scales, scales, (size_t)packed_scale_count(c) * sizeof(float));
    m->be->to_device(m->packed_codes, codes, packed_bytes(c));
}

void model_zero_grad(Model *m) {
    assert(!m->inference);
    Trainable t = model_trainable(m);
    t.be->zero(t.grads, t.n * sizeof(float));
}

// One layer's slices of the activations for the current batch shape (with recomputation,
// every layer shares slice 0; the residual stream always has its own).
typedef struct {
    Act *resid_in, *ln1, *q, *k, *v, *att_out, *resid_mid, *ln2, *gate, *up, *swiglu, *resid_out;
    float *ln1_rstd, *lse, *ln2_rstd;
} LayerActs;

Act *act_at(const Model *m, const Act *a, size_t index) {
    return (char *)a + index * m->be->act_bytes;
}

static LayerActs layer_acts(const Model *m, int l) {
    const Activations *a = &m->acts;
    size_t N = (size_t)m->B * m->T, C = m->cfg.d_model, F = m->cfg.d_ff, H = m->cfg.n_head;
    size_t KV = model_kv_dim(&m->cfg), s = m->recompute || m->inference ? 0 : (size_t)l;
    size_t kv = m->inference ? (size_t)l : s;   // inference keeps every layer's cache
    size_t r = m->inference ? (size_t)l % 2 : (size_t)l;  // and alternates two residuals
    LayerActs la = {
        .resid_in = act_at(m, a->resid, r * N * C),
        .ln1 = act_at(m, a->ln1, s * N * C),
        .q = act_at(m, a->q, s * N * C),
        .k = act_at(m, a->k, kv * N * KV),
        .v = act_at(m, a->v, kv * N * KV),
        .att_out = act_at(m, a->att_out, s * N * C),
        .resid_mid = act_at(m, a->resid_mid, s * N * C),
        .ln2 = act_at(m, a->ln2, s * N * C),
        .gate = act_at(m, a->gate, s * N * F),
        .up = act_at(m, a->up, s * N * F),
        .swiglu = act_at(m, a->swiglu, s * N * F),
        .resid_out = act_at(m, a->resid, (m->inference ? (r + 1) % 2 : r + 1) * N * C),
        .ln1_rstd = a->ln1_rstd + s * N,
        .lse = a->lse + s * N * H,
        .ln2_rstd = a->ln2_rstd + s * N,
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
static int pass_mask(const Model *m) {
    if (m->pairs) return attn_bd3(m->cfg.block_size);
    return m->window >= 0 ? attn_window(m->window) : model_attention_mask(&m->cfg);
}

// RoPE on rows [start, start + Tq) of the pass's B sequences of T rows: a pairs pass holds both
// copies at positions 0..T/2-1, which to RoPE is 2B sequences of T/2 rows (the layouts agree).
static void rope(const Model *m, Act *x, int Tq, int start, int heads, int backward) {
    int B = m->pairs ? 2 * m->B : m->B, T = m->pairs ? Tq / 2 : Tq;
    int hd = m->cfg.d_model / m->cfg.n_head;
    if (backward) m->be->rope_backward(x, m->rope_cos, m->rope_sin, B, T, start, heads, hd);
    else m->be->rope_forward(x, m->rope_cos, m->rope_sin, B, T, start, heads, hd);
}

// Copies rows [start, end) of each sequence's keys or values (fresh, [B, end - start, C]) into
// their places in a layer's cache ([B, T, C]; C = kv_dim).
static void store_rows(const Model *m, Act *cache, const Act *fresh, int B, int T, int start,
                       int end, int C) {
    size_t Tq = end - start, row = Tq * C * m->be->act_bytes;
    m->be->copy_rows(act_at(m, cache, (size_t)start * C), (size_t)T * C * m->be->act_bytes, fresh,
                     row, row, B);
}

// Layer l's adapter on projection t: its A [rank, in] and B [out, rank], their gradients
// (NULL for inference), and the slice that keeps x A^T for the backward; a NULL when the
// projection has none.
typedef struct {
    const float *a, *b;
    float *da, *db;
    Act *mid;
} Adapter;

static Adapter layer_adapter(const Model *m, int l, int t) {
    Adapter ad = {0};
    const LoraConfig *lc = &m->lora;
    if (lc->rank == 0 || !(lc->targets & (1u << t))) return ad;
    int in, out;
    projection_shape(&m->cfg, t, &in, &out);
    size_t at = lora_offset(&m->cfg, lc, l, t), b_at = at + (size_t)lc->rank * in;
    ad.a = m->lora_params + at;
    ad.b = m->lora_params + b_at;
    if (m->lora_grads) {
        ad.da = m->lora_grads + at;
        ad.db = m->lora_grads + b_at;
    }
    int slot = 0;  // t's place among the adapted targets
    for (int u = 0; u < t; u++) slot += (lc->targets >> u) & 1u;
    size_t s = m->recompute || m->inference ? 0 : (size_t)l, N = (size_t)m->B * m->T;
    ad.mid = act_at(m, m->acts.lora_mid,
                    (s * lora_n_targets(lc) + slot) * N * (size_t)lc->rank);
    return ad;
}

// Layer l's weights as it reads them: a ternary model's seven projections from the ternarised
// copy, everything else (norms, biases) as stored.
static LayerWeights read_weights(const Model *m, int l) {
    LayerWeights w = layer_weights(&m->p, &m->cfg, l, m->be->weight_bytes);
    if (!m->cfg.ternary || m->packed) return w;  // packed: projections NULL, read by project()
    LayerWeights q = layer_weights(&m->q, &m->cfg, l, sizeof(float));
    w.wq = q.wq, w.wk = q.wk, w.wv = q.wv, w.wo = q.wo;
    w.w_gate = q.w_gate, w.w_up = q.w_up, w.w_down = q.w_down;
    return w;
}

// A projection's input as its matmul reads it: quantised to 8 bits per row in a ternary model
// (into acts.xq, so it serves until the next call), else itself. Projections that share an
// input (q, k, v; gate, up) share one quantisation. A packed model's are int8 rows (acts.xq8,
// their multipliers in acts.xq8_scale), which is what the returned pointer then points at.
static const Act *projection_input(const Model *m, const Act *inp, int N, int C_in) {
    if (m->packed) {
        m->be->quantize_rows_int8(m->acts.xq8, m->acts.xq8_scale, inp, N, C_in);
        return m->acts.xq8;
    }
    if (!m->cfg.ternary) return inp;
    m->be->quantize_rows(m->acts.xq, inp, N, C_in);
    return m->acts.xq;
}

// out = inp @ W^T (+ bias, when the model has one) (+ (alpha / rank) (inp @ A^T) @ B^T, when
// projection t of layer l has a LoRA adapter); inp as projection_input gives it (a ternary
// model's W is ternary, its inp quantised to 8 bits; such a model has no adapters)
static void project(const Model *m, int l, int t, Act *out, const Act *inp, const float *weight,
                    const float *bias, int N, int C_in, int C_out) {
    if (m->packed)  // integer sums over the packed projection (no adapters here)
        m->be->matmul_ternary(out, inp, m->acts.xq8_scale,
                              m->packed_codes + packed_offset(&m->cfg, l, t),
                              m->packed_scales[packed_scale_index(l, t)], N, C_in, C_out);
    else if (m->panels)
        m->be->matmul_forward_panels(out, inp, weight, N, C_in, C_out);
    else
        m->be->matmul_forward(out, inp, weight, N, C_in, C_out);
    if (bias) m->be->bias_forward(out, bias, N, C_out);
    Adapter ad = layer_adapter(m, l, t);
    if (!ad.a) return;
    const Backend *lb = m->lora_be;
    int r = m->lora.rank;
    lb->matmul_forward(ad.mid, inp, ad.a, N, C_in, r);
    lb->matmul_forward(m->acts.lora_out, ad.mid, ad.b, N, r, C_out);
    lb->add_scaled(out, m->acts.lora_out, lora_scale(&m->lora), (size_t)N * C_out);
}

// project's backward: the input gradient added into dinp, the weight's into dweight (NULL: a
// frozen base), the adapter's (when there is one) into its gradients; inp as project had it.
// A ternary model's quantisers pass the gradient straight through (BitNet's straight-through
// estimator): dinp from the ternary W, dweight (for the fp32 W) from the quantised input.
static void project_backward(const Model *m, int l, int t, Act *dinp, float *dweight,
                             const Act *dout, const Act *inp, const float *weight, int N, int C_in,
                             int C_out) {
    m->be->matmul_backward(dinp, dweight, dout, inp, weight, N, C_in, C_out);
    Adapter ad = layer_adapter(m, l, t);
    if (!ad.a) return;
    const Backend *lb = m->lora_be;
    int r = m->lora.rank;
    Act *dbranch = m->acts.lora_out, *dmid = m->grad_acts.lora_mid;
    size_t n_out = (size_t)N * C_out, ab = lb->act_bytes;
    lb->zero(dbranch, n_out * ab);
    lb->add_scaled(dbranch, dout, lora_scale(&m->lora), n_out);
    lb->zero(dmid, (size_t)N * r * ab);
    lb->matmul_backward(dmid, ad.db, dbranch, ad.mid, ad.b, N, r, C_out);
    lb->matmul_backward(dinp, ad.da, dmid, inp, ad.a, N, C_in, r);
}

// Layer l on rows [start, end) of the m->B sequences of m->T positions: from its residual
// input to its residual output, keeping what the backward needs.
static void layer_forward(Model *m, int l, const int *key_start, int start, int end) {
    const ModelConfig *c = &m->cfg;
    const Backend *be = m->be;
    int B = m->B, T = m->T, Tq = end - start, N = B * Tq, C = c->d_model, F = c->d_ff;
    int H = c->n_head, Hkv = model_kv_heads(c), hd = C / H, KV = Hkv * hd;
    int whole = Tq == T;  // every row recomputed: keys and values go straight to their place
    Act *proj = m->acts.proj;
    LayerActs a = layer_acts(m, l);
    LayerWeights w = read_weights(m, l);
    // attention block; keys and values of the computed rows land in the layer's cache
    be->rmsnorm_forward(a.ln1, a.ln1_rstd, a.resid_in, w.attn_norm, N, C, c->norm_eps);
    const Act *x = projection_input(m, a.ln1, N, C);  // q, k and v read the same input
    project(m, l, LORA_Q, a.q, x, w.wq, w.bq, N, C, C);
    rope(m, a.q, Tq, start, H, 0);
    Act *k = whole ? a.k : proj;
    project(m, l, LORA_K, k, x, w.wk, w.bk, N, C, KV);
    rope(m, k, Tq, start, Hkv, 0);
    if (!whole) store_rows(m, a.k, proj, B, T, start, end, KV);
    Act *v = whole ? a.v : proj;
    project(m, l, LORA_V, v, x, w.wv, w.bv, N, C, KV);
    if (!whole) store_rows(m, a.v, proj, B, T, start, end, KV);
    be->attention_forward(a.att_out, a.lse, a.q, a.k, a.v, key_start, B, Tq, T, start, H, Hkv,
                          hd, pass_mask(m));
    project(m, l, LORA_O, proj, projection_input(m, a.att_out, N, C), w.wo, NULL, N, C, C);
    be->add(a.resid_mid, a.resid_in, proj, (size_t)N * C);
    // SwiGLU MLP block
    be->rmsnorm_forward(a.ln2, a.ln2_rstd, a.resid_mid, w.mlp_norm, N, C, c->norm_eps);
    x = projection_input(m, a.ln2, N, C);  // gate and up read the same input
    project(m, l, LORA_GATE, a.gate, x, w.w_gate, NULL, N, C, F);
    project(m, l, LORA_UP, a.up, x, w.w_up, NULL, N, C, F);
    be->swiglu_forward(a.swiglu, a.gate, a.up, (size_t)N * F);
    project(m, l, LORA_DOWN, proj, projection_input(m, a.swiglu, N, F), w.w_down, NULL, N, F, C);
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
    assert(!m->recompute || (start == 0 && end == T));  // no per-layer cache to reuse
    threads_adapt();
    m->B = B;  // per-layer slices hold B * T rows: the whole cache, or a training batch
    m->T = T;
    int Tq = end - start, N = B * Tq, C = c->d_model;
    be->to_device_rows(m->tokens, (size_t)Tq * sizeof(int), tokens + start, (size_t)T * sizeof(int),
                       (size_t)Tq * sizeof(int), B);
    if (key_start) be->to_device(m->key_start, key_start, (size_t)B * sizeof(int));
    if (c->ternary && !m->inference) ternarize_weights(m);  // trained weights move each step
    if (uses_panels(m) && !m->panels) convert_weights(m, 1);  // once, after the weights are set
    be->embedding_forward(m->acts.resid, m->tokens, m->p.tok_emb, N, C);
    for (int l = 0; l < c->n_layer; l++)
        layer_forward(m, l, key_start ? m->key_start : NULL, start, end);
    size_t last = m->inference ? (size_t)c->n_layer % 2 : (size_t)c->n_layer;
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
    if (m->panels && !c->tied_embeddings)
        be->matmul_forward_panels(m->acts.logits, m->acts.lnf, m->p.lm_head, B * Th, C,
                                  c->vocab_size);
    else
        be->matmul_forward(m->acts.logits, m->acts.lnf, m->p.lm_head, B * Th, C, c->vocab_size);
}

// Uploads each logit row's target and weight; returns the weights as uploaded. With
// logit_shift, row t of a sequence holds position t + 1's (the last row scores nothing).
static const float *upload_targets(Model *m, const int *targets, const float *weights) {
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
static double weighted_loss(Model *m, const float *weights, double *row_loss) {
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

// Backward through layer l: d->resid holds the gradient of its output and becomes the
// gradient of its input; its weight gradients are added into m->grads (a frozen base has
// none: the dw pointers are NULL) and its adapters' into m->lora_grads.
static void layer_backward(Model *m, int l) {
    const ModelConfig *c = &m->cfg;
    const Backend *be = m->be;
    const ActivationGrads *d = &m->grad_acts;
    int B = m->B, T = m->T, N = B * T, C = c->d_model, F = c->d_ff, H = c->n_head, hd = C / H;
    int Hkv = model_kv_heads(c), KV = Hkv * hd;
    size_t NC = (size_t)N * C, NF = (size_t)N * F, NKV = (size_t)N * KV;
    LayerActs a = layer_acts(m, l);
    LayerWeights w = read_weights(m, l);
    LayerWeights dw = {0};
    if (m->grads) dw = layer_weights(&m->g, c, l, sizeof(float));
    // MLP block: the residual passes d->resid through unchanged, the branch adds to it
    be->zero(d->swiglu, NF * be->act_bytes);
    project_backward(m, l, LORA_DOWN, d->swiglu, dw.w_down, d->resid,
                     projection_input(m, a.swiglu, N, F), w.w_down, N, F, C);
    be->zero(d->gate, NF * be->act_bytes);
    be->zero(d->up, NF * be->act_bytes);
    be->swiglu_backward(d->gate, d->up, d->swiglu, a.gate, a.up, NF);
    be->zero(d->ln, NC * be->act_bytes);
    const Act *x = projection_input(m, a.ln2, N, C);
    project_backward(m, l, LORA_GATE, d->ln, dw.w_gate, d->gate, x, w.w_gate, N, C, F);
    project_backward(m, l, LORA_UP, d->ln, dw.w_up, d->up, x, w.w_up, N, C, F);
    be->rmsnorm_backward(d->resid, dw.mlp_norm, d->ln, a.resid_mid, w.mlp_norm, a.ln2_rstd, N, C);
    // attention block
    be->zero(d->att_out, NC * be->act_bytes);
    project_backward(m, l, LORA_O, d->att_out, dw.wo, d->resid,
                     projection_input(m, a.att_out, N, C), w.wo, N, C, C);
    be->zero(d->q, NC * be->act_bytes);
    be->zero(d->k, NKV * be->act_bytes);
    be->zero(d->v, NKV * be->act_bytes);
    be->attention_backward(d->q, d->k, d->v, d->att_out, a.att_out, a.lse, a.q, a.k, a.v, B, T, H,
                           Hkv, hd, pass_mask(m));
    rope(m, d->q, T, 0, H, 1);
    rope(m, d->k, T, 0, Hkv, 1);
    if (c->qkv_bias && m->grads) {  // the biases were added before RoPE
        be->bias_backward(dw.bq, d->q, N, C);
        be->bias_backward(dw.bk, d->k, N, KV);
        be->bias_backward(dw.bv, d->v, N, KV);
    }
    be->zero(d->ln, NC * be->act_bytes);
    x = projection_input(m, a.ln1, N, C);
    project_backward(m, l, LORA_Q, d->ln, dw.wq, d->q, x, w.wq, N, C, C);
    project_backward(m, l, LORA_K, d->ln, dw.wk, d->k, x, w.wk, N, C, KV);
    project_backward(m, l, LORA_V, d->ln, dw.wv, d->v, x, w.wv, N, C, KV);
    be->rmsnorm_backward(d->resid, dw.attn_norm, d->ln, a.resid_in, w.attn_norm, a.ln1_rstd, N, C);
}

float model_loss_backward(Model *m, const int *targets, const float *weights) {
    const ModelConfig *c = &m->cfg;
    const Backend *be = m->be;
    const Activations *acts = &m->acts;
    const ActivationGrads *d = &m->grad_acts;
    assert(!m->inference);  // no gradients or backward scratch
    int N = m->B * m->T, C = c->d_model, V = c->vocab_size;
    size_t NC = (size_t)N * C;

    // loss and dlogits in one pass, in place: acts->logits now holds the logits' gradient
    weights = upload_targets(m, targets, weights);
    be->cross_entropy_fused(acts->losses, acts->logits, acts->logits, m->targets, m->weights, N, V);
    Act *dlogits = acts->logits;
    // logits -> final norm: d->resid becomes the gradient of the last residual
    be->zero(d->ln, NC * be->act_bytes);
    be->matmul_backward(d->ln, m->g.lm_head, dlogits, acts->lnf, m->p.lm_head, N, C, V);
    be->zero(d->resid, NC * be->act_bytes);
    be->rmsnorm_backward(d->resid, m->g.final_norm, d->ln, act_at(m, acts->resid, c->n_layer * NC),
                         m->p.final_norm, acts->lnf_rstd, N, C);
    for (int l = c->n_layer - 1; l >= 0; l--) {
        if (m->recompute) layer_forward(m, l, NULL, 0, m->T);  // refills the shared slice
        layer_backward(m, l);
    }
    if (m->grads) be->embedding_backward(m->g.tok_emb, d->resid, m->tokens, N, C, c->vocab_size);
    return (float)weighted_loss(m, weights, NULL);
}

#include "model/linear.h"

#include <stdlib.h>

#include "common/bf16.h"
#include "kernels/ggml_blocks.h"
#include "kernels/qblocks.h"
#include "kernels/ternary.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/packed.h"

WeightKind linear_kind(const ModelConfig *c, const Backend *be, ModelMode mode) {
    if (mode == MODEL_PACKED) return WEIGHTS_PACKED;
    if (mode == MODEL_Q8) return WEIGHTS_Q8;
    if (mode == MODEL_Q4) return WEIGHTS_Q4;
    if (c->ternary) return WEIGHTS_TERNARY;
    if (mode == MODEL_INFERENCE && be->matmul_forward_panels) return WEIGHTS_PANELS;
    return WEIGHTS_DENSE;
}

int linear_check(const ModelConfig *c, const Backend *be, ModelMode mode, int adapters,
                 Error *err) {
    if (c->ternary && (adapters || be->weight_bytes != sizeof(float)))
        return error_set(err, "a ternary model keeps fp32 weights and takes no LoRA adapters");
    if (mode == MODEL_PACKED && (!c->ternary || adapters || !be->matmul_ternary))
        return error_set(err, "packed ternary weights run on the CPU backend (--device cpu), "
                              "without adapters, for a model trained with --weights ternary");
    int bits = linear_block_bits(linear_kind(c, be, mode));
    if (bits && (c->ternary || c->n_experts || adapters || !be->matmul_qb))
        return error_set(err, "%d-bit weights run on the CPU backend (--device cpu), for a dense "
                              "model without adapters (not ternary, no experts)", bits);
    if (bits && (c->d_model % QB_BLOCK || model_q_dim(c) % QB_BLOCK || c->d_ff % QB_BLOCK))
        return error_set(err, "%d-bit weights come in blocks of %d inputs: d_model %d, q width "
                              "%d and d_ff %d must be multiples of it",
                         bits, QB_BLOCK, c->d_model, model_q_dim(c), c->d_ff);
    if (be->weight_bytes != sizeof(float) && mode != MODEL_INFERENCE && !adapters)
        return error_set(err, "bf16 weights are frozen: training them keeps fp32 weights "
                              "(LoRA adapters train on top of a bf16 base)");
    return 0;
}

int linear_block_bits(WeightKind k) { return k == WEIGHTS_Q8 ? 8 : k == WEIGHTS_Q4 ? 4 : 0; }

int linear_qb_tensor(int i) {
    return i == PARAM_TOK_EMB || i == PARAM_LM_HEAD || param_is_projection(i);
}

// Bytes of the block-quantised matrices (of `bits` weights) before tensor i's layer l (all of
// them: i N_PARAM_TENSORS), in the order of the flat layout; and where they start in the params
// allocation (after the floats, at a 64-byte boundary).
static size_t qb_offset(const ModelConfig *c, int bits, int i, int l) {
    ParamSpec specs[N_PARAM_TENSORS];
    param_specs(c, specs);
    size_t at = 0;
    for (int j = 0; j <= i && j < N_PARAM_TENSORS; j++)
        if (linear_qb_tensor(j) && specs[j].size)
            at += (j < i ? (size_t)specs[j].layers : (size_t)l) *
                  qb_matrix_bytes(bits, (int)specs[j].rows, (int)specs[j].cols);
    return at;
}

static const uint8_t *qb_matrix(const Model *m, int i, int l) {
    return m->lin.qb + qb_offset(&m->cfg, linear_block_bits(m->kind), i, l);
}

static size_t qb_start(const ModelConfig *c) {
    return (param_count_without(c, linear_qb_tensor) * sizeof(float) + 63) / 64 * 64;
}

size_t linear_param_count(const ModelConfig *c, WeightKind k) {
    if (k == WEIGHTS_PACKED) return param_count_packed(c);
    return linear_block_bits(k) ? param_count_without(c, linear_qb_tensor) : param_count(c);
}

size_t linear_param_bytes(const ModelConfig *c, const Backend *be, WeightKind k) {
    size_t n = param_count(c);
    switch (k) {
    case WEIGHTS_PACKED:  // the unpacked tensors and the scales as floats, then the packed bytes
        return (param_count_packed(c) + (size_t)packed_scale_count(c)) * sizeof(float) +
               packed_bytes(c);
    case WEIGHTS_TERNARY:  // a second copy: the ternarised weights the layers read
        return 2 * n * be->weight_bytes;
    case WEIGHTS_Q8:
    case WEIGHTS_Q4:  // the other tensors as floats, then the block-quantised matrices
        return qb_start(c) + qb_offset(c, linear_block_bits(k), N_PARAM_TENSORS, 0);
    default:
        return n * be->weight_bytes;
    }
}

void linear_scratch(WeightKind k, size_t rows, size_t widest, size_t *acts, size_t *bytes,
                    size_t *floats) {
    *acts = k == WEIGHTS_TERNARY ? rows * widest : 0;
    *bytes = k == WEIGHTS_PACKED ? rows * (size_t)ternary_padded((int)widest)
              : linear_block_bits(k) ? rows * qb_row_bytes((int)widest)
                                     : 0;
    *floats = k == WEIGHTS_PACKED      ? rows
              : linear_block_bits(k) ? rows * (widest / QB_BLOCK)
                                     : 0;
}

void linear_point(Model *m) {
    const ModelConfig *c = &m->cfg;
    LinearStore *s = &m->lin;
    if (m->kind == WEIGHTS_PACKED) {  // the unpacked tensors, the scales, the packed projections
        param_tensors_point_packed(&m->p, m->params, c);
        s->packed_scales = m->params + m->n_params;
        s->packed_codes = (uint8_t *)(s->packed_scales + packed_scale_count(c));
        return;
    }
    if (linear_block_bits(m->kind)) {  // the floats, then the block-quantised matrices
        param_tensors_point_without(&m->p, m->params, c, linear_qb_tensor);
        s->qb = (uint8_t *)m->params + qb_start(c);
        return;
    }
    param_tensors_point(&m->p, m->params, m->be->weight_bytes, c);
    if (m->kind == WEIGHTS_TERNARY) {  // the second half of the params allocation
        s->qparams = m->params + m->n_params;
        param_tensors_point(&s->q, s->qparams, sizeof(float), c);
    }
}

// A ternary model's projections as its layers read them: each matrix of every layer ternarised
// with its own scale into the copy (the rest of the copy is never read).
static void ternarize_weights(Model *m) {
    const ModelConfig *c = &m->cfg;
    for (int l = 0; l < c->n_layer; l++) {
        LayerWeights w = layer_weights(&m->p, c, l, sizeof(float));
        LayerWeights q = layer_weights(&m->lin.q, c, l, sizeof(float));
        for (int t = 0; t < N_PROJECTIONS; t++) {
            int in, out;
            projection_shape(c, t, &in, &out);
            m->be->ternarize(layer_projection(&q, t), layer_projection(&w, t), (size_t)in * out);
        }
    }
}

// Every projection, and the LM head unless it is the embedding table, into panels (to_panels
// 1) or back into rows, in place.
static void convert_weights(Model *m, int to_panels) {
    const ModelConfig *c = &m->cfg;
    for (int l = 0; l < c->n_layer; l++) {
        LayerWeights w = layer_weights(&m->p, c, l, m->be->weight_bytes);
        for (int t = 0; t < N_PROJECTIONS; t++) {
            int in, out;
            projection_shape(c, t, &in, &out);
            if (layer_projection(&w, t))  // an MoE layer's experts stay in rows
                m->be->panels_convert(layer_projection(&w, t), out, in, to_panels);
        }
    }
    if (!c->tied_embeddings)
        m->be->panels_convert(m->p.lm_head, c->vocab_size, c->d_model, to_panels);
    m->lin.in_panels = to_panels;
}

// Matrix i of layer l: its rows [row0, row0 + rows) as GGUF blocks of the model's width, packed
// straight into the params (block-quantised models live in host memory: CPU ops only; a
// staging copy would add the largest matrix to the peak memory). row0 a multiple of 16.
static void pack_rows(Model *m, int i, int l, int row0, int rows, const uint8_t *blocks) {
    ParamSpec specs[N_PARAM_TENSORS];
    param_specs(&m->cfg, specs);
    int bits = linear_block_bits(m->kind), cols = (int)specs[i].cols;
    uint8_t *dst = m->lin.qb + qb_offset(&m->cfg, bits, i, l) + qb_matrix_bytes(bits, row0, cols);
    qb_pack(bits, dst, blocks, rows, cols);
}

// A row with a NaN or an infinity has no 8- or 4-bit code: refused, naming it.
static int non_finite_row(const char *name, int layer, int row, Error *err) {
    return error_set(err, "quantised weights: %s of layer %d holds a non-finite value (row %d)",
                     name, layer, row);
}

int linear_upload_blocks(Model *m, int i, int l, int in_bits, int row0, int n_rows,
                         const uint8_t *rows, Error *err) {
    ParamSpec specs[N_PARAM_TENSORS];
    param_specs(&m->cfg, specs);
    int bits = linear_block_bits(m->kind), cols = (int)specs[i].cols;
    if (in_bits == bits) {
        pack_rows(m, i, l, row0, n_rows, rows);
        return 0;
    }
    // another width: 16 rows at a time through GGUF blocks of the model's (Q4_0 widened to
    // Q8_0 exactly; Q8_0 decoded and quantised again to Q4_0)
    size_t in_row = (size_t)cols / QB_BLOCK * qb_gguf_block_bytes(in_bits);
    size_t out_row = (size_t)cols / QB_BLOCK * qb_gguf_block_bytes(bits);
    uint8_t *chunk = malloc(QB_PANEL * out_row);
    float *values = malloc((size_t)cols * sizeof(float));
    if (!chunk || !values) {
        free(chunk), free(values);
        return error_set(err, "out of host memory converting %s", specs[i].name);
    }
    int rc = 0;
    for (int r0 = 0; r0 < n_rows && !rc; r0 += QB_PANEL) {
        int n = n_rows - r0 < QB_PANEL ? n_rows - r0 : QB_PANEL;
        for (int r = 0; r < n && !rc; r++) {
            const uint8_t *in = rows + (size_t)(r0 + r) * in_row;
            if (bits == 8) {
                q8_0_from_q4_0(chunk + r * out_row, in, (size_t)cols / QB_BLOCK);
            } else {
                ggml_decode_row(GGML_Q8_0, in, values, (size_t)cols);
                if (q4_0_quantize_row(chunk + r * out_row, values, cols))
                    rc = non_finite_row(specs[i].name, l, row0 + r0 + r, err);
            }
        }
        if (!rc) pack_rows(m, i, l, row0 + r0, n, chunk);
    }
    free(chunk), free(values);
    return rc;
}

// A block-quantised model's share of the flat layout's values [first, first + n): the floats
// copied, each quantised matrix's rows quantised (GGUF's Q8_0 or Q4_0 quantiser) and packed 16
// at a time, so a matrix may come in pieces of whole rows that start at multiples of 16 rows.
static int upload_qb(Model *m, size_t first, const float *host, size_t n, Error *err) {
    ParamSpec specs[N_PARAM_TENSORS];
    param_specs(&m->cfg, specs);
    int bits = linear_block_bits(m->kind);
    size_t at = 0, dense = 0, end = first + n;  // tensor i's place in the flat layout, the floats
    for (int i = 0; i < N_PARAM_TENSORS; at += specs[i].size, i++) {
        size_t lo = first > at ? first : at, hi = end < at + specs[i].size ? end : at + specs[i].size;
        if (!linear_qb_tensor(i)) {
            if (lo < hi)
                m->be->to_device(m->params + dense + (lo - at), host + (lo - first),
                                 (hi - lo) * sizeof(float));
            dense += specs[i].size;
            continue;
        }
        size_t cols = specs[i].cols, matrix = specs[i].rows * cols;
        size_t row_bytes = cols / QB_BLOCK * qb_gguf_block_bytes(bits);
        for (int l = 0; l < specs[i].layers && lo < hi; l++) {
            size_t m0 = at + l * matrix, a = lo > m0 ? lo : m0;
            size_t b = hi < m0 + matrix ? hi : m0 + matrix;
            if (a >= b) continue;
            if ((a - m0) % (QB_PANEL * cols) || ((b - m0) % (QB_PANEL * cols) && b != m0 + matrix))
                return error_set(err, "quantised weights: %s of layer %d given from value %zu to "
                                      "%zu (pieces are whole panels of %d rows)", specs[i].name,
                                 l, a - m0, b - m0, QB_PANEL);
            uint8_t *chunk = malloc(QB_PANEL * row_bytes);
            if (!chunk) return error_set(err, "out of host memory quantising %s", specs[i].name);
            for (size_t r0 = (a - m0) / cols; r0 < (b - m0) / cols; r0 += QB_PANEL) {
                size_t rows = (b - m0) / cols - r0 < QB_PANEL ? (b - m0) / cols - r0 : QB_PANEL;
                for (size_t r = 0; r < rows; r++) {
                    const float *w = host + (m0 + (r0 + r) * cols - first);
                    if (qb_quantize_row(bits, chunk + r * row_bytes, w, cols)) {
                        free(chunk);
                        return non_finite_row(specs[i].name, l, (int)(r0 + r), err);
                    }
                }
                pack_rows(m, i, l, (int)r0, (int)rows, chunk);
            }
            free(chunk);
        }
    }
    return 0;
}

int linear_upload(Model *m, size_t first, const float *host, size_t n, Error *err) {
    if (linear_block_bits(m->kind)) return upload_qb(m, first, host, n, err);
    if (m->lin.in_panels) convert_weights(m, 0);  // rows again; the next pass converts back
    if (m->be->weight_bytes == sizeof(float)) {
        m->be->to_device(m->params + first, host, n * sizeof(float));
        // an inference model's weights change only here: ternarised once, not every pass
        if (m->kind == WEIGHTS_TERNARY && model_is_inference(m)) ternarize_weights(m);
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

void linear_upload_packed(Model *m, const float *dense, const float *scales,
                          const uint8_t *codes) {
    const ModelConfig *c = &m->cfg;
    m->be->to_device(m->params, dense, m->n_params * sizeof(float));
    m->be->to_device(m->lin.packed_scales, scales, (size_t)packed_scale_count(c) * sizeof(float));
    m->be->to_device(m->lin.packed_codes, codes, packed_bytes(c));
}

void linear_prepare_pass(Model *m) {
    if (m->kind == WEIGHTS_TERNARY && !model_is_inference(m))
        ternarize_weights(m);  // trained weights move each step
    if (m->kind == WEIGHTS_PANELS && !m->lin.in_panels)
        convert_weights(m, 1);  // once, after the weights are set
}

LayerWeights linear_layer_weights(const Model *m, int l) {
    LayerWeights w = layer_weights(&m->p, &m->cfg, l, m->be->weight_bytes);
    if (m->kind != WEIGHTS_TERNARY) return w;  // packed: projections NULL, read from the codes
    LayerWeights q = layer_weights(&m->lin.q, &m->cfg, l, sizeof(float));
    w.wq = q.wq, w.wk = q.wk, w.wv = q.wv, w.wo = q.wo;
    w.w_gate = q.w_gate, w.w_up = q.w_up, w.w_down = q.w_down;
    return w;
}

const Act *linear_input(const Model *m, const Act *inp, int N, int C_in) {
    switch (m->kind) {
    case WEIGHTS_PACKED:  // int8 rows and their multipliers
        m->be->quantize_rows_int8(m->acts.xq8, m->acts.xq8_scale, inp, N, C_in);
        return m->acts.xq8;
    case WEIGHTS_TERNARY:  // 8 bits per row, in the activation type
        m->be->quantize_rows(m->acts.xq, inp, N, C_in);
        return m->acts.xq;
    case WEIGHTS_Q8:
    case WEIGHTS_Q4:  // 8-bit codes and a scale per block of 32
        m->be->quantize_rows_q8((uint8_t *)m->acts.xq8, m->acts.xq8_scale, inp, N, C_in);
        return m->acts.xq8;
    default:
        return inp;
    }
}

// Layer l's adapter on unit u of projection t (model/lora.h: the projection, or an MoE
// layer's expert): its A [rank, in] and B [out, rank], their gradients (NULL for inference),
// and where x A^T of its rows is kept for the backward, row0 rows into the target's slice
// (an MoE layer's experts' rows in expert order, then the shared expert's); a NULL when the
// projection has none.
typedef struct {
    const float *a, *b;
    float *da, *db;
    Act *mid;
} Adapter;

static Adapter layer_adapter(const Model *m, int l, int t, int u, size_t row0) {
    Adapter ad = {0};
    const LoraConfig *lc = &m->lora;
    if (lc->rank == 0 || !(lc->targets & (1u << t))) return ad;
    int in, out;
    lora_unit_shape(&m->cfg, l, t, u, &in, &out);
    size_t at = lora_unit_offset(&m->cfg, lc, l, t, u), b_at = at + (size_t)lc->rank * in;
    ad.a = m->lora_params + at;
    ad.b = m->lora_params + b_at;
    if (m->lora_grads) {
        ad.da = m->lora_grads + at;
        ad.db = m->lora_grads + b_at;
    }
    int slot = 0;  // t's place among the adapted targets
    for (int v = 0; v < t; v++) slot += (lc->targets >> v) & 1u;
    size_t s = m->mode == MODEL_TRAINING ? (size_t)l : 0;
    size_t rows = (size_t)m->B * m->T * lora_rows_per_token(&m->cfg);  // a target's slice
    ad.mid = act_at(m, m->acts.lora_mid,
                    ((s * lora_n_targets(lc) + slot) * rows + row0) * (size_t)lc->rank);
    return ad;
}

void linear_adapter_forward(const Model *m, int l, int t, int u, size_t row0, Act *out,
                            const Act *inp, int N, int C_in, int C_out) {
    Adapter ad = layer_adapter(m, l, t, u, row0);
    if (!ad.a) return;
    const Backend *lb = m->lora_be;
    int r = m->lora.rank;
    lb->matmul_forward(ad.mid, inp, ad.a, N, C_in, r);
    lb->matmul_forward(m->acts.lora_out, ad.mid, ad.b, N, r, C_out);
    lb->add_scaled(out, m->acts.lora_out, lora_scale(&m->lora), (size_t)N * C_out);
}

void linear_adapter_backward(const Model *m, int l, int t, int u, size_t row0, Act *dinp,
                             const Act *dout, const Act *inp, int N, int C_in, int C_out) {
    Adapter ad = layer_adapter(m, l, t, u, row0);
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

void linear_forward(const Model *m, int l, int t, Act *out, const Act *inp, const float *weight,
                    const float *bias, int N, int C_in, int C_out) {
    switch (m->kind) {
    case WEIGHTS_PACKED:  // integer sums over the packed projection (no adapters here)
        m->be->matmul_ternary(out, inp, m->acts.xq8_scale,
                              m->lin.packed_codes + packed_offset(&m->cfg, l, t),
                              m->lin.packed_scales[packed_scale_index(l, t)], N, C_in, C_out);
        break;
    case WEIGHTS_PANELS:  // converted by linear_prepare_pass before the pass
        m->be->matmul_forward_panels(out, inp, weight, N, C_in, C_out);
        break;
    case WEIGHTS_Q8:
    case WEIGHTS_Q4:  // integer block sums over the projection's quantised matrix
        m->be->matmul_qb(out, (const uint8_t *)inp, m->acts.xq8_scale,
                         qb_matrix(m, projection_param(t), l), linear_block_bits(m->kind), N,
                         C_in, C_out);
        break;
    default:
        m->be->matmul_forward(out, inp, weight, N, C_in, C_out);
    }
    if (bias) m->be->bias_forward(out, bias, N, C_out);
    linear_adapter_forward(m, l, t, 0, 0, out, inp, N, C_in, C_out);
}

void linear_backward(const Model *m, int l, int t, Act *dinp, float *dweight, const Act *dout,
                     const Act *inp, const float *weight, int N, int C_in, int C_out) {
    m->be->matmul_backward(dinp, dweight, dout, inp, weight, N, C_in, C_out);
    linear_adapter_backward(m, l, t, 0, 0, dinp, dout, inp, N, C_in, C_out);
}

void linear_embedding_forward(const Model *m, Act *out, int N) {
    int bits = linear_block_bits(m->kind);
    if (bits)
        m->be->embedding_qb(out, m->tokens, qb_matrix(m, PARAM_TOK_EMB, 0), bits, N,
                            m->cfg.d_model);
    else
        m->be->embedding_forward(out, m->tokens, m->p.tok_emb, N, m->cfg.d_model);
}

void linear_head_forward(const Model *m, Act *logits, const Act *x, int N) {
    const ModelConfig *c = &m->cfg;
    int bits = linear_block_bits(m->kind);
    if (bits) {  // the embedding's matrix when tied
        int head = c->tied_embeddings ? PARAM_TOK_EMB : PARAM_LM_HEAD;
        const Act *xq = linear_input(m, x, N, c->d_model);
        m->be->matmul_qb(logits, (const uint8_t *)xq, m->acts.xq8_scale, qb_matrix(m, head, 0),
                         bits, N, c->d_model, c->vocab_size);
    } else if (m->lin.in_panels && !c->tied_embeddings)
        m->be->matmul_forward_panels(logits, x, m->p.lm_head, N, c->d_model, c->vocab_size);
    else
        m->be->matmul_forward(logits, x, m->p.lm_head, N, c->d_model, c->vocab_size);
}

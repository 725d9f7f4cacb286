#include "model/moe.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/bf16.h"

// Which slice of the kept activations layer l uses: its MoE index when every layer is kept.
static size_t moe_slice(const Model *m, int l) {
    return m->mode == MODEL_TRAINING ? (size_t)(l - model_dense_layers(&m->cfg)) : 0;
}

// The router's expert bias as fp32 (NULL: none): a bf16-weight model's widened into scratch.
static const float *expert_bias(Model *m, const float *bias) {
    int E = m->cfg.n_experts;
    if (!bias || m->be->weight_bytes == sizeof(float)) return bias;
    uint16_t raw[MODEL_MAX_EXPERTS];
    float wide[MODEL_MAX_EXPERTS];
    m->be->to_host(raw, bias, (size_t)E * sizeof(uint16_t));
    for (int e = 0; e < E; e++) wide[e] = bf16_to_float(raw[e]);
    m->be->to_device(m->acts.moe.bias, wide, (size_t)E * sizeof(float));
    return m->acts.moe.bias;
}

// Slice s of a MoeActs set, slices N rows apart; a gradient set (routing 0) has no routing.
static MoeActs moe_at(const Model *m, const MoeActs *a, size_t s, size_t N, int routing) {
    const ModelConfig *c = &m->cfg;
    size_t E = c->n_experts, k = c->n_active, C = c->d_model, Fe = c->d_expert;
    size_t Fs = c->d_shared;
    MoeActs x = {
        .logits = act_at(m, a->logits, s * N * E),
        .probs = routing ? a->probs + s * N * E : NULL,
        .pick = routing ? a->pick + s * N * k : NULL,
        .weight = a->weight + s * N * k,
        .rows = routing ? a->rows + s * N * k : NULL,
        .slot_at = routing ? a->slot_at + s * N * k : NULL,
        .xs = act_at(m, a->xs, s * N * k * C),
        .ys = act_at(m, a->ys, s * N * k * C),
        .gate = act_at(m, a->gate, s * N * k * Fe),
        .up = act_at(m, a->up, s * N * k * Fe),
        .swiglu = act_at(m, a->swiglu, s * N * k * Fe),
        .s_gate = act_at(m, a->s_gate, s * N * Fs),
        .s_up = act_at(m, a->s_up, s * N * Fs),
        .s_swiglu = act_at(m, a->s_swiglu, s * N * Fs),
    };
    return x;
}

// The rows of the pass that built the layer's activations: max_batch * seq_len rows apart.
static size_t slice_rows(const Model *m) { return (size_t)m->max_batch * m->cfg.seq_len; }

// A weight matrix's row r (the backend's weight type: fp32, or bf16 on a bf16-weight table).
static const float *weight_row(const Model *m, const float *w, size_t r, size_t cols) {
    return w ? (const float *)((const char *)w + r * cols * m->be->weight_bytes) : NULL;
}

static float *grad_row(float *g, size_t r, size_t cols) { return g ? g + r * cols : NULL; }

int moe_alloc_host(Model *m, size_t rows) {
    const ModelConfig *c = &m->cfg;
    size_t slots = rows * c->n_active, E = c->n_experts;
    m->moe_host_pick = malloc(slots * sizeof(int));
    m->moe_host_rows = malloc(slots * sizeof(int));
    m->moe_host_slot_at = malloc(slots * sizeof(int));
    m->moe_offsets = malloc((size_t)model_moe_layers(c) * (E + 1) * sizeof(int));
    m->moe_host_probs = malloc(rows * E * sizeof(float));
    m->moe_count = calloc(2 * E, sizeof(double));
    m->moe_prob_sum = m->moe_count ? m->moe_count + E : NULL;
    return m->moe_host_pick && m->moe_host_rows && m->moe_host_slot_at && m->moe_offsets &&
                   m->moe_host_probs && m->moe_count
               ? 0
               : -1;
}

void moe_free_host(Model *m) {
    free(m->moe_host_pick);
    free(m->moe_host_rows);
    free(m->moe_host_slot_at);
    free(m->moe_offsets);
    free(m->moe_host_probs);
    free(m->moe_count);
}

// The picks of N rows into expert order: a counting sort by expert, stable in slot order, so
// expert e's slots are offsets[e] .. offsets[e + 1] - 1; uploaded as the gather's rows and each
// slot's place.
static void sort_slots(Model *m, const MoeActs *a, int *offsets, int N) {
    const ModelConfig *c = &m->cfg;
    int E = c->n_experts, k = c->n_active, slots = N * k;
    int *pick = m->moe_host_pick, *rows = m->moe_host_rows, *slot_at = m->moe_host_slot_at;
    m->be->to_host(pick, a->pick, (size_t)slots * sizeof(int));
    memset(offsets, 0, (size_t)(E + 1) * sizeof(int));
    for (int s = 0; s < slots; s++) offsets[pick[s] + 1]++;
    for (int e = 0; e < E; e++) offsets[e + 1] += offsets[e];
    int next[MODEL_MAX_EXPERTS];  // each expert's next place
    memcpy(next, offsets, (size_t)E * sizeof(int));
    for (int s = 0; s < slots; s++) {
        int at = next[pick[s]]++;
        rows[at] = s / k;
        slot_at[s] = at;
    }
    m->be->to_device(a->rows, rows, (size_t)slots * sizeof(int));
    m->be->to_device(a->slot_at, slot_at, (size_t)slots * sizeof(int));
    if (m->moe_tally)
        for (int s = 0; s < slots; s++) m->moe_count[pick[s]] += 1.0;
}

// The sum of each expert's probabilities over the N rows (in row order, in double).
static void tally_probs(Model *m, const MoeActs *a, int N) {
    int E = m->cfg.n_experts;
    m->be->to_host(m->moe_host_probs, a->probs, (size_t)N * E * sizeof(float));
    for (int n = 0; n < N; n++)
        for (int e = 0; e < E; e++) m->moe_prob_sum[e] += m->moe_host_probs[(size_t)n * E + e];
}

// out = the shared expert's SwiGLU of x, or zeros without one.
static void shared_forward(Model *m, int l, const LayerWeights *w, const MoeActs *a,
                           const Act *x, Act *out, int N) {
    const Backend *be = m->be;
    const ModelConfig *c = &m->cfg;
    int C = c->d_model, Fs = c->d_shared;
    if (!Fs) {
        be->zero(out, (size_t)N * C * be->act_bytes);
        return;
    }
    size_t row0 = (size_t)N * c->n_active;  // its adapters' rows follow the experts'
    int E = c->n_experts;
    be->matmul_forward(a->s_gate, x, w->s_gate, N, C, Fs);
    linear_adapter_forward(m, l, LORA_GATE, E, row0, a->s_gate, x, N, C, Fs);
    be->matmul_forward(a->s_up, x, w->s_up, N, C, Fs);
    linear_adapter_forward(m, l, LORA_UP, E, row0, a->s_up, x, N, C, Fs);
    be->swiglu_forward(a->s_swiglu, a->s_gate, a->s_up, (size_t)N * Fs);
    be->matmul_forward(out, a->s_swiglu, w->s_down, N, Fs, C);
    linear_adapter_forward(m, l, LORA_DOWN, E, row0, out, a->s_swiglu, N, Fs, C);
}

void moe_forward(Model *m, int l, const Act *x, Act *out, int N) {
    const ModelConfig *c = &m->cfg;
    const Backend *be = m->be;
    int C = c->d_model, E = c->n_experts, k = c->n_active, Fe = c->d_expert;
    size_t s = moe_slice(m, l);
    MoeActs a = moe_at(m, &m->acts.moe, s, slice_rows(m), 1);
    LayerWeights w = linear_layer_weights(m, l);
    int *offsets = m->moe_offsets + (size_t)(l - model_dense_layers(c)) * (E + 1);
    be->matmul_forward(a.logits, x, w.router, N, C, E);
    be->moe_route(a.pick, a.weight, a.probs, a.logits, expert_bias(m, w.expert_bias), N, E, k,
                  c->router, c->n_groups, c->topk_groups, c->routed_scale);
    sort_slots(m, &a, offsets, N);
    if (m->moe_tally) tally_probs(m, &a, N);
    be->gather_rows(a.xs, x, a.rows, N * k, C);
    for (int e = 0; e < E; e++) {  // each expert's SwiGLU on its rows
        size_t at = offsets[e], n = offsets[e + 1] - at;
        if (!n) continue;
        Act *gate = act_at(m, a.gate, at * Fe), *up = act_at(m, a.up, at * Fe);
        Act *sw = act_at(m, a.swiglu, at * Fe);
        const Act *xs = act_at(m, a.xs, at * C);
        Act *ys = act_at(m, a.ys, at * C);
        be->matmul_forward(gate, xs, weight_row(m, w.e_gate, (size_t)e * Fe, C), n, C, Fe);
        linear_adapter_forward(m, l, LORA_GATE, e, at, gate, xs, n, C, Fe);
        be->matmul_forward(up, xs, weight_row(m, w.e_up, (size_t)e * Fe, C), n, C, Fe);
        linear_adapter_forward(m, l, LORA_UP, e, at, up, xs, n, C, Fe);
        be->swiglu_forward(sw, gate, up, n * Fe);
        be->matmul_forward(ys, sw, weight_row(m, w.e_down, (size_t)e * C, Fe), n, Fe, C);
        linear_adapter_forward(m, l, LORA_DOWN, e, at, ys, sw, n, Fe, C);
    }
    shared_forward(m, l, &w, &a, x, out, N);
    be->moe_combine(out, a.ys, a.slot_at, a.weight, N, k, C);
}

void moe_backward(Model *m, int l, Act *dx, const Act *dout, const Act *x, int N) {
    const ModelConfig *c = &m->cfg;
    const Backend *be = m->be;
    int C = c->d_model, E = c->n_experts, k = c->n_active, Fe = c->d_expert, Fs = c->d_shared;
    size_t ab = be->act_bytes, slots = (size_t)N * k;
    MoeActs a = moe_at(m, &m->acts.moe, moe_slice(m, l), slice_rows(m), 1);
    MoeActs d = moe_at(m, &m->grad_acts.moe, 0, slice_rows(m), 0);
    LayerWeights w = linear_layer_weights(m, l);
    LayerWeights dw = {0};
    if (m->grads) dw = layer_weights(&m->g, c, l, sizeof(float));
    const int *offsets = m->moe_offsets + (size_t)(l - model_dense_layers(c)) * (E + 1);
    be->zero(dx, (size_t)N * C * ab);
    if (Fs) {  // the shared expert (its adapters' rows after the experts')
        size_t row0 = slots;
        be->zero(d.s_swiglu, (size_t)N * Fs * ab);
        be->matmul_backward(d.s_swiglu, dw.s_down, dout, a.s_swiglu, w.s_down, N, Fs, C);
        linear_adapter_backward(m, l, LORA_DOWN, E, row0, d.s_swiglu, dout, a.s_swiglu, N, Fs, C);
        be->zero(d.s_gate, (size_t)N * Fs * ab);
        be->zero(d.s_up, (size_t)N * Fs * ab);
        be->swiglu_backward(d.s_gate, d.s_up, d.s_swiglu, a.s_gate, a.s_up, (size_t)N * Fs);
        be->matmul_backward(dx, dw.s_gate, d.s_gate, x, w.s_gate, N, C, Fs);
        linear_adapter_backward(m, l, LORA_GATE, E, row0, dx, d.s_gate, x, N, C, Fs);
        be->matmul_backward(dx, dw.s_up, d.s_up, x, w.s_up, N, C, Fs);
        linear_adapter_backward(m, l, LORA_UP, E, row0, dx, d.s_up, x, N, C, Fs);
    }
    // the combine: each slot's output gradient and its weight's
    be->moe_combine_backward(d.ys, d.weight, dout, a.ys, a.slot_at, a.weight, N, k, C);
    be->zero(d.xs, slots * C * ab);
    be->zero(d.gate, slots * Fe * ab);
    be->zero(d.up, slots * Fe * ab);
    be->zero(d.swiglu, slots * Fe * ab);
    for (int e = 0; e < E; e++) {
        size_t at = offsets[e], n = offsets[e + 1] - at;
        if (!n) continue;
        Act *dsw = act_at(m, d.swiglu, at * Fe), *dgate = act_at(m, d.gate, at * Fe);
        Act *dup = act_at(m, d.up, at * Fe), *dxs = act_at(m, d.xs, at * C);
        const Act *xs = act_at(m, a.xs, at * C);
        const Act *dys = act_at(m, d.ys, at * C), *sw = act_at(m, a.swiglu, at * Fe);
        be->matmul_backward(dsw, grad_row(dw.e_down, (size_t)e * C, Fe), dys, sw,
                            weight_row(m, w.e_down, (size_t)e * C, Fe), n, Fe, C);
        linear_adapter_backward(m, l, LORA_DOWN, e, at, dsw, dys, sw, n, Fe, C);
        be->swiglu_backward(dgate, dup, dsw, act_at(m, a.gate, at * Fe),
                            act_at(m, a.up, at * Fe), n * Fe);
        be->matmul_backward(dxs, grad_row(dw.e_gate, (size_t)e * Fe, C), dgate, xs,
                            weight_row(m, w.e_gate, (size_t)e * Fe, C), n, C, Fe);
        linear_adapter_backward(m, l, LORA_GATE, e, at, dxs, dgate, xs, n, C, Fe);
        be->matmul_backward(dxs, grad_row(dw.e_up, (size_t)e * Fe, C), dup, xs,
                            weight_row(m, w.e_up, (size_t)e * Fe, C), n, C, Fe);
        linear_adapter_backward(m, l, LORA_UP, e, at, dxs, dup, xs, n, C, Fe);
    }
    be->moe_combine(dx, d.xs, a.slot_at, NULL, N, k, C);  // the gather's backward
    int aux = c->aux_loss_coef > 0.0f;
    be->moe_route_backward(d.logits, d.weight, a.pick, a.probs, aux ? m->grad_acts.aux : NULL, N,
                           E, k, c->router, c->routed_scale);
    be->matmul_backward(dx, dw.router, d.logits, x, w.router, N, C, E);
}

void moe_begin_pass(Model *m) {
    const ModelConfig *c = &m->cfg;
    m->moe_tally = c->n_experts && c->aux_loss_coef > 0.0f && !model_is_inference(m);
    m->aux_loss = 0.0f;
    if (m->moe_tally) memset(m->moe_count, 0, 2 * (size_t)c->n_experts * sizeof(double));
}

// aux = coef E sum_e f_e P_e over the R rows of every MoE layer, f_e = count_e / R (the share
// of rows picking e; the shares sum to k) and P_e = prob_sum_e / R; its gradient on each row's
// probability of e is coef E count_e / R^2 (f is a count: no gradient).
void moe_end_pass(Model *m, int N) {
    const ModelConfig *c = &m->cfg;
    if (!m->moe_tally) return;
    m->moe_tally = 0;  // a recomputation in the backward must not count again
    int E = c->n_experts;
    double R = (double)N * model_moe_layers(c), aux = 0.0;
    float grad[MODEL_MAX_EXPERTS];
    for (int e = 0; e < E; e++) {
        aux += m->moe_count[e] / R * (m->moe_prob_sum[e] / R);
        grad[e] = (float)(m->aux_scale * c->aux_loss_coef * E * m->moe_count[e] / (R * R));
    }
    m->aux_loss = (float)(c->aux_loss_coef * E * aux);
    m->be->to_device(m->grad_acts.aux, grad, (size_t)E * sizeof(float));
}

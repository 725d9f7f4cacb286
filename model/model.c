#include "model/model.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// Carves consecutive arrays out of one allocation; sizes[i] floats go to *fields[i].
static float *alloc_carved(const Backend *be, float **fields[], const size_t sizes[], int n) {
    size_t total = 0;
    for (int i = 0; i < n; i++) total += sizes[i];
    float *base = be->alloc(total * sizeof(float));
    if (!base) return NULL;
    float *p = base;
    for (int i = 0; i < n; i++) {
        *fields[i] = p;
        p += sizes[i];
    }
    return base;
}

static float *alloc_activations(Model *m) {
    const ModelConfig *c = &m->cfg;
    size_t L = c->n_layer, N = (size_t)m->max_batch * c->seq_len, C = c->d_model, F = c->d_ff;
    size_t V = c->vocab_size, probs = (size_t)m->max_batch * c->n_head * c->seq_len * c->seq_len;
    Activations *a = &m->acts;
    float **fields[] = {&a->resid, &a->ln1,     &a->ln1_rstd, &a->q,     &a->k,
                        &a->v,     &a->probs,   &a->att_out,  &a->resid_mid, &a->ln2,
                        &a->ln2_rstd, &a->gate, &a->up,       &a->swiglu, &a->lnf,
                        &a->lnf_rstd, &a->logits, &a->losses, &a->proj};
    size_t sizes[] = {(L + 1) * N * C, L * N * C, L * N,     L * N * C, L * N * C,
                      L * N * C,       L * probs, L * N * C, L * N * C, L * N * C,
                      L * N,           L * N * F, L * N * F, L * N * F, N * C,
                      N,               N * V,     N,         N * C};
    return alloc_carved(m->be, fields, sizes, sizeof sizes / sizeof sizes[0]);
}

static float *alloc_activation_grads(Model *m) {
    const ModelConfig *c = &m->cfg;
    size_t N = (size_t)m->max_batch * c->seq_len, C = c->d_model, F = c->d_ff, V = c->vocab_size;
    ActivationGrads *d = &m->grad_acts;
    float **fields[] = {&d->resid, &d->ln,   &d->q,  &d->k,      &d->v,
                        &d->att_out, &d->gate, &d->up, &d->swiglu, &d->logits};
    size_t sizes[] = {N * C, N * C, N * C, N * C, N * C, N * C, N * F, N * F, N * F, N * V};
    return alloc_carved(m->be, fields, sizes, sizeof sizes / sizeof sizes[0]);
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
            double freq = pow(c->rope_theta, -(double)i / half);
            cs[(size_t)t * half + i] = (float)cos(t * freq);
            cs[n + (size_t)t * half + i] = (float)sin(t * freq);
        }
    m->be->to_device(m->rope_cos, cs, n * sizeof(float));
    m->be->to_device(m->rope_sin, cs + n, n * sizeof(float));
    free(cs);
    return 0;
}

int model_create(Model *m, const ModelConfig *c, const Backend *be, int max_batch, Error *err) {
    memset(m, 0, sizeof *m);
    if (model_config_validate(c, err)) return -1;
    if (max_batch < 1) return error_set(err, "batch size must be >= 1 (got %d)", max_batch);
    m->cfg = *c;
    m->be = be;
    m->max_batch = max_batch;
    m->n_params = param_count(c);
    size_t n_rows = (size_t)max_batch * c->seq_len;
    size_t rope_n = (size_t)c->seq_len * (c->d_model / c->n_head / 2);
    size_t pbytes = m->n_params * sizeof(float);
    m->params = be->alloc(pbytes);
    m->grads = be->alloc(pbytes);
    m->adam_m = be->alloc(pbytes);
    m->adam_v = be->alloc(pbytes);
    m->acts_memory = alloc_activations(m);
    m->grad_acts_memory = alloc_activation_grads(m);
    m->rope_cos = be->alloc(rope_n * sizeof(float));
    m->rope_sin = be->alloc(rope_n * sizeof(float));
    m->tokens = be->alloc(n_rows * sizeof(int));
    m->targets = be->alloc(n_rows * sizeof(int));
    m->weights = be->alloc(n_rows * sizeof(float));
    m->key_start = be->alloc((size_t)max_batch * sizeof(int));
    m->host_losses = malloc(n_rows * sizeof(float));
    if (!m->params || !m->grads || !m->adam_m || !m->adam_v || !m->acts_memory ||
        !m->grad_acts_memory || !m->rope_cos || !m->rope_sin || !m->tokens || !m->targets ||
        !m->weights || !m->key_start || !m->host_losses || upload_rope_tables(m)) {
        model_free(m);
        return error_set(err, "out of memory for a %zu-parameter model with batch %d", m->n_params,
                         max_batch);
    }
    param_tensors_point(&m->p, m->params, c);
    param_tensors_point(&m->g, m->grads, c);
    return 0;
}

void model_free(Model *m) {
    if (m->be) {
        void *bufs[] = {m->params,   m->grads,    m->adam_m,  m->adam_v,  m->acts_memory,
                        m->grad_acts_memory, m->rope_cos, m->rope_sin, m->tokens, m->targets,
                        m->weights,  m->key_start};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
            if (bufs[i]) m->be->free(bufs[i]);
    }
    free(m->host_losses);
    memset(m, 0, sizeof *m);
}

void model_init_params(Model *m, uint64_t seed) {
    float *host = malloc(m->n_params * sizeof(float));
    params_init(host, &m->cfg, seed);
    m->be->to_device(m->params, host, m->n_params * sizeof(float));
    free(host);
}

void model_zero_grad(Model *m) { m->be->zero(m->grads, m->n_params * sizeof(float)); }

// One layer's slices of the activations for the current batch shape.
typedef struct {
    float *resid_in, *ln1, *ln1_rstd, *q, *k, *v, *probs, *att_out, *resid_mid, *ln2, *ln2_rstd,
        *gate, *up, *swiglu, *resid_out;
} LayerActs;

static LayerActs layer_acts(const Model *m, int l) {
    const Activations *a = &m->acts;
    size_t N = (size_t)m->B * m->T, C = m->cfg.d_model, F = m->cfg.d_ff;
    size_t P = (size_t)m->B * m->cfg.n_head * m->T * m->T;
    LayerActs la = {
        .resid_in = a->resid + l * N * C,
        .ln1 = a->ln1 + l * N * C,
        .ln1_rstd = a->ln1_rstd + l * N,
        .q = a->q + l * N * C,
        .k = a->k + l * N * C,
        .v = a->v + l * N * C,
        .probs = a->probs + l * P,
        .att_out = a->att_out + l * N * C,
        .resid_mid = a->resid_mid + l * N * C,
        .ln2 = a->ln2 + l * N * C,
        .ln2_rstd = a->ln2_rstd + l * N,
        .gate = a->gate + l * N * F,
        .up = a->up + l * N * F,
        .swiglu = a->swiglu + l * N * F,
        .resid_out = a->resid + (l + 1) * N * C,
    };
    return la;
}

void model_forward(Model *m, const int *tokens, int B, int T) {
    model_infer(m, tokens, NULL, B, T, 0, T);
}

// Copies rows [start, end) of each sequence's keys or values (fresh, [B, end - start, C]) into
// their places in a layer's cache ([B, T, C]).
static void store_rows(const Backend *be, float *cache, const float *fresh, int B, int T,
                       int start, int end, int C) {
    int Tq = end - start;
    for (int b = 0; b < B; b++)
        be->copy(cache + ((size_t)b * T + start) * C, fresh + (size_t)b * Tq * C,
                 (size_t)Tq * C * sizeof(float));
}

void model_infer(Model *m, const int *tokens, const int *key_start, int B, int T, int start,
                 int end) {
    const ModelConfig *c = &m->cfg;
    const Backend *be = m->be;
    assert(B >= 1 && B <= m->max_batch && T >= 1 && T <= c->seq_len);
    assert(0 <= start && start < end && end <= T);
    m->B = B;  // per-layer slices hold B * T rows: the whole cache, or a training batch
    m->T = T;
    int Tq = end - start, N = B * Tq, C = c->d_model, F = c->d_ff, H = c->n_head, hd = C / H;
    int whole = Tq == T;  // every row recomputed: keys and values go straight to their place
    for (int b = 0; b < B; b++)
        be->to_device(m->tokens + (size_t)b * Tq, tokens + (size_t)b * T + start,
                      (size_t)Tq * sizeof(int));
    if (key_start) be->to_device(m->key_start, key_start, (size_t)B * sizeof(int));
    float *proj = m->acts.proj;
    be->embedding_forward(m->acts.resid, m->tokens, m->p.tok_emb, N, C);

    for (int l = 0; l < c->n_layer; l++) {
        LayerActs a = layer_acts(m, l);
        LayerWeights w = layer_weights(&m->p, c, l);
        // attention block; keys and values of the computed rows land in the layer's cache
        be->rmsnorm_forward(a.ln1, a.ln1_rstd, a.resid_in, w.attn_norm, N, C, c->norm_eps);
        be->matmul_forward(a.q, a.ln1, w.wq, N, C, C);
        be->rope_forward(a.q, m->rope_cos, m->rope_sin, B, Tq, start, H, hd);
        float *k = whole ? a.k : proj;
        be->matmul_forward(k, a.ln1, w.wk, N, C, C);
        be->rope_forward(k, m->rope_cos, m->rope_sin, B, Tq, start, H, hd);
        if (!whole) store_rows(be, a.k, proj, B, T, start, end, C);
        float *v = whole ? a.v : proj;
        be->matmul_forward(v, a.ln1, w.wv, N, C, C);
        if (!whole) store_rows(be, a.v, proj, B, T, start, end, C);
        be->attention_forward(a.att_out, a.probs, a.q, a.k, a.v, key_start ? m->key_start : NULL,
                              B, Tq, T, start, H, hd, c->causal);
        be->matmul_forward(proj, a.att_out, w.wo, N, C, C);
        be->add(a.resid_mid, a.resid_in, proj, (size_t)N * C);
        // SwiGLU MLP block
        be->rmsnorm_forward(a.ln2, a.ln2_rstd, a.resid_mid, w.mlp_norm, N, C, c->norm_eps);
        be->matmul_forward(a.gate, a.ln2, w.w_gate, N, C, F);
        be->matmul_forward(a.up, a.ln2, w.w_up, N, C, F);
        be->swiglu_forward(a.swiglu, a.gate, a.up, (size_t)N * F);
        be->matmul_forward(proj, a.swiglu, w.w_down, N, F, C);
        be->add(a.resid_out, a.resid_mid, proj, (size_t)N * C);
    }

    float *resid_final = m->acts.resid + (size_t)c->n_layer * B * T * C;
    be->rmsnorm_forward(m->acts.lnf, m->acts.lnf_rstd, resid_final, m->p.final_norm, N, C,
                        c->norm_eps);
    be->matmul_forward(m->acts.logits, m->acts.lnf, m->p.lm_head, N, C, c->vocab_size);
}

float model_loss(Model *m, const int *targets, const float *weights) {
    const Backend *be = m->be;
    int N = m->B * m->T;
    be->to_device(m->targets, targets, (size_t)N * sizeof(int));
    be->to_device(m->weights, weights, (size_t)N * sizeof(float));
    be->cross_entropy_forward(m->acts.losses, m->acts.logits, m->targets, N, m->cfg.vocab_size);
    be->to_host(m->host_losses, m->acts.losses, (size_t)N * sizeof(float));
    double loss = 0.0;
    for (int n = 0; n < N; n++)
        if (weights[n] != 0.0f) loss += (double)weights[n] * m->host_losses[n];
    return (float)loss;
}

void model_backward(Model *m) {
    const ModelConfig *c = &m->cfg;
    const Backend *be = m->be;
    const Activations *acts = &m->acts;
    const ActivationGrads *d = &m->grad_acts;
    int B = m->B, T = m->T, N = B * T, C = c->d_model, F = c->d_ff, V = c->vocab_size;
    int H = c->n_head, hd = C / H;
    size_t NC = (size_t)N * C, NF = (size_t)N * F;

    // loss -> logits -> final norm: d->resid becomes the gradient of the last residual
    be->zero(d->logits, (size_t)N * V * sizeof(float));
    be->cross_entropy_backward(d->logits, acts->logits, m->targets, m->weights, N, V);
    be->zero(d->ln, NC * sizeof(float));
    be->matmul_backward(d->ln, m->g.lm_head, d->logits, acts->lnf, m->p.lm_head, N, C, V);
    be->zero(d->resid, NC * sizeof(float));
    be->rmsnorm_backward(d->resid, m->g.final_norm, d->ln, acts->resid + (size_t)c->n_layer * NC,
                         m->p.final_norm, acts->lnf_rstd, N, C);

    for (int l = c->n_layer - 1; l >= 0; l--) {
        LayerActs a = layer_acts(m, l);
        LayerWeights w = layer_weights(&m->p, c, l);
        LayerWeights dw = layer_weights(&m->g, c, l);
        // MLP block: the residual passes d->resid through unchanged, the branch adds to it
        be->zero(d->swiglu, NF * sizeof(float));
        be->matmul_backward(d->swiglu, dw.w_down, d->resid, a.swiglu, w.w_down, N, F, C);
        be->zero(d->gate, NF * sizeof(float));
        be->zero(d->up, NF * sizeof(float));
        be->swiglu_backward(d->gate, d->up, d->swiglu, a.gate, a.up, NF);
        be->zero(d->ln, NC * sizeof(float));
        be->matmul_backward(d->ln, dw.w_gate, d->gate, a.ln2, w.w_gate, N, C, F);
        be->matmul_backward(d->ln, dw.w_up, d->up, a.ln2, w.w_up, N, C, F);
        be->rmsnorm_backward(d->resid, dw.mlp_norm, d->ln, a.resid_mid, w.mlp_norm, a.ln2_rstd, N,
                             C);
        // attention block
        be->zero(d->att_out, NC * sizeof(float));
        be->matmul_backward(d->att_out, dw.wo, d->resid, a.att_out, w.wo, N, C, C);
        be->zero(d->q, NC * sizeof(float));
        be->zero(d->k, NC * sizeof(float));
        be->zero(d->v, NC * sizeof(float));
        be->attention_backward(d->q, d->k, d->v, d->att_out, a.probs, a.q, a.k, a.v, B, T, H, hd);
        be->rope_backward(d->q, m->rope_cos, m->rope_sin, B, T, 0, H, hd);
        be->rope_backward(d->k, m->rope_cos, m->rope_sin, B, T, 0, H, hd);
        be->zero(d->ln, NC * sizeof(float));
        be->matmul_backward(d->ln, dw.wq, d->q, a.ln1, w.wq, N, C, C);
        be->matmul_backward(d->ln, dw.wk, d->k, a.ln1, w.wk, N, C, C);
        be->matmul_backward(d->ln, dw.wv, d->v, a.ln1, w.wv, N, C, C);
        be->rmsnorm_backward(d->resid, dw.attn_norm, d->ln, a.resid_in, w.attn_norm, a.ln1_rstd, N,
                             C);
    }
    be->embedding_backward(m->g.tok_emb, d->resid, m->tokens, N, C);
}

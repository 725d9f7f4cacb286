// The backward pass: what training adds to the model (model.c is the forward pass alone). An
// inference model (model_is_inference) has none of the state used here.
#include <assert.h>

#include "model/layer.h"
#include "model/moe.h"

void model_zero_grad(Model *m) {
    assert(!model_is_inference(m));
    Trainable t = model_trainable(m);
    t.be->zero(t.grads, t.n * sizeof(float));
}

// The dense MLP's backward: d->ln = the gradient of its input, from d->resid (its output's).
static void mlp_backward(Model *m, int l, const LayerActs *a, const LayerWeights *w,
                         const LayerWeights *dw) {
    const Backend *be = m->be;
    const ActivationGrads *d = &m->grad_acts;
    int N = m->B * m->T, C = m->cfg.d_model, F = m->cfg.d_ff;
    size_t NC = (size_t)N * C, NF = (size_t)N * F;
    be->zero(d->swiglu, NF * be->act_bytes);
    linear_backward(m, l, LORA_DOWN, d->swiglu, dw->w_down, d->resid,
                    linear_input(m, a->swiglu, N, F), w->w_down, N, F, C);
    be->zero(d->gate, NF * be->act_bytes);
    be->zero(d->up, NF * be->act_bytes);
    be->swiglu_backward(d->gate, d->up, d->swiglu, a->gate, a->up, NF);
    be->zero(d->ln, NC * be->act_bytes);
    const Act *x = linear_input(m, a->ln2, N, C);
    linear_backward(m, l, LORA_GATE, d->ln, dw->w_gate, d->gate, x, w->w_gate, N, C, F);
    linear_backward(m, l, LORA_UP, d->ln, dw->w_up, d->up, x, w->w_up, N, C, F);
}

// Backward through layer l: d->resid holds the gradient of its output and becomes the
// gradient of its input; its weight gradients are added into m->grads (a frozen base has
// none: the dw pointers are NULL) and its adapters' into m->lora_grads.
static void layer_backward(Model *m, int l) {
    const ModelConfig *c = &m->cfg;
    const Backend *be = m->be;
    const ActivationGrads *d = &m->grad_acts;
    int B = m->B, T = m->T, N = B * T, C = c->d_model, H = c->n_head, hd = model_head_dim(c);
    int Hkv = model_kv_heads(c), KV = Hkv * hd, QD = H * hd;
    size_t NC = (size_t)N * C, NKV = (size_t)N * KV, NQ = (size_t)N * QD;
    LayerActs a = layer_acts(m, l);
    LayerWeights w = linear_layer_weights(m, l);
    LayerWeights dw = {0};
    if (m->grads) dw = layer_weights(&m->g, c, l, sizeof(float));
    // MLP block: the residual passes d->resid through unchanged, the branch adds to it
    if (w.router) {
        moe_backward(m, l, d->ln, d->resid, a.ln2, N);
    } else {
        mlp_backward(m, l, &a, &w, &dw);
    }
    be->rmsnorm_backward(d->resid, dw.mlp_norm, d->ln, a.resid_mid, w.mlp_norm, a.ln2_rstd, N, C);
    // attention block
    be->zero(d->att_out, NQ * be->act_bytes);
    linear_backward(m, l, LORA_O, d->att_out, dw.wo, d->resid,
                     linear_input(m, a.att_out, N, QD), w.wo, N, QD, C);
    be->zero(d->q, NQ * be->act_bytes);
    be->zero(d->k, NKV * be->act_bytes);
    be->zero(d->v, NKV * be->act_bytes);
    be->attention_backward(d->q, d->k, d->v, d->att_out, a.att_out, a.lse, a.q, a.k, a.v, B, T, H,
                           Hkv, hd, pass_mask(m));
    rope(m, d->q, T, 0, H, 1);
    rope(m, d->k, T, 0, Hkv, 1);
    Act *dq = d->q, *dk = d->k;  // the projections' output gradients
    if (c->qk_norm) {  // through the per-head norms (their gains' gradients too)
        dq = d->q_pre, dk = d->k_pre;
        be->zero(dq, NQ * be->act_bytes);
        be->zero(dk, NKV * be->act_bytes);
        be->rmsnorm_backward(dq, dw.q_norm, d->q, a.q_pre, w.q_norm, a.q_rstd, N * H, hd);
        be->rmsnorm_backward(dk, dw.k_norm, d->k, a.k_pre, w.k_norm, a.k_rstd, N * Hkv, hd);
    }
    if (c->qkv_bias && m->grads) {  // the biases were added before RoPE (and the norms)
        be->bias_backward(dw.bq, dq, N, QD);
        be->bias_backward(dw.bk, dk, N, KV);
        be->bias_backward(dw.bv, d->v, N, KV);
    }
    be->zero(d->ln, NC * be->act_bytes);
    const Act *x = linear_input(m, a.ln1, N, C);
    linear_backward(m, l, LORA_Q, d->ln, dw.wq, dq, x, w.wq, N, C, QD);
    linear_backward(m, l, LORA_K, d->ln, dw.wk, dk, x, w.wk, N, C, KV);
    linear_backward(m, l, LORA_V, d->ln, dw.wv, d->v, x, w.wv, N, C, KV);
    be->rmsnorm_backward(d->resid, dw.attn_norm, d->ln, a.resid_in, w.attn_norm, a.ln1_rstd, N, C);
}

float model_loss_backward(Model *m, const int *targets, const float *weights) {
    const ModelConfig *c = &m->cfg;
    const Backend *be = m->be;
    const Activations *acts = &m->acts;
    const ActivationGrads *d = &m->grad_acts;
    assert(!model_is_inference(m));  // no gradients or backward scratch
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
        if (m->mode == MODEL_RECOMPUTE) layer_forward(m, l, NULL, 0, m->T);  // refills the shared slice
        layer_backward(m, l);
    }
    if (m->grads) be->embedding_backward(m->g.tok_emb, d->resid, m->tokens, N, C, c->vocab_size);
    return (float)weighted_loss(m, weights, NULL);
}

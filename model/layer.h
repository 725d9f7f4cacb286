// What model.c's forward pass shares with backward.c's backward pass (private to model/).
#ifndef DLLM_LAYER_H
#define DLLM_LAYER_H

#include "model/model.h"

// One layer's slices of the activations for the current batch shape (with recomputation,
// every layer shares slice 0; the residual stream always has its own).
typedef struct {
    Act *resid_in, *ln1, *q, *k, *v, *att_out, *resid_mid, *ln2, *gate, *up, *swiglu, *resid_out;
    float *ln1_rstd, *lse, *ln2_rstd;
    Act *q_pre, *k_pre;      // qk_norm only (else NULL)
    float *q_rstd, *k_rstd;
} LayerActs;
LayerActs layer_acts(const Model *m, int l);
// Layer l on rows [start, end) of the m->B sequences of m->T positions: from its residual
// input to its residual output, keeping what the backward needs.
void layer_forward(Model *m, int l, const int *key_start, int start, int end);
// The attention mask of the last pass.
int pass_mask(const Model *m);
// RoPE (backward 1: its transpose) on rows [start, start + Tq) of the pass's sequences.
void rope(const Model *m, Act *x, int Tq, int start, int heads, int backward);
// Uploads each logit row's target and weight; returns the weights as uploaded.
const float *upload_targets(Model *m, const int *targets, const float *weights);
// The weighted sum of the per-position losses (each sequence's share in row_loss, or NULL).
double weighted_loss(Model *m, const float *weights, double *row_loss);

#endif

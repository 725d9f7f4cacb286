// A mixture-of-experts layer's MLP (ModelConfig.n_experts > 0; private to model/): the router
// picks each row's n_active experts (kernels/moe_route.h), the rows are sorted into expert
// order on the host (a counting sort of the picks, so each expert's rows are contiguous and
// one matmul per expert runs them), every expert runs its SwiGLU on its rows, and each row's
// outputs are summed back weighted, in pick order, onto the shared expert's output (or zero).
// No atomics and no order that depends on threads: results are as reproducible as the dense
// MLP's. The load-balancing loss (ModelConfig.aux_loss_coef) is tallied over a training pass's
// MoE layers and its gradient added to the router's in the backward.
#ifndef DLLM_MOE_H
#define DLLM_MOE_H

#include "model/model.h"

// The host scratch of a model of up to `rows` rows per pass; moe_free_host frees it.
int moe_alloc_host(Model *m, size_t rows);
void moe_free_host(Model *m);
// Layer l's MLP branch on its N rows x (the normalised residual): out = its output.
void moe_forward(Model *m, int l, const Act *x, Act *out, int N);
// Its backward: dout the branch output's gradient; the input's gradient is written to dx
// (not added), the weights' added to m->grads (when trained).
void moe_backward(Model *m, int l, Act *dx, const Act *dout, const Act *x, int N);
// Before a pass: starts the load-balancing tally (a training pass with aux_loss_coef > 0).
void moe_begin_pass(Model *m);
// After the last layer of a pass: the load-balancing loss into m->aux_loss, and its gradient
// per expert (scaled by m->aux_scale) uploaded for the backward.
void moe_end_pass(Model *m, int N);

#endif

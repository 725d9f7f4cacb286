// The seven projections of every layer (q, k, v, o, gate, up, down) and the LM head: how their
// weights are stored and read. One projection is out = in W^T (+ bias) (+ the LoRA branch
// (alpha / rank) (in A^T) B^T), with W in one of the weight kinds below. model.c calls these
// functions and never looks at the kind: a new kind is a new case here (its size, how its
// weights are uploaded, how a projection reads its input and multiplies) plus its kernels.
#ifndef DLLM_LINEAR_H
#define DLLM_LINEAR_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "kernels/backend.h"
#include "model/config.h"
#include "model/params.h"

typedef enum {
    WEIGHTS_DENSE,    // rows of the backend's weight type: fp32, or bf16 on a bf16-weight table
    WEIGHTS_PANELS,   // fp32 or bf16 rows an inference model repacks into the CPU's panels (its
                      // first pass converts them; Backend.panels_convert)
    WEIGHTS_TERNARY,  // BitNet b1.58: fp32 latent weights read through an absmean-ternarised
                      // copy, inputs quantised to 8 bits per row (training and inference)
    WEIGHTS_PACKED,   // ternary codes packed 2 bits a weight with a scale per matrix, int8
                      // inputs, integer sums (model/packed.h; CPU inference)
    WEIGHTS_Q8,       // the embedding, projections and LM head in blocks of 32 8-bit (Q4: 4-bit)
    WEIGHTS_Q4,       // codes with a scale each (kernels/qblocks.h), inputs quantised to 8 bits
                      // per block, integer block sums (CPU inference)
} WeightKind;

// What a kind keeps besides the flat parameter layout.
typedef struct {
    float *qparams;         // ternary: the weights as the layers read them (the seven
    ParamTensors q;         // projections ternarised, the rest copied)
    float *packed_scales;   // packed: after params' unpacked tensors, the projections' scales
    uint8_t *packed_codes;  // and their packed bytes (params' projection fields NULL)
    uint8_t *qb;            // block-quantised: after params' floats, the quantised matrices
                            // in the flat layout's order (params' fields for them NULL)
    int in_panels;          // panels: 1 once the projections and LM head are converted
} LinearStore;

typedef struct Model Model;

// The kind a model of this config gets on this table in this mode (MODEL_PACKED: packed).
WeightKind linear_kind(const ModelConfig *c, const Backend *be, ModelMode mode);
// Refuses what a kind cannot do: adapters on ternary weights, packed weights off the CPU or of
// a model not trained ternary, training bf16 weights without adapters.
int linear_check(const ModelConfig *c, const Backend *be, ModelMode mode, int adapters,
                 Error *err);
// Values in the flat parameter layout (model/params.h) and bytes of the params allocation.
size_t linear_param_count(const ModelConfig *c, WeightKind k);
size_t linear_param_bytes(const ModelConfig *c, const Backend *be, WeightKind k);
// The scratch a kind's projection inputs need for rows of up to `widest` values: activations
// (ternary's 8-bit rows in the activation type), bytes and floats (packed's int8 rows and
// their multipliers).
void linear_scratch(WeightKind k, size_t rows, size_t widest, size_t *acts, size_t *bytes,
                    size_t *floats);
// Points m->p (and the kind's own views) into the params allocation.
void linear_point(Model *m);
// Uploads the n host floats starting `first` values into the flat layout, in the kind's form
// (rounded to bf16 on a bf16-weight table; an inference model's ternary copy refreshed).
int linear_upload(Model *m, size_t first, const float *host, size_t n, Error *err);
// The width of a block-quantised kind's weights: 8, 4, or 0 for the other kinds.
int linear_block_bits(WeightKind k);
// Whether ParamTensors field i is one a block-quantised model keeps in blocks: the embedding,
// the seven projections, the LM head (the norms and biases stay fp32).
int linear_qb_tensor(int i);
// Rows [row0, row0 + n_rows) (row0 a multiple of 16) of a block-quantised model's matrix
// (ParamTensors field i, layer l) from GGUF rows of Q8_0 (in_bits 8) or Q4_0 (4) blocks: packed
// as they are when of the model's width, Q4_0 widened exactly into an 8-bit model, Q8_0
// quantised again (GGUF's Q4_0 quantiser) into a 4-bit one.
int linear_upload_blocks(Model *m, int i, int l, int in_bits, int row0, int n_rows,
                         const uint8_t *rows, Error *err);
// A packed model's weights (model/packed.h): the unpacked tensors (n_params floats), the
// scales and the packed projections, from the host.
void linear_upload_packed(Model *m, const float *dense, const float *scales,
                          const uint8_t *codes);
// Before every forward pass: a training ternary model re-ternarises its moving weights; a
// panels model converts its weights on its first pass.
void linear_prepare_pass(Model *m);
// Layer l's weights as its projections read them (a ternary model's from its copy; a packed
// model's projection fields NULL: linear_forward reads the codes).
LayerWeights linear_layer_weights(const Model *m, int l);
// A projection's input as the kind reads it: itself, or quantised into the kind's scratch
// (which serves until the next call, so projections sharing an input share one call).
const Act *linear_input(const Model *m, const Act *inp, int N, int C_in);
// out = inp @ W^T (+ bias) (+ projection t of layer l's LoRA branch); inp from linear_input.
void linear_forward(const Model *m, int l, int t, Act *out, const Act *inp, const float *weight,
                    const float *bias, int N, int C_in, int C_out);
// linear_forward's backward: the input gradient added into dinp, the weight's into dweight
// (NULL: a frozen base), the adapter's into its gradients. A ternary model's quantisers pass
// the gradient straight through (BitNet's straight-through estimator).
void linear_backward(const Model *m, int l, int t, Act *dinp, float *dweight, const Act *dout,
                     const Act *inp, const float *weight, int N, int C_in, int C_out);
// The adapter alone (model/lora.h) of unit u of projection t of layer l, on N rows that sit
// row0 rows into the target's rows of the pass: out += (alpha / rank) (inp A^T) B^T, and its
// backward (the input's gradient added into dinp, the adapter's into its gradients). An MoE
// layer runs its experts through these (linear_forward and linear_backward call them with
// unit 0 at row 0); nothing happens without an adapter there.
void linear_adapter_forward(const Model *m, int l, int t, int u, size_t row0, Act *out,
                            const Act *inp, int N, int C_in, int C_out);
void linear_adapter_backward(const Model *m, int l, int t, int u, size_t row0, Act *dinp,
                             const Act *dout, const Act *inp, int N, int C_in, int C_out);
// The embedding of the pass's tokens (m->tokens) into out [N, d_model].
void linear_embedding_forward(const Model *m, Act *out, int N);
// The LM head: logits = x @ lm_head^T over N rows.
void linear_head_forward(const Model *m, Act *logits, const Act *x, int N);

#endif

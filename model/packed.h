// A ternary model's weights packed for CPU inference: its seven projections of every layer in
// the 2-bit layout of kernels/ternary.h (one scale each), and its other tensors (embeddings,
// norms, biases, LM head) as floats. Made from the fp32 latent weights quantisation-aware
// training keeps, with the very quantiser the training forward uses, so a packed model computes
// what the trained one does, in integers.
#ifndef DLLM_PACKED_H
#define DLLM_PACKED_H

#include <stddef.h>
#include <stdint.h>

#include "model/config.h"
#include "model/params.h"

// Bytes of all the packed projections, layer by layer, q k v o gate up down in each.
size_t packed_bytes(const ModelConfig *c);
// Where projection t (PROJ_*) of layer l starts in them, and its scale's index.
size_t packed_offset(const ModelConfig *c, int l, int t);
static inline int packed_scale_index(int l, int t) { return l * N_PROJECTIONS + t; }
static inline size_t packed_scale_count(const ModelConfig *c) {
    return (size_t)c->n_layer * N_PROJECTIONS;
}

// From a full fp32 layout (params): the unpacked tensors (param_count_packed floats), the
// scales (packed_scale_count) and the packed projections (packed_bytes).
void packed_from_params(const ModelConfig *c, const float *params, float *dense, float *scales,
                        uint8_t *codes);
// The reverse, dequantised: a full layout whose projections are s * {-1, 0, +1}.
void packed_to_params(const ModelConfig *c, const float *dense, const float *scales,
                      const uint8_t *codes, float *params);

#endif

#include "model/packed.h"

#include "kernels/ternary.h"
#include "model/params.h"

// Constant time in the layer count: a header's config is checked against sizes before the
// file is trusted, and a fuzzed one asked for 63 million layers.
size_t packed_offset(const ModelConfig *c, int l, int t) {
    size_t layer = 0, before = 0;
    for (int u = 0; u < N_PROJECTIONS; u++) {
        int in, out;
        projection_shape(c, u, &in, &out);
        size_t bytes = ternary_matrix_bytes(out, in);
        layer += bytes;
        if (u < t) before += bytes;
    }
    return (size_t)l * layer + before;
}

size_t packed_bytes(const ModelConfig *c) { return packed_offset(c, c->n_layer, 0); }

// Projection t of layer l within a full layout.
static const float *projection_weights(const ModelConfig *c, const float *params, int l, int t) {
    ParamTensors p;
    param_tensors_point(&p, (void *)params, sizeof(float), c);
    LayerWeights w = layer_weights(&p, c, l, sizeof(float));
    return layer_projection(&w, t);
}

void packed_from_params(const ModelConfig *c, const float *params, float *dense, float *scales,
                        uint8_t *codes) {
    params_copy_unpacked(dense, params, c, 0);
    for (int l = 0; l < c->n_layer; l++)
        for (int t = 0; t < N_PROJECTIONS; t++) {
            int in, out;
            projection_shape(c, t, &in, &out);
            const float *w = projection_weights(c, params, l, t);
            float s = ternary_scale(w, (size_t)in * out);
            scales[packed_scale_index(l, t)] = s;
            ternary_pack(codes + packed_offset(c, l, t), w, s, out, in);
        }
}

void packed_to_params(const ModelConfig *c, const float *dense, const float *scales,
                      const uint8_t *codes, float *params) {
    params_copy_unpacked(params, dense, c, 1);
    for (int l = 0; l < c->n_layer; l++)
        for (int t = 0; t < N_PROJECTIONS; t++) {
            int in, out;
            projection_shape(c, t, &in, &out);
            ternary_unpack((float *)projection_weights(c, params, l, t),
                           codes + packed_offset(c, l, t), scales[packed_scale_index(l, t)], out,
                           in);
        }
}

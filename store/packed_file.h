// Packed ternary model files (dllm export RUN --format ternary): a ternary model for inference
// on the CPU, its projections in 2 bits a weight (model/packed.h), about a tenth of its fp32
// checkpoint and with no optimizer state. Layout (little-endian): the header, the unpacked
// tensors (n_dense floats), the scales (n_scales floats), the packed projections (code_bytes),
// the tokenizer (tokenizer_bytes; none for the byte tokenizer). Written to path.tmp and renamed.
// Read by checkpoint_load (store/checkpoint.h), which tells it by its magic: sample, eval, serve and logits take it
// wherever they take a checkpoint.
#ifndef DLLM_PACKED_FILE_H
#define DLLM_PACKED_FILE_H

#include <stdint.h>
#include <stdio.h>

#include "store/model_source.h"

#define PACKED_MAGIC "DLLMTERN"
#define PACKED_VERSION 3

typedef struct {
    char magic[8];
    uint32_t version;
    uint32_t header_bytes;
    ModelConfig model;
    int64_t step;  // the training step of the checkpoint it was packed from
    uint64_t n_dense, n_scales, code_bytes, tokenizer_bytes;
    uint64_t checksum;  // FNV-1a 64 over the header (this field 0) and everything after it
} PackedHeader;

// The model of a ternary checkpoint (its fp32 latent weights, full layout) packed to path.
int packed_file_save(const char *path, const ModelConfig *c, int64_t step, const float *params,
                     const Tokenizer *t, Error *err);
// A packed file as an inference-only checkpoint: params the unpacked tensors (n_params of
// them), packed_scales and packed_codes set, no optimizer state. f is path opened by
// checkpoint_load (which tells the format by its magic), at its start, file_size bytes long;
// this closes it.
int packed_file_read(const char *path, FILE *f, long file_size, ModelSource *src, Error *err);

#endif

// ModelSource files: a fixed header (magic, version, model and training config, LoRA config,
// step, RNG streams, data position, parameter count, tokenizer size, checksum), then three
// float32 arrays of n_params each: parameters, AdamW m, AdamW v; then the tokenizer (a
// serialized SentencePiece model; absent for the byte tokenizer), so a checkpoint samples on
// its own. A LoRA run's checkpoints hold its adapters in the arrays (n_params adapter values)
// and name the frozen base they sit on (lora.base), which is read from there when needed.
// Little-endian, as written by x86-64 and ARM64 hosts.
// Saving writes `path.tmp` and renames it, so a crash never leaves a half-written file.
// Loading checks everything and names the problem: missing, wrong magic, unsupported
// version, bad config, truncated, trailing bytes, checksum mismatch.
#ifndef DLLM_CHECKPOINT_H
#define DLLM_CHECKPOINT_H

#include <stdint.h>

#include "common/error.h"
#include "common/rng.h"
#include "model/config.h"
#include "model/lora.h"
#include "model/model.h"
#include "store/train_config.h"
#include "tokenizer/tokenizer.h"

#define CHECKPOINT_MAGIC "DLLMCKPT"
#define CHECKPOINT_VERSION 11

typedef struct {
    char magic[8];
    uint32_t version;
    uint32_t header_bytes;
    ModelConfig model;
    TrainConfig train;
    LoraConfig lora;           // rank 0: the arrays are the model's weights
    int64_t step;
    Rng rng_data, rng_mask;
    uint64_t data_pos;         // next window in sequential order
    uint64_t n_params;
    uint64_t tokenizer_bytes;  // 0: the byte tokenizer
    uint64_t checksum;  // FNV-1a 64 over the header (this field 0), the arrays and the tokenizer
} CheckpointHeader;

typedef struct ModelSource ModelSource;

// Writes *h (its model, train, lora, step, RNG streams and data position as the caller set
// them; magic, version, sizes and checksum filled here), the arrays of p (a LoRA model's: its
// adapters) and the tokenizer. The caller zeroes *h before setting its fields: its padding
// bytes are part of the checksum. Refuses a model holding non-finite values.
int checkpoint_write(const char *path, const CheckpointHeader *h, const Trainable *p,
                     const Tokenizer *t, Error *err);
// Reads a checkpoint file, or a packed ternary file (told by its magic), as a model source.
int checkpoint_load(const char *path, ModelSource *src, Error *err);

#endif

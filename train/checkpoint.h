// Checkpoint files: a fixed header (magic, version, model and training config, step, RNG
// streams, parameter count, checksum), then three float32 arrays of n_params each:
// parameters, AdamW m, AdamW v. Little-endian, as written by x86-64 and ARM64 hosts.
// Saving writes `path.tmp` and renames it, so a crash never leaves a half-written file.
// Loading checks everything and names the problem: missing, wrong magic, unsupported
// version, bad config, truncated, trailing bytes, checksum mismatch.
#ifndef DLLM_CHECKPOINT_H
#define DLLM_CHECKPOINT_H

#include <stdint.h>

#include "common/error.h"
#include "model/config.h"
#include "train/rng.h"
#include "train/train_config.h"
#include "train/trainer.h"

#define CHECKPOINT_MAGIC "DLLMCKPT"
#define CHECKPOINT_VERSION 1

typedef struct {
    char magic[8];
    uint32_t version;
    uint32_t header_bytes;
    ModelConfig model;
    TrainConfig train;
    int64_t step;
    Rng rng_data, rng_mask;
    uint64_t n_params;
    uint64_t checksum;  // FNV-1a 64 over the header (this field 0) and the three arrays
} CheckpointHeader;

typedef struct {
    CheckpointHeader header;
    float *params, *adam_m, *adam_v;  // host memory, n_params each
} Checkpoint;

int checkpoint_save(const char *path, const Trainer *tr, Error *err);
int checkpoint_load(const char *path, Checkpoint *ck, Error *err);
void checkpoint_free(Checkpoint *ck);
// Loads a checkpoint's model for inference: creates m (room for max_batch sequences) with the
// stored config and weights.
int checkpoint_load_model(const char *path, const Backend *be, int max_batch, Model *m,
                          Error *err);
// Copies weights and optimizer state into a model created with ck->header.model, and the
// step and RNG streams into a trainer initialised on that model.
void checkpoint_restore(const Checkpoint *ck, Trainer *tr);

#endif

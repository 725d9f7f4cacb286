// Checkpoint files: a fixed header (magic, version, model and training config, LoRA config,
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
#include "model/config.h"
#include "model/hf_model.h"
#include "model/lora.h"
#include "tokenizer/tokenizer.h"
#include "common/rng.h"
#include "train/train_config.h"
#include "train/trainer.h"

#define CHECKPOINT_MAGIC "DLLMCKPT"
#define CHECKPOINT_VERSION 9

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

typedef struct {
    CheckpointHeader header;
    float *params, *adam_m, *adam_v;  // host memory, n_params each
    Tokenizer tokenizer;
    int weights_bf16;  // an imported model stored as bf16 (config.json's torch_dtype; the files'
                       // dtype when read onto the host): inference keeps them so
    char *hf_dir;      // an imported model whose weights stay in its files until a model
    int hf_arch;       // is made (HF_WEIGHTS_LATER; params NULL), and their layout
    int from_hf;       // 1: an imported model (hf_arch is its layout)
    float *packed_scales;   // a packed ternary model (train/packed_file.h): params holds its
    uint8_t *packed_codes;  // unpacked tensors, these its projections (same allocation)
} Checkpoint;

int checkpoint_save(const char *path, const Trainer *tr, const Tokenizer *t, Error *err);
int checkpoint_load(const char *path, Checkpoint *ck, Error *err);
// A Hugging Face model directory (model/hf_model.h) as a checkpoint at step 0: its config,
// weights and tokenizer, the default training settings, and no optimizer state (adam_m and
// adam_v NULL: it can start a run, --init, but not resume one).
// HF_CONFIG_ONLY reads the config and tokenizer alone (params NULL): enough for a memory plan;
// HF_WEIGHTS_ON_HOST reads the weights into params as fp32 (export needs them there);
// HF_WEIGHTS_LATER leaves them in the files: checkpoint_model / checkpoint_copy_weights read
// them a tensor at a time into the model (host memory: one tensor, not the model).
typedef enum { HF_CONFIG_ONLY, HF_WEIGHTS_ON_HOST, HF_WEIGHTS_LATER } HfWeights;
int checkpoint_from_hf(const char *dir, HfWeights weights, Checkpoint *ck, Error *err);
// The same, weights left in the files, without a tokenizer (ck->tokenizer empty): for token ids
// in and logits out (`dllm logits`), where a directory need not hold one.
int checkpoint_from_hf_untokenized(const char *dir, Checkpoint *ck, Error *err);
// A PEFT adapter directory (model/peft.h) as a LoRA checkpoint at step 0: its adapters in
// params, the base's model config and tokenizer (read from base_model_name_or_path).
int checkpoint_from_peft(const char *dir, Checkpoint *ck, Error *err);
void checkpoint_free(Checkpoint *ck);
// The tokenizer stored with a model (bytes 0: the byte tokenizer), checked to fit its config.
int checkpoint_adopt_tokenizer(Checkpoint *ck, const char *blob, size_t bytes, const char *path,
                               Error *err);
// The frozen base a LoRA checkpoint names (weights as `weights` says), checked to have the
// shape the adapters were trained on.
int checkpoint_load_base(const Checkpoint *ck, HfWeights weights, Checkpoint *base, Error *err);
// The file layout an adapter's modules are named in: an imported base's own, else the layout
// dllm export writes the base in.
HfArch checkpoint_layout(const Checkpoint *ck);
// Copies weights (a LoRA checkpoint: the adapters) and optimizer state into a model created
// with ck->header.model (and ck->header.lora), and the step and RNG streams into a trainer
// initialised on that model.
void checkpoint_restore(const Checkpoint *ck, Trainer *tr);
// Copies the weights alone (a fine-tuning start, or inference), from params or the files.
int checkpoint_copy_weights(const Checkpoint *ck, Model *m, Error *err);
// The table checkpoint_model runs the checkpoint's inference model on: be, or its bf16-weight
// twin (backend_bf16_weights) for weights stored as bf16.
const Backend *checkpoint_backend(const Checkpoint *ck, const Backend *be);
// Creates an inference model (model/model.h: no gradients or optimizer state) of the
// checkpoint's shape with room for max_batch rows, holding its weights, on
// checkpoint_backend(ck, be); for a LoRA checkpoint, its base's weights (on the base's
// checkpoint_backend) with the adapters on top.
int checkpoint_model(const Checkpoint *ck, const Backend *be, int max_batch, Model *m,
                     Error *err);

#endif

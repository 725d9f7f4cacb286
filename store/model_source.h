// A model source: whatever a user names as a model, opened for inference, fine-tuning or
// export. Four kinds:
//   SOURCE_CHECKPOINT  a dllm checkpoint file (store/checkpoint.h), or a run directory's newest
//   SOURCE_PACKED      a packed ternary file (store/packed_file.h), for CPU inference
//   SOURCE_HF          a Hugging Face model directory (model/hf_model.h)
//   SOURCE_PEFT        a PEFT adapter directory (model/peft.h) on the base it names
//   SOURCE_GGUF        a GGUF file (model/gguf_model.h), its tokenizer from its metadata
// A checkpoint or PEFT source with header.lora.rank > 0 holds LoRA adapters, the frozen base
// they sit on named by header.lora.base. model_source_build makes the inference model of any.
#ifndef DLLM_MODEL_SOURCE_H
#define DLLM_MODEL_SOURCE_H

#include <stdint.h>

#include "common/error.h"
#include "model/hf_model.h"
#include "model/model.h"
#include "store/checkpoint.h"
#include "tokenizer/tokenizer.h"

typedef enum { SOURCE_CHECKPOINT, SOURCE_PACKED, SOURCE_HF, SOURCE_PEFT, SOURCE_GGUF } SourceKind;

struct ModelSource {
    SourceKind kind;
    CheckpointHeader header;          // a source that is not a checkpoint gets one at step 0
    float *params, *adam_m, *adam_v;  // host memory, n_params each; the moments: checkpoints
    Tokenizer tokenizer;  // its mask_id is the model's (-1 for an AR model)
    int named_mask_id;    // the mask token the tokenizer names itself (-1: none), which an AR
                          // model adapted to diffusion takes
    int weights_bf16;  // weights stored as bf16 (2: with bf16 inputs, --weights bf16) (config.json's torch_dtype; the files' dtype
                       // when read onto the host): inference keeps them so
    int weights_bits;  // 8 or 4: build a block-quantised model (MODEL_Q8, MODEL_Q4) where the
                       // backend has one: a GGUF file of Q8_0 / Q4_0 matrices, or --weights
    int hf_arch;       // SOURCE_HF, SOURCE_GGUF: the files' layout (GGUF: its equivalent)
    char *hf_dir;      // SOURCE_HF with its weights left in the files (params NULL)
    char *gguf_path;   // SOURCE_GGUF with its weights left in the file (params NULL)
    float *packed_scales;   // SOURCE_PACKED: params holds its unpacked tensors, these its
    uint8_t *packed_codes;  // projections (same allocation)
};

// How an imported model's weights are read. HF_CONFIG_ONLY: the config and tokenizer alone
// (params NULL), enough for a memory plan; HF_WEIGHTS_ON_HOST: into params as fp32 (export
// needs them there); HF_WEIGHTS_LATER: left in the files, read a tensor at a time into the
// model by model_source_build / model_source_copy_weights (host memory: one tensor).
typedef enum { HF_CONFIG_ONLY, HF_WEIGHTS_ON_HOST, HF_WEIGHTS_LATER } HfWeights;

// Opens what path names: a checkpoint or packed file; a PEFT directory; a Hugging Face model
// directory (its weights as `imported` says); or a run directory's newest step_*.ckpt that
// loads completely (size, magic, version, checksum), older ones after a newest that does not.
// chosen receives the file loaded and *skipped the damaged newer ones.
int model_source_open(const char *path, HfWeights imported, ModelSource *src, char *chosen,
                      size_t cap, int *skipped, Error *err);
// A Hugging Face model directory as a source at step 0: its config, weights and tokenizer,
// the default training settings, and no optimizer state (it can start a run, --init, but not
// resume one).
int model_source_from_hf(const char *dir, HfWeights weights, ModelSource *src, Error *err);
// The same, weights left in the files, without a tokenizer (src->tokenizer empty): for token
// ids in and logits out (`dllm logits`), where a directory need not hold one.
int model_source_from_hf_untokenized(const char *dir, ModelSource *src, Error *err);
// A GGUF file as a source at step 0, as model_source_from_hf: its config, tokenizer and weights
// (as `weights` says).
int model_source_from_gguf(const char *path, HfWeights weights, ModelSource *src, Error *err);
// A PEFT adapter directory as a LoRA source at step 0: its adapters in params, the base's
// model config and tokenizer (read from base_model_name_or_path).
int model_source_from_peft(const char *dir, ModelSource *src, Error *err);
void model_source_free(ModelSource *src);
// The tokenizer stored with a model (bytes 0: the byte tokenizer), checked to fit its config.
int model_source_adopt_tokenizer(ModelSource *src, const char *blob, size_t bytes,
                                 const char *path, Error *err);
// The frozen base a LoRA source names (weights as `weights` says), checked to have the shape
// the adapters were trained on.
int model_source_base(const ModelSource *src, HfWeights weights, ModelSource *base, Error *err);
// The file layout an adapter's modules are named in: an imported base's own, else the layout
// dllm export writes the base in.
HfArch model_source_layout(const ModelSource *src);
// Copies the weights alone (a fine-tuning start, or inference), from params or the files,
// into a model created with src->header.model.
int model_source_copy_weights(const ModelSource *src, Model *m, Error *err);
// The table a source's inference model runs on: be, or its bf16-weight twin
// (backend_bf16_weights) for weights stored as bf16.
const Backend *model_source_backend(const ModelSource *src, const Backend *be);
// Creates an inference model (model/model.h: no gradients or optimizer state) of the source's
// shape with room for max_batch rows, holding its weights, on model_source_backend(src, be);
// --weights: "auto" (as stored: a GGUF of Q4_0 matrices in 4 bits, of Q8_0 (and Q4_0) ones in
// 8, where be has block ops; bf16 as bf16; the rest fp32), "fp32" (every weight decoded to
// fp32), "bf16" (bf16 weights and bf16 inputs to the projections, fp32 sums: vdpbf16ps's
// arithmetic, backend_cpu_bf16_pairs; weights_bf16 2), "q8" or "q4" (the matrices in 8- or 4-bit
// blocks at load, quantised with GGUF's Q8_0 or Q4_0 quantiser unless already such blocks).
// Refused off the CPU, for adapters and ternary models, and (q8, q4) for MoE models.
int model_source_choose_weights(ModelSource *src, const char *choice, const Backend *be,
                                Error *err);
// The mode model_source_build creates src's model in on be: MODEL_PACKED, MODEL_Q8 / MODEL_Q4
// (weights_bits on a backend with block ops) or MODEL_INFERENCE.
ModelMode model_source_mode(const ModelSource *src, const Backend *be);
// for a LoRA source, its base's weights (on the base's backend) with the adapters on top.
int model_source_build(const ModelSource *src, const Backend *be, int max_batch, Model *m,
                       Error *err);

// A run directory's checkpoints: the steps of its step_NNNNNNNN.ckpt files, newest first (the
// count, at most cap), and the path of one.
int run_checkpoints(const char *dir, int64_t *steps, int cap);
void run_checkpoint_path(const char *dir, int64_t step, char *out, size_t cap);

#endif

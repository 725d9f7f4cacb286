// Hugging Face model directories (config.json + safetensors weights) in and out of dllm's
// model. Four layouts map onto the one transformer of model/model.h:
//   LLaDA  (model_type "llada"): masked diffusion, model.transformer.* names, untied ff_out head
//   Dream  (model_type "Dream"): masked diffusion in the Qwen2 layout (GQA, q/k/v biases);
//          position i's token is read from logit row i - 1 (logit_shift)
//   LLaMA  (model_type "llama") and Qwen2 ("qwen2", q/k/v biases): causal LMs; Mistral
//          ("mistral", a sliding window) and Qwen3 ("qwen3", q/k norms)
//   LLaDA-MoE (model_type "llada_moe"): masked diffusion with a mixture of experts in the
//          transformers layout (mlp.gate, mlp.experts.E.*, shared_expert.*), q/k norms
//   LLaDA 2.0 (model_type "llada2_moe"): block diffusion (blocks of 32) with a mixture of
//          experts under the grouped sigmoid router, a fused query_key_value projection, q/k
//          norms and a partial rotary
// Every config value dllm does not implement is refused by name; the weights are read in
// whatever dtype the files hold (F32, F16, BF16) and widened to fp32. docs/formats.md lists
// the mapping.
#ifndef DLLM_HF_MODEL_H
#define DLLM_HF_MODEL_H

#include <stddef.h>

#include "common/error.h"
#include "model/config.h"
#include "model/safetensors.h"

typedef enum {
    HF_LLADA, HF_DREAM, HF_LLAMA, HF_QWEN2, HF_MISTRAL, HF_QWEN3, HF_LLADA_MOE, HF_LLADA2
} HfArch;

// Longest context an imported model is sized for (its own limit when smaller): activations
// and RoPE tables scale with it.
#define HF_MAX_SEQ_LEN 4096

// 1 when path is a directory holding a config.json.
int hf_model_dir(const char *path);
const char *hf_arch_name(HfArch a);
// dir/config.json into c (seq_len capped at HF_MAX_SEQ_LEN) and the weights' layout;
// *bf16 (when not NULL) = whether its torch_dtype says the weights are stored as bfloat16.
int hf_config_read(const char *dir, ModelConfig *c, HfArch *arch, int *bf16, Error *err);
// Every weight of dir's safetensors into params (param_count(c) floats, the layout of
// model/params.h). Refuses a missing tensor, a wrong shape and a tensor nothing reads.
// *all_bf16 (when not NULL) says whether every tensor was stored as BF16.
int hf_weights_read(const char *dir, const ModelConfig *c, HfArch arch, float *params,
                    int *all_bf16, Error *err);
// Receives the weights `n` values at a time, `offset` values into the flat layout.
typedef int (*WeightSink)(void *user, size_t offset, const float *values, size_t n, Error *err);
// The sink into host memory: user is the flat layout's floats.
int weight_sink_host(void *params, size_t offset, const float *values, size_t n, Error *err);
// The same reading, one tensor slice at a time into sink (host memory: the largest tensor).
int hf_weights_stream(const char *dir, const ModelConfig *c, HfArch arch, WeightSink sink,
                      void *user, Error *err);
// The file name of tensor `index` (ParamTensors order) of `layer` in layout a, into buf
// (`layer` counts the file's layers; a routed expert's tensors name expert `expert` too).
void hf_tensor_name(HfArch a, int index, int layer, char *buf, size_t cap);
void hf_expert_tensor_name(HfArch a, int index, int layer, int expert, char *buf, size_t cap);

// The layout hf_export writes a model in.
HfArch hf_export_arch(const ModelConfig *c);
// Writes dir/config.json and dir/model.safetensors: an MDM in the LLaDA layout, an AR model in
// the LLaMA layout (Qwen2 when it has q/k/v biases). Weights in dtype (F32 or BF16).
// bos_id / eos_id: the tokenizer's, written to config.json (-1: none).
int hf_export(const char *dir, const ModelConfig *c, const float *params, int bos_id, int eos_id,
              SafetensorsDtype dtype, Error *err);

#endif

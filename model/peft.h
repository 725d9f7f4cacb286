// LoRA adapters as a PEFT directory (Hugging Face's peft library): adapter_config.json and
// adapter_model.safetensors, whose tensors are named after the base's modules in its file
// layout: base_model.model.<module>.lora_A.weight [rank, in] and .lora_B.weight [out, rank],
// e.g. base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight (LLaMA / Qwen2 / Dream)
// or base_model.model.model.transformer.blocks.0.q_proj.lora_A.weight (LLaDA). What peft
// writes, dllm reads and the reverse; options dllm does not implement (DoRA, rsLoRA, per-module
// ranks, bias training, modules_to_save, an adapter on a module other than the seven
// projections) are refused by name.
#ifndef DLLM_PEFT_H
#define DLLM_PEFT_H

#include "common/error.h"
#include "model/config.h"
#include "model/hf_model.h"
#include "model/lora.h"

// 1 when path is a directory holding an adapter_config.json.
int peft_dir(const char *path);
// Writes dir/adapter_config.json and dir/adapter_model.safetensors (F32) for adapters in the
// flat layout of model/lora.h, named for a base in layout arch; lc->base is written as
// base_model_name_or_path.
int peft_write(const char *dir, const ModelConfig *c, const LoraConfig *lc, HfArch arch,
               const float *adapters, Error *err);
// dir/adapter_config.json: alpha, rank and the base's path (a local directory: relative paths
// are taken from the working directory, then from dir) into lc; targets are left for
// peft_read_adapters, which finds them in the tensors.
int peft_read_config(const char *dir, LoraConfig *lc, Error *err);
// dir/adapter_model.safetensors for a base of config c in layout arch: sets lc->targets from
// the tensors present, then reads them into adapters (lora_param_count floats, malloc'd into
// *adapters). Every tensor must be read: an adapter on anything else is refused by name.
int peft_read_adapters(const char *dir, const ModelConfig *c, LoraConfig *lc, HfArch arch,
                       float **adapters, Error *err);

#endif

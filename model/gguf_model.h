// GGUF model files (common/gguf.h) as dllm models: llama.cpp's architectures "llama" and
// "qwen2" (causal LMs), "llada" (masked diffusion, LLaDA) and "dream" (masked diffusion in the
// Qwen2 layout, logits shifted by one). Their config is the metadata ({arch}.block_count,
// .embedding_length, .attention.head_count, ...), the [MASK] the tokenizer's mask_token_id;
// their tensors ggml's names (token_embd, blk.N.attn_q, ..., output), each row-major with
// ne[0] the row length. llama.cpp's converter permutes the q and k rows of "llama" and
// "llada" (its RoPE turns adjacent pairs, transformers' the two halves of a head): the reader
// undoes that. Tensors in F32, F16, BF16, Q8_0, Q4_0 and Q4_K are decoded exactly to fp32
// (a BF16 file loads as bf16 weights); anything else, and every config value dllm does not
// implement (rope scaling, experts, a partial rotary), is refused by name.
#ifndef DLLM_GGUF_MODEL_H
#define DLLM_GGUF_MODEL_H

#include "common/error.h"
#include "common/gguf.h"
#include "model/config.h"
#include "model/hf_model.h"

// The config of g (seq_len capped at HF_MAX_SEQ_LEN), the layout it corresponds to, and
// *bf16 = whether every matrix is stored as BF16.
int gguf_model_config(const Gguf *g, ModelConfig *c, HfArch *arch, int *bf16, Error *err);
// Every weight of g, decoded, one layer's slice at a time into sink (host memory: the largest
// tensor); refuses a missing tensor, a wrong shape and a tensor nothing reads.
int gguf_model_weights(Gguf *g, const ModelConfig *c, HfArch arch, WeightSink sink, void *user,
                       Error *err);

#endif

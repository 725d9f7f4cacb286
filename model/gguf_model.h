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

// The config of g (seq_len capped at HF_MAX_SEQ_LEN), the layout it corresponds to, *bf16 =
// whether every matrix is stored as BF16, *bits = 4 when every one is Q4_0, 8 when every one is
// Q8_0 or Q4_0, else 0.
int gguf_model_config(const Gguf *g, ModelConfig *c, HfArch *arch, int *bf16, int *bits,
                      Error *err);
// Takes rows [row0, row0 + n_rows) (row0 a multiple of 16) of matrix i (a ParamTensors field) of
// layer l as GGUF rows of Q8_0 (bits 8) or Q4_0 (4) blocks.
typedef int (*BlockSink)(void *user, int i, int layer, int bits, int row0, int n_rows,
                         const uint8_t *rows, Error *err);
// Every weight of g, a chunk of rows at a time (host memory: at most the largest tensor): into
// sink decoded (each piece whole rows starting at a multiple of 16; q and k whole), or with
// block_sink (NULL: none) each Q8_0 or Q4_0 matrix a block-quantised model
// keeps in blocks (linear_qb_tensor) as its rows, unrounded: the file's own bytes, a chunk of
// rows at a time, each chunk's pages handed back once taken (or for q and k a copy in
// transformers' row order). Refuses a missing tensor, a wrong shape and a tensor
// nothing reads.
int gguf_model_weights(Gguf *g, const ModelConfig *c, HfArch arch, WeightSink sink,
                       BlockSink block_sink, void *user, Error *err);

#endif

// A GGUF file's tokenizer (tokenizer.ggml.*) as dllm's Hugging Face tokenizer: a byte-level BPE
// ("gpt2": tokens, merges, token types, the pre-tokenizer's name) is written out as the
// tokenizer.json and tokenizer_config.json it came from (vocabulary, merges, the named
// pre-tokenizer's split pattern, control and user-defined tokens as added tokens, the special
// tokens and chat template) and loaded as one (tokenizer/hf_tokenizer.h), so a model read from
// GGUF carries, exports and checkpoints its tokenizer like one read from a directory. The
// pre-tokenizers named llama-bpe (LLaMA 3), qwen2, gpt-2 and llada-moe are known; a
// SentencePiece vocabulary ("llama") and other names are refused by name.
#ifndef DLLM_GGUF_TOKENIZER_H
#define DLLM_GGUF_TOKENIZER_H

#include "common/error.h"
#include "common/gguf.h"
#include "tokenizer/tokenizer.h"

int gguf_tokenizer_load(Tokenizer *t, const Gguf *g, Error *err);

#endif

// A Hugging Face tokenizer as a model directory ships it: tokenizer.json (byte-level BPE,
// tokenizer/bpe.h), tokenizer_config.json (the special tokens and the chat template) and, in
// newer directories, chat_template.jinja. dllm keeps the files' bytes together as a bundle,
// which checkpoints carry and `prepare` copies beside its shards, so the tokenizer travels with
// the model exactly as it was read:
//     "DLLMHF01", uint32 part count, then per part: uint32 name length, name, uint64 size, bytes
// (little-endian). Special ids come from tokenizer_config.json: bos_token, eos_token,
// pad_token (else EOS), mask_token (else the first added token named <|mdm_mask|> (LLaDA),
// <|mask|> (Dream), [MASK] or <mask>); a missing one is -1.
#ifndef DLLM_HF_TOKENIZER_H
#define DLLM_HF_TOKENIZER_H

#include <stddef.h>

#include "common/error.h"
#include "tokenizer/tokenizer.h"

#define HF_BUNDLE_MAGIC "DLLMHF01"

// 1 when path names a tokenizer.json file or a directory holding one.
int hf_tokenizer_path(const char *path);
// Reads tokenizer.json (a file, or DIR/tokenizer.json) and the config files beside it.
int hf_tokenizer_load(Tokenizer *t, const char *path, Error *err);
// From a bundle (copied), e.g. a checkpoint's; `what` names its origin in errors.
int hf_tokenizer_from_bundle(Tokenizer *t, const char *bundle, size_t n, const char *what,
                             Error *err);
// From the texts of tokenizer.json and tokenizer_config.json (config NULL: none), e.g. made
// from a GGUF file's vocabulary (tokenizer/gguf_tokenizer.h).
int hf_tokenizer_from_texts(Tokenizer *t, const char *json, size_t json_len, const char *config,
                            size_t config_len, const char *what, Error *err);
// Writes the bundle's files into dir (each atomically), as a model directory has them.
int hf_tokenizer_write_files(const Tokenizer *t, const char *dir, Error *err);

#endif

// Byte-level BPE from a Hugging Face tokenizer.json (the GPT-2 / LLaMA-3 / Qwen2 family: LLaDA,
// Dream, LLaMA, Qwen, SmolLM), encoding exactly as the `tokenizers` library does:
//   1. added tokens are cut out of the text first (leftmost, then longest match);
//   2. each remaining segment is normalized (none, or NFC), split by the pre-tokenizer's
//      regexes (PCRE2 with Unicode properties, "Isolated": matches and the gaps between them
//      become pieces), and mapped byte by byte onto GPT-2's printable alphabet;
//   3. each piece is merged by BPE, lowest merge rank first, leftmost among equal ranks
//      (with `ignore_merges`, a piece that is itself in the vocabulary is taken whole).
// Anything in the file that would make the encoding differ and that this code does not
// implement (another model type, normalizer, pre-tokenizer or split behaviour, dropout,
// word prefixes/suffixes, byte fallback, added-token stripping) is refused at load, by name.
// The post-processor (the BOS a library call may add) is ignored: dllm's callers place BOS.
#ifndef DLLM_BPE_H
#define DLLM_BPE_H

#include <stddef.h>

#include "common/error.h"

typedef struct Bpe Bpe;

// Parses tokenizer.json text (NUL-terminated); `what` names it in errors.
Bpe *bpe_load(const char *json, const char *what, Error *err);
void bpe_free(Bpe *b);

int bpe_vocab_size(const Bpe *b);
// The id of a token given by its text (an added token's content, or a vocabulary entry's
// decoded bytes), or -1.
int bpe_token_id(const Bpe *b, const char *text);
// 1 for the added tokens the file marks special (never produced from text unless `specials`).
int bpe_is_special(const Bpe *b, int id);

// Encodes len bytes into a malloc'd array of *n ids, with room for one more. Special tokens'
// strings are matched only when `specials` is set (rendered chat templates); plain text reads
// them as text. Invalid UTF-8 is not normalized and is split by byte.
int bpe_encode(const Bpe *b, const char *text, size_t len, int specials, int **ids, size_t *n,
               Error *err);
// Decodes into a malloc'd string; special tokens decode to nothing.
int bpe_decode(const Bpe *b, const int *ids, size_t n, char **text, Error *err);
// A token's bytes (not NUL-terminated), or NULL for an unused id.
const char *bpe_token_bytes(const Bpe *b, int id, size_t *len);

#endif

// One tokenizer interface over the three kinds dllm uses: bytes (ids 0-255 plus specials, for
// tests and tiny experiments), a SentencePiece model (BPE or unigram, trained by dllm for real
// text), and a Hugging Face tokenizer.json (byte-level BPE: the tokenizers of imported models,
// tokenizer/hf_tokenizer.h).
// dllm's own kinds have all the reserved specials: [MASK] (what the diffusion model fills in),
// BOS, EOS (ends each document in the shards), PAD, and the SFT markers <|prompt|>/<|response|>.
// A Hugging Face tokenizer has the ones its files name (-1 for the others) and lays chats out
// with its own template (tokenizer/chat_template.h).
#ifndef DLLM_TOKENIZER_H
#define DLLM_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/spm_shim.h"

typedef enum { TOKENIZER_BYTES, TOKENIZER_SPM, TOKENIZER_BPE } TokenizerKind;

typedef struct Bpe Bpe;

typedef struct {
    TokenizerKind kind;
    SpmModel *spm;
    Bpe *bpe;
    // what checkpoints carry (NULL for bytes): the serialized SentencePiece model, or the
    // Hugging Face files' bundle
    char *blob;
    size_t blob_bytes;
    ChatTemplate chat;  // CHAT_DLLM for dllm's own kinds
    int vocab_size;
    int mask_id, bos_id, eos_id, pad_id, prompt_id, response_id;
    uint64_t hash;  // identifies the tokenizer; shard headers record it
} Tokenizer;

#define TOKENIZER_PIECE_MAX 64

void tokenizer_init_bytes(Tokenizer *t);
// "bytes" gives the byte tokenizer; a tokenizer.json file or a directory holding one gives a
// Hugging Face tokenizer, and so does a GGUF file's vocabulary; anything else is read as a
// SentencePiece .model file.
int tokenizer_load(Tokenizer *t, const char *path, Error *err);
// From a blob as Tokenizer.blob holds it (copied); `what` names its origin in errors.
int tokenizer_from_blob(Tokenizer *t, const char *blob, size_t n, const char *what,
                        Error *err);
void tokenizer_free(Tokenizer *t);

// Encodes len bytes into a malloc'd array of *n ids, with room for one more (an EOS).
// Text never produces [MASK] or any other special token.
int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, int **ids, size_t *n,
                     Error *err);
// The same, but a Hugging Face tokenizer's special-token strings become those tokens: for text
// rendered by a chat template.
int tokenizer_encode_special(const Tokenizer *t, const char *text, size_t len, int **ids,
                             size_t *n, Error *err);
// Decodes into a malloc'd string; special tokens other than the SFT markers decode to nothing.
int tokenizer_decode(const Tokenizer *t, const int *ids, size_t n, char **text, Error *err);
// What one token shows on screen: its text (SentencePiece's ▁ as a space, byte pieces as the
// byte), or a bracketed name for a special token (a Hugging Face tokenizer's as the file spells
// it, e.g. <|eot_id|>). Returns buf (TOKENIZER_PIECE_MAX bytes).
const char *tokenizer_piece(const Tokenizer *t, int id, char *buf);
// The same, with its length in *len: a piece may be or hold the byte 0 (byte-level vocabularies).
const char *tokenizer_piece_len(const Tokenizer *t, int id, char *buf, size_t *len);
int tokenizer_is_special(const Tokenizer *t, int id);
// "bytes", "sentencepiece" or "tokenizer.json" (Hugging Face byte-level BPE).
const char *tokenizer_kind_name(const Tokenizer *t);
// The id of a Hugging Face tokenizer's token given by its text, or -1 (always -1 for dllm's
// own kinds: their specials are the fields above).
int tokenizer_token_id(const Tokenizer *t, const char *text);

#endif

// One tokenizer interface over the two kinds dllm uses: bytes (ids 0-255 plus specials, for
// tests and tiny experiments) and a SentencePiece model (BPE or unigram, for real text).
// Every tokenizer has the reserved specials: [MASK] (what the diffusion model fills in), BOS,
// EOS (ends each document in the shards), PAD, and the SFT markers <|prompt|>/<|response|>.
#ifndef DLLM_TOKENIZER_H
#define DLLM_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "tokenizer/spm_shim.h"

typedef enum { TOKENIZER_BYTES, TOKENIZER_SPM } TokenizerKind;

typedef struct {
    TokenizerKind kind;
    SpmModel *spm;
    char *proto;  // the serialized SentencePiece model (NULL for bytes): checkpoints carry it
    size_t proto_bytes;
    int vocab_size;
    int mask_id, bos_id, eos_id, pad_id, prompt_id, response_id;
    uint64_t hash;  // identifies the tokenizer; shard headers record it
} Tokenizer;

#define TOKENIZER_PIECE_MAX 64

void tokenizer_init_bytes(Tokenizer *t);
// "bytes" gives the byte tokenizer; anything else is read as a SentencePiece .model file.
int tokenizer_load(Tokenizer *t, const char *path, Error *err);
// From a serialized SentencePiece model (copied); `what` names its origin in errors.
int tokenizer_from_proto(Tokenizer *t, const char *proto, size_t n, const char *what,
                         Error *err);
void tokenizer_free(Tokenizer *t);

// Encodes len bytes into a malloc'd array of *n ids, with room for one more (an EOS).
// Text never produces [MASK].
int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, int **ids, size_t *n,
                     Error *err);
// Decodes into a malloc'd string; special tokens other than the SFT markers decode to nothing.
int tokenizer_decode(const Tokenizer *t, const int *ids, size_t n, char **text, Error *err);
// What one token shows on screen: its text (SentencePiece's ▁ as a space, byte pieces as the
// byte), or a bracketed name for a special token. Returns buf (TOKENIZER_PIECE_MAX bytes).
const char *tokenizer_piece(const Tokenizer *t, int id, char *buf);
int tokenizer_is_special(const Tokenizer *t, int id);

#endif

// The C face of SentencePiece (a C++ library): the one place dllm touches C++.
// Models travel as their serialized protobuf bytes, so a checkpoint can carry its tokenizer.
// Failures return -1 (or NULL) with SentencePiece's own status text in err.
#ifndef DLLM_SPM_SHIM_H
#define DLLM_SPM_SHIM_H

#include <stddef.h>

#include "common/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct SpmModel SpmModel;

// Trains with SentencePiece's options as n key/value pairs ("input", "a.txt"; "vocab_size",
// "4096"; ...) and returns the model as a malloc'd byte array in *proto.
int spm_train(const char *const *keys, const char *const *values, int n, char **proto,
              size_t *proto_bytes, Error *err);
SpmModel *spm_load(const char *proto, size_t proto_bytes, Error *err);
void spm_free(SpmModel *m);
int spm_vocab_size(const SpmModel *m);
// Encodes len bytes of text into a malloc'd array of ids.
int spm_encode(const SpmModel *m, const char *text, size_t len, int **ids, size_t *n,
               Error *err);
// Decodes ids into a malloc'd NUL-terminated string.
int spm_decode(const SpmModel *m, const int *ids, size_t n, char **text, Error *err);
// The piece of an id as stored in the model ("▁the", "<0x0A>", "[MASK]").
const char *spm_id_to_piece(const SpmModel *m, int id);
// The id of a piece, or -1 when the model does not have it.
int spm_piece_to_id(const SpmModel *m, const char *piece);
// 1 if id is a raw byte piece (byte fallback); *byte receives the byte.
int spm_is_byte(const SpmModel *m, int id, unsigned char *byte);

#ifdef __cplusplus
}
#endif

#endif

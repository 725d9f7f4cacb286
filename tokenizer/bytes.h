// The byte-level tokenizer's ids: 0-255 are the bytes themselves, then the special tokens.
// Good for tests and tiny experiments on any file, with no tokenizer to train.
#ifndef DLLM_BYTES_H
#define DLLM_BYTES_H

#include <stddef.h>

enum {
    BYTE_MASK = 256,  // [MASK], what the diffusion model fills in
    BYTE_BOS = 257,
    BYTE_EOS = 258,
    BYTE_PAD = 259,
    BYTE_PROMPT = 260,    // <|prompt|>, SFT marker
    BYTE_RESPONSE = 261,  // <|response|>, SFT marker
    BYTE_VOCAB_SIZE = 262,
};

// ids[i] = bytes[i]
void bytes_encode(const unsigned char *bytes, size_t n, int *ids);

#endif

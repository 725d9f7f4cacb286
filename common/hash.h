// FNV-1a, 64 bit: checksums of checkpoints and the identity of a tokenizer in shard headers.
#ifndef DLLM_HASH_H
#define DLLM_HASH_H

#include <stddef.h>
#include <stdint.h>

#define FNV1A_INIT 0xcbf29ce484222325ULL

// Continues hash h over n bytes; start with FNV1A_INIT.
uint64_t fnv1a(uint64_t h, const void *data, size_t n);

#endif

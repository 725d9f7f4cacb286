#include "tokenizer/bytes.h"

void bytes_encode(const unsigned char *bytes, size_t n, int *ids) {
    for (size_t i = 0; i < n; i++) ids[i] = bytes[i];
}

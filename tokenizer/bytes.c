#include "tokenizer/bytes.h"

#include <stdio.h>

void bytes_encode(const unsigned char *bytes, size_t n, int *ids) {
    for (size_t i = 0; i < n; i++) ids[i] = bytes[i];
}

const char *bytes_piece(int id, char *buf) {
    static const char *const specials[] = {"[MASK]", "[BOS]", "[EOS]", "[PAD]"};
    if (id >= 0 && id < 256) {
        buf[0] = (char)id;
        buf[1] = '\0';
    } else if (id >= BYTE_MASK && id < BYTE_VOCAB_SIZE) {
        snprintf(buf, 8, "%s", specials[id - BYTE_MASK]);
    } else {
        snprintf(buf, 8, "[?]");
    }
    return buf;
}

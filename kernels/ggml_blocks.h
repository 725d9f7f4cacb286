// GGUF's weight blocks, decoded to fp32 (what llama.cpp's ggml writes and gguf-py's
// quants.py dequantises; the layouts here are the byte layouts of the file):
//   Q8_0: 32 weights: fp16 scale d, int8 q[32];                   w = d q
//   Q4_0: 32 weights: fp16 scale d, 16 bytes: weight j < 16 in the low nibble of byte j,
//         weight 16 + j in its high nibble;                         w = d (nibble - 8)
//   Q4_K: 256 weights in 8 groups of 32: fp16 d, fp16 dmin, 12 bytes of six-bit group scales
//         and mins, 128 bytes of nibbles (bytes 32 c .. 32 c + 31 hold group 2c in their low
//         nibbles, group 2c + 1 in their high ones);              w = d sc q - dmin m
//   Q5_K: Q4_K's d, dmin and scales, then 32 bytes of fifth bits (bit 2c of byte j: group
//         2c's weight j, bit 2c + 1: group 2c + 1's), then Q4_K's nibbles; q = nibble + 16 bit
//   Q6_K: 256 weights in 16 groups of 16: 128 bytes of low nibbles, 64 bytes of high bit
//         pairs, 16 int8 group scales, fp16 d. Each half of 128 weights: nibble bytes
//         l (low: weight l, high: weight 64 + l) and 32 + l (low: 32 + l, high: 96 + l), the
//         pairs of byte l bits 0-1, 2-3, 4-5, 6-7 for weights l, 32 + l, 64 + l, 96 + l;
//                                                                 w = d sc (q - 32)
// Every decode is exact in fp32 for Q8_0 and Q4_0 (a half times a small integer); the K
// types' are the reference's roundings (d sc, then times q, minus dmin m).
#ifndef DLLM_GGML_BLOCKS_H
#define DLLM_GGML_BLOCKS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/bf16.h"
#include "common/gguf.h"

static inline float ggml_half(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return f16_to_float(h);
}

// Group j's six-bit scale and min of a Q4_K block's 12 bytes: groups 0-3 in the low six bits
// of bytes j and j + 4; groups 4-7 split, the low four bits in byte j + 4's nibbles, the high
// two in the top bits of bytes j - 4 and j.
static inline void q4k_scale_min(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

// One Q4_K block (high NULL) or Q5_K block (high: its 32 bytes of fifth bits) of 256 values:
// d, dmin and the scales at block, the nibbles at q.
static inline void k_block_decode(const uint8_t *block, const uint8_t *high, const uint8_t *q,
                                  float *out) {
    float d = ggml_half(block), dmin = ggml_half(block + 2);
    for (int g = 0; g < 8; g++) {
        int sc, m;
        q4k_scale_min(block + 4, g, &sc, &m);
        float dl = d * (float)sc, ml = dmin * (float)m;
        const uint8_t *bytes = q + 32 * (g / 2);
        for (int j = 0; j < 32; j++) {
            int v = g % 2 ? bytes[j] >> 4 : bytes[j] & 0xF;
            if (high) v += 16 * ((high[j] >> g) & 1);
            out[32 * g + j] = dl * (float)v - ml;
        }
    }
}

// n values (whole blocks for the block types) of a row of type t at src into dst.
static inline void ggml_decode_row(GgmlType t, const uint8_t *src, float *dst, size_t n) {
    switch (t) {
    case GGML_F32: memcpy(dst, src, n * sizeof(float)); break;
    case GGML_F16:
        for (size_t i = 0; i < n; i++) dst[i] = ggml_half(src + 2 * i);
        break;
    case GGML_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = bf16_to_float(h);
        }
        break;
    case GGML_Q8_0:
        for (size_t b = 0; b < n / 32; b++, src += 34) {
            float d = ggml_half(src);
            for (int j = 0; j < 32; j++) dst[32 * b + j] = d * (float)(int8_t)src[2 + j];
        }
        break;
    case GGML_Q4_0:
        for (size_t b = 0; b < n / 32; b++, src += 18) {
            float d = ggml_half(src);
            for (int j = 0; j < 16; j++) {
                dst[32 * b + j] = d * (float)((src[2 + j] & 0xF) - 8);
                dst[32 * b + 16 + j] = d * (float)((src[2 + j] >> 4) - 8);
            }
        }
        break;
    case GGML_Q4_K:
        for (size_t b = 0; b < n / 256; b++, src += 144)
            k_block_decode(src, NULL, src + 16, dst + 256 * b);
        break;
    case GGML_Q5_K:
        for (size_t b = 0; b < n / 256; b++, src += 176)
            k_block_decode(src, src + 16, src + 48, dst + 256 * b);
        break;
    case GGML_Q6_K:
        for (size_t b = 0; b < n / 256; b++, src += 210) {
            float d = ggml_half(src + 208);
            const int8_t *scales = (const int8_t *)(src + 192);
            for (int half = 0; half < 2; half++) {
                const uint8_t *low = src + 64 * half, *pairs = src + 128 + 32 * half;
                float *out = dst + 256 * b + 128 * half;
                for (int l = 0; l < 32; l++)
                    for (int k = 0; k < 4; k++) {  // weight 32 k + l
                        int nib = (k % 2 ? low[l + 32] : low[l]) >> (k / 2 * 4) & 0xF;
                        int q = (nib | ((pairs[l] >> (2 * k)) & 3) << 4) - 32;
                        out[32 * k + l] = d * (float)scales[8 * half + 2 * k + l / 16] * (float)q;
                    }
            }
        }
        break;
    }
}

#endif

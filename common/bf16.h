// bfloat16 on the host: the top 16 bits of an IEEE fp32. Widening is exact; narrowing rounds
// to nearest, ties to even (NaN stays NaN), as PyTorch and CUDA's __float2bfloat16 do.
#ifndef DLLM_BF16_H
#define DLLM_BF16_H

#include <stdint.h>
#include <string.h>

static inline float bf16_to_float(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t float_to_bf16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x40);
    bits += 0x7fffu + ((bits >> 16) & 1);
    return (uint16_t)(bits >> 16);
}

#endif

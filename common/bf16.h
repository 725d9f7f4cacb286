// bfloat16 on the host: the top 16 bits of an IEEE fp32. Widening is exact; narrowing rounds
// to nearest, ties to even (NaN stays NaN), as PyTorch and CUDA's __float2bfloat16 do.
// IEEE half precision (safetensors' F16, GGUF's F16 and its blocks' scales) widens exactly too.
#ifndef DLLM_BF16_H
#define DLLM_BF16_H

#include <math.h>
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

// IEEE binary16 to fp32, exactly (subnormals, infinities, NaN kept).
static inline float f16_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);  // inf, NaN
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    } else if (mant == 0) {
        bits = sign;
    } else {  // subnormal: normalise
        int e = -1;
        do {
            e++;
            mant <<= 1;
        } while (!(mant & 0x400));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((mant & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

// fp32 to IEEE binary16, rounded to nearest, ties to even (F16C's vcvtps2ph and numpy's
// astype(float16)): what GGUF's block scales are stored as.
static inline uint16_t float_to_f16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    uint16_t sign = (uint16_t)((bits >> 16) & 0x8000);
    uint32_t mag = bits & 0x7fffffffu;
    if (mag > 0x7f800000u) return sign | 0x7e00;   // NaN
    if (mag >= 0x477ff000u) return sign | 0x7c00;  // 65520 and up round to infinity
    if (mag < 0x38800000u) {  // below 2^-14: a subnormal half, in units of 2^-24 (exact scaling)
        float a;
        memcpy(&a, &mag, 4);
        return sign | (uint16_t)lrintf(a * 16777216.0f);
    }
    uint32_t r = mag - 0x38000000u;  // the exponent rebiased from 127 to 15
    r += 0x0fffu + ((r >> 13) & 1);
    return sign | (uint16_t)(r >> 13);
}

#endif

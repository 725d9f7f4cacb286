// exp(x) in a form the compiler turns into vector instructions inside `omp simd` loops (a call to
// expf keeps a loop scalar: the softmaxes of the cross-entropy and of attention spent a sixth of
// a training step in expf). Cody-Waite range reduction x = n ln2 + r, |r| <= ln2 / 2, then a
// degree-6 polynomial for exp(r) (the Cephes coefficients) and 2^n built in the exponent bits.
// Within 2 ulp of expf for finite results; 0 below -87, inf above 88, NaN stays NaN.
#ifndef DLLM_EXP_SIMD_H
#define DLLM_EXP_SIMD_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#pragma omp declare simd notinbranch
static inline float exp_simd(float x) {
    float xc = x < -87.0f ? -87.0f : x;  // not fminf/fmaxf: they stay calls, scalar
    xc = xc > 88.0f ? 88.0f : xc;
    // round(x / ln2) by the 1.5 * 2^23 trick: plain arithmetic, so it vectorises everywhere
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = xc - n * 0.693359375f + n * 2.12194440e-4f;  // ln2 in two parts
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;  // 2^n, n in [-126, 127]
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    y *= scale;
    y = x < -87.0f ? 0.0f : y;
    y = x > 88.0f ? INFINITY : y;
    return x != x ? x : y;
}

#endif

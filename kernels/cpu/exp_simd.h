// exp and log in a form the compiler turns into vector instructions inside `omp simd` loops (a
// call to expf keeps a loop scalar: the softmaxes of the cross-entropy and of attention spent a
// sixth of a training step in expf). exp: Cody-Waite range reduction x = n ln2 + r,
// |r| <= ln2 / 2, then a degree-6 polynomial for exp(r) (the Cephes coefficients) and 2^n built
// in the exponent bits. Within 2 ulp of expf for finite results; 0 below -87, inf above 88, NaN
// stays NaN.
#ifndef DLLM_EXP_SIMD_H
#define DLLM_EXP_SIMD_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#pragma omp declare simd notinbranch
static inline float exp_simd(float x) {
    // not fminf/fmaxf: they stay calls, scalar. NaN clamps to -87 (every comparison with it is
    // false), so the int conversion below never sees it; the result is NaN again at the end
    float xc = x > -87.0f ? x : -87.0f;
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

// exp(x) in double, the same way: n = round(x / ln2), |r| <= ln2 / 2, Taylor to r^12 (the
// truncation error, (ln2/2)^13 / 13!, is under 2e-16 relative), 2^n in the exponent bits.
// Within 2 ulp of exp; 0 below -708, inf above 709, NaN stays NaN. The sampler's confidences
// (softmax over the vocabulary in double, as LLaDA's reference) spent 13% of a pass in exp.
#pragma omp declare simd notinbranch
static inline double exp_simd_double(double x) {
    double xc = x > -708.0 ? x : -708.0;  // NaN too, as exp_simd
    xc = xc > 709.0 ? 709.0 : xc;
    double n = (xc * 1.4426950408889634 + 6755399441055744.0) - 6755399441055744.0;
    double r = xc - n * 6.93147180369123816490e-01 - n * 1.90821492927058770002e-10;
    double p = 1.0 / 479001600.0;  // 1/12!
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    double y = p * r + 1.0;
    int64_t bits = ((int64_t)n + 1023) << 52;  // 2^n, n in [-1022, 1023]
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    y *= scale;
    y = x < -708.0 ? 0.0 : y;
    y = x > 709.0 ? INFINITY : y;
    return x != x ? x : y;
}

// log(x) in double for positive, normal, finite x (the Gumbel noise's domain), vectorisable
// the same way: x = m 2^e with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(s), s = (m-1)/(m+1),
// |s| <= 0.1716, the atanh series to s^23 (truncation under 1e-17 relative). Within 2 ulp of
// log. The sampler's Gumbel noise (two logs per vocabulary entry) doubled a pass's time with
// libm's log.
#pragma omp declare simd notinbranch
static inline double log_simd_double(double x) {
    int64_t bits;
    memcpy(&bits, &x, sizeof bits);
    int64_t e = ((bits >> 52) & 0x7ff) - 1023;
    int64_t mbits = (bits & 0xfffffffffffffLL) | 0x3ff0000000000000LL;  // m in [1, 2)
    double m;
    memcpy(&m, &mbits, sizeof m);
    int big = m > 1.4142135623730951;
    m = big ? 0.5 * m : m;
    double ed = (double)(e + big);
    double s = (m - 1.0) / (m + 1.0), z = s * s;
    double p = 1.0 / 23;
    p = p * z + 1.0 / 21;
    p = p * z + 1.0 / 19;
    p = p * z + 1.0 / 17;
    p = p * z + 1.0 / 15;
    p = p * z + 1.0 / 13;
    p = p * z + 1.0 / 11;
    p = p * z + 1.0 / 9;
    p = p * z + 1.0 / 7;
    p = p * z + 1.0 / 5;
    p = p * z + 1.0 / 3;
    // ln2 in two parts: ed * hi is exact for |e| < 2^11
    return ed * 6.93147180369123816490e-01 + (2.0 * s + 2.0 * s * z * p +
                                              ed * 1.90821492927058770002e-10);
}

#endif

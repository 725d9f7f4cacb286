// Counter-based random numbers for the sampler's Gumbel noise: the draw for (seed, index) is
// a pure function, so the CPU and CUDA backends (and any thread order) pick the same tokens.
// Included by C and CUDA sources alike.
#ifndef DLLM_NOISE_H
#define DLLM_NOISE_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define NOISE_FN static inline __host__ __device__
#else
#define NOISE_FN static inline
#endif

// splitmix64's finaliser: a bijection that scatters nearby counters.
NOISE_FN uint64_t noise_mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

// Gumbel(0, 1) noise -log(-log u) in double, u uniform strictly inside (0, 1) from 53 random
// bits: (k + 0.5) / 2^53 is exact in double, so u never rounds to 0 or 1 and the noise is always
// finite, over [-3.6, 37.4]. (A float u from 24 bits rounded to exactly 1 for the top draw, one
// in 2^24: +inf noise, a uniformly random token; and cut the tail at 15.9. LLaDA draws its
// noise in float64 for the same reason, arXiv:2409.02908.)
NOISE_FN double noise_gumbel(uint64_t seed, uint64_t index) {
    double u = ((double)(noise_mix(seed ^ noise_mix(index)) >> 11) + 0.5) / 9007199254740992.0;
    return -log(-log(u));
}

#endif

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

// Gumbel(0, 1) noise -log(-log u), u uniform in (0, 1) from 24 random bits (exact in float).
NOISE_FN float noise_gumbel(uint64_t seed, uint64_t index) {
    float u = ((float)(noise_mix(seed ^ noise_mix(index)) >> 40) + 0.5f) / 16777216.0f;
    return -logf(-logf(u));
}

#endif

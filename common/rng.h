// A small seeded random generator (xoshiro256**). Each purpose (init, data order, masking,
// sampling) owns one, so that changing one never shifts another, and each is saved in
// checkpoints so that a resumed run draws exactly what the uninterrupted run would have.
#ifndef DLLM_RNG_H
#define DLLM_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} Rng;

void rng_seed(Rng *rng, uint64_t seed);
uint64_t rng_next(Rng *rng);
float rng_uniform(Rng *rng);               // in [0, 1)
float rng_normal(Rng *rng);                // standard normal
uint64_t rng_below(Rng *rng, uint64_t n);  // in [0, n), n > 0

#endif

// Which keys an attention query sees, as one int `mask` the attention ops take (both backends;
// included by C and CUDA sources alike):
//   ATTN_FULL            every key (MDM)
//   ATTN_CAUSAL          keys up to the query's own position (AR)
//   attn_block(L)        keys up to the end of the query's block of L positions (block
//                        diffusion: committed blocks and the block being denoised; the sampler)
//   attn_bd3(L)          BD3-LM's training layout of 2T rows per sequence, [clean x0 | noisy xt]:
//                        a clean row sees the clean keys up to its block's end, a noisy row of
//                        block b its own noisy block and the clean blocks before b
//   attn_window(w)       keys up to w positions past the query (0: causal; >= T: full): the
//                        causal-to-bidirectional annealing of an AR model adapted to diffusion
//   attn_sliding(w)      the w keys ending at the query's own position (Mistral's sliding
//                        window: causal, and nothing w or more positions back)
// The kind sits in the three low bits, the block length or window above them.
// Every kind shows a query the keys [0, end0) and [start1, end1) (the second range is empty
// except for noisy bd3 rows and sliding windows), and the last visible key never moves back as
// the query advances,
// which is what lets the kernels bound a tile of queries by its last row.
#ifndef DLLM_ATTN_MASK_H
#define DLLM_ATTN_MASK_H

#ifdef __CUDACC__
#define ATTN_FN static inline __host__ __device__
#else
#define ATTN_FN static inline
#endif

enum { ATTN_FULL = 0, ATTN_CAUSAL = 1, ATTN_BLOCK = 2, ATTN_BD3 = 3, ATTN_WINDOW = 4,
       ATTN_SLIDING = 5 };

ATTN_FN int attn_block(int block) { return block << 3 | ATTN_BLOCK; }
ATTN_FN int attn_bd3(int block) { return block << 3 | ATTN_BD3; }
ATTN_FN int attn_window(int w) { return w << 3 | ATTN_WINDOW; }
ATTN_FN int attn_sliding(int w) { return w << 3 | ATTN_SLIDING; }
ATTN_FN int attn_kind(int mask) { return mask & 7; }
ATTN_FN int attn_block_length(int mask) { return mask >> 3; }

ATTN_FN int attn_min(int a, int b) { return a < b ? a : b; }

// The keys query position q sees among Tk: [0, *end0) and [*start1, *end1).
ATTN_FN void attn_keys(int mask, int q, int Tk, int *end0, int *start1, int *end1) {
    int L = attn_block_length(mask), half = Tk / 2;
    *end0 = Tk, *start1 = *end1 = Tk;
    switch (attn_kind(mask)) {
    case ATTN_CAUSAL:
        *end0 = attn_min(q + 1, Tk);
        break;
    case ATTN_BLOCK:
        *end0 = attn_min((q / L + 1) * L, Tk);
        break;
    case ATTN_WINDOW:  // L is the window here
        *end0 = q + 1 + L < Tk ? q + 1 + L : Tk;
        break;
    case ATTN_SLIDING:  // L is the window: keys q - L + 1 .. q, as the second range
        *end0 = 0;
        *start1 = q + 1 - L > 0 ? q + 1 - L : 0;
        *end1 = attn_min(q + 1, Tk);
        break;
    case ATTN_BD3:
        if (q < half) {  // clean: block-causal over the clean half
            *end0 = attn_min((q / L + 1) * L, half);
        } else {  // noisy block b: the clean blocks before it, then itself
            int b0 = (q - half) / L * L;
            *end0 = b0;
            *start1 = half + b0;
            *end1 = attn_min(half + b0 + L, Tk);
        }
        break;
    }
}

// One past the last key query q sees (never smaller for a later query).
ATTN_FN int attn_keys_end(int mask, int q, int Tk) {
    int end0, start1, end1;
    attn_keys(mask, q, Tk, &end0, &start1, &end1);
    return end1 > start1 ? end1 : end0;
}

// 1 when key j lies in the ranges attn_keys gave: [0, end0) or [start1, end1). Kernels that
// walk many keys of one query compute the ranges once and ask this.
ATTN_FN int attn_in_ranges(int j, int end0, int start1, int end1) {
    return j < end0 || (j >= start1 && j < end1);
}

// 1 when query q sees key j.
ATTN_FN int attn_sees(int mask, int q, int j, int Tk) {
    int end0, start1, end1;
    attn_keys(mask, q, Tk, &end0, &start1, &end1);
    return attn_in_ranges(j, end0, start1, end1);
}

// The first query position that sees key j (queries before it never do): the tiles of queries
// a key's gradient pass may skip.
ATTN_FN int attn_first_query(int mask, int j, int Tk) {
    switch (attn_kind(mask)) {
    case ATTN_CAUSAL:
    case ATTN_SLIDING:
        return j;
    case ATTN_WINDOW:
        return j - attn_block_length(mask) > 0 ? j - attn_block_length(mask) : 0;
    case ATTN_BLOCK:
        return j / attn_block_length(mask) * attn_block_length(mask);
    case ATTN_BD3:  // clean keys are seen from their block on; noisy keys only by their block
        return j < Tk / 2 ? j / attn_block_length(mask) * attn_block_length(mask)
                          : Tk / 2 + (j - Tk / 2) / attn_block_length(mask) *
                                         attn_block_length(mask);
    }
    return 0;
}

#endif

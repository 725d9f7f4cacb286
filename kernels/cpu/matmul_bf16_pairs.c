// bf16 weights times bf16 inputs, summed in fp32: the arithmetic of AVX-512 BF16's vdpbf16ps
// (what llama.cpp's bf16 CPU path runs), twice the multiply-adds per instruction of the fp32
// kernels. The inputs are rounded to bf16 (nearest, ties to even), so a pass differs from the
// exact bf16-weight ops (matmul_panels.c) by that rounding: an opt-in table
// (backend_cpu_bf16_pairs, `--weights bf16`).
// Layout: a matrix [C_out, C_in] (C_in even) in blocks of 16 output rows (the last may have
// fewer), each stored in its own place as C_in / 2 steps of 16 pairs: step p holds, for each
// output o of the block, its weights at inputs 2 p and 2 p + 1 (32 bits: what one lane of
// vdpbf16ps takes).
// Each output is, from 0, for p in order: sum += w[2p+1] x[2p+1], then sum += w[2p] x[2p], each
// product exact in fp32 and each sum rounded to nearest, with bf16 subnormal inputs and fp32
// subnormal results taken as zero (the instruction's definition; measured on this CPU, bit for
// bit). The plain loop below is the same arithmetic, so the two give the same bits at any
// thread count.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/bf16.h"
#include "kernels/cpu/cpu_ops.h"

#if defined(__AVX512BF16__) && defined(__AVX512BW__)
#include <immintrin.h>
#define PAIRS_SIMD 1
#endif

enum { PANEL = 16, TILE_ROWS = 12 };

// A block's rows to pairs (to_panels 1) or back, in place through scratch.
static void convert_block(uint16_t *block, uint16_t *scratch, int rows, int C_in, int to_panels) {
    memcpy(scratch, block, (size_t)rows * C_in * sizeof(uint16_t));
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < C_in; i++) {
            size_t row_at = (size_t)r * C_in + i, pair_at = ((size_t)(i / 2) * rows + r) * 2 + i % 2;
            if (to_panels) block[pair_at] = scratch[row_at];
            else block[row_at] = scratch[pair_at];
        }
}

// Blocks are independent: the threads take them in turn, each with its own scratch.
void cpu_panels_convert_pairs(float *w_bf16, int C_out, int C_in, int to_panels) {
    uint16_t *w = (uint16_t *)(void *)w_bf16;
#pragma omp parallel if (worth_threads((double)C_out * C_in))
    {
        uint16_t *scratch = malloc((size_t)PANEL * C_in * 2);
#pragma omp for schedule(static)
        for (int o0 = 0; o0 < C_out; o0 += PANEL)
            convert_block(w + (size_t)o0 * C_in, scratch,
                          C_out - o0 < PANEL ? C_out - o0 : PANEL, C_in, to_panels);
        free(scratch);
    }
}

// Subnormal to (signed) zero: the instruction's DAZ and FTZ.
static inline float flush(float x) { return fpclassify(x) == FP_SUBNORMAL ? copysignf(0.0f, x) : x; }

// x rounded to bf16, every row.
static uint16_t *inputs_bf16(const float *x, size_t n) {
    uint16_t *x16 = malloc(n * sizeof(uint16_t));
#pragma omp parallel for if (worth_threads((double)n))
    for (size_t i = 0; i < n; i++) x16[i] = float_to_bf16(x[i]);
    return x16;
}

// Output o of the matrix w (in pairs) for the bf16 input row x, in the instruction's order.
static float pair_dot(const uint16_t *w, int C_out, int C_in, int o, const uint16_t *x) {
    int o0 = o / PANEL * PANEL, rows = C_out - o0 < PANEL ? C_out - o0 : PANEL;
    const uint16_t *block = w + (size_t)o0 * C_in;
    float sum = 0.0f;
    for (int p = 0; p < C_in / 2; p++) {
        const uint16_t *pair = block + ((size_t)p * rows + (o - o0)) * 2;
        for (int k = 1; k >= 0; k--)
            sum = flush(sum + flush(flush(bf16_to_float(pair[k])) *
                                    flush(bf16_to_float(x[2 * p + k]))));
    }
    return sum;
}

void cpu_matmul_pairs_ref(float *out, const float *inp, const float *panels, int N, int C_in,
                          int C_out) {
    const uint16_t *w = (const uint16_t *)(const void *)panels;
    uint16_t *x16 = inputs_bf16(inp, (size_t)N * C_in);
#pragma omp parallel for collapse(2) if (worth_threads((double)N * C_in * C_out))
    for (int n = 0; n < N; n++)
        for (int o = 0; o < C_out; o++)
            out[(size_t)n * C_out + o] = pair_dot(w, C_out, C_in, o, x16 + (size_t)n * C_in);
    free(x16);
}

#ifndef PAIRS_SIMD
void cpu_matmul_forward_pairs(Act *out, const Act *inp, const float *panels, int N, int C_in,
                              int C_out) {
    cpu_matmul_pairs_ref(out, inp, panels, N, C_in, C_out);
}
#else
// R rows (a constant at each call) of bf16 inputs against full blocks a and b (32 outputs):
// per step two 64-byte loads, one broadcast of an input pair per row, two vdpbf16ps per row.
static inline __attribute__((always_inline)) void tile(float *out, int C_out, const uint16_t *x,
                                                       int C_in, const uint16_t *a,
                                                       const uint16_t *b, int two, int o0,
                                                       const int R) {
    __m512 acc[TILE_ROWS][2];
#pragma GCC unroll 12
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int p = 0; p < C_in / 2; p++) {
        __m512bh wa = (__m512bh)_mm512_loadu_si512(a + (size_t)p * 32);
        __m512bh wb = two ? (__m512bh)_mm512_loadu_si512(b + (size_t)p * 32) : wa;
#pragma GCC unroll 12
        for (int r = 0; r < R; r++) {
            int32_t pair;
            memcpy(&pair, x + (size_t)r * C_in + 2 * p, 4);
            __m512bh xv = (__m512bh)_mm512_set1_epi32(pair);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], wa, xv);
            if (two) acc[r][1] = _mm512_dpbf16_ps(acc[r][1], wb, xv);
        }
    }
#pragma GCC unroll 12
    for (int r = 0; r < R; r++) {
        _mm512_storeu_ps(out + (size_t)r * C_out + o0, acc[r][0]);
        if (two) _mm512_storeu_ps(out + (size_t)r * C_out + o0 + 16, acc[r][1]);
    }
}

static void rows_tile(float *out, int C_out, const uint16_t *x, int C_in, const uint16_t *a,
                      int two, int o0, int R) {
    const uint16_t *b = a + (size_t)PANEL * C_in;
    switch (R * 2 + two) {
#define ROWS(r)                                                 \
    case 2 * r: tile(out, C_out, x, C_in, a, b, 0, o0, r); break; \
    case 2 * r + 1: tile(out, C_out, x, C_in, a, b, 1, o0, r); break;
        ROWS(1) ROWS(2) ROWS(3) ROWS(4) ROWS(5) ROWS(6)
        ROWS(7) ROWS(8) ROWS(9) ROWS(10) ROWS(11) ROWS(12)
#undef ROWS
    }
}

// Work items are (pair of full blocks, tile of rows), as matmul_panels.c; a narrower last block
// goes to the plain loop's arithmetic one output at a time (its layout has fewer rows a step).
void cpu_matmul_forward_pairs(Act *out_act, const Act *inp, const float *panels, int N, int C_in,
                              int C_out) {
    float *out = out_act;
    const uint16_t *w = (const uint16_t *)(const void *)panels;
    uint16_t *x16 = inputs_bf16(inp, (size_t)N * C_in);
    int full = C_out / PANEL, pairs = (full + 1) / 2, tiles = (N + TILE_ROWS - 1) / TILE_ROWS;
#pragma omp parallel for schedule(guided) if (worth_threads((double)N * C_in * C_out / 16.0))
    for (int item = 0; item < pairs * tiles; item++) {
        int q = item / tiles, m0 = item % tiles * TILE_ROWS;
        int R = N - m0 < TILE_ROWS ? N - m0 : TILE_ROWS;
        rows_tile(out + (size_t)m0 * C_out, C_out, x16 + (size_t)m0 * C_in, C_in,
                  w + (size_t)(2 * q) * PANEL * C_in, 2 * q + 1 < full, 2 * q * PANEL, R);
    }
    for (int n = 0; n < N && C_out % PANEL; n++)
        for (int o = full * PANEL; o < C_out; o++)
            out[(size_t)n * C_out + o] = pair_dot(w, C_out, C_in, o, x16 + (size_t)n * C_in);
    free(x16);
}
#endif

// The linear layer of an inference model over weights rearranged once, in place, into panels:
// OpenBLAS rearranges the weight matrix on every call, which in a sampler's pass over a few
// dozen rows cost a third of its sgemm time (perf, bench/RESULTS.md).
// Layout: a matrix [C_out, C_in] (out = x @ W^T) is cut into blocks of 16 output rows (the last
// block may have fewer), and each block is stored transposed in its own place: panel b holds,
// for each input i in order, the weights of outputs 16 b .. 16 b + 15 at input i. The same
// floats in the same memory, so converting costs no second copy.
// Each tile keeps up to 12 input rows x 32 outputs of sums in registers; a step of the summed
// dimension is two 16-wide loads from two panels and one broadcast per row. Every output is
// one chain of multiply-adds in the order of the summed index, from zero: the bits of
// matmul_rows.c, and the same at any thread count.
// A bf16-weight model's panels are the same layout in bf16 (half the bytes): each 16-wide load
// widens its 16 weights in registers (exactly: bf16 is fp32's top half), so its outputs are the
// bits of fp32 panels holding the widened weights. `bf16` below is a constant in each caller:
// the compiler makes one kernel of each kind.
#include <stdlib.h>
#include <string.h>

#include "common/bf16.h"
#include "kernels/cpu/cpu_ops.h"

typedef float vec16 __attribute__((vector_size(64), aligned(4)));
typedef uint16_t half16 __attribute__((vector_size(32), aligned(2)));
typedef uint32_t word16 __attribute__((vector_size(64)));

enum { TILE_ROWS = 12 };

// The 16 weights at element `at` of panel memory w, as floats (through a pointer: a vector
// return would be an ABI question on builds without AVX-512).
static inline __attribute__((always_inline)) void load16(vec16 *out, const void *w, size_t at,
                                                         int bf16) {
    if (!bf16) {
        *out = *(const vec16 *)((const float *)w + at);
        return;
    }
    word16 bits = __builtin_convertvector(*(const half16 *)((const uint16_t *)w + at), word16);
    *out = (vec16)(bits << 16);
}

// out[m, o0 + j] for m < R rows from inp, j < 32: panels a and b (16 outputs each) over C_in.
static inline __attribute__((always_inline)) void tile2(float *out, int C_out, const float *inp,
                                                        int C_in, const void *a, const void *b,
                                                        int o0, int R, int bf16) {
    vec16 acc[TILE_ROWS][2];
#pragma GCC unroll 12
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = (vec16){0};
    for (int i = 0; i < C_in; i++) {
        vec16 wa, wb;
        load16(&wa, a, (size_t)i * 16, bf16);
        load16(&wb, b, (size_t)i * 16, bf16);
#pragma GCC unroll 12
        for (int r = 0; r < R; r++) {
            float x = inp[(size_t)r * C_in + i];
            acc[r][0] += x * wa;
            acc[r][1] += x * wb;
        }
    }
#pragma GCC unroll 12
    for (int r = 0; r < R; r++) {
        *(vec16 *)(out + (size_t)r * C_out + o0) = acc[r][0];
        *(vec16 *)(out + (size_t)r * C_out + o0 + 16) = acc[r][1];
    }
}

// The same for one panel of 16 outputs.
static inline __attribute__((always_inline)) void tile1(float *out, int C_out, const float *inp,
                                                        int C_in, const void *a, int o0, int R,
                                                        int bf16) {
    vec16 acc[TILE_ROWS];
#pragma GCC unroll 12
    for (int r = 0; r < R; r++) acc[r] = (vec16){0};
    for (int i = 0; i < C_in; i++) {
        vec16 wa;
        load16(&wa, a, (size_t)i * 16, bf16);
#pragma GCC unroll 12
        for (int r = 0; r < R; r++) acc[r] += inp[(size_t)r * C_in + i] * wa;
    }
#pragma GCC unroll 12
    for (int r = 0; r < R; r++) *(vec16 *)(out + (size_t)r * C_out + o0) = acc[r];
}

// Rows [0, N) against panels p and p + 1 (n_panels 2) or p alone (1); R is made a constant
// in each case so the sums stay in registers.
static inline __attribute__((always_inline)) void panel_rows(float *out, const float *inp,
                                                             const void *panels, int N, int C_in,
                                                             int C_out, int p, int n_panels,
                                                             int bf16) {
    size_t panel_bytes = (size_t)16 * C_in * (bf16 ? sizeof(uint16_t) : sizeof(float));
    const char *a = (const char *)panels + p * panel_bytes, *b = a + panel_bytes;
    for (int m0 = 0; m0 < N; m0 += TILE_ROWS) {
        int R = N - m0 < TILE_ROWS ? N - m0 : TILE_ROWS;
        float *o = out + (size_t)m0 * C_out;
        const float *x = inp + (size_t)m0 * C_in;
        switch (n_panels * 16 + R) {
#define ROWS(r)                                                       \
    case 16 + r: tile1(o, C_out, x, C_in, a, p * 16, r, bf16); break; \
    case 32 + r: tile2(o, C_out, x, C_in, a, b, p * 16, r, bf16); break;
            ROWS(1) ROWS(2) ROWS(3) ROWS(4) ROWS(5) ROWS(6)
            ROWS(7) ROWS(8) ROWS(9) ROWS(10) ROWS(11) ROWS(12)
#undef ROWS
        }
    }
}

static void rows_by_panels(float *out, const float *inp, const void *panels, int N, int C_in,
                           int C_out, int p, int n_panels, int bf16) {
    if (bf16) panel_rows(out, inp, panels, N, C_in, C_out, p, n_panels, 1);
    else panel_rows(out, inp, panels, N, C_in, C_out, p, n_panels, 0);
}

// The last panel when it is narrower (C_out % 16 outputs): copied 16 wide with zero columns
// (as fp32: widening is exact), multiplied a tile of rows at a time into a scratch tile, its
// columns copied out.
static void rows_by_last_panel(float *out, const float *inp, const void *panels, int N,
                               int C_in, int C_out, int bf16) {
    int o0 = C_out / 16 * 16, width = C_out - o0;
    size_t at = (size_t)o0 * C_in;
    float *wide = aligned_alloc(64, (size_t)C_in * 16 * sizeof(float));
    for (int i = 0; i < C_in; i++)
        for (int j = 0; j < 16; j++) {
            size_t k = at + (size_t)i * width + j;
            wide[i * 16 + j] = j >= width ? 0.0f
                               : bf16    ? bf16_to_float(((const uint16_t *)panels)[k])
                                         : ((const float *)panels)[k];
        }
    float tile[TILE_ROWS * 16];
    for (int m0 = 0; m0 < N; m0 += TILE_ROWS) {
        int R = N - m0 < TILE_ROWS ? N - m0 : TILE_ROWS;
        rows_by_panels(tile, inp + (size_t)m0 * C_in, wide, R, C_in, 16, 0, 1, 0);
        for (int r = 0; r < R; r++)
            memcpy(out + (size_t)(m0 + r) * C_out + o0, tile + r * 16, width * sizeof(float));
    }
    free(wide);
}

// Work items are (pair of panels, tile of rows), handed out guided: the cores of a VM or a
// hybrid CPU run at different speeds (one of this machine's two ran a tile 1.5x slower), and
// equal static halves wait for the slower. A multiply-add here takes about an eighth of a
// plain loop's time, hence work / 8 for worth_threads.
static void matmul_panels(float *out, const float *inp, const void *panels, int N, int C_in,
                          int C_out, int bf16) {
    int full = C_out / 16, pairs = (full + 1) / 2, tiles = (N + TILE_ROWS - 1) / TILE_ROWS;
#pragma omp parallel for schedule(guided) if (worth_threads((double)N * C_in * C_out / 8.0))
    for (int item = 0; item < pairs * tiles; item++) {
        int q = item / tiles, m0 = item % tiles * TILE_ROWS;
        int R = N - m0 < TILE_ROWS ? N - m0 : TILE_ROWS;
        rows_by_panels(out + (size_t)m0 * C_out, inp + (size_t)m0 * C_in, panels, R, C_in, C_out,
                       2 * q, 2 * q + 1 < full ? 2 : 1, bf16);
    }
    if (C_out % 16) rows_by_last_panel(out, inp, panels, N, C_in, C_out, bf16);
}

void cpu_matmul_forward_panels(Act *out, const Act *inp, const float *panels, int N, int C_in,
                               int C_out) {
    matmul_panels(out, inp, panels, N, C_in, C_out, 0);
}

void cpu_matmul_forward_panels_w16(Act *out, const Act *inp, const float *panels_bf16, int N,
                                   int C_in, int C_out) {
    matmul_panels(out, inp, panels_bf16, N, C_in, C_out, 1);
}

// Block b of a [C_out, C_in] matrix of `size`-byte elements: its `rows` (16, or fewer for the
// last) output rows, which hold the same values as panel b, the rows transposed. to_panels 0
// transposes back. Inlined with a constant size, so each copy is one move.
static inline __attribute__((always_inline)) void transpose_block(char *block, char *scratch, int rows, int C_in, size_t size,
                            int to_panels) {
    memcpy(scratch, block, (size_t)rows * C_in * size);
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < C_in; i++) {
            size_t row_at = ((size_t)r * C_in + i) * size, panel_at = ((size_t)i * rows + r) * size;
            if (to_panels) memcpy(block + panel_at, scratch + row_at, size);
            else memcpy(block + row_at, scratch + panel_at, size);
        }
}

// Blocks are independent: the threads take them in turn, each with its own scratch (the
// conversion runs inside an inference model's first pass).
static void panels_convert(void *w, int C_out, int C_in, size_t size, int to_panels) {
#pragma omp parallel if (worth_threads((double)C_out * C_in))
    {
        char *scratch = malloc((size_t)16 * C_in * size);
#pragma omp for schedule(static)
        for (int o0 = 0; o0 < C_out; o0 += 16) {
            char *block = (char *)w + (size_t)o0 * C_in * size;
            int rows = C_out - o0 < 16 ? C_out - o0 : 16;
            if (size == sizeof(float)) transpose_block(block, scratch, rows, C_in, 4, to_panels);
            else transpose_block(block, scratch, rows, C_in, 2, to_panels);
        }
        free(scratch);
    }
}

void cpu_panels_convert(float *w, int C_out, int C_in, int to_panels) {
    panels_convert(w, C_out, C_in, sizeof(float), to_panels);
}

void cpu_panels_convert_w16(float *w_bf16, int C_out, int C_in, int to_panels) {
    panels_convert(w_bf16, C_out, C_in, sizeof(uint16_t), to_panels);
}

// Block-quantised weights (kernels/qblocks.h) on the CPU: GGUF's quantisers, converting into
// the layout, and the matmul that reads it in place. Each block's dot product is an exact int32
// sum of 8-bit input codes times 8- or 4-bit weight codes; one fused multiply-add per block
// applies the two scales. cpu_matmul_qb_ref is the plain loop; with AVX-512 VNNI the table's op
// computes the same sums 64 codes at a time (vpdpbusd), so the same bits.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/bf16.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/qblocks.h"

#if defined(__AVX512BW__) && defined(__AVX512VNNI__)
#include <immintrin.h>
#define QB_SIMD 1
#endif

// A block's values all finite: a NaN or an infinity has no code (its conversion to an integer
// is undefined), so a row holding one is refused rather than stored as garbage.
static int block_finite(const float *x) {
    for (int j = 0; j < QB_BLOCK; j++)
        if (!isfinite(x[j])) return 0;
    return 1;
}

int q8_0_quantize_row(uint8_t *dst, const float *x, size_t n) {
    for (size_t b = 0; b < n / QB_BLOCK; b++, x += QB_BLOCK, dst += Q8_0_BYTES) {
        if (!block_finite(x)) return -1;
        float amax = 0.0f;
        for (int j = 0; j < QB_BLOCK; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t h = float_to_f16(d);
        memcpy(dst, &h, 2);
        // clamped before the conversion: equal for every code, defined where a subnormal d's
        // 1 / d overflows (x id infinite, or NaN for x = 0; its fp16 scale is 0 anyway)
        for (int j = 0; j < QB_BLOCK; j++)
            dst[2 + j] = (uint8_t)(int8_t)roundf(fminf(fmaxf(x[j] * id, -127.0f), 127.0f));
    }
    return 0;
}

// Q4_0's code of v = x / d: trunc(v + 8.5) capped at 15.
static int nibble(float v) { return (int)fminf(fmaxf(v + 8.5f, 0.0f), 15.0f); }

int q4_0_quantize_row(uint8_t *dst, const float *x, size_t n) {
    for (size_t b = 0; b < n / QB_BLOCK; b++, x += QB_BLOCK, dst += Q4_0_BYTES) {
        if (!block_finite(x)) return -1;
        float amax = 0.0f, max = 0.0f;  // the value of largest magnitude, the first of ties
        for (int j = 0; j < QB_BLOCK; j++)
            if (amax < fabsf(x[j])) amax = fabsf(x[j]), max = x[j];
        float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t h = float_to_f16(d);
        memcpy(dst, &h, 2);
        for (int j = 0; j < 16; j++)  // clamped to [0, 15] before the conversion, as Q8_0's
            dst[2 + j] = (uint8_t)(nibble(x[j] * id) | nibble(x[16 + j] * id) << 4);
    }
    return 0;
}

// Code j of a GGUF block (Q8_0 or Q4_0), signed.
static int gguf_code(const uint8_t *in, int bits, int j) {
    if (bits == 8) return (int8_t)in[2 + j];
    return (j < 16 ? in[2 + j] & 0xF : in[2 + j - 16] >> 4) - 8;
}

void q8_0_from_q4_0(uint8_t *dst, const uint8_t *src, size_t blocks) {
    for (size_t b = 0; b < blocks; b++, src += Q4_0_BYTES, dst += Q8_0_BYTES) {
        memcpy(dst, src, 2);
        for (int j = 0; j < QB_BLOCK; j++) dst[2 + j] = (uint8_t)(int8_t)gguf_code(src, 4, j);
    }
}

// Block b of the panel holding row r of a matrix of `bits` weights.
static uint8_t *block_of(const uint8_t *w, int bits, int cols, int r, int b) {
    size_t blocks = (size_t)(cols / QB_BLOCK);
    return (uint8_t *)w + ((size_t)(r / QB_PANEL) * blocks + (size_t)b) * qb_block_bytes(bits);
}

// Where the code of row r, input j of a block sits (qblocks.h): its byte, and for 4 bits the
// nibble (0 low, 1 high).
static size_t code_byte(int bits, int r, int j, int *nibble) {
    int s = j / 4, place = 4 * (r % QB_PANEL) + j % 4;
    *nibble = s % 2;
    return bits == 8 ? (size_t)(64 * s + place) : (size_t)(64 * (s / 2) + place);
}

// Weight code q (signed) of row r, input j of a block.
static int code_of(const uint8_t *block, int bits, int r, int j) {
    int nibble;
    uint8_t byte = block[code_byte(bits, r, j, &nibble)];
    return bits == 8 ? byte - 128 : ((byte >> (4 * nibble)) & 0xF) - 8;
}

static float block_scale(const uint8_t *block, int bits, int r) {
    uint16_t h;
    memcpy(&h, block + qb_block_bytes(bits) - 32 + 2 * (r % QB_PANEL), 2);
    return f16_to_float(h);
}

void qb_pack(int bits, uint8_t *dst, const uint8_t *src, int rows, int cols) {
    memset(dst, 0, qb_matrix_bytes(bits, rows, cols));  // padding rows: scale 0
    int blocks = cols / QB_BLOCK;
    size_t in_bytes = qb_gguf_block_bytes(bits);
    for (int r = 0; r < rows; r++)
        for (int b = 0; b < blocks; b++) {
            const uint8_t *in = src + ((size_t)r * blocks + (size_t)b) * in_bytes;
            uint8_t *block = block_of(dst, bits, cols, r, b), *place = block + 4 * (r % QB_PANEL);
            for (int s = 0; s < QB_BLOCK / 4; s++)  // code_byte's places, step by step
                for (int k = 0; k < 4; k++) {
                    int q = gguf_code(in, bits, 4 * s + k);
                    if (bits == 8) place[64 * s + k] = (uint8_t)(q + 128);
                    else place[64 * (s / 2) + k] |= (uint8_t)((q + 8) << (4 * (s % 2)));
                }
            memcpy(block + qb_block_bytes(bits) - 32 + 2 * (r % QB_PANEL), in, 2);
        }
}

void qb_unpack(int bits, float *w, const uint8_t *src, int rows, int cols) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            const uint8_t *block = block_of(src, bits, cols, r, c / QB_BLOCK);
            w[(size_t)r * cols + c] =
                block_scale(block, bits, r) * (float)code_of(block, bits, r, c % QB_BLOCK);
        }
}

// Row x as a quantised row (qblocks.h: the codes, then each block's code sum) and the
// blocks' scales dx. With AVX-512 16 values at a time: the same maximum, product and rounding
// (vcvtps2dq rounds to nearest even as rintf does), so the same bytes.
static void quantize_input(uint8_t *row, float *dx, const float *x, int C) {
    int8_t *codes = (int8_t *)row;
    for (int b = 0; b < C / QB_BLOCK; b++) {
        const float *v = x + b * QB_BLOCK;
        int32_t sum = 0;
#ifdef QB_SIMD
        __m512 v0 = _mm512_loadu_ps(v), v1 = _mm512_loadu_ps(v + 16);
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, _mm512_set1_ps(id)));
        __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, _mm512_set1_ps(id)));
        _mm_storeu_si128((__m128i *)(void *)(codes + b * QB_BLOCK), _mm512_cvtsepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(void *)(codes + b * QB_BLOCK + 16), _mm512_cvtsepi32_epi8(q1));
        sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
#else
        float amax = 0.0f;  // (not fmaxf: a libm call per value without -ffast-math)
        for (int j = 0; j < QB_BLOCK; j++) amax = fabsf(v[j]) > amax ? fabsf(v[j]) : amax;
        float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        for (int j = 0; j < QB_BLOCK; j++) {
            codes[b * QB_BLOCK + j] = (int8_t)rintf(v[j] * id);
            sum += codes[b * QB_BLOCK + j];
        }
#endif
        dx[b] = amax / 127.0f;
        memcpy(row + C + 4 * b, &sum, 4);
    }
}

void cpu_quantize_rows_q8(uint8_t *xq, float *dx, const Act *x_act, int N, int C) {
    const float *x = x_act;
#pragma omp parallel for if (worth_threads(4.0 * N * C))
    for (int n = 0; n < N; n++)
        quantize_input(xq + (size_t)n * qb_row_bytes(C), dx + (size_t)n * (C / QB_BLOCK),
                       x + (size_t)n * C, C);
}

void cpu_embedding_qb(Act *out_act, const int *tokens, const uint8_t *table, int bits, int N,
                      int C) {
    float *out = out_act;
    int blocks = C / QB_BLOCK;
#pragma omp parallel for if (worth_threads((double)N * C))
    for (int n = 0; n < N; n++)
        for (int b = 0; b < blocks; b++) {
            const uint8_t *block = block_of(table, bits, C, tokens[n], b);
            float d = block_scale(block, bits, tokens[n]);
            for (int j = 0; j < QB_BLOCK; j++)
                out[(size_t)n * C + b * QB_BLOCK + j] = d * (float)code_of(block, bits, tokens[n], j);
        }
}

// One output: the blocks' integer dot products, each scaled and summed in order (qblocks.h).
static float dot_ref(const int8_t *x, const float *dx, const uint8_t *w, int bits, int o,
                     int C_in) {
    float sum = 0.0f;
    for (int b = 0; b < C_in / QB_BLOCK; b++) {
        const uint8_t *block = block_of(w, bits, C_in, o, b);
        int32_t isum = 0;
        for (int j = 0; j < QB_BLOCK; j++) isum += code_of(block, bits, o, j) * x[b * QB_BLOCK + j];
        sum = fmaf((float)isum, block_scale(block, bits, o) * dx[b], sum);
    }
    return sum;
}

void cpu_matmul_qb_ref(float *out, const uint8_t *xq, const float *dx, const uint8_t *w, int bits,
                       int N, int C_in, int C_out) {
    int blocks = C_in / QB_BLOCK;
#pragma omp parallel for collapse(2) if (worth_threads((double)N * C_in * C_out))
    for (int n = 0; n < N; n++)
        for (int o = 0; o < C_out; o++)
            out[(size_t)n * C_out + o] =
                dot_ref((const int8_t *)(xq + (size_t)n * qb_row_bytes(C_in)),
                        dx + (size_t)n * blocks, w, bits, o, C_in);
}

#ifndef QB_SIMD
void cpu_matmul_qb(Act *out, const uint8_t *xq, const float *dx, const uint8_t *w, int bits,
                   int N, int C_in, int C_out) {
    cpu_matmul_qb_ref(out, xq, dx, w, bits, N, C_in, C_out);
}
#else
// A tile is R input rows (a constant at each call, so the sums stay in registers) against two
// panels (32 outputs): per block, R x 2 vectors of int32 sums start at minus the rows' biases
// (the weights' bias, 128 or 8, times the rows' code sums), take 8 steps of vpdpbusd (64
// biased weight codes times 4 input bytes broadcast per row), then one fused multiply-add each
// into the float sums. `bits` is a constant in each caller: one kernel per width.
enum { ROWS = 6 };

// Step s's 64 biased codes of a block: 64 bytes, or for 4 bits a pair's low or high nibbles.
static inline __attribute__((always_inline)) __m512i step_codes(const uint8_t *block, int s,
                                                                 int bits) {
    if (bits == 8) return _mm512_loadu_si512(block + 64 * s);
    __m512i pair = _mm512_loadu_si512(block + 64 * (s / 2));
    if (s % 2) pair = _mm512_srli_epi16(pair, 4);
    return _mm512_and_si512(pair, _mm512_set1_epi8(0xF));
}

static inline __attribute__((always_inline)) void tile(float *out, int C_out, const uint8_t *xq,
                                                       const float *dx, int C_in,
                                                       const uint8_t *pa, const uint8_t *pb,
                                                       int o0, const int R, int bits) {
    int blocks = C_in / QB_BLOCK, bias = bits == 8 ? 128 : 8;
    size_t stride = qb_row_bytes(C_in), block_bytes = qb_block_bytes(bits);
    __m512 fa[ROWS], fb[ROWS];
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) fa[r] = fb[r] = _mm512_setzero_ps();
    for (int b = 0; b < blocks; b++) {
        const uint8_t *wa = pa + (size_t)b * block_bytes, *wb = pb + (size_t)b * block_bytes;
        __m512i ia[ROWS], ib[ROWS];
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) {
            int32_t sum;
            memcpy(&sum, xq + r * stride + C_in + 4 * b, 4);
            ia[r] = ib[r] = _mm512_set1_epi32(-sum * bias);
        }
#pragma GCC unroll 8
        for (int s = 0; s < 8; s++) {
            __m512i va = step_codes(wa, s, bits), vb = step_codes(wb, s, bits);
#pragma GCC unroll 6
            for (int r = 0; r < R; r++) {
                int32_t four;
                memcpy(&four, xq + r * stride + b * QB_BLOCK + 4 * s, 4);
                __m512i xv = _mm512_set1_epi32(four);
                ia[r] = _mm512_dpbusd_epi32(ia[r], va, xv);
                ib[r] = _mm512_dpbusd_epi32(ib[r], vb, xv);
            }
        }
        __m512 da = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(wa + block_bytes - 32)));
        __m512 db = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(wb + block_bytes - 32)));
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) {
            __m512 sx = _mm512_set1_ps(dx[(size_t)r * blocks + b]);
            fa[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia[r]), _mm512_mul_ps(da, sx), fa[r]);
            fb[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ib[r]), _mm512_mul_ps(db, sx), fb[r]);
        }
    }
    // outputs past C_out (the padding rows of the last panel, or a whole second panel) unstored
    __mmask16 ka = C_out - o0 >= 16 ? 0xFFFF : C_out - o0 <= 0 ? 0 : (__mmask16)((1u << (C_out - o0)) - 1);
    int o1 = o0 + 16;
    __mmask16 kb = C_out - o1 >= 16 ? 0xFFFF : C_out - o1 <= 0 ? 0 : (__mmask16)((1u << (C_out - o1)) - 1);
    for (int r = 0; r < R; r++) {
        _mm512_mask_storeu_ps(out + (size_t)r * C_out + o0, ka, fa[r]);
        _mm512_mask_storeu_ps(out + (size_t)r * C_out + o1, kb, fb[r]);
    }
}

static inline __attribute__((always_inline)) void matmul(float *out, const uint8_t *xq,
                                                         const float *dx, const uint8_t *w,
                                                         int bits, int N, int C_in, int C_out) {
    int blocks = C_in / QB_BLOCK;
    int panels = (C_out + QB_PANEL - 1) / QB_PANEL, pairs = (panels + 1) / 2;
    int tiles = (N + ROWS - 1) / ROWS;
    size_t panel_bytes = (size_t)blocks * qb_block_bytes(bits);
    // (pair, row tile) items, a pair's tiles together so its panels stay in cache; guided, as
    // matmul_panels.c, for cores of unequal speed
#pragma omp parallel for schedule(guided) if (worth_threads((double)N * C_in * C_out / 16.0))
    for (int item = 0; item < pairs * tiles; item++) {
        int q = item / tiles, n0 = item % tiles * ROWS, R = N - n0 < ROWS ? N - n0 : ROWS;
        const uint8_t *pa = w + (size_t)(2 * q) * panel_bytes;
        // an odd last panel is paired with itself; its second half is never stored
        const uint8_t *pb = 2 * q + 1 < panels ? pa + panel_bytes : pa;
        float *o = out + (size_t)n0 * C_out;
        const uint8_t *x = xq + (size_t)n0 * qb_row_bytes(C_in);
        const float *d = dx + (size_t)n0 * blocks;
        switch (R) {
#define ROWS_CASE(r) \
    case r: tile(o, C_out, x, d, C_in, pa, pb, 32 * q, r, bits); break;
            ROWS_CASE(1) ROWS_CASE(2) ROWS_CASE(3) ROWS_CASE(4) ROWS_CASE(5) ROWS_CASE(6)
#undef ROWS_CASE
        }
    }
}

void cpu_matmul_qb(Act *out, const uint8_t *xq, const float *dx, const uint8_t *w, int bits,
                   int N, int C_in, int C_out) {
    if (bits == 8) matmul(out, xq, dx, w, 8, N, C_in, C_out);
    else matmul(out, xq, dx, w, 4, N, C_in, C_out);
}
#endif

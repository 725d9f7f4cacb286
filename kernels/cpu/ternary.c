// Packed ternary weights (kernels/ternary.h) on the CPU: packing, 8-bit input rows, and the
// matmul over them in integers. A weight in {-1, 0, +1} adds its input, subtracts it or skips
// it, so a row's dot product is an exact int32 sum; the one float step per output applies the
// two scales. The plain loop (cpu_matmul_ternary_ref) is the reference; with AVX-512 VNNI the
// table's op runs the same sums 64 bytes at a time (vpdpbusd), which, being integer sums, give
// the same bits.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/ternary.h"

#if defined(__AVX512BW__) && defined(__AVX512VNNI__)
#include <immintrin.h>
#define TERNARY_SIMD 1
#endif

float ternary_scale(const float *w, size_t n) {
    double sum = 0.0;  // one order at every thread count: the scale is part of the model
    for (size_t i = 0; i < n; i++) sum += fabs((double)w[i]);
    return fmaxf((float)(sum / (double)n), 1e-5f);
}

// Where weight (r, c) of a packed matrix of `cols` inputs sits: its step's 16 bytes, and its
// bit in each of the two masks.
static const uint8_t *weight_step(const uint8_t *w, int cols, int r, int c, int *bit) {
    size_t steps = (size_t)(ternary_padded(cols) / TERNARY_STEP);
    *bit = (r % TERNARY_PANEL) * TERNARY_STEP + c % TERNARY_STEP;
    return w + ((size_t)(r / TERNARY_PANEL) * steps + (size_t)(c / TERNARY_STEP)) * 16;
}

static uint64_t load_mask(const uint8_t *p) {
    uint64_t m;
    memcpy(&m, p, sizeof m);  // little-endian, as the layout says
    return m;
}

void ternary_pack(uint8_t *dst, const float *w, float s, int rows, int cols) {
    memset(dst, 0, ternary_matrix_bytes(rows, cols));
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            float t = fminf(fmaxf(rintf(w[(size_t)r * cols + c] / s), -1.0f), 1.0f);
            if (t == 0.0f) continue;
            int bit;
            uint8_t *mask = (uint8_t *)weight_step(dst, cols, r, c, &bit) + (t < 0.0f ? 8 : 0);
            uint64_t m = load_mask(mask) | 1ull << bit;
            memcpy(mask, &m, sizeof m);
        }
}

// Weight (r, c) of a packed matrix: +1, -1 or 0.
static int packed_weight(const uint8_t *w, int cols, int r, int c) {
    int bit;
    const uint8_t *step = weight_step(w, cols, r, c, &bit);
    return (int)((load_mask(step) >> bit) & 1) - (int)((load_mask(step + 8) >> bit) & 1);
}

void ternary_unpack(float *w, const uint8_t *src, float s, int rows, int cols) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            w[(size_t)r * cols + c] = s * (float)packed_weight(src, cols, r, c);
}

// The one float step: the integer dot product of a row's 8-bit inputs (x / q each) with a
// matrix's ternary weights (s each).
static inline float dequantise(int32_t dot, float q, float s) { return (float)dot / q * s; }

void cpu_matmul_ternary_ref(float *out, const int8_t *xq, const float *q, const uint8_t *w,
                            float s, int N, int C_in, int C_out) {
    int P = ternary_padded(C_in);
#pragma omp parallel for collapse(2) if (worth_threads((double)N * C_in * C_out))
    for (int n = 0; n < N; n++)
        for (int o = 0; o < C_out; o++) {
            const int8_t *x = xq + (size_t)n * P;
            int32_t dot = 0;
            for (int c = 0; c < C_in; c++) {
                int t = packed_weight(w, C_in, o, c);
                if (t > 0) dot += x[c];
                if (t < 0) dot -= x[c];
            }
            out[(size_t)n * C_out + o] = dequantise(dot, q[n], s);
        }
}

#ifndef TERNARY_SIMD
void cpu_quantize_rows_int8(int8_t *out, float *q, const Act *x_act, int N, int C) {
    const float *x = x_act;
    int P = ternary_padded(C);
#pragma omp parallel for if (worth_threads(2.0 * N * C))
    for (int n = 0; n < N; n++) {
        const float *row = x + (size_t)n * C;
        q[n] = cpu_row_multiplier(row, C);  // as cpu_quantize_rows: out / q is its value
        int8_t *dst = out + (size_t)n * P;
        for (int i = 0; i < C; i++) dst[i] = (int8_t)quantize_level(row[i], q[n]);
        memset(dst + C, 0, (size_t)(P - C));
    }
}

void cpu_matmul_ternary(Act *out_act, const int8_t *xq, const float *q, const uint8_t *w, float s,
                        int N, int C_in, int C_out) {
    float *out = out_act;
    cpu_matmul_ternary_ref(out, xq, q, w, s, N, C_in, C_out);
}
#else
// The same quantiser 16 floats at a time: vcvtps2dq rounds to nearest even as rintf does, and
// vpmovsdb saturates to [-128, 127] as the clamp does, so the bytes are the same.
void cpu_quantize_rows_int8(int8_t *out, float *q, const Act *x_act, int N, int C) {
    const float *x = x_act;
    int P = ternary_padded(C);
#pragma omp parallel for if (worth_threads(2.0 * N * C))
    for (int n = 0; n < N; n++) {
        const float *row = x + (size_t)n * C;
        __m512 m = _mm512_setzero_ps();
        int i = 0;
        for (; i + 16 <= C; i += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(row + i)));
        float top = _mm512_reduce_max_ps(m);
        for (; i < C; i++) top = fmaxf(top, fabsf(row[i]));
        float qn = 127.0f / fmaxf(top, 1e-5f);
        q[n] = qn;
        int8_t *dst = out + (size_t)n * P;
        __m512 scale = _mm512_set1_ps(qn);
        for (i = 0; i + 16 <= C; i += 16) {
            __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(row + i), scale));
            _mm_storeu_si128((__m128i *)(void *)(dst + i), _mm512_cvtsepi32_epi8(v));
        }
        for (; i < C; i++) dst[i] = (int8_t)quantize_level(row[i], qn);
        memset(dst + C, 0, (size_t)(P - C));
    }
}

// The kernel takes 64 outputs at a time (four panels) and R input rows: R x 4 vectors of 16
// int32 sums live in registers while the steps go by, each step one broadcast of 4 input bytes
// per row times one 64-byte vector of weights per panel (vpdpbusd: 4 byte products summed into
// each int32 lane). vpdpbusd takes unsigned bytes times signed ones: the inputs go in as x + 128
// (the sign bit flipped), the weights as -1/0/+1 bytes, and 128 times each output's weight sum
// comes off at the end. The weights are expanded from their masks once per call into a buffer
// that every row tile then reads.
enum { PANELS = 4, ROWS = 6 };

// One step of a panel (its 16 bytes of masks) as 64 bytes of -1/0/+1.
static inline __m512i expand_step(const uint8_t *m) {
    const __m512i one = _mm512_set1_epi8(1);
    return _mm512_sub_epi8(_mm512_maskz_mov_epi8(load_mask(m), one),
                           _mm512_maskz_mov_epi8(load_mask(m + 8), one));
}

// 16 outputs from o on: the int32 sums acc of biased inputs, less 128 times each output's
// weight sum, dequantised (dequantise's two steps in its order: the plain loop's bits) and
// stored below C_out.
static inline void store_panel(float *out, __m512i acc, __m512i sums, float q, float s, int o,
                               int C_out) {
    __mmask16 keep = C_out - o >= 16 ? 0xFFFF : (__mmask16)((1u << (C_out - o)) - 1);
    __m512i dot = _mm512_sub_epi32(acc, _mm512_slli_epi32(sums, 7));
    __m512 y = _mm512_mul_ps(_mm512_div_ps(_mm512_cvtepi32_ps(dot), _mm512_set1_ps(q)),
                             _mm512_set1_ps(s));
    _mm512_mask_storeu_ps(out + o, keep, y);
}

// The panels [p0, p0 + PANELS) expanded to bytes, step-major (panels beyond the matrix are
// zero), and each output's weight sum.
static void expand_panels(__m512i *wbuf, __m512i sums[PANELS], const uint8_t *w, int p0,
                          int panels, int steps) {
    const __m512i one = _mm512_set1_epi8(1);
    for (int v = 0; v < PANELS; v++) sums[v] = _mm512_setzero_si512();
    for (int st = 0; st < steps; st++)
        for (int v = 0; v < PANELS; v++) {
            __m512i b = p0 + v < panels ? expand_step(w + ((size_t)(p0 + v) * steps + st) * 16)
                                        : _mm512_setzero_si512();
            wbuf[(size_t)st * PANELS + v] = b;
            sums[v] = _mm512_dpbusd_epi32(sums[v], one, b);
        }
}

// R rows (a constant at each call: the accumulators then stay in registers) of xb (biased
// inputs, rows P bytes apart) against the expanded panels; outputs o0 .. o0 + 63 below C_out.
static inline __attribute__((always_inline)) void row_tile(
    float *out, const uint8_t *xb, const float *q, const __m512i *wbuf,
    const __m512i sums[PANELS], int steps, int P, int o0, int C_out, float s, const int R) {
    __m512i acc[ROWS][PANELS];
#pragma GCC unroll 6
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int v = 0; v < PANELS; v++) acc[r][v] = _mm512_setzero_si512();
    for (int st = 0; st < steps; st++) {
        const __m512i *wv = wbuf + (size_t)st * PANELS;
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) {
            int32_t four;
            memcpy(&four, xb + (size_t)r * P + (size_t)st * TERNARY_STEP, sizeof four);
            __m512i xv = _mm512_set1_epi32(four);
#pragma GCC unroll 4
            for (int v = 0; v < PANELS; v++) acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], xv, wv[v]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < PANELS && o0 + v * TERNARY_PANEL < C_out; v++)
            store_panel(out + (size_t)r * C_out, acc[r][v], sums[v], q[r], s,
                        o0 + v * TERNARY_PANEL, C_out);
}

// One row against every panel, each step's masks expanded as they are read: for the few rows
// of a KV-cached pass (AR sampling), where expanding the whole matrix first would cost more
// than the products, and reading 2 bits a weight is what makes it fast.
static void row_direct(float *out, const uint8_t *xb, float q, const uint8_t *w, float s, int P,
                       int C_out) {
    int steps = P / TERNARY_STEP, panels = ternary_panels(C_out);
    const __m512i one = _mm512_set1_epi8(1);  // vpdpbusd's unsigned side: sums of the weights
#pragma omp parallel for if (worth_threads((double)P * C_out / 2))
    for (int p = 0; p < panels; p++) {
        __m512i acc = _mm512_setzero_si512(), sum = _mm512_setzero_si512();
        const uint8_t *m = w + (size_t)p * steps * 16;
        for (int st = 0; st < steps; st++, m += 16) {
            __m512i b = expand_step(m);
            int32_t four;
            memcpy(&four, xb + (size_t)st * TERNARY_STEP, sizeof four);
            acc = _mm512_dpbusd_epi32(acc, _mm512_set1_epi32(four), b);
            sum = _mm512_dpbusd_epi32(sum, one, b);
        }
        store_panel(out, acc, sum, q, s, p * TERNARY_PANEL, C_out);
    }
}

void cpu_matmul_ternary(Act *out_act, const int8_t *xq, const float *q, const uint8_t *w, float s,
                        int N, int C_in, int C_out) {
    float *out = out_act;
    int P = ternary_padded(C_in), steps = P / TERNARY_STEP, panels = ternary_panels(C_out);
    int groups = (panels + PANELS - 1) / PANELS;
    uint8_t *xb = malloc((size_t)N * P);  // the inputs as x + 128, what vpdpbusd reads
    for (size_t i = 0; i < (size_t)N * P; i++) xb[i] = (uint8_t)xq[i] ^ 0x80;
    if (N < ROWS) {
        for (int n = 0; n < N; n++)
            row_direct(out + (size_t)n * C_out, xb + (size_t)n * P, q[n], w, s, P, C_out);
        free(xb);
        return;
    }
#pragma omp parallel if (worth_threads((double)N * C_in * C_out / 8))
    {
        __m512i *wbuf = aligned_alloc(64, (size_t)steps * PANELS * sizeof(__m512i));
        __m512i sums[PANELS];
#pragma omp for
        for (int g = 0; g < groups; g++) {
            expand_panels(wbuf, sums, w, g * PANELS, panels, steps);
            int o0 = g * PANELS * TERNARY_PANEL, n = 0;
            for (; n + ROWS <= N; n += ROWS)
                row_tile(out + (size_t)n * C_out, xb + (size_t)n * P, q + n, wbuf, sums, steps, P,
                         o0, C_out, s, ROWS);
            for (; n < N; n++)  // the last rows one at a time
                row_tile(out + (size_t)n * C_out, xb + (size_t)n * P, q + n, wbuf, sums, steps, P,
                         o0, C_out, s, 1);
        }
        free(wbuf);
    }
    free(xb);
}
#endif

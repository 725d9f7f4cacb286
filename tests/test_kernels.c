// Each CPU op's backward against finite differences of its forward, each forward against
// a direct double-precision computation, and the "backward adds into its outputs" contract.
#include <check.h>
#include <omp.h>
#ifdef __F16C__
#include <immintrin.h>
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bf16.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/exp_simd.h"
#include "kernels/ggml_blocks.h"
#include "kernels/noise.h"
#include "kernels/qblocks.h"
#include "tests/testutil.h"

static const Backend *be = &backend_cpu;

#define GRAD_TOL 1e-3
#define FD_STEP 1e-2f

static float *randn(size_t n, uint64_t seed) {
    float *x = malloc(n * sizeof(float));
    fill_normal(x, n, seed, 1.0f);
    return x;
}

static float *zeros(size_t n) { return calloc(n, sizeof(float)); }

// Running a backward a second time into the same buffers must double them.
static void assert_doubled(const float *once, const float *twice, size_t n) {
    for (size_t i = 0; i < n; i++)
        ck_assert_float_eq_tol(twice[i], 2.0f * once[i], 1e-5f * (1.0f + fabsf(once[i])));
}

static void report(const char *what, double err) {
    printf("  grad check %-28s max rel err %.2e\n", what, err);
    ck_assert_msg(err < GRAD_TOL, "%s: relative gradient error %g", what, err);
}

// ---- matmul ----
typedef struct { float *out, *inp, *w, *r; int N, Ci, Co; } MatmulCase;

static double matmul_scalar(void *p) {
    MatmulCase *c = p;
    be->matmul_forward(c->out, c->inp, c->w, c->N, c->Ci, c->Co);
    return dot_double(c->out, c->r, (size_t)c->N * c->Co);
}

START_TEST(test_matmul) {
    // N = 9 exercises both the 4-row tiles and the leftover row
    MatmulCase c = {NULL, randn(9 * 7, 1), randn(6 * 7, 2), randn(9 * 6, 3), 9, 7, 6};
    c.out = zeros(9 * 6);
    matmul_scalar(&c);
    for (int n = 0; n < c.N; n++)
        for (int o = 0; o < c.Co; o++) {
            double s = dot_double(c.inp + n * c.Ci, c.w + o * c.Ci, c.Ci);
            ck_assert_double_eq_tol(c.out[n * c.Co + o], s, 1e-5);
        }
    float *dinp = zeros(9 * 7), *dw = zeros(6 * 7);
    be->matmul_backward(dinp, dw, c.r, c.inp, c.w, c.N, c.Ci, c.Co);
    report("matmul dinp", grad_check(matmul_scalar, &c, c.inp, dinp, 9 * 7, FD_STEP, 0));
    report("matmul dweight", grad_check(matmul_scalar, &c, c.w, dw, 6 * 7, FD_STEP, 0));
    float *dinp2 = malloc(9 * 7 * sizeof(float)), *dw2 = malloc(6 * 7 * sizeof(float));
    memcpy(dinp2, dinp, 9 * 7 * sizeof(float));
    memcpy(dw2, dw, 6 * 7 * sizeof(float));
    be->matmul_backward(dinp2, dw2, c.r, c.inp, c.w, c.N, c.Ci, c.Co);
    assert_doubled(dinp, dinp2, 9 * 7);
    assert_doubled(dw, dw2, 6 * 7);
    free(c.out), free(c.inp), free(c.w), free(c.r), free(dinp), free(dw), free(dinp2), free(dw2);
}
END_TEST

// The backend's matmul (OpenBLAS) on 1 and 2 threads: forward, input and weight gradients.
static void blas_matmul(int threads, float *out, float *dx, float *dw, const float *x,
                        const float *w, const float *dy, int N, int Ci, int Co) {
    omp_set_num_threads(threads);
    be->matmul_forward(out, x, w, N, Ci, Co);
    be->matmul_backward(dx, dw, dy, x, w, N, Ci, Co);
}

// The backend's matmul against the reference loops of matmul.c, on shapes large enough for
// threads, with many rows (OpenBLAS calls on blocks of rows) and few (on chunks of columns;
// 6..64 rows forward: matmul_rows.c), and a vocabulary-like width that is no multiple of 16;
// and the same bits with one thread and two.
START_TEST(test_blas_matmul_matches_loops) {
    int shapes[][3] = {{200, 384, 320}, {40, 384, 1000}, {5, 384, 1000}, {128, 64, 262}};
    for (int s = 0; s < 4; s++) {
        int N = shapes[s][0], Ci = shapes[s][1], Co = shapes[s][2];
        size_t nx = (size_t)N * Ci, nw = (size_t)Co * Ci, ny = (size_t)N * Co;
        float *x = randn(nx, 40), *w = randn(nw, 41), *dy = randn(ny, 42);
        float *ref = zeros(ny), *dx_ref = randn(nx, 43), *dw_ref = randn(nw, 44);
        float *out[2], *dx[2], *dw[2];
        for (int t = 0; t < 2; t++) {
            out[t] = zeros(ny), dx[t] = randn(nx, 43), dw[t] = randn(nw, 44);
            blas_matmul(2 - t, out[t], dx[t], dw[t], x, w, dy, N, Ci, Co);
        }
        cpu_matmul_forward(ref, x, w, N, Ci, Co);
        cpu_matmul_backward(dx_ref, dw_ref, dy, x, w, N, Ci, Co);
        float tiny;
        omp_set_num_threads(2);
        be->matmul_forward(&tiny, x, w, 1, 4, 1);    // too small for threads
        ck_assert_int_eq(omp_get_max_threads(), 2);  // and dllm's other loops keep theirs
        double scale = 0.0, err = 0.0;
        for (size_t i = 0; i < ny; i++)
            scale = fmax(scale, fabs(ref[i])), err = fmax(err, fabs(out[0][i] - ref[i]));
        printf("  blas matmul vs loops, %d x %d x %d: forward rel err %.2e\n", N, Ci, Co,
               err / scale);
        ck_assert(err / scale < 1e-5);
        for (size_t i = 0; i < nx; i++) ck_assert(fabs(dx[0][i] - dx_ref[i]) < 1e-3);
        for (size_t i = 0; i < nw; i++) ck_assert(fabs(dw[0][i] - dw_ref[i]) < 1e-3);
        // thread count: same bits
        ck_assert_mem_eq(out[1], out[0], ny * sizeof(float));
        ck_assert_mem_eq(dx[1], dx[0], nx * sizeof(float));
        ck_assert_mem_eq(dw[1], dw[0], nw * sizeof(float));
        for (int t = 0; t < 2; t++) free(out[t]), free(dx[t]), free(dw[t]);
        free(x), free(w), free(dy), free(ref), free(dx_ref), free(dw_ref);
    }
    omp_set_num_threads(1);
}
END_TEST

// The few-rows matmul (matmul_rows.c) against the reference loops, over row counts that
// straddle its 16- and 32-row tiles and summed/output sizes that are not multiples of its
// vectors or tiles; the same bits with one thread and with two; and the backend's matmul
// sends 6..64 rows to it.
START_TEST(test_few_rows_matmul_matches_loops) {
    int rows[] = {1, 5, 6, 16, 17, 31, 32, 33, 64, 69};
    int shapes[][2] = {{5, 3}, {128, 13}, {352, 384}, {64, 2048}};
    double worst = 0.0;
    for (int r = 0; r < 10; r++)
        for (int s = 0; s < 4; s++) {
            int N = rows[r], Ci = shapes[s][0], Co = shapes[s][1];
            size_t n_out = (size_t)N * Co;
            float *x = randn((size_t)N * Ci, 50 + r), *w = randn((size_t)Co * Ci, 60 + s);
            float *ref = zeros(n_out), *out = zeros(n_out), *two = zeros(n_out),
                  *via_be = zeros(n_out);
            cpu_matmul_forward(ref, x, w, N, Ci, Co);
            omp_set_num_threads(1);
            cpu_matmul_forward_rows(out, x, w, N, Ci, Co);
            omp_set_num_threads(2);
            cpu_matmul_forward_rows(two, x, w, N, Ci, Co);
            be->matmul_forward(via_be, x, w, N, Ci, Co);
            double scale = 0.0, err = 0.0;
            for (size_t i = 0; i < n_out; i++)
                scale = fmax(scale, fabs(ref[i])), err = fmax(err, fabs(out[i] - ref[i]));
            worst = fmax(worst, err / scale);
            ck_assert_msg(err / scale < 1e-5, "%d x %d -> %d: rel err %.1e", N, Ci, Co,
                          err / scale);
            ck_assert_mem_eq(out, two, n_out * sizeof(float));
            if (N >= 6 && N <= 64) ck_assert_mem_eq(out, via_be, n_out * sizeof(float));
            free(x), free(w), free(ref), free(out), free(two), free(via_be);
        }
    printf("  few-rows matmul vs loops: worst rel err %.2e over 40 shapes\n", worst);
}
END_TEST

// The matmul over panels (matmul_panels.c): converting to panels and back restores the
// matrix exactly; the product has the few-rows kernel's bits (the same chains of
// multiply-adds), at one thread and at two, over row counts around its 12-row tiles and
// output counts with a narrower last panel.
START_TEST(test_panel_matmul_matches_rows) {
    int rows[] = {1, 5, 11, 12, 13, 24, 25, 69};
    int shapes[][2] = {{5, 3}, {128, 13}, {352, 384}, {64, 2048}, {128, 100}, {96, 48}};
    for (int r = 0; r < 8; r++)
        for (int s = 0; s < 6; s++) {
            int N = rows[r], Ci = shapes[s][0], Co = shapes[s][1];
            size_t n_out = (size_t)N * Co, n_w = (size_t)Co * Ci;
            float *x = randn((size_t)N * Ci, 70 + r), *w = randn(n_w, 80 + s);
            float *panels = malloc(n_w * sizeof(float)), *back = malloc(n_w * sizeof(float));
            float *rows_out = zeros(n_out), *one = zeros(n_out), *two = zeros(n_out);
            memcpy(panels, w, n_w * sizeof(float));
            be->panels_convert(panels, Co, Ci, 1);
            memcpy(back, panels, n_w * sizeof(float));
            be->panels_convert(back, Co, Ci, 0);
            ck_assert_mem_eq(back, w, n_w * sizeof(float));
            if (Co >= 32) ck_assert(memcmp(panels, w, n_w * sizeof(float)) != 0);
            cpu_matmul_forward_rows(rows_out, x, w, N, Ci, Co);
            omp_set_num_threads(1);
            be->matmul_forward_panels(one, x, panels, N, Ci, Co);
            omp_set_num_threads(2);
            be->matmul_forward_panels(two, x, panels, N, Ci, Co);
            ck_assert_msg(!memcmp(one, rows_out, n_out * sizeof(float)), "%d x %d -> %d", N, Ci,
                          Co);
            ck_assert_mem_eq(one, two, n_out * sizeof(float));
            free(x), free(w), free(panels), free(back), free(rows_out), free(one), free(two);
        }
    printf("  panel matmul: the few-rows kernel's bits over 48 shapes, 1 and 2 threads\n");
}
END_TEST

// The same over bf16 weights (the bf16-weight table's panels, and the few-rows kernel reading
// bf16 rows): bf16 panels convert and back exactly, and both products have the bits of the
// fp32 few-rows kernel over the widened weights, at one thread and at two.
START_TEST(test_bf16_panel_matmul_matches_rows) {
    const Backend *b16 = backend_cpu_bf16_weights();
    int rows[] = {1, 6, 12, 13, 25, 69};
    int shapes[][2] = {{5, 3}, {128, 13}, {352, 384}, {64, 2048}, {128, 100}};
    for (int r = 0; r < 6; r++)
        for (int s = 0; s < 5; s++) {
            int N = rows[r], Ci = shapes[s][0], Co = shapes[s][1];
            size_t n_out = (size_t)N * Co, n_w = (size_t)Co * Ci;
            float *x = randn((size_t)N * Ci, 90 + r), *w = randn(n_w, 100 + s);
            uint16_t *w16 = malloc(n_w * 2), *panels = malloc(n_w * 2), *back = malloc(n_w * 2);
            for (size_t i = 0; i < n_w; i++) {
                w16[i] = float_to_bf16(w[i]);
                w[i] = bf16_to_float(w16[i]);
            }
            float *want = zeros(n_out), *one = zeros(n_out), *two = zeros(n_out);
            float *rows16 = zeros(n_out);
            memcpy(panels, w16, n_w * 2);
            b16->panels_convert((float *)(void *)panels, Co, Ci, 1);
            memcpy(back, panels, n_w * 2);
            b16->panels_convert((float *)(void *)back, Co, Ci, 0);
            ck_assert_mem_eq(back, w16, n_w * 2);
            if (Co >= 32) ck_assert(memcmp(panels, w16, n_w * 2) != 0);
            cpu_matmul_forward_rows(want, x, w, N, Ci, Co);
            omp_set_num_threads(1);
            b16->matmul_forward_panels(one, x, (float *)(void *)panels, N, Ci, Co);
            cpu_matmul_forward_rows_w16(rows16, x, (float *)(void *)w16, N, Ci, Co);
            omp_set_num_threads(2);
            b16->matmul_forward_panels(two, x, (float *)(void *)panels, N, Ci, Co);
            ck_assert_msg(!memcmp(one, want, n_out * sizeof(float)), "%d x %d -> %d", N, Ci, Co);
            ck_assert_mem_eq(one, two, n_out * sizeof(float));
            ck_assert_mem_eq(rows16, want, n_out * sizeof(float));
            free(x), free(w), free(w16), free(panels), free(back);
            free(want), free(one), free(two), free(rows16);
        }
    printf("  bf16 panel and row matmuls: the fp32 kernel's bits on the widened weights, 30 "
           "shapes\n");
}
END_TEST

// bf16 weights in pairs times bf16-rounded inputs (vdpbf16ps's arithmetic): the layout
// converts and back exactly; the table's kernel (VNNI-BF16 where built) has the plain loop's
// bits at one and two threads, over row counts around its tile and a narrower last block; and
// both are the product of the bf16 weights with the inputs up to the inputs' bf16 rounding.
START_TEST(test_bf16_pairs_match_plain_loop) {
    const Backend *pairs = backend_cpu_bf16_pairs();
    int rows[] = {1, 6, 12, 13, 25};
    int shapes[][2] = {{2, 3}, {128, 13}, {352, 384}, {64, 2048}, {96, 100}};
    double worst = 0.0;
    for (int r = 0; r < 5; r++)
        for (int s = 0; s < 5; s++) {
            int N = rows[r], Ci = shapes[s][0], Co = shapes[s][1];
            size_t n_out = (size_t)N * Co, n_w = (size_t)Co * Ci;
            float *x = randn((size_t)N * Ci, 70 + r), *w = randn(n_w, 80 + s);
            uint16_t *w16 = malloc(n_w * 2), *panels = malloc(n_w * 2);
            for (size_t i = 0; i < n_w; i++) {
                w16[i] = float_to_bf16(w[i]);
                w[i] = bf16_to_float(w16[i]);
            }
            memcpy(panels, w16, n_w * 2);
            pairs->panels_convert((float *)(void *)panels, Co, Ci, 1);
            float *want = zeros(n_out), *one = zeros(n_out), *two = zeros(n_out),
                  *exact = zeros(n_out);
            cpu_matmul_pairs_ref(want, x, (float *)(void *)panels, N, Ci, Co);
            omp_set_num_threads(1);
            pairs->matmul_forward_panels(one, x, (float *)(void *)panels, N, Ci, Co);
            omp_set_num_threads(2);
            pairs->matmul_forward_panels(two, x, (float *)(void *)panels, N, Ci, Co);
            ck_assert_msg(!memcmp(one, want, n_out * sizeof(float)), "%d x %d -> %d", N, Ci, Co);
            ck_assert_mem_eq(one, two, n_out * sizeof(float));
            cpu_matmul_forward_rows(exact, x, w, N, Ci, Co);
            double err = max_relative_error(want, exact, n_out);
            ck_assert_msg(err <= 0.01, "%d x %d -> %d: %g", N, Ci, Co, err);
            worst = fmax(worst, err);
            pairs->panels_convert((float *)(void *)panels, Co, Ci, 0);
            ck_assert_mem_eq(panels, w16, n_w * 2);
            free(x), free(w), free(w16), free(panels), free(want), free(one), free(two), free(exact);
        }
    printf("  bf16 pairs: the plain loop's bits at 1 and 2 threads, 25 shapes; within %.2g of the "
           "largest exact output\n", worst);
}
END_TEST

// ---- 8- and 4-bit block weights (kernels/qblocks.h) ----
// float_to_f16 rounds as the hardware's conversion (F16C, when this build has it) and as
// "nearest, ties to even" says: the nearer of the two halves around x, for normal, subnormal,
// huge and tied values.
START_TEST(test_float_to_f16_rounds_to_nearest_even) {
    float cases[] = {0.0f, -0.0f, 1.0f, 65504.0f, 65519.0f, 65520.0f, 1e-8f, -3e-7f,
                     5.9604645e-8f, 2.9802322e-8f, 8.940697e-8f, 6.1035156e-5f, 1.0009765625f,
                     1.00048828125f, 1.00146484375f, 3.14159f, -2.71828f, 1e30f};
    int n_cases = sizeof cases / sizeof cases[0], checked = 0;
    uint64_t state = 7;
    for (int k = 0; k < n_cases + 200000; k++) {
        float x;
        if (k < n_cases) {
            x = cases[k];
        } else {  // random bit patterns over the half range's exponents
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            uint32_t bits = (uint32_t)(state >> 32);
            bits = (bits & 0x807fffffu) | ((100u + (bits >> 23) % 45u) << 23);
            memcpy(&x, &bits, 4);
        }
        uint16_t h = float_to_f16(x);
        double got = f16_to_float(h), below = f16_to_float(h - (h & 0x7fff ? 1 : 0));
        double above = f16_to_float((uint16_t)(h + 1));
        if ((h & 0x7fff) < 0x7c00) {  // finite: no half between x and the result is nearer
            ck_assert_msg(fabs(got - x) <= fabs(below - x) && fabs(got - x) <= fabs(above - x),
                          "%.9g -> %.9g", x, got);
            int tied = (fabs(got - x) == fabs(above - x) && above != got) ||
                       (fabs(got - x) == fabs(below - x) && below != got);
            if (tied) ck_assert_int_eq(h & 1, 0);
        } else {
            ck_assert(fabsf(x) >= 65520.0f);
        }
#ifdef __F16C__
        ck_assert_int_eq(h, _cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT));
#endif
        checked++;
    }
    printf("  float_to_f16: %d values rounded to the nearest half%s\n", checked,
#ifdef __F16C__
           ", as F16C's vcvtps2ph"
#else
           ""
#endif
    );
}
END_TEST

// GGUF rows of random weights: Q8_0 (bits 8) or Q4_0 (4) blocks from GGUF's quantisers.
static uint8_t *gguf_matrix(int bits, const float *w, int rows, int cols) {
    size_t row_bytes = (size_t)cols / QB_BLOCK * qb_gguf_block_bytes(bits);
    uint8_t *q = malloc(rows * row_bytes);
    for (int r = 0; r < rows; r++)
        ck_assert_int_eq(qb_quantize_row(bits, q + r * row_bytes, w + (size_t)r * cols, cols), 0);
    return q;
}

// Block b of a row against ggml's reference quantisers, step by step.
static void check_gguf_block(int bits, const float *x, const uint8_t *blk) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < QB_BLOCK; j++)
        if (amax < fabsf(x[j])) amax = fabsf(x[j]), max = x[j];
    float d = bits == 8 ? amax / 127.0f : max / -8.0f, id = d ? 1.0f / d : 0.0f;
    uint16_t h;
    memcpy(&h, blk, 2);
    ck_assert_int_eq(h, float_to_f16(d));
    for (int j = 0; j < QB_BLOCK; j++) {
        if (bits == 8) {
            ck_assert_int_eq((int8_t)blk[2 + j], (int)roundf(x[j] * id));
        } else {
            int want = (int8_t)(x[j] * id + 8.5f);
            int nibble = j < 16 ? blk[2 + j] & 0xF : blk[2 + j - 16] >> 4;
            ck_assert_int_eq(nibble, want < 15 ? want : 15);
        }
    }
}

// Quantised as GGUF's reference quantisers say, and packed and unpacked back to exactly what
// ggml decodes the blocks to, for both widths (some blocks all zero).
START_TEST(test_qb_pack_and_quantisers) {
    int rows = 37, cols = 96;
    size_t n = (size_t)rows * cols;
    float *w = randn(n, 3), *decoded = zeros(n), *unpacked = zeros(n);
    for (int j = 0; j < QB_BLOCK; j++) w[5 * cols + j] = 0.0f;
    double err[2] = {0.0, 0.0};
    for (int k = 0; k < 2; k++) {
        int bits = k ? 4 : 8;
        size_t row_bytes = (size_t)cols / QB_BLOCK * qb_gguf_block_bytes(bits);
        uint8_t *q = gguf_matrix(bits, w, rows, cols);
        for (int r = 0; r < rows; r++) {
            ggml_decode_row(bits == 8 ? GGML_Q8_0 : GGML_Q4_0, q + r * row_bytes,
                            decoded + (size_t)r * cols, cols);
            for (int b = 0; b < cols / QB_BLOCK; b++)
                check_gguf_block(bits, w + (size_t)r * cols + b * QB_BLOCK,
                                 q + r * row_bytes + b * qb_gguf_block_bytes(bits));
        }
        uint8_t *packed = malloc(qb_matrix_bytes(bits, rows, cols));
        qb_pack(bits, packed, q, rows, cols);
        qb_unpack(bits, unpacked, packed, rows, cols);
        ck_assert_mem_eq(unpacked, decoded, n * sizeof(float));
        for (size_t i = 0; i < n; i++) err[k] = fmax(err[k], fabs(decoded[i] - w[i]));
        free(q), free(packed);
    }
    // Q4_0 blocks as Q8_0 ones: the same values
    uint8_t q4[Q4_0_BYTES], as_q8[Q8_0_BYTES];
    float from_q4[32], from_q8[32];
    for (int j = 0; j < Q4_0_BYTES; j++) q4[j] = (uint8_t)(37 * j + 11);
    q4[1] = 0x2c;  // a plain fp16 scale
    q8_0_from_q4_0(as_q8, q4, 1);
    ggml_decode_row(GGML_Q4_0, q4, from_q4, 32);
    ggml_decode_row(GGML_Q8_0, as_q8, from_q8, 32);
    ck_assert_mem_eq(from_q4, from_q8, sizeof from_q4);
    // a NaN or an infinity anywhere in a row: refused by both quantisers (no code holds it)
    float bad[2] = {NAN, INFINITY};
    uint8_t row[3 * Q8_0_BYTES];
    for (int v = 0; v < 2; v++) {
        float saved = w[2 * cols + 70];
        w[2 * cols + 70] = bad[v];
        ck_assert_int_eq(qb_quantize_row(8, row, w + 2 * cols, cols), -1);
        ck_assert_int_eq(qb_quantize_row(4, row, w + 2 * cols, cols), -1);
        w[2 * cols + 70] = saved;
    }
    printf("  Q8_0 and Q4_0 quantisers: ggml's references step by step; packed and unpacked to "
           "ggml's decoding bit for bit (max error %.3g and %.3g on randn weights); Q4_0 as "
           "Q8_0 exact; NaN and infinity refused\n", err[0], err[1]);
    free(w), free(decoded), free(unpacked);
}
END_TEST

// The inputs' quantiser (SIMD where built) against its definition (kernels/qblocks.h), byte
// for byte: codes rint(x * 127 / max |x|), their sums after the codes, dx = max |x| / 127.
static void check_quantised_rows(const uint8_t *xq, const float *dx, const float *x, int N,
                                 int C) {
    for (int n = 0; n < N; n++)
        for (int b = 0; b < C / QB_BLOCK; b++) {
            const float *v = x + (size_t)n * C + b * QB_BLOCK;
            const uint8_t *row = xq + (size_t)n * qb_row_bytes(C);
            float amax = 0.0f;
            for (int j = 0; j < QB_BLOCK; j++) amax = fmaxf(amax, fabsf(v[j]));
            float id = amax > 0.0f ? 127.0f / amax : 0.0f;
            int32_t sum = 0, got;
            for (int j = 0; j < QB_BLOCK; j++) {
                int q = (int)rintf(v[j] * id);
                ck_assert_int_eq((int8_t)row[b * QB_BLOCK + j], q);
                sum += q;
            }
            memcpy(&got, row + C + 4 * b, 4);
            ck_assert_int_eq(got, sum);
            ck_assert_float_eq(dx[(size_t)n * (C / QB_BLOCK) + b], amax / 127.0f);
        }
}

// The VNNI kernel (when built) has the plain loop's bits at one and two threads, for 8- and
// 4-bit weights, over row counts around its tile of 6 and output counts around its pairs of
// 16-wide panels; and both are the fp32 product up to the rounding of weights and inputs.
// The inputs' quantiser is checked against its definition on the way.
START_TEST(test_qb_matmul_matches_plain_loop) {
    int row_counts[] = {1, 5, 6, 7, 13, 40};
    int shapes[][2] = {{32, 16}, {64, 40}, {96, 33}, {256, 64}, {128, 100}};
    double worst[2] = {0.0, 0.0}, bound[2] = {0.02, 0.3};  // Q4_0 of randn: 4 bits
    for (int k = 0; k < 2; k++)
        for (int r = 0; r < 6; r++)
            for (int s = 0; s < 5; s++) {
                int bits = k ? 4 : 8, N = row_counts[r], Ci = shapes[s][0], Co = shapes[s][1];
                size_t n_out = (size_t)N * Co;
                float *x = randn((size_t)N * Ci, 40 + r), *w = randn((size_t)Co * Ci, 50 + s);
                uint8_t *q = gguf_matrix(bits, w, Co, Ci);
                uint8_t *packed = malloc(qb_matrix_bytes(bits, Co, Ci));
                qb_pack(bits, packed, q, Co, Ci);
                uint8_t *xq = malloc((size_t)N * qb_row_bytes(Ci));
                float *dx = zeros((size_t)N * Ci / QB_BLOCK);
                float *want = zeros(n_out), *one = zeros(n_out), *two = zeros(n_out),
                      *exact = zeros(n_out);
                cpu_quantize_rows_q8(xq, dx, x, N, Ci);
                check_quantised_rows(xq, dx, x, N, Ci);
                cpu_matmul_qb_ref(want, xq, dx, packed, bits, N, Ci, Co);
                omp_set_num_threads(1);
                backend_cpu.matmul_qb(one, xq, dx, packed, bits, N, Ci, Co);
                omp_set_num_threads(2);
                backend_cpu.matmul_qb(two, xq, dx, packed, bits, N, Ci, Co);
                ck_assert_msg(!memcmp(one, want, n_out * sizeof(float)), "%d bits, %d x %d -> %d",
                              bits, N, Ci, Co);
                ck_assert_mem_eq(one, two, n_out * sizeof(float));
                cpu_matmul_forward_rows(exact, x, w, N, Ci, Co);
                double err = max_relative_error(want, exact, n_out);
                ck_assert_msg(err <= bound[k], "%d bits, %d x %d -> %d: error %g", bits, N, Ci,
                              Co, err);
                worst[k] = fmax(worst[k], err);
                free(x), free(w), free(q), free(packed), free(xq), free(dx);
                free(want), free(one), free(two), free(exact);
            }
    printf("  8- and 4-bit block matmuls: the plain loop's bits at 1 and 2 threads, 30 shapes "
           "each; within %.2g and %.2g of the largest fp32 output\n", worst[0], worst[1]);
}
END_TEST

// ---- rmsnorm ----
typedef struct { float *out, *rstd, *inp, *w, *r; int N, C; } NormCase;

static double rmsnorm_scalar(void *p) {
    NormCase *c = p;
    be->rmsnorm_forward(c->out, c->rstd, c->inp, c->w, c->N, c->C, 1e-5f);
    return dot_double(c->out, c->r, (size_t)c->N * c->C);
}

START_TEST(test_rmsnorm) {
    int N = 4, C = 8;
    NormCase c = {zeros(N * C), zeros(N), randn(N * C, 4), randn(C, 5), randn(N * C, 6), N, C};
    rmsnorm_scalar(&c);
    for (int n = 0; n < N; n++) {
        double ms = dot_double(c.inp + n * C, c.inp + n * C, C) / C;
        for (int i = 0; i < C; i++)
            ck_assert_double_eq_tol(c.out[n * C + i], c.inp[n * C + i] * c.w[i] / sqrt(ms + 1e-5),
                                    1e-5);
    }
    float *dinp = zeros(N * C), *dw = zeros(C);
    be->rmsnorm_backward(dinp, dw, c.r, c.inp, c.w, c.rstd, N, C);
    report("rmsnorm dinp", grad_check(rmsnorm_scalar, &c, c.inp, dinp, N * C, FD_STEP, 0));
    report("rmsnorm dweight", grad_check(rmsnorm_scalar, &c, c.w, dw, C, FD_STEP, 0));
    free(c.out), free(c.rstd), free(c.inp), free(c.w), free(c.r), free(dinp), free(dw);
}
END_TEST

// ---- rope ----
typedef struct { float *x, *work, *cos, *sin, *r; int B, T, H, hd; } RopeCase;

static void rope_tables(RopeCase *c) {
    int half = c->hd / 2;
    c->cos = zeros(c->T * half);
    c->sin = zeros(c->T * half);
    for (int t = 0; t < c->T; t++)
        for (int i = 0; i < half; i++) {
            double a = t * pow(10000.0, -(double)i / half);
            c->cos[t * half + i] = (float)cos(a);
            c->sin[t * half + i] = (float)sin(a);
        }
}

static double rope_scalar(void *p) {
    RopeCase *c = p;
    size_t n = (size_t)c->B * c->T * c->H * c->hd;
    memcpy(c->work, c->x, n * sizeof(float));
    be->rope_forward(c->work, c->cos, c->sin, c->B, c->T, 0, c->H, c->hd, c->hd);
    return dot_double(c->work, c->r, n);
}

START_TEST(test_rope) {
    RopeCase c = {NULL, NULL, NULL, NULL, NULL, 2, 5, 2, 6};
    size_t n = 2 * 5 * 2 * 6;
    c.x = randn(n, 7), c.work = zeros(n), c.r = randn(n, 8);
    rope_tables(&c);
    rope_scalar(&c);
    // position 0 is not rotated; every rotated pair keeps its length
    for (int i = 0; i < 2 * 6; i++) ck_assert_float_eq(c.work[i], c.x[i]);
    for (size_t v = 0; v < n / 6; v++)
        for (int i = 0; i < 3; i++) {
            const float *a = c.x + v * 6, *b = c.work + v * 6;
            ck_assert_float_eq_tol(a[i] * a[i] + a[i + 3] * a[i + 3],
                                   b[i] * b[i] + b[i + 3] * b[i + 3], 1e-5f);
        }
    // backward: the rotation back; it is the gradient, and undoes the forward
    float *d = malloc(n * sizeof(float));
    memcpy(d, c.r, n * sizeof(float));
    be->rope_backward(d, c.cos, c.sin, 2, 5, 0, 2, 6, 6);
    report("rope dx", grad_check(rope_scalar, &c, c.x, d, n, FD_STEP, 0));
    rope_scalar(&c);  // the check left work at its last perturbed point
    be->rope_backward(c.work, c.cos, c.sin, 2, 5, 0, 2, 6, 6);
    for (size_t i = 0; i < n; i++) ck_assert_float_eq_tol(c.work[i], c.x[i], 1e-5f);
    free(c.x), free(c.work), free(c.r), free(c.cos), free(c.sin), free(d);
}
END_TEST

// A partial rotary (LLaDA 2.0's, half of each head): the first rot values turn as a head of
// rot values would, the others pass untouched, forward and backward.
START_TEST(test_partial_rope) {
    int B = 2, T = 5, H = 2, hd = 8, rot = 4;
    size_t n = (size_t)B * T * H * hd, m = (size_t)B * T * H * rot;
    RopeCase c = {NULL, NULL, NULL, NULL, NULL, B, T, H, rot};
    rope_tables(&c);  // tables of rot / 2 frequencies
    float *x = randn(n, 9), *part = zeros(m), *y = zeros(n);
    for (size_t v = 0; v < n / hd; v++) memcpy(part + v * rot, x + v * hd, rot * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    be->rope_forward(y, c.cos, c.sin, B, T, 0, H, hd, rot);
    be->rope_forward(part, c.cos, c.sin, B, T, 0, H, rot, rot);  // the rotated share alone
    for (size_t v = 0; v < n / hd; v++)
        for (int i = 0; i < hd; i++)
            ck_assert_float_eq(y[v * hd + i], i < rot ? part[v * rot + i] : x[v * hd + i]);
    be->rope_backward(y, c.cos, c.sin, B, T, 0, H, hd, rot);
    for (size_t i = 0; i < n; i++) ck_assert_float_eq_tol(y[i], x[i], 1e-6f);
    printf("  partial rope (4 of 8 values): the rotated share as a head of 4, the rest untouched\n");
    free(x), free(part), free(y), free(c.cos), free(c.sin);
}
END_TEST

// ---- attention ----
typedef struct { float *out, *lse, *q, *k, *v, *r; int B, T, H, Hkv, hd, mask; } AttnCase;

static double attention_scalar(void *p) {
    AttnCase *c = p;
    be->attention_forward(c->out, c->lse, c->q, c->k, c->v, NULL, c->B, c->T, c->T, 0, c->H,
                          c->Hkv, c->hd, c->mask);
    return dot_double(c->out, c->r, (size_t)c->B * c->T * c->H * c->hd);
}

// Attention of one row written out in double: softmax of the visible scores times v.
static void attention_row_reference(const AttnCase *c, int b, int h, int t, double *out,
                                    double *lse) {
    int end = c->T, g = h / (c->H / c->Hkv);  // the key/value head
    double s[8], maxv = -INFINITY, sum = 0.0;
    for (int j = 0; j < end; j++) {
        s[j] = -INFINITY;
        if (!attn_sees(c->mask, t, j, c->T)) continue;
        s[j] = 0.0;
        for (int i = 0; i < c->hd; i++)
            s[j] += (double)c->q[((b * c->T + t) * c->H + h) * c->hd + i] *
                    c->k[((b * c->T + j) * c->Hkv + g) * c->hd + i];
        s[j] /= sqrt(c->hd);
        maxv = fmax(maxv, s[j]);
    }
    for (int j = 0; j < end; j++) sum += exp(s[j] - maxv);
    *lse = maxv + log(sum);
    for (int i = 0; i < c->hd; i++) {
        out[i] = 0.0;
        for (int j = 0; j < end; j++)
            out[i] += exp(s[j] - *lse) * c->v[((b * c->T + j) * c->Hkv + g) * c->hd + i];
    }
}

// Hkv < H: grouped-query attention, H / Hkv query heads per key/value head.
// attn_kind's names, for the lines the attention checks print
static const char *const mask_kinds[] = {"bidirectional", "causal", "block-causal", "bd3",
                                         "window",        "sliding"};

static void check_attention(int mask, int Hkv, int T) {
    int B = 2, H = 4, hd = 4;
    size_t n = (size_t)B * T * H * hd, nkv = (size_t)B * T * Hkv * hd;
    AttnCase c = {zeros(n), zeros(B * H * T), randn(n, 10), randn(nkv, 11), randn(nkv, 12),
                  randn(n, 13), B, T, H, Hkv, hd, mask};
    attention_scalar(&c);
    // every row (a causal one sees keys up to itself) against the double-precision softmax
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                double out[4], lse;
                attention_row_reference(&c, b, h, t, out, &lse);
                ck_assert_double_eq_tol(c.lse[(b * H + h) * T + t], lse, 1e-5);
                for (int i = 0; i < hd; i++)
                    ck_assert_double_eq_tol(c.out[((b * T + t) * H + h) * hd + i], out[i], 1e-5);
            }
    float *dq = zeros(n), *dk = zeros(nkv), *dv = zeros(nkv);
    be->attention_backward(dq, dk, dv, c.r, c.out, c.lse, c.q, c.k, c.v, B, T, H, Hkv, hd, mask);
    char tag[64], name[96];
    snprintf(tag, sizeof tag, "%s, %d kv heads", mask_kinds[attn_kind(mask)], Hkv);
    snprintf(name, sizeof name, "attention dq (%s)", tag);
    report(name, grad_check(attention_scalar, &c, c.q, dq, n, FD_STEP, 0));
    snprintf(name, sizeof name, "attention dk (%s)", tag);
    report(name, grad_check(attention_scalar, &c, c.k, dk, nkv, FD_STEP, 0));
    snprintf(name, sizeof name, "attention dv (%s)", tag);
    report(name, grad_check(attention_scalar, &c, c.v, dv, nkv, FD_STEP, 0));
    attention_scalar(&c);  // restore out and lse for the accumulation check
    float *dq2 = malloc(n * sizeof(float)), *dk2 = malloc(nkv * sizeof(float)),
          *dv2 = malloc(nkv * sizeof(float));
    memcpy(dq2, dq, n * sizeof(float));
    memcpy(dk2, dk, nkv * sizeof(float));
    memcpy(dv2, dv, nkv * sizeof(float));
    be->attention_backward(dq2, dk2, dv2, c.r, c.out, c.lse, c.q, c.k, c.v, B, T, H, Hkv, hd,
                           mask);
    assert_doubled(dq, dq2, n);
    assert_doubled(dk, dk2, nkv);
    assert_doubled(dv, dv2, nkv);
    free(c.out), free(c.lse), free(c.q), free(c.k), free(c.v), free(c.r);
    free(dq), free(dk), free(dv), free(dq2), free(dk2), free(dv2);
}

START_TEST(test_attention_bidirectional) {
    check_attention(ATTN_FULL, 4, 5);
    check_attention(ATTN_FULL, 2, 5);
}
END_TEST

START_TEST(test_attention_causal) {
    check_attention(ATTN_CAUSAL, 4, 5);
    check_attention(ATTN_CAUSAL, 1, 5);
}
END_TEST

// The block masks, spelled out for blocks of 2: block-causal over 6 positions, and BD3-LM's
// layout of 2 x 4 rows (clean 0..3, noisy 4..7): a noisy row sees its own noisy block and the
// clean blocks before it, a clean row the clean blocks up to its own.
START_TEST(test_attention_block_masks) {
    static const char *block[6] = {"110000", "110000", "111100", "111100", "111111", "111111"};
    static const char *bd3[8] = {"11000000", "11000000", "11110000", "11110000",
                                 "00001100", "00001100", "11000011", "11000011"};
    for (int q = 0; q < 6; q++)
        for (int j = 0; j < 6; j++)
            ck_assert_int_eq(attn_sees(attn_block(2), q, j, 6), block[q][j] == '1');
    for (int q = 0; q < 8; q++) {
        int last = 0;
        for (int j = 0; j < 8; j++) {
            ck_assert_int_eq(attn_sees(attn_bd3(2), q, j, 8), bd3[q][j] == '1');
            if (bd3[q][j] == '1') last = j + 1;
            // no query before attn_first_query sees the key
            for (int q0 = 0; q0 < attn_first_query(attn_bd3(2), j, 8); q0++)
                ck_assert(!attn_sees(attn_bd3(2), q0, j, 8));
        }
        ck_assert_int_eq(attn_keys_end(attn_bd3(2), q, 8), last);
    }
    // a window of 2 keys past the query
    for (int q = 0; q < 6; q++)
        for (int j = 0; j < 6; j++)
            ck_assert_int_eq(attn_sees(attn_window(2), q, j, 6), j <= q + 2);
    ck_assert_int_eq(attn_first_query(attn_window(2), 4, 6), 2);
    // Mistral's sliding window of 3 keys: the query and the two before it
    for (int q = 0; q < 6; q++) {
        for (int j = 0; j < 6; j++)
            ck_assert_int_eq(attn_sees(attn_sliding(3), q, j, 6), j <= q && j > q - 3);
        ck_assert_int_eq(attn_keys_end(attn_sliding(3), q, 6), q + 1);
    }
    // the ops with these masks: against the double-precision rows, and finite differences
    check_attention(attn_window(2), 2, 6);
    check_attention(attn_sliding(3), 2, 6);
    check_attention(attn_block(2), 2, 6);
    check_attention(attn_bd3(2), 4, 8);
    check_attention(attn_bd3(1), 2, 8);
}
END_TEST

// Largest |a - b| relative to the largest |b|.
static double rel_err(const float *a, const float *b, size_t n) {
    double scale = 0.0, err = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (isinf(b[i]) && a[i] == b[i]) continue;  // -inf log-sum-exp of a row that sees no key
        scale = fmax(scale, fabs(b[i])), err = fmax(err, fabs(a[i] - b[i]));
    }
    return err / scale;
}

// The backend's attention (tiles through sgemm) against attention.c's loops, on shapes with
// several tiles and a partial one, grouped-query heads, left padding (key_start) and queries
// after a cached prefix (q_pos0); the same bits with one thread and with two (worth threads).
static void check_blas_attention(int mask) {
    int B = 2, T = 256, H = 4, Hkv = 2, hd = 32, Tq = 70, q_pos0 = T - Tq;  // big enough for threads
    int key_start[2] = {0, 37};
    size_t n = (size_t)B * T * H * hd, nkv = (size_t)B * T * Hkv * hd, nl = (size_t)B * H * T;
    float *q = randn(n, 50), *k = randn(nkv, 51), *v = randn(nkv, 52), *dout = randn(n, 53);
    float *out_ref = zeros(n), *lse_ref = zeros(nl), *out = zeros(n), *lse = zeros(nl);
    // queries after a cached prefix, with left padding: rows [q_pos0, T) of the same q
    size_t q_off = (size_t)q_pos0 * H * hd;  // sequence 0's rows; sequence 1 packed after them
    float *qs = zeros((size_t)B * Tq * H * hd);
    for (int b = 0; b < B; b++)
        memcpy(qs + (size_t)b * Tq * H * hd, q + (size_t)b * T * H * hd + q_off,
               (size_t)Tq * H * hd * sizeof(float));
    cpu_attention_forward(out_ref, lse_ref, qs, k, v, key_start, B, Tq, T, q_pos0, H, Hkv, hd,
                          mask);
    omp_set_num_threads(2);
    be->attention_forward(out, lse, qs, k, v, key_start, B, Tq, T, q_pos0, H, Hkv, hd, mask);
    double e_pre = rel_err(out, out_ref, (size_t)B * Tq * H * hd);
    ck_assert(e_pre < 1e-5 && rel_err(lse, lse_ref, (size_t)B * H * Tq) < 1e-5);
    // the whole sequence (training), forward and backward
    cpu_attention_forward(out_ref, lse_ref, q, k, v, NULL, B, T, T, 0, H, Hkv, hd, mask);
    be->attention_forward(out, lse, q, k, v, NULL, B, T, T, 0, H, Hkv, hd, mask);
    double e_out = rel_err(out, out_ref, n), e_lse = rel_err(lse, lse_ref, nl);
    float *g_ref[3] = {zeros(n), zeros(nkv), zeros(nkv)}, *g[3] = {zeros(n), zeros(nkv),
                                                                   zeros(nkv)};
    cpu_attention_backward(g_ref[0], g_ref[1], g_ref[2], dout, out_ref, lse_ref, q, k, v, B, T, H,
                           Hkv, hd, mask);
    be->attention_backward(g[0], g[1], g[2], dout, out, lse, q, k, v, B, T, H, Hkv, hd, mask);
    double e_dq = rel_err(g[0], g_ref[0], n), e_dk = rel_err(g[1], g_ref[1], nkv),
           e_dv = rel_err(g[2], g_ref[2], nkv);
    printf("  blas attention (%s) vs loops: cached rows %.1e, out %.1e, lse %.1e, dq %.1e, "
           "dk %.1e, dv %.1e\n", mask_kinds[attn_kind(mask)], e_pre, e_out, e_lse, e_dq, e_dk, e_dv);
    ck_assert(e_out < 1e-5 && e_lse < 1e-5 && e_dq < 1e-4 && e_dk < 1e-4 && e_dv < 1e-4);
    omp_set_num_threads(1);
    float *out1 = zeros(n), *lse1 = zeros(nl), *g1[3] = {zeros(n), zeros(nkv), zeros(nkv)};
    be->attention_forward(out1, lse1, q, k, v, NULL, B, T, T, 0, H, Hkv, hd, mask);
    be->attention_backward(g1[0], g1[1], g1[2], dout, out1, lse1, q, k, v, B, T, H, Hkv, hd,
                           mask);
    ck_assert_mem_eq(out1, out, n * sizeof(float));  // thread count: same bits
    ck_assert_mem_eq(g1[0], g[0], n * sizeof(float));
    ck_assert_mem_eq(g1[1], g[1], nkv * sizeof(float));
    ck_assert_int_eq(omp_get_max_threads(), 1);
    free(q), free(k), free(v), free(dout), free(out_ref), free(lse_ref), free(out), free(lse);
    free(qs), free(out1), free(lse1);
    for (int i = 0; i < 3; i++) free(g_ref[i]), free(g[i]), free(g1[i]);
}

START_TEST(test_blas_attention_matches_loops) {
    check_blas_attention(ATTN_FULL);
    check_blas_attention(ATTN_CAUSAL);
    check_blas_attention(attn_block(16));
    check_blas_attention(attn_bd3(16));
    check_blas_attention(attn_window(40));
    check_blas_attention(attn_sliding(40));
}
END_TEST

// ---- bias ----
typedef struct { float *x, *base, *bias, *r; int N, C; } BiasCase;

static double bias_scalar(void *p) {
    BiasCase *c = p;
    memcpy(c->x, c->base, (size_t)c->N * c->C * sizeof(float));
    be->bias_forward(c->x, c->bias, c->N, c->C);
    return dot_double(c->x, c->r, (size_t)c->N * c->C);
}

START_TEST(test_bias) {
    int N = 6, C = 5;
    BiasCase c = {zeros(N * C), randn(N * C, 30), randn(C, 31), randn(N * C, 32), N, C};
    bias_scalar(&c);
    for (int n = 0; n < N; n++)
        for (int i = 0; i < C; i++)
            ck_assert_float_eq(c.x[n * C + i], c.base[n * C + i] + c.bias[i]);
    float *db = zeros(C);
    be->bias_backward(db, c.r, N, C);
    report("bias dbias", grad_check(bias_scalar, &c, c.bias, db, C, FD_STEP, 0));
    free(c.x), free(c.base), free(c.bias), free(c.r), free(db);
}
END_TEST

// ---- swiglu ----
typedef struct { float *out, *gate, *up, *r; size_t n; } SwigluCase;

static double swiglu_scalar(void *p) {
    SwigluCase *c = p;
    be->swiglu_forward(c->out, c->gate, c->up, c->n);
    return dot_double(c->out, c->r, c->n);
}

START_TEST(test_swiglu) {
    size_t n = 50;
    SwigluCase c = {zeros(n), randn(n, 14), randn(n, 15), randn(n, 16), n};
    swiglu_scalar(&c);
    for (size_t i = 0; i < n; i++)
        ck_assert_double_eq_tol(c.out[i], c.gate[i] / (1.0 + exp(-c.gate[i])) * c.up[i], 1e-5);
    float *dg = zeros(n), *du = zeros(n);
    be->swiglu_backward(dg, du, c.r, c.gate, c.up, n);
    report("swiglu dgate", grad_check(swiglu_scalar, &c, c.gate, dg, n, FD_STEP, 0));
    report("swiglu dup", grad_check(swiglu_scalar, &c, c.up, du, n, FD_STEP, 0));
    free(c.out), free(c.gate), free(c.up), free(c.r), free(dg), free(du);
}
END_TEST

// ---- embedding ----
typedef struct { float *out, *table, *r; const int *tokens; int N, C; } EmbedCase;

static double embedding_scalar(void *p) {
    EmbedCase *c = p;
    be->embedding_forward(c->out, c->tokens, c->table, c->N, c->C);
    return dot_double(c->out, c->r, (size_t)c->N * c->C);
}

START_TEST(test_embedding) {
    static const int tokens[] = {3, 0, 3, 4, 1, 3, 0};  // repeats must add up
    int N = 7, V = 5, C = 4;
    EmbedCase c = {zeros(N * C), randn(V * C, 17), randn(N * C, 18), tokens, N, C};
    embedding_scalar(&c);
    for (int n = 0; n < N; n++)
        ck_assert_mem_eq(c.out + n * C, c.table + tokens[n] * C, C * sizeof(float));
    float *dt = zeros(V * C);
    be->embedding_backward(dt, c.r, tokens, N, C, V);
    report("embedding dtable", grad_check(embedding_scalar, &c, c.table, dt, V * C, FD_STEP, 0));
    // token 2 never occurs: no gradient
    for (int i = 0; i < C; i++) ck_assert_float_eq(dt[2 * C + i], 0.0f);
    free(c.out), free(c.table), free(c.r), free(dt);
}
END_TEST

// ---- cross-entropy ----
typedef struct { float *losses, *logits, *weights; const int *targets; int N, V; } CeCase;

static double cross_entropy_scalar(void *p) {
    CeCase *c = p;
    be->cross_entropy_forward(c->losses, c->logits, c->targets, c->N, c->V);
    return dot_double(c->losses, c->weights, c->N);
}

START_TEST(test_cross_entropy) {
    static const int targets[] = {0, 8, 3, 3, 5, 1};
    int N = 6, V = 9;
    float weights[] = {0.5f, 0.0f, 2.0f, 1.0f, 0.0f, 0.25f};
    CeCase c = {zeros(N), randn(N * V, 19), weights, targets, N, V};
    for (int i = 0; i < N * V; i++) c.logits[i] *= 3.0f;
    cross_entropy_scalar(&c);
    for (int n = 0; n < N; n++) {
        double z = 0.0;
        for (int v = 0; v < V; v++) z += exp(c.logits[n * V + v]);
        ck_assert_double_eq_tol(c.losses[n], log(z) - c.logits[n * V + targets[n]], 1e-5);
    }
    // the fused pass: the same losses, and the gradient, written (not added) even in place
    float *dl = randn(N * V, 20), *fused_losses = zeros(N), *in_place = malloc(N * V * sizeof(float));
    be->cross_entropy_fused(fused_losses, dl, c.logits, targets, weights, N, V);
    ck_assert_mem_eq(fused_losses, c.losses, N * sizeof(float));
    memcpy(in_place, c.logits, N * V * sizeof(float));
    be->cross_entropy_fused(fused_losses, in_place, in_place, targets, weights, N, V);
    ck_assert_mem_eq(in_place, dl, N * V * sizeof(float));
    report("cross-entropy dlogits", grad_check(cross_entropy_scalar, &c, c.logits, dl, N * V,
                                               FD_STEP, 0));
    for (int v = 0; v < V; v++) ck_assert_float_eq(dl[1 * V + v], 0.0f);  // weight 0 rows
    free(c.losses), free(c.logits), free(dl), free(fused_losses), free(in_place);
}
END_TEST

// ---- optimizer ops ----
START_TEST(test_adamw) {
    // two steps of AdamW against the update written out in double precision
    size_t n = 5;
    float p[5] = {0.5f, -1.0f, 2.0f, 0.0f, 3.0f}, m[5] = {0}, v[5] = {0};
    double rp[5], rm[5] = {0}, rv[5] = {0};
    float g[2][5] = {{0.1f, -0.2f, 0.0f, 1.0f, -3.0f}, {0.3f, 0.1f, 0.0f, -1.0f, 2.0f}};
    float lr = 0.01f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f;
    for (size_t i = 0; i < n; i++) rp[i] = p[i];
    for (int t = 1; t <= 2; t++) {
        be->adamw_update(p, g[t - 1], m, v, n, lr, b1, b2, eps, wd, t);
        for (size_t i = 0; i < n; i++) {
            rm[i] = b1 * rm[i] + (1 - b1) * g[t - 1][i];
            rv[i] = b2 * rv[i] + (1 - b2) * (double)g[t - 1][i] * g[t - 1][i];
            double mh = rm[i] / (1 - pow(b1, t)), vh = rv[i] / (1 - pow(b2, t));
            rp[i] -= lr * (mh / (sqrt(vh) + eps) + wd * rp[i]);
        }
    }
    for (size_t i = 0; i < n; i++) ck_assert_double_eq_tol(p[i], rp[i], 1e-6);
    // a zero gradient leaves only the decoupled decay: p * (1 - lr * wd) per step
    ck_assert_double_eq_tol(p[2], 2.0 * (1 - lr * wd) * (1 - lr * wd), 1e-6);
}
END_TEST

START_TEST(test_sum_squares_and_scale) {
    size_t n = 200003;  // several chunks and a partial one
    float *x = randn(n, 20);
    ck_assert_double_eq_tol(be->sum_squares(x, n), dot_double(x, x, n), 1e-6 * n);
    be->scale(x, n, 0.5f);
    float *y = randn(n, 20);
    for (size_t i = 0; i < n; i++) ck_assert_float_eq(x[i], 0.5f * y[i]);
    free(x), free(y);
}
END_TEST

// ---- the sampler's pick ----
START_TEST(test_pick_tokens_greedy_and_guided) {
    // 2 sequences of 3 rows, V 5, token 4 banned; pick rows 1..2 of each
    enum { B = 2, R = 3, V = 5 };
    float logits[2 * B * R * V];
    fill_normal(logits, 2 * B * R * V, 41, 2.0f);
    logits[(0 * R + 1) * V + 4] = 50.0f;  // the banned token would win
    logits[(1 * R + 2) * V + 0] = logits[(1 * R + 2) * V + 3] = 9.0f;  // a tie: the lower id
    int tokens[B * 2];
    double conf[B * 2];
    for (int guided = 0; guided <= 1; guided++) {
        float cfg = guided ? 1.5f : 0.0f;
        be->pick_tokens(tokens, conf, logits, B, R, 1, 2, V, cfg, 0.0f, 7, 4);
        for (int b = 0; b < B; b++)
            for (int i = 0; i < 2; i++) {
                const float *cond = logits + ((b * R) + 1 + i) * V, *uncond = cond + B * R * V;
                double g[V], z = 0.0;
                int best = 0;
                for (int v = 0; v < 4; v++) {
                    g[v] = guided ? uncond[v] + 2.5 * ((double)cond[v] - uncond[v]) : cond[v];
                    if (g[v] > g[best]) best = v;
                }
                for (int v = 0; v < 4; v++) z += exp(g[v]);
                ck_assert_int_eq(tokens[b * 2 + i], best);
                // float64 like LLaDA's: only the guided logit's float rounding differs
                ck_assert_double_eq_tol(conf[b * 2 + i], exp(g[best]) / z, 1e-6);
            }
        if (!guided) ck_assert_int_eq(tokens[1 * 2 + 1], 0);  // the tie
    }
    // nothing banned (exact LLaDA): token 4 wins, its confidence over all five tokens
    be->pick_tokens(tokens, conf, logits, B, R, 1, 2, V, 0.0f, 0.0f, 7, -1);
    ck_assert_int_eq(tokens[0], 4);
    double z = 0.0;
    for (int v = 0; v < V; v++) z += exp((double)logits[1 * V + v] - 50.0);
    ck_assert_double_eq_tol(conf[0], 1.0 / z, 1e-12);
}
END_TEST

// The Gumbel noise over 2^26 draws, the indices of 531 rows of a 126,464-token vocabulary (LLaDA's
// size): never infinite, and its tails where Gumbel's are. A float u from 24 bits gave +inf for
// one draw in 2^24 (u rounded to 1) and nothing above 15.9 or below -2.85.
START_TEST(test_gumbel_noise_is_finite_with_gumbel_tails) {
    const long long N = 1ll << 26;
    long long bad = 0, above16 = 0, above10 = 0, below_m2_5 = 0;
    double hi = -INFINITY, lo = INFINITY;
#pragma omp parallel for reduction(+ : bad, above16, above10, below_m2_5) reduction(max : hi) \
    reduction(min : lo)
    for (long long i = 0; i < N; i++) {
        double g = noise_gumbel(0x5eed, (uint64_t)i);
        if (!isfinite(g)) {
            bad++;
            continue;
        }
        above16 += g > 16.0, above10 += g > 10.0, below_m2_5 += g < -2.5;
        if (g > hi) hi = g;
        if (g < lo) lo = g;
    }
    // expected counts: N * P(G > x) = N (1 - exp(-e^-x)), N * P(G < x) = N exp(-e^-x)
    double e16 = N * -expm1(-exp(-16.0)), e10 = N * -expm1(-exp(-10.0));
    double em = N * exp(-exp(2.5));
    printf("  gumbel noise, 2^26 draws: %lld non-finite, range [%.2f, %.2f]; > 16: %lld "
           "(expected %.1f), > 10: %lld (%.0f), < -2.5: %lld (%.0f)\n", bad, lo, hi, above16,
           e16, above10, e10, below_m2_5, em);
    ck_assert_int_eq(bad, 0);
    ck_assert_int_ge(above16, 1);  // float noise stopped at 15.9
    ck_assert(fabs(above16 - e16) < 5 * sqrt(e16) + 1);
    ck_assert(fabs(above10 - e10) < 5 * sqrt(e10));
    ck_assert(fabs(below_m2_5 - em) < 5 * sqrt(em));
}
END_TEST

START_TEST(test_pick_tokens_samples_the_softmax) {
    // Gumbel-max at temperature tau draws from softmax(logits / tau): 40000 rows of the same
    // logits, each with its own noise, against those probabilities; the same seed repeats.
    enum { N = 40000, V = 4 };
    float tau = 0.7f, row[V] = {1.0f, 0.5f, -0.3f, 0.2f};
    float *logits = malloc((size_t)N * V * sizeof(float));
    double *conf = malloc(N * sizeof(double));
    int *tokens = malloc(N * sizeof(int)), *again = malloc(N * sizeof(int));
    for (int n = 0; n < N; n++) memcpy(logits + (size_t)n * V, row, sizeof row);
    be->pick_tokens(tokens, conf, logits, N, 1, 0, 1, V, 0.0f, tau, 99, -1);
    be->pick_tokens(again, conf, logits, N, 1, 0, 1, V, 0.0f, tau, 99, -1);
    ck_assert_mem_eq(tokens, again, N * sizeof(int));
    be->pick_tokens(again, conf, logits, N, 1, 0, 1, V, 0.0f, tau, 100, -1);
    ck_assert(memcmp(tokens, again, N * sizeof(int)) != 0);
    double z = 0.0;
    for (int v = 0; v < V; v++) z += exp(row[v] / tau);
    for (int v = 0; v < V; v++) {
        int hits = 0;
        for (int n = 0; n < N; n++) hits += tokens[n] == v;
        double expect = exp(row[v] / tau) / z;
        printf("  gumbel-max at tau %.1f: token %d drawn %.4f, softmax %.4f\n", tau, v,
               (double)hits / N, expect);
        ck_assert_double_eq_tol((double)hits / N, expect, 0.01);
    }
    free(logits), free(conf), free(tokens), free(again);
}
END_TEST

// Distance in units in the last place between a double result and the exact value.
static double ulps_double(double got, double want) {
    return fabs(got - want) / (nextafter(fabs(want), INFINITY) - fabs(want));
}

// The vectorisable exp and log (exp_simd.h) against libm over their working ranges: float exp
// within 2 ulp, double exp and log within 2 ulp (the headers' promises).
START_TEST(test_simd_math_matches_libm) {
    double worst_f = 0.0, worst_d = 0.0, worst_log = 0.0;
    for (int i = 0; i <= 200000; i++) {
        float xf = -87.0f + 175.0f * (float)i / 200000.0f;
        float want = expf(xf);
        worst_f = fmax(worst_f, fabs(exp_simd(xf) - want) /
                                    (nextafterf(want, INFINITY) - want));
        double xd = -700.0 + 1400.0 * i / 200000.0 + 1e-7 * (i % 7);
        worst_d = fmax(worst_d, ulps_double(exp_simd_double(xd), exp(xd)));
        // log over the Gumbel noise's domain (1e-17 .. 40) and both sides of sqrt(2) and 1
        double xl = exp(-39.2 + 43.0 * i / 200000.0);
        worst_log = fmax(worst_log, ulps_double(log_simd_double(xl), log(xl)));
    }
    for (double x = 0.70; x < 1.5; x += 1e-5)
        worst_log = fmax(worst_log, ulps_double(log_simd_double(x), log(x)));
    printf("  simd math vs libm: expf %.3f ulp, exp %.3f ulp, log %.3f ulp\n", worst_f, worst_d,
           worst_log);
    ck_assert(worst_f <= 2.0 && worst_d <= 2.0 && worst_log <= 2.0);
    ck_assert(isnan(exp_simd(NAN)) && exp_simd(-100.0f) == 0.0f && isinf(exp_simd(100.0f)));
    ck_assert(exp_simd_double(-800.0) == 0.0 && isinf(exp_simd_double(800.0)));
}
END_TEST

// Gumbel-max over a 5000-token vocabulary (rows read in chunks), with and without CFG, against
// the plain computation: argmax over v != banned of guided logit + tau * noise_gumbel. The
// vectorised noise may differ from noise_gumbel in the last bits, so only an exact near-tie
// could pick differently: none in these 64 rows.
START_TEST(test_pick_tokens_gumbel_matches_plain_loop) {
    enum { B = 2, R = 40, V = 5000, FIRST = 8, COUNT = 32, BANNED = 3 };
    float *logits = randn((size_t)2 * B * R * V, 77);
    int tokens[B * COUNT];
    double conf[B * COUNT];
    float tau = 0.8f, cfgs[2] = {0.0f, 1.5f};
    for (int ci = 0; ci < 2; ci++) {
        float w = cfgs[ci] + 1.0f;
        be->pick_tokens(tokens, conf, logits, B, R, FIRST, COUNT, V, cfgs[ci], tau, 11, BANNED);
        int same = 0;
        for (int b = 0; b < B; b++)
            for (int i = 0; i < COUNT; i++) {
                const float *c = logits + ((size_t)b * R + FIRST + i) * V;
                const float *u = c + (size_t)B * R * V;
                size_t out = (size_t)b * COUNT + i;
                int best = -1;
                double best_score = -INFINITY;
                for (int v = 0; v < V; v++) {
                    if (v == BANNED) continue;
                    float l = cfgs[ci] > 0.0f ? u[v] + w * (c[v] - u[v]) : c[v];
                    double score = l + (double)tau * noise_gumbel(11, out * V + v);
                    if (score > best_score) best = v, best_score = score;
                }
                same += tokens[out] == best;
            }
        printf("  gumbel pick, cfg %.1f: %d/%d tokens as the plain loop\n", cfgs[ci], same,
               B * COUNT);
        ck_assert_int_eq(same, B * COUNT);
    }
    free(logits);
}
END_TEST

int main(void) {
    Suite *s = suite_create("kernels");
    TCase *tc = tcase_create("cpu ops");
    tcase_set_timeout(tc, 60);  // finite differences over every input: slow on a loaded machine
    tcase_add_test(tc, test_matmul);
    tcase_add_test(tc, test_blas_matmul_matches_loops);
    tcase_add_test(tc, test_few_rows_matmul_matches_loops);
    tcase_add_test(tc, test_panel_matmul_matches_rows);
    tcase_add_test(tc, test_bf16_panel_matmul_matches_rows);
    tcase_add_test(tc, test_float_to_f16_rounds_to_nearest_even);
    tcase_add_test(tc, test_bf16_pairs_match_plain_loop);
    tcase_add_test(tc, test_qb_pack_and_quantisers);
    tcase_add_test(tc, test_qb_matmul_matches_plain_loop);
    tcase_add_test(tc, test_rmsnorm);
    tcase_add_test(tc, test_rope);
    tcase_add_test(tc, test_partial_rope);
    tcase_add_test(tc, test_attention_bidirectional);
    tcase_add_test(tc, test_attention_causal);
    tcase_add_test(tc, test_attention_block_masks);
    tcase_add_test(tc, test_blas_attention_matches_loops);
    tcase_add_test(tc, test_bias);
    tcase_add_test(tc, test_swiglu);
    tcase_add_test(tc, test_embedding);
    tcase_add_test(tc, test_cross_entropy);
    tcase_add_test(tc, test_adamw);
    tcase_add_test(tc, test_sum_squares_and_scale);
    tcase_add_test(tc, test_pick_tokens_greedy_and_guided);
    tcase_add_test(tc, test_pick_tokens_samples_the_softmax);
    tcase_add_test(tc, test_gumbel_noise_is_finite_with_gumbel_tails);
    tcase_add_test(tc, test_simd_math_matches_libm);
    tcase_add_test(tc, test_pick_tokens_gumbel_matches_plain_loop);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

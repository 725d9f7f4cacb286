// The CUDA backends (fp32 and bf16 activations) against the CPU reference: every op on random
// inputs, the whole model's logits, loss and gradients, 20 training steps, bit-identical
// reruns and resumes, checkpoints across backends, and greedy sampling.
// `make test-gpu` runs it on a lent GPU. Without a device it prints "skipped: no CUDA device"
// and runs no checks, so nothing is counted as passed. `make test-cuda-emu` (part of
// `make test`) builds it against the CPU emulation of the CUDA kernels instead
// (DLLM_CUDA_EMULATION): the kernels' logic is checked, labelled as emulated.
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/bf16.h"
#include "dist/comm_nccl.h"
#include "kernels/attn_mask.h"
#include "kernels/backend.h"
#include "model/model.h"
#include "sampler/sampler.h"
#include "tests/testutil.h"
#include "tokenizer/tokenizer.h"
#include "store/checkpoint.h"
#include "train/trainer.h"

#ifdef DLLM_CUDA
static const Backend *cpu = &backend_cpu;
// the backend under test: backend_cuda_fp32, then backend_cuda (bf16 activations)
static const Backend *gpu;
static const Backend *const gpus[2] = {&backend_cuda_fp32, &backend_cuda};

static int bf16(void) { return gpu->act_bytes == 2; }
static const char *precision(void) { return bf16() ? "bf16" : "fp32"; }

// ||a - b|| / ||b|| over n values, in double; NaN or Inf never passes.
static double rel_error(const float *a, const float *b, size_t n) {
    double d = 0.0, r = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i])) return INFINITY;
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        r += (double)b[i] * b[i];
    }
    return r > 0.0 ? sqrt(d / r) : sqrt(d);
}

// A device copy of n host values of 4 bytes (fp32 parameters, statistics, ints).
static void *up(const void *host, size_t n) {
    void *d = gpu->alloc(n * 4);
    gpu->to_device(d, host, n * 4);
    return d;
}

// A device activation buffer holding n host floats `shift` elements into its allocation (1:
// less aligned than cuBLASLt assumes; free with act_free). The host copy is replaced by what
// the device stores (rounded to bf16 where activations are), so the CPU reference computes
// from the same inputs.
static Act *up_act_shifted(float *host, size_t n, int shift) {
    Act *d = (char *)gpu->alloc((n + shift) * gpu->act_bytes) + shift * gpu->act_bytes;
    gpu->act_to_device(d, host, n);
    gpu->act_to_host(host, d, n);
    return d;
}

static Act *up_act(float *host, size_t n) { return up_act_shifted(host, n, 0); }
static void act_free(Act *d, int shift) { gpu->free((char *)d - shift * gpu->act_bytes); }

// Fails on a CUDA error the backend recorded (a failed launch, a fault), naming it: such an
// error must never read as a numeric mismatch, or pass.
static void expect_no_device_error(const char *what) {
    Error err;
    ck_assert_msg(gpu->device_error(&err) == 0, "%s: %s", what, err.msg);
}

static void report(const char *what, double e, double tol) {
    expect_no_device_error(what);
    printf("  %-44s rel error %.2e (tolerance %.0e)\n", what, e, tol);
    ck_assert_msg(e <= tol, "%s: relative error %g over %g", what, e, tol);
}

// fp32 device buffer d (n floats) against the CPU's result.
static void expect_close(const char *what, const float *d, const float *ref, size_t n, double tol) {
    float *h = malloc(n * sizeof(float));
    gpu->to_host(h, d, n * sizeof(float));
    report(what, rel_error(h, ref, n), tol);
    free(h);
}

// Activation buffer d (n values) against the CPU's result.
static void expect_act(const char *what, const Act *d, const float *ref, size_t n, double tol) {
    float *h = malloc(n * sizeof(float));
    gpu->act_to_host(h, d, n);
    report(what, rel_error(h, ref, n), tol);
    free(h);
}

// Like expect_close for values where -inf is meaningful (an attention row that sees no key):
// the same entries must be -inf, the others close.
static void expect_same_infinities(const char *what, const float *d, const float *ref, size_t n,
                                   double tol) {
    expect_no_device_error(what);
    float *h = malloc(n * sizeof(float)), *hf = malloc(n * sizeof(float));
    float *rf = malloc(n * sizeof(float));
    gpu->to_host(h, d, n * sizeof(float));
    size_t finite = 0, infinite = 0;
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg((h[i] == -INFINITY) == (ref[i] == -INFINITY), "%s: entry %zu is %g, not %g",
                      what, i, h[i], ref[i]);
        if (ref[i] == -INFINITY) {
            infinite++;
            continue;
        }
        hf[finite] = h[i];
        rf[finite++] = ref[i];
    }
    double e = rel_error(hf, rf, finite);
    printf("  %-44s rel error %.2e over %zu finite, %zu -inf\n", what, e, finite, infinite);
    ck_assert_msg(e <= tol, "%s: relative error %g", what, e);
    free(h), free(hf), free(rf);
}

static float *randn(size_t n, uint64_t seed) {
    float *x = malloc(n * sizeof(float));
    fill_normal(x, n, seed, 1.0f);
    return x;
}

// Each op test runs on both CUDA backends: fp32 activations to tight tolerances, bf16 ones
// to what storing the outputs in bf16 allows (relative rounding 2^-9).
static void on_each_gpu(void (*check)(void)) {
    for (int i = 0; i < 2; i++) {
        gpu = gpus[i];
        check();
    }
}

static void check_matmul(double tol, int shift) {
    int N = 96, C = 80, K = 72;
    float *x = randn((size_t)N * C, 1), *w = randn((size_t)K * C, 2), *dy = randn((size_t)N * K, 3);
    // the backward adds: start both sides from the same random gradients
    float *dx = randn((size_t)N * C, 4), *dw = randn((size_t)K * C, 5),
          *out = calloc((size_t)N * K, 4);
    Act *gx = up_act_shifted(x, (size_t)N * C, shift),
        *gdy = up_act_shifted(dy, (size_t)N * K, shift);
    Act *gdx = up_act_shifted(dx, (size_t)N * C, shift),
        *gout = up_act_shifted(out, (size_t)N * K, shift);
    float *gw = up(w, (size_t)K * C), *gdw = up(dw, (size_t)K * C);
    cpu->matmul_forward(out, x, w, N, C, K);
    gpu->matmul_forward(gout, gx, gw, N, C, K);
    cpu->matmul_backward(dx, dw, dy, x, w, N, C, K);
    gpu->matmul_backward(gdx, gdw, gdy, gx, gw, N, C, K);
    char name[64];
    const char *align = shift ? ", unaligned" : "";
    snprintf(name, sizeof name, "matmul forward (%s%s)", precision(), align);
    expect_act(name, gout, out, (size_t)N * K, tol);
    snprintf(name, sizeof name, "matmul dinp (%s%s)", precision(), align);
    expect_act(name, gdx, dx, (size_t)N * C, tol);
    snprintf(name, sizeof name, "matmul dweight (%s%s)", precision(), align);
    expect_close(name, gdw, dw, (size_t)K * C, tol);
    // frozen weights (dweight NULL): the same input gradient added once more
    cpu->matmul_backward(dx, NULL, dy, x, w, N, C, K);
    gpu->matmul_backward(gdx, NULL, gdy, gx, gw, N, C, K);
    snprintf(name, sizeof name, "matmul dinp, frozen weights (%s%s)", precision(), align);
    expect_act(name, gdx, dx, (size_t)N * C, tol);
    free(x), free(w), free(dy), free(dx), free(dw), free(out);
    act_free(gx, shift), act_free(gdy, shift), act_free(gdx, shift), act_free(gout, shift);
    gpu->free(gw), gpu->free(gdw);
}

static void check_matmuls(void) {
    check_matmul(bf16() ? 2e-2 : 1e-5, 0);
    check_matmul(bf16() ? 2e-2 : 1e-5, 1);
}

START_TEST(test_matmul) { on_each_gpu(check_matmuls); }
END_TEST

static void check_row_ops(void) {
    double tol = bf16() ? 1e-2 : 1e-5;
    int N = 300, C = 96, V = 300;  // N spans 3 chunks of the column sums, the last partial
    float *x = randn((size_t)N * C, 11), *w = randn(C, 12), *dy = randn((size_t)N * C, 13);
    float *y = calloc((size_t)N * C, 4), *rstd = malloc(N * 4);
    float *dx = randn((size_t)N * C, 14), *dw = randn(C, 15);
    Act *gx = up_act(x, (size_t)N * C), *gdy = up_act(dy, (size_t)N * C);
    Act *gy = up_act(y, (size_t)N * C), *gdx = up_act(dx, (size_t)N * C);
    float *gw = up(w, C), *grstd = gpu->alloc(N * 4), *gdw = up(dw, C);
    char name[64];
    cpu->rmsnorm_forward(y, rstd, x, w, N, C, 1e-5f);
    gpu->rmsnorm_forward(gy, grstd, gx, gw, N, C, 1e-5f);
    snprintf(name, sizeof name, "rmsnorm forward (%s)", precision());
    expect_act(name, gy, y, (size_t)N * C, tol);
    expect_close("rmsnorm rstd", grstd, rstd, N, 1e-5);
    cpu->rmsnorm_backward(dx, dw, dy, x, w, rstd, N, C);
    gpu->rmsnorm_backward(gdx, gdw, gdy, gx, gw, grstd, N, C);
    snprintf(name, sizeof name, "rmsnorm dinp (%s)", precision());
    expect_act(name, gdx, dx, (size_t)N * C, tol);
    expect_close("rmsnorm dweight", gdw, dw, C, 1e-5);
    cpu->rmsnorm_backward(dx, NULL, dy, x, w, rstd, N, C);  // a frozen gain
    gpu->rmsnorm_backward(gdx, NULL, gdy, gx, gw, grstd, N, C);
    snprintf(name, sizeof name, "rmsnorm dinp, frozen gain (%s)", precision());
    expect_act(name, gdx, dx, (size_t)N * C, tol);
    // the q/k/v biases: added to every row, and their gradient a column sum over 3 chunks
    cpu->bias_forward(x, w, N, C);
    gpu->bias_forward(gx, gw, N, C);
    snprintf(name, sizeof name, "bias forward (%s)", precision());
    expect_act(name, gx, x, (size_t)N * C, tol);
    cpu->bias_backward(dw, dy, N, C);
    gpu->bias_backward(gdw, gdy, N, C);
    expect_close("bias backward", gdw, dw, C, 1e-5);

    // cross-entropy: some rows weighted 0 (no gradient), targets anywhere in the vocabulary
    float *logits = randn((size_t)N * V, 16), *weights = randn(N, 17);
    float *dlogits = randn((size_t)N * V, 18), *losses = malloc(N * 4);
    int *targets = malloc(N * sizeof(int));
    for (int n = 0; n < N; n++) targets[n] = (n * 97 + 13) % V;
    for (int n = 0; n < N; n += 3) weights[n] = 0.0f;
    Act *glogits = up_act(logits, (size_t)N * V), *gdlogits = up_act(dlogits, (size_t)N * V);
    float *gweights = up(weights, N), *glosses = gpu->alloc(N * 4);
    int *gtargets = up(targets, N);
    cpu->cross_entropy_forward(losses, logits, targets, N, V);
    gpu->cross_entropy_forward(glosses, glogits, gtargets, N, V);
    expect_close("cross-entropy forward", glosses, losses, N, 1e-5);
    cpu->cross_entropy_fused(losses, dlogits, logits, targets, weights, N, V);
    gpu->cross_entropy_fused(glosses, gdlogits, glogits, gtargets, gweights, N, V);
    expect_close("cross-entropy fused loss", glosses, losses, N, 1e-5);
    snprintf(name, sizeof name, "cross-entropy fused dlogits (%s)", precision());
    expect_act(name, gdlogits, dlogits, (size_t)N * V, tol);
    gpu->cross_entropy_fused(glosses, glogits, glogits, gtargets, gweights, N, V);  // in place
    snprintf(name, sizeof name, "cross-entropy fused, in place (%s)", precision());
    expect_act(name, glogits, dlogits, (size_t)N * V, tol);

    // embedding: tokens repeat, so gradient rows collide; 150 rows span 3 blocks of the kernel
    int rows = 150;
    float *table = randn((size_t)rows * C, 19), *dtable = randn((size_t)rows * C, 20);
    int *tokens = malloc(N * sizeof(int));
    for (int n = 0; n < N; n++) tokens[n] = (n * 7) % rows;
    float *gtable = up(table, (size_t)rows * C), *gdtable = up(dtable, (size_t)rows * C);
    int *gtokens = up(tokens, N);
    cpu->embedding_forward(y, tokens, table, N, C);
    gpu->embedding_forward(gy, gtokens, gtable, N, C);
    snprintf(name, sizeof name, "embedding forward (%s)", precision());
    expect_act(name, gy, y, (size_t)N * C, bf16() ? 1e-2 : 0.0);
    cpu->embedding_backward(dtable, dy, tokens, N, C, rows);
    gpu->embedding_backward(gdtable, gdy, gtokens, N, C, rows);
    expect_close("embedding backward", gdtable, dtable, (size_t)rows * C, 0.0);  // same order
    free(x), free(w), free(dy), free(y), free(rstd), free(dx), free(dw), free(logits);
    free(weights), free(dlogits), free(losses), free(targets), free(table), free(dtable),
        free(tokens);
    void *g[] = {gx,       gw,       gdy,     gy,       grstd,  gdx,     gdw,    glogits,
                 gweights, gdlogits, glosses, gtargets, gtable, gdtable, gtokens};
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) gpu->free(g[i]);
}

START_TEST(test_row_ops) { on_each_gpu(check_row_ops); }
END_TEST

static void check_elementwise(void) {
    double tol = bf16() ? 1e-2 : 1e-6;
    size_t n = 100003;  // not a multiple of any block size
    float *a = randn(n, 21), *b = randn(n, 22), *c = randn(n, 23), *d = randn(n, 24);
    float *out = calloc(n, 4);
    Act *ga = up_act(a, n), *gb = up_act(b, n), *gc = up_act(c, n), *gd = up_act(d, n);
    Act *gout = up_act(out, n);
    char name[64];
    cpu->swiglu_forward(out, a, b, n);
    gpu->swiglu_forward(gout, ga, gb, n);
    snprintf(name, sizeof name, "swiglu forward (%s)", precision());
    expect_act(name, gout, out, n, tol);
    gpu->act_to_host(out, gout, n);  // both backwards from the same stored output
    cpu->swiglu_backward(c, d, out, a, b, n);
    gpu->swiglu_backward(gc, gd, gout, ga, gb, n);
    snprintf(name, sizeof name, "swiglu dgate (%s)", precision());
    expect_act(name, gc, c, n, tol);
    snprintf(name, sizeof name, "swiglu dup (%s)", precision());
    expect_act(name, gd, d, n, tol);
    cpu->add(out, a, b, n);
    gpu->add(gout, ga, gb, n);
    snprintf(name, sizeof name, "add (%s)", precision());
    expect_act(name, gout, out, n, bf16() ? 1e-2 : 0.0);
    cpu->add_scaled(out, a, 0.75f, n);
    gpu->add_scaled(gout, ga, 0.75f, n);
    snprintf(name, sizeof name, "add_scaled (%s)", precision());
    expect_act(name, gout, out, n, tol);
    cpu->quantize_rows(out, a, 100003 / 211, 211);  // BitNet's 8-bit rows
    gpu->quantize_rows(gout, ga, 100003 / 211, 211);
    snprintf(name, sizeof name, "quantize_rows (%s)", precision());
    expect_act(name, gout, out, (size_t)(100003 / 211) * 211, bf16() ? 1e-2 : 1e-6);
    cpu->guide(a, b, 1.5f, n);
    gpu->guide(ga, gb, 1.5f, n);
    snprintf(name, sizeof name, "guide (%s)", precision());
    expect_act(name, ga, a, n, tol);
    free(a), free(b), free(c), free(d), free(out);
    gpu->free(ga), gpu->free(gb), gpu->free(gc), gpu->free(gd), gpu->free(gout);
}

// The mixture-of-experts ops: both routers (the picks must agree exactly on fp32 logits;
// bf16 logits are rounded first, so the CPU routes the same stored values), their backward
// with the load-balancing gradient, the gather into expert order and the weighted combine and
// its backward.
static void check_moe_ops(void) {
    double tol = bf16() ? 1e-2 : 1e-5;
    int N = 301, E = 16, k = 4, C = 72, slots = N * k;
    char name[64];
    float *logits = randn((size_t)N * E, 31), *bias = randn(E, 32), *aux = randn(E, 33);
    for (int e = 0; e < E; e++) bias[e] *= 0.05f;
    Act *g_logits = up_act(logits, (size_t)N * E);
    float *g_bias = up(bias, E), *g_aux = up(aux, E);
    for (int router = 0; router <= 1; router++) {
        int *pick = malloc(slots * sizeof(int)), *g_pick = gpu->alloc(slots * sizeof(int));
        float *weight = malloc(slots * 4), *probs = malloc((size_t)N * E * 4);
        float *g_weight = gpu->alloc(slots * 4), *g_probs = gpu->alloc((size_t)N * E * 4);
        cpu->moe_route(pick, weight, probs, logits, bias, N, E, k, router, 4, 2, 2.5f);
        gpu->moe_route(g_pick, g_weight, g_probs, g_logits, g_bias, N, E, k, router, 4, 2, 2.5f);
        int *h_pick = malloc(slots * sizeof(int));
        gpu->to_host(h_pick, g_pick, slots * sizeof(int));
        expect_no_device_error("moe_route");
        ck_assert_mem_eq(h_pick, pick, slots * sizeof(int));
        printf("  moe_route %s (%s): %d picks equal\n", router ? "grouped sigmoid" : "softmax",
               precision(), slots);
        snprintf(name, sizeof name, "moe_route weights %d (%s)", router, precision());
        expect_close(name, g_weight, weight, slots, 1e-5);
        snprintf(name, sizeof name, "moe_route probs %d (%s)", router, precision());
        expect_close(name, g_probs, probs, (size_t)N * E, 1e-5);
        float *dweight = randn(slots, 34), *dlogits = calloc((size_t)N * E, 4);
        float *g_dweight = up(dweight, slots);
        Act *g_dlogits = up_act(dlogits, (size_t)N * E);
        cpu->moe_route_backward(dlogits, dweight, pick, probs, aux, N, E, k, router, 2.5f);
        gpu->moe_route_backward(g_dlogits, g_dweight, g_pick, g_probs, g_aux, N, E, k, router,
                                2.5f);
        snprintf(name, sizeof name, "moe_route_backward %d (%s)", router, precision());
        expect_act(name, g_dlogits, dlogits, (size_t)N * E, tol);
        free(pick), free(weight), free(probs), free(h_pick), free(dweight), free(dlogits);
        gpu->free(g_pick), gpu->free(g_weight), gpu->free(g_probs), gpu->free(g_dweight);
        gpu->free(g_dlogits);
    }
    // rows into expert order and back: a permutation of the slots (slot s at place perm[s])
    int *rows = malloc(slots * sizeof(int)), *slot_at = malloc(slots * sizeof(int));
    for (int s = 0; s < slots; s++) slot_at[s] = (int)(((long)s * 97 + 13) % slots);
    for (int s = 0; s < slots; s++) rows[slot_at[s]] = s / k;
    int *g_rows = gpu->alloc(slots * sizeof(int)), *g_slot_at = gpu->alloc(slots * sizeof(int));
    gpu->to_device(g_rows, rows, slots * sizeof(int));
    gpu->to_device(g_slot_at, slot_at, slots * sizeof(int));
    float *x = randn((size_t)N * C, 35), *xs = calloc((size_t)slots * C, 4);
    Act *g_x = up_act(x, (size_t)N * C), *g_xs = up_act(xs, (size_t)slots * C);
    cpu->gather_rows(xs, x, rows, slots, C);
    gpu->gather_rows(g_xs, g_x, g_rows, slots, C);
    snprintf(name, sizeof name, "gather_rows (%s)", precision());
    expect_act(name, g_xs, xs, (size_t)slots * C, 0.0);
    float *w = randn(slots, 36), *out = randn((size_t)N * C, 37), *dys = calloc((size_t)slots * C, 4);
    float *g_w = up(w, slots);
    Act *g_out = up_act(out, (size_t)N * C), *g_dys = up_act(dys, (size_t)slots * C);
    cpu->moe_combine(out, xs, slot_at, w, N, k, C);
    gpu->moe_combine(g_out, g_xs, g_slot_at, g_w, N, k, C);
    snprintf(name, sizeof name, "moe_combine (%s)", precision());
    expect_act(name, g_out, out, (size_t)N * C, tol);
    gpu->act_to_host(out, g_out, (size_t)N * C);  // the backward from the same stored values
    float *dw = malloc(slots * 4), *g_dw = gpu->alloc(slots * 4);
    cpu->moe_combine_backward(dys, dw, out, xs, slot_at, w, N, k, C);
    gpu->moe_combine_backward(g_dys, g_dw, g_out, g_xs, g_slot_at, g_w, N, k, C);
    snprintf(name, sizeof name, "moe_combine_backward dys (%s)", precision());
    expect_act(name, g_dys, dys, (size_t)slots * C, tol);
    snprintf(name, sizeof name, "moe_combine_backward dweight (%s)", precision());
    expect_close(name, g_dw, dw, slots, tol);
    free(logits), free(bias), free(aux), free(rows), free(slot_at), free(x), free(xs);
    free(w), free(out), free(dys), free(dw);
    gpu->free(g_logits), gpu->free(g_bias), gpu->free(g_aux), gpu->free(g_rows);
    gpu->free(g_slot_at), gpu->free(g_x), gpu->free(g_xs), gpu->free(g_w), gpu->free(g_out);
    gpu->free(g_dys), gpu->free(g_dw);
}

START_TEST(test_moe_ops) { on_each_gpu(check_moe_ops); }
END_TEST

START_TEST(test_elementwise_and_optimizer) {
    on_each_gpu(check_elementwise);
    // fp32 parameters and gradients, the same on both backends
    gpu = &backend_cuda;
    size_t n = 100003;
    float *a = randn(n, 21), *b = randn(n, 22), *c = randn(n, 23), *d = randn(n, 24);
    float *ga = up(a, n), *gb = up(b, n), *gc = up(c, n), *gd;
    double s_cpu = cpu->sum_squares(a, n), s_gpu = gpu->sum_squares(ga, n);
    printf("  sum of squares: cpu %.10g gpu %.10g\n", s_cpu, s_gpu);
    ck_assert(fabs(s_cpu - s_gpu) <= 1e-12 * s_cpu);
    size_t chunks = (n + SUM_SQUARES_CHUNK - 1) / SUM_SQUARES_CHUNK;
    double *p_cpu = malloc(chunks * sizeof(double)), *p_gpu = malloc(chunks * sizeof(double));
    cpu->sum_squares_chunks(p_cpu, a, n);
    gpu->sum_squares_chunks(p_gpu, ga, n);
    for (size_t c = 0; c < chunks; c++) ck_assert(fabs(p_cpu[c] - p_gpu[c]) <= 1e-12 * p_cpu[c]);
    free(p_cpu), free(p_gpu);
    cpu->scale(a, n, 0.37f);
    gpu->scale(ga, n, 0.37f);
    expect_close("scale", ga, a, n, 0.0);
    cpu->accumulate(a, b, n);
    gpu->accumulate(ga, gb, n);
    expect_close("accumulate", ga, a, n, 0.0);
    float *t = malloc(n * sizeof(float)), *gt = gpu->alloc(n * sizeof(float));
    cpu->ternarize(t, a, n);  // the scale's sum in another order: equal up to its last bits
    gpu->ternarize(gt, ga, n);
    expect_close("ternarize", gt, t, n, 1e-6);
    free(t);
    gpu->free(gt);
    // AdamW: params a, grads b, moments c (m) and |d| (v >= 0)
    for (size_t i = 0; i < n; i++) d[i] = fabsf(d[i]);
    gd = up(d, n);
    for (long t = 1; t <= 3; t++) {
        cpu->adamw_update(a, b, c, d, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, t);
        gpu->adamw_update(ga, gb, gc, gd, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, t);
    }
    expect_close("adamw params", ga, a, n, 1e-6);
    expect_close("adamw m", gc, c, n, 1e-6);
    expect_close("adamw v", gd, d, n, 1e-6);
    free(a), free(b), free(c), free(d);
    gpu->free(ga), gpu->free(gb), gpu->free(gc), gpu->free(gd);
}
END_TEST

static void check_rope(void) {
    double tol = bf16() ? 1e-2 : 1e-6;
    int B = 2, T = 40, H = 2, hd = 16, C = H * hd, half = hd / 2;
    size_t n = (size_t)B * T * C;
    float *cs = malloc((size_t)T * half * 4), *sn = malloc((size_t)T * half * 4);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            float angle = t * powf(10000.0f, -2.0f * i / hd);
            cs[t * half + i] = cosf(angle), sn[t * half + i] = sinf(angle);
        }
    float *gcs = up(cs, (size_t)T * half), *gsn = up(sn, (size_t)T * half);
    float *x = randn(n, 31);
    Act *gx = up_act(x, n);
    char name[64];
    cpu->rope_forward(x, cs, sn, B, T, 0, H, hd, hd);
    gpu->rope_forward(gx, gcs, gsn, B, T, 0, H, hd, hd);
    snprintf(name, sizeof name, "rope forward (%s)", precision());
    expect_act(name, gx, x, n, tol);
    gpu->act_to_host(x, gx, n);
    cpu->rope_backward(x, cs, sn, B, T - 8, 8, H, hd, hd);  // a later window of positions
    gpu->rope_backward(gx, gcs, gsn, B, T - 8, 8, H, hd, hd);
    snprintf(name, sizeof name, "rope backward, pos0 8 (%s)", precision());
    expect_act(name, gx, x, n, tol);
    cpu->rope_forward(x, cs, sn, B, T, 0, H, hd, hd / 2);  // a partial rotary: half the head
    gpu->rope_forward(gx, gcs, gsn, B, T, 0, H, hd, hd / 2);
    snprintf(name, sizeof name, "rope forward, half the head (%s)", precision());
    expect_act(name, gx, x, n, tol);
    free(cs), free(sn), free(x);
    gpu->free(gcs), gpu->free(gsn), gpu->free(gx);
}

START_TEST(test_rope) { on_each_gpu(check_rope); }
END_TEST

// Attention at one head size: T spans two tiles of the flash kernels, the second partial.
// With bf16 activations, head sizes 64 and 128 run the tensor-core kernels. Hkv = 1: both
// query heads share one key/value head (grouped-query attention).
static void check_attention(int hd, int Hkv) {
    double tol_out = bf16() ? 2e-2 : 1e-5, tol_grad = bf16() ? 3e-2 : 1e-4;
    int B = 2, T = 100, H = 2, C = H * hd;
    size_t n = (size_t)B * T * C, nkv = (size_t)B * T * Hkv * hd, nl = (size_t)B * H * T;
    float *q = randn(n, 32), *k = randn(nkv, 33), *v = randn(nkv, 34), *dout = randn(n, 35);
    Act *gq = up_act(q, n), *gk = up_act(k, nkv), *gv = up_act(v, nkv), *gdout = up_act(dout, n);
    float *out = calloc(n, 4), *lse = malloc(nl * 4), *glse = gpu->alloc(nl * 4);
    Act *gout = up_act(out, n);
    int key_start[2] = {0, 70};  // the second sequence's first visible key is in tile 2
    int *gks = up(key_start, 2);
    char what[96];
    const char *prec = precision();
    // every mask kind; the block lengths leave partial blocks inside 64-row tiles
    const int masks[6] = {ATTN_FULL,    ATTN_CAUSAL,    attn_block(24),
                          attn_bd3(20), attn_window(30), attn_sliding(40)};
    const char *names[6] = {"bidir", "causal", "block-causal", "bd3", "window", "sliding"};
    for (int mi = 0; mi < 6; mi++) {
        int mask = masks[mi];
        char kind[32];
        snprintf(kind, sizeof kind, "%s%s", names[mi], Hkv < H ? " gqa" : "");
        cpu->attention_forward(out, lse, q, k, v, key_start, B, T, T, 0, H, Hkv, hd, mask);
        gpu->attention_forward(gout, glse, gq, gk, gv, gks, B, T, T, 0, H, Hkv, hd, mask);
        snprintf(what, sizeof what, "attention hd %d %s %s, key_start: out", hd, kind, prec);
        expect_act(what, gout, out, n, tol_out);
        snprintf(what, sizeof what, "attention hd %d %s %s, key_start: lse", hd, kind, prec);
        expect_same_infinities(what, glse, lse, nl, tol_out);
        // training backward: no key_start; the CPU from the device's stored output
        gpu->attention_forward(gout, glse, gq, gk, gv, NULL, B, T, T, 0, H, Hkv, hd, mask);
        gpu->act_to_host(out, gout, n);
        gpu->to_host(lse, glse, nl * 4);
        float *dq = randn(n, 36), *dk = randn(nkv, 37), *dv = randn(nkv, 38);
        Act *gdq = up_act(dq, n), *gdk = up_act(dk, nkv), *gdv = up_act(dv, nkv);
        cpu->attention_backward(dq, dk, dv, dout, out, lse, q, k, v, B, T, H, Hkv, hd, mask);
        gpu->attention_backward(gdq, gdk, gdv, gdout, gout, glse, gq, gk, gv, B, T, H, Hkv, hd,
                                mask);
        snprintf(what, sizeof what, "attention hd %d %s %s: dq", hd, kind, prec);
        expect_act(what, gdq, dq, n, tol_grad);
        snprintf(what, sizeof what, "attention hd %d %s %s: dk", hd, kind, prec);
        expect_act(what, gdk, dk, nkv, tol_grad);
        snprintf(what, sizeof what, "attention hd %d %s %s: dv", hd, kind, prec);
        expect_act(what, gdv, dv, nkv, tol_grad);
        free(dq), free(dk), free(dv);
        gpu->free(gdq), gpu->free(gdk), gpu->free(gdv);
    }
    // the KV-cache case: 8 query rows at positions 92.. against all 100 keys
    int Tq = 8;
    size_t nq = (size_t)B * Tq * C;
    cpu->attention_forward(out, lse, q, k, v, key_start, B, Tq, T, 92, H, Hkv, hd, 1);
    gpu->attention_forward(gout, glse, gq, gk, gv, gks, B, Tq, T, 92, H, Hkv, hd, 1);
    snprintf(what, sizeof what, "attention hd %d %s, 8 of 100 rows", hd, prec);
    expect_act(what, gout, out, nq, tol_out);
    // block diffusion's cache: the rows of the block being denoised (blocks of 16: 80..95)
    cpu->attention_forward(out, lse, q, k, v, key_start, B, Tq, T, 84, H, Hkv, hd,
                           attn_block(16));
    gpu->attention_forward(gout, glse, gq, gk, gv, gks, B, Tq, T, 84, H, Hkv, hd, attn_block(16));
    snprintf(what, sizeof what, "attention hd %d %s, 8 rows of a block of 16", hd, prec);
    expect_act(what, gout, out, nq, tol_out);
    free(q), free(k), free(v), free(dout), free(out), free(lse);
    void *g[] = {gq, gk, gv, gdout, gout, glse, gks};
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) gpu->free(g[i]);
}

// one head size per register-tile width of the CUDA-core kernels (32, 64, 128); with bf16
// activations 16 still takes them, 64 and 128 the tensor-core kernels; grouped-query
// attention on both paths
static void check_attentions(void) {
    check_attention(16, 1);
    check_attention(64, 1);
    check_attention(128, 2);
}

START_TEST(test_attention) { on_each_gpu(check_attentions); }
END_TEST

static void check_pick_tokens(void) {
    // 4 sequences of 40 rows over a 5000-token vocabulary, rows 8..39 picked, guided or not
    int B = 4, R = 40, V = 5000, first = 8, count = 32, n = B * count;
    size_t total = (size_t)2 * B * R * V;
    float *logits = randn(total, 51);
    Act *glogits = up_act(logits, total);
    int *tokens = malloc(n * sizeof(int)), *gtok = malloc(n * sizeof(int));
    double *conf = malloc(n * sizeof(double)), *gconf = malloc(n * sizeof(double));
    int *dtok = gpu->alloc(n * sizeof(int));
    double *dconf = gpu->alloc(n * sizeof(double));
    float temps[2] = {0.0f, 0.8f}, cfgs[2] = {0.0f, 1.0f};
    for (int ti = 0; ti < 2; ti++)
        for (int ci = 0; ci < 2; ci++) {
            cpu->pick_tokens(tokens, conf, logits, B, R, first, count, V, cfgs[ci], temps[ti], 5,
                             3);
            gpu->pick_tokens(dtok, dconf, glogits, B, R, first, count, V, cfgs[ci], temps[ti], 5,
                             3);
            gpu->to_host(gtok, dtok, n * sizeof(int));
            int same = 0;
            for (int i = 0; i < n; i++) same += gtok[i] == tokens[i];
            char what[80];
            snprintf(what, sizeof what, "pick_tokens temp %.1f cfg %.0f %s: confidence", temps[ti],
                     cfgs[ci], precision());
            printf("  pick_tokens temp %.1f cfg %.0f %s: %d/%d tokens as on the CPU\n", temps[ti],
                   cfgs[ci], precision(), same, n);
            // the same noise on both: only a float near-tie could flip a pick
            ck_assert_int_ge(same, temps[ti] > 0.0f ? n - 2 : n);
            if (same == n) {  // confidences in double: compare as relative error
                gpu->to_host(gconf, dconf, n * sizeof(double));
                double worst = 0.0;
                for (int i = 0; i < n; i++)
                    worst = fmax(worst, fabs(gconf[i] - conf[i]) / fmax(fabs(conf[i]), 1e-30));
                report(what, worst, 1e-5);
            }
        }
    free(logits), free(tokens), free(gtok), free(conf), free(gconf);
    gpu->free(glogits), gpu->free(dtok), gpu->free(dconf);
}

START_TEST(test_pick_tokens) { on_each_gpu(check_pick_tokens); }
END_TEST

// Block diffusion's reductions on the device (tests/testutil.c): block = seq_len gives the
// MDM's loss and gradients, block = 1 the AR loss, through the bd3 attention kernels.
static void check_bd3_reductions(void) {
    double e_mdm = bd3_mdm_reduction_error(gpu), e_ar = bd3_ar_reduction_error(gpu);
    printf("  bd3 reductions %s: block = seq_len vs mdm %.1e, block = 1 vs ar %.1e\n",
           precision(), e_mdm, e_ar);
    // bf16 activations round differently in the two layouts' passes
    double tol = bf16() ? 2e-2 : 1e-5;
    ck_assert(e_mdm < tol && e_ar < tol);
}

START_TEST(test_bd3_reductions) { on_each_gpu(check_bd3_reductions); }
END_TEST

static ModelConfig small_config(int causal) {
    ModelConfig c = model_config_default();
    // head size 64: with bf16 activations the tensor-core attention runs in the whole model too
    c.n_layer = 2, c.n_head = 2, c.d_model = 128, c.d_ff = 352, c.seq_len = 32;
    c.causal = causal;
    if (!causal) {  // the MDM twin's second layer is LLaDA-MoE's: 8 experts, 2 per token, a
        c.n_experts = 8, c.n_active = 2, c.d_expert = 64, c.d_shared = 96;  // shared expert,
        c.dense_layers = 1, c.aux_loss_coef = 0.01f;                         // balancing loss
    }
    if (causal) {  // the AR twin has the shapes of released models: GQA, q/k/v biases, tied LM
        c.n_kv_head = 1;  // head, and Qwen3's per-head q/k norms
        c.qkv_bias = 1;
        c.tied_embeddings = 1;
        c.qk_norm = 1;
        c.head_dim = 32;  // heads apart from d_model / n_head (q 64 wide), as Qwen3-0.6B's
    }
    return c;
}

// The same model on the CPU and on gpu: host weights of std `std` uploaded to each.
static void twin_models(Model *mc, Model *mg, int causal, int max_batch, float std) {
    ModelConfig cfg = small_config(causal);
    Error err;
    ck_assert_msg(model_create(mc, &cfg, cpu, max_batch, 0, &err) == 0, "%s", err.msg);
    ck_assert_msg(model_create(mg, &cfg, gpu, max_batch, 0, &err) == 0, "%s", err.msg);
    fill_normal(mc->params, mc->n_params, 77, std);
    gpu->to_device(mg->params, mc->params, mc->n_params * sizeof(float));
}

// Logits, loss and every gradient of the whole model against the CPU; and a model that
// recomputes its layers gives the same gradient bits.
static void check_whole_model(void) {
    double tol_logits = bf16() ? 2e-2 : 1e-4, tol_grads = bf16() ? 5e-2 : 1e-3;
    int B = 4, T = 32, N = B * T;
    for (int causal = 0; causal <= 1; causal++) {
        Model mc, mg;
        twin_models(&mc, &mg, causal, B, 0.1f);
        int *tokens = malloc(N * sizeof(int)), *targets = malloc(N * sizeof(int));
        float *weights = malloc(N * sizeof(float));
        for (int n = 0; n < N; n++) {
            targets[n] = (n * 37 + 11) % 256;
            tokens[n] = n % 3 == 0 && !causal ? mc.cfg.mask_token_id : targets[n];
            weights[n] = 1.0f / N;
        }
        model_zero_grad(&mc);
        model_zero_grad(&mg);
        model_forward(&mc, tokens, B, T);
        model_forward(&mg, tokens, B, T);
        float lc = model_loss(&mc, targets, weights), lg = model_loss(&mg, targets, weights);
        printf("  %s %s loss: cpu %.6f gpu %.6f\n", causal ? "AR " : "MDM", precision(), lc, lg);
        ck_assert(fabsf(lc - lg) <= (bf16() ? 1e-2f : 1e-4f) * fabsf(lc));
        char what[64];
        snprintf(what, sizeof what, "model logits (%s)", precision());
        expect_act(what, mg.acts.logits, mc.acts.logits, (size_t)N * mc.cfg.vocab_size, tol_logits);
        model_loss_backward(&mc, targets, weights);
        model_loss_backward(&mg, targets, weights);
        snprintf(what, sizeof what, "model gradients (%s)", precision());
        expect_close(what, mg.grads, mc.grads, mc.n_params, tol_grads);
        // recomputing layers in the backward: the same ops again, so the same bits
        Model lean;
        Error err;
        ck_assert_msg(model_create(&lean, &mg.cfg, gpu, B, 1, &err) == 0, "%s", err.msg);
        size_t bytes = mg.n_params * sizeof(float);
        gpu->copy_rows(lean.params, bytes, mg.params, bytes, bytes, 1);
        model_zero_grad(&lean);
        model_forward(&lean, tokens, B, T);
        model_loss_backward(&lean, targets, weights);
        float *g_keep = malloc(bytes), *g_lean = malloc(bytes);
        gpu->to_host(g_keep, mg.grads, bytes);
        gpu->to_host(g_lean, lean.grads, bytes);
        ck_assert_mem_eq(g_keep, g_lean, bytes);
        printf("  recompute (%s): gradients bit-identical\n", precision());
        free(tokens), free(targets), free(weights), free(g_keep), free(g_lean);
        model_free(&mc);
        model_free(&mg);
        model_free(&lean);
    }
}

START_TEST(test_whole_model) { on_each_gpu(check_whole_model); }
END_TEST

// A ternary (BitNet b1.58) model: logits and the straight-through gradients against the CPU.
static void check_ternary_model(void) {
    double tol_logits = bf16() ? 3e-2 : 1e-4, tol_grads = bf16() ? 8e-2 : 1e-3;
    int B = 2, T = 32, N = B * T;
    ModelConfig cfg = small_config(0);
    cfg.n_experts = cfg.n_active = cfg.d_expert = cfg.d_shared = cfg.dense_layers = 0;
    cfg.aux_loss_coef = 0.0f;  // BitNet's projections, without the MDM twin's experts
    cfg.ternary = 1;
    Model mc, mg;
    Error err;
    ck_assert_msg(model_create(&mc, &cfg, cpu, B, 0, &err) == 0, "%s", err.msg);
    ck_assert_msg(model_create(&mg, &cfg, gpu, B, 0, &err) == 0, "%s", err.msg);
    fill_normal(mc.params, mc.n_params, 81, 0.1f);
    gpu->to_device(mg.params, mc.params, mc.n_params * sizeof(float));
    int *tokens = malloc(N * sizeof(int)), *targets = malloc(N * sizeof(int));
    float *weights = malloc(N * sizeof(float));
    for (int n = 0; n < N; n++) {
        targets[n] = (n * 37 + 11) % 256;
        tokens[n] = n % 3 == 0 ? cfg.mask_token_id : targets[n];
        weights[n] = 1.0f / N;
    }
    model_zero_grad(&mc);
    model_zero_grad(&mg);
    model_forward(&mc, tokens, B, T);
    model_forward(&mg, tokens, B, T);
    char what[64];
    snprintf(what, sizeof what, "ternary model logits (%s)", precision());
    expect_act(what, mg.acts.logits, mc.acts.logits, (size_t)N * cfg.vocab_size, tol_logits);
    model_loss_backward(&mc, targets, weights);
    model_loss_backward(&mg, targets, weights);
    snprintf(what, sizeof what, "ternary model gradients (%s)", precision());
    expect_close(what, mg.grads, mc.grads, mc.n_params, tol_grads);
    free(tokens), free(targets), free(weights);
    model_free(&mc), model_free(&mg);
}

START_TEST(test_ternary_model) { on_each_gpu(check_ternary_model); }
END_TEST

// An inference model keeping bf16 weights (the bf16-weight twin of backend_cuda: embedding,
// RMSNorm, matmul and bias read them as stored) against the CPU's bf16-weight twin on the same
// weights, and against an fp32-weight CPU model of the same (rounded) values.
START_TEST(test_bf16_weights) {
    const Backend *g16 = backend_bf16_weights(&backend_cuda), *c16 = backend_bf16_weights(cpu);
    ck_assert_ptr_nonnull(g16);
    ck_assert_ptr_null(backend_bf16_weights(&backend_cuda_fp32));
    ck_assert_int_eq(g16->weight_bytes, 2);
    gpu = &backend_cuda;  // expect_act reads the device's bf16 activations
    int B = 2, T = 32, N = B * T;
    for (int causal = 0; causal <= 1; causal++) {  // the AR config has GQA, biases, a tied head
        ModelConfig cfg = small_config(causal);
        Model mg, mc, ref;
        Error err;
        ck_assert_msg(model_create(&mg, &cfg, g16, B, MODEL_INFERENCE, &err) == 0, "%s", err.msg);
        ck_assert(model_create(&mc, &cfg, c16, B, MODEL_INFERENCE, &err) == 0);
        ck_assert(model_create(&ref, &cfg, cpu, B, MODEL_INFERENCE, &err) == 0);
        Model refused;  // bf16 weights cannot be trained
        ck_assert_int_eq(model_create(&refused, &cfg, g16, B, MODEL_TRAINING, &err), -1);
        float *w = malloc(mg.n_params * sizeof(float));
        fill_normal(w, mg.n_params, 78, 0.1f);
        for (size_t i = 0; i < mg.n_params; i++) w[i] = bf16_to_float(float_to_bf16(w[i]));
        ck_assert(model_set_weights(&mg, w, &err) == 0 && model_set_weights(&mc, w, &err) == 0 &&
                  model_set_weights(&ref, w, &err) == 0);
        int *tokens = malloc(N * sizeof(int));
        for (int n = 0; n < N; n++) tokens[n] = n % 3 == 0 && !causal ? 256 : (n * 37 + 11) % 256;
        model_forward(&mg, tokens, B, T);
        model_forward(&mc, tokens, B, T);
        model_forward(&ref, tokens, B, T);
        size_t n = (size_t)N * cfg.vocab_size;
        float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
        c16->act_to_host(a, mc.acts.logits, n);
        cpu->act_to_host(b, ref.acts.logits, n);
        double diff = 0.0, scale = 0.0;
        for (size_t i = 0; i < n; i++) diff = fmax(diff, fabs(a[i] - b[i])), scale = fmax(scale, fabs(b[i]));
        printf("  %s cpu bf16 weights vs fp32 weights of the same values: rel error %.2e\n",
               causal ? "AR " : "MDM", diff / scale);
        ck_assert(diff / scale < 1e-5);
        expect_act(causal ? "AR  logits, bf16 weights on the device" : "MDM logits, bf16 weights on the device",
                   mg.acts.logits, b, n, 2e-2);
        free(w), free(tokens), free(a), free(b);
        model_free(&mg), model_free(&mc), model_free(&ref);
    }
}
END_TEST

// The bf16-weight twins' input-gradient ops (a frozen bf16 base's backward) against the CPU
// twin's on the same bf16 weights.
START_TEST(test_bf16_weight_backward_ops) {
    const Backend *g16 = backend_bf16_weights(&backend_cuda), *c16 = backend_bf16_weights(cpu);
    gpu = &backend_cuda;
    int N = 96, C = 80, K = 72;
    float *x = randn((size_t)N * C, 31), *w = randn((size_t)K * C, 32), *dy = randn((size_t)N * K, 33);
    float *dx = randn((size_t)N * C, 34), *g = randn(C, 35), *rstd = malloc(N * 4);
    uint16_t *w16 = malloc((size_t)K * C * 2), *g16w = malloc(C * 2);
    for (size_t i = 0; i < (size_t)K * C; i++) w16[i] = float_to_bf16(w[i]);
    for (int i = 0; i < C; i++) g16w[i] = float_to_bf16(g[i]);
    for (int n = 0; n < N; n++) rstd[n] = 0.5f + 0.01f * n;
    // the device's activations are bf16: the CPU starts from the same rounded values
    for (size_t i = 0; i < (size_t)N * C; i++) x[i] = bf16_to_float(float_to_bf16(x[i]));
    for (size_t i = 0; i < (size_t)N * K; i++) dy[i] = bf16_to_float(float_to_bf16(dy[i]));
    for (size_t i = 0; i < (size_t)N * C; i++) dx[i] = bf16_to_float(float_to_bf16(dx[i]));
    Act *gx = up_act(x, (size_t)N * C), *gdy = up_act(dy, (size_t)N * K), *gdx = up_act(dx, (size_t)N * C);
    float *gw = up(w16, (size_t)K * C * 2 / 4), *gg = up(g16w, (size_t)C * 2 / 4), *grstd = up(rstd, N);
    c16->matmul_backward(dx, NULL, dy, x, (const float *)(void *)w16, N, C, K);
    g16->matmul_backward(gdx, NULL, gdy, gx, gw, N, C, K);
    expect_act("matmul dinp, bf16 weights (frozen)", gdx, dx, (size_t)N * C, 2e-2);
    Act *gdy2 = up_act(x, (size_t)N * C);  // an [N, C] output gradient for the norm
    c16->rmsnorm_backward(dx, NULL, x, x, (const float *)(void *)g16w, rstd, N, C);
    g16->rmsnorm_backward(gdx, NULL, gdy2, gx, gg, grstd, N, C);
    expect_act("rmsnorm dinp, bf16 gain (frozen)", gdx, dx, (size_t)N * C, 2e-2);
    free(x), free(w), free(dy), free(dx), free(g), free(rstd), free(w16), free(g16w);
    void *d[] = {gx, gdy, gdx, gw, gg, grstd, gdy2};
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++) gpu->free(d[i]);
}
END_TEST

// LoRA adapters (random, B away from zero) on a frozen base: logits and adapter gradients
// against the CPU's, with the base on gbase and cbase (fp32 weights, or the bf16-weight twins);
// and a fresh adapter leaves the device's logits exactly the base's.
static void check_lora(const Backend *gbase, const Backend *cbase, const char *what) {
    double tol_logits = bf16() ? 2e-2 : 1e-4, tol_grads = bf16() ? 5e-2 : 1e-3;
    int B = 2, T = 32, N = B * T;
    for (int causal = 0; causal <= 1; causal++) {
        ModelConfig cfg = small_config(causal);
        LoraConfig lc = {.rank = 4, .alpha = 8.0f, .targets = (1u << N_LORA_TARGETS) - 1};
        snprintf(lc.base, sizeof lc.base, "/nonexistent");
        Model mc, mg, plain;
        Error err;
        ck_assert_msg(model_create_lora(&mc, &cfg, &lc, cbase, B, 0, &err) == 0, "%s", err.msg);
        ck_assert_msg(model_create_lora(&mg, &cfg, &lc, gbase, B, 0, &err) == 0, "%s", err.msg);
        ck_assert(model_create(&plain, &cfg, gbase, B, MODEL_INFERENCE, &err) == 0);
        float *w = malloc(mc.n_params * sizeof(float)), *a = malloc(mc.n_lora * sizeof(float));
        fill_normal(w, mc.n_params, 79, 0.1f);
        ck_assert(model_set_weights(&mc, w, &err) == 0 && model_set_weights(&mg, w, &err) == 0 &&
                  model_set_weights(&plain, w, &err) == 0);
        int *tokens = malloc(N * sizeof(int)), *targets = malloc(N * sizeof(int));
        float *weights = malloc(N * sizeof(float));
        for (int n = 0; n < N; n++) {
            targets[n] = (n * 37 + 11) % 256;
            tokens[n] = n % 3 == 0 && !causal ? cfg.mask_token_id : targets[n];
            weights[n] = 1.0f / N;
        }
        // fresh adapters (B = 0): the base's logits to the bit
        ck_assert(model_init_lora(&mg, 5, &err) == 0);
        model_forward(&mg, tokens, B, T);
        model_forward(&plain, tokens, B, T);
        size_t nl = (size_t)N * cfg.vocab_size, bytes = nl * gbase->act_bytes;
        char *la = malloc(bytes), *lb = malloc(bytes);
        gbase->to_host(la, mg.acts.logits, bytes);
        gbase->to_host(lb, plain.acts.logits, bytes);
        ck_assert_mem_eq(la, lb, bytes);
        // trained-looking adapters: logits and adapter gradients against the CPU
        fill_normal(a, mc.n_lora, 80, 0.2f);
        model_set_lora(&mc, a);
        model_set_lora(&mg, a);
        model_zero_grad(&mc);
        model_zero_grad(&mg);
        model_forward(&mc, tokens, B, T);
        model_forward(&mg, tokens, B, T);
        char name[96];
        snprintf(name, sizeof name, "%s LoRA logits, %s (%s)", causal ? "AR " : "MDM", what,
                 precision());
        expect_act(name, mg.acts.logits, mc.acts.logits, nl, tol_logits);
        model_loss_backward(&mc, targets, weights);
        model_loss_backward(&mg, targets, weights);
        snprintf(name, sizeof name, "%s LoRA adapter gradients, %s (%s)", causal ? "AR " : "MDM",
                 what, precision());
        expect_close(name, mg.lora_grads, mc.lora_grads, mc.n_lora, tol_grads);
        free(w), free(a), free(tokens), free(targets), free(weights), free(la), free(lb);
        model_free(&mc), model_free(&mg), model_free(&plain);
    }
}

static void check_lora_fp32_base(void) { check_lora(gpu, cpu, "fp32 base"); }

START_TEST(test_lora_adapters) {
    on_each_gpu(check_lora_fp32_base);
    gpu = &backend_cuda;
    check_lora(backend_bf16_weights(&backend_cuda), backend_bf16_weights(cpu), "bf16 base");
}
END_TEST

// MDM training on the verse text, from the seeded init or (ck not NULL) from a checkpoint,
// up to step n_steps; the loss of step s into out[s]. With save_path, the state after step
// save_at is saved there.
static void train_steps(const Backend *be, const ModelSource *ck, int n_steps, float *out,
                        float *final_params, int save_at, const char *save_path) {
    TokenData data = verse_data();
    ModelConfig cfg = small_config(0);
    TrainConfig tc = train_config_default();
    tc.batch_size = 8, tc.steps = n_steps, tc.warmup_steps = 5, tc.lr = 3e-3f;
    Model m;
    Trainer tr;
    Error err;
    ck_assert_msg(model_create(&m, &cfg, be, tc.batch_size, 0, &err) == 0, "%s", err.msg);
    ck_assert(model_init_params(&m, seed_for_init(tc.seed), NULL) == 0);
    ck_assert_msg(trainer_init(&tr, &m, &tc, &data, &err) == 0, "%s", err.msg);
    if (ck) trainer_restore(&tr, ck);
    Tokenizer bytes;
    tokenizer_init_bytes(&bytes);
    for (long s = tr.step; s < n_steps; s++) {
        out[s] = trainer_step(&tr).loss;
        if (save_path && s + 1 == save_at)
            ck_assert_msg(trainer_save(save_path, &tr, &bytes, &err) == 0, "%s", err.msg);
    }
    if (final_params) be->to_host(final_params, m.params, m.n_params * sizeof(float));
    trainer_free(&tr);
    model_free(&m);
    data_free(&data);
}

START_TEST(test_training_tracks_cpu_and_is_deterministic) {
    // bf16 activations (the default GPU backend): 20 steps near the CPU's losses, and a rerun
    // from the same seed gives the same bits
    enum { STEPS = 20 };
    float lc[STEPS], lg[STEPS], lg2[STEPS];
    train_steps(cpu, NULL, STEPS, lc, NULL, 0, NULL);
    ModelConfig cfg = small_config(0);
    size_t n = param_count(&cfg);
    float *p1 = malloc(n * 4), *p2 = malloc(n * 4);
    gpu = &backend_cuda;
    train_steps(gpu, NULL, STEPS, lg, p1, 0, NULL);
    train_steps(gpu, NULL, STEPS, lg2, p2, 0, NULL);
    for (int s = 0; s < STEPS; s++) {
        if (s % 5 == 4) printf("  step %2d loss: cpu %.4f gpu %.4f\n", s + 1, lc[s], lg[s]);
        ck_assert_msg(fabsf(lc[s] - lg[s]) <= 0.03f * lc[s], "step %d: cpu %f gpu %f", s, lc[s],
                      lg[s]);
    }
    ck_assert_mem_eq(lg, lg2, sizeof lg);  // the same seed: the same bits
    ck_assert_mem_eq(p1, p2, n * 4);
    free(p1), free(p2);
}
END_TEST

START_TEST(test_resume_and_checkpoints_across_backends) {
    // A GPU run saved at step 10 and resumed on the GPU continues bit for bit; the same
    // checkpoint loads on the CPU and gives the fp32 GPU backend's logits.
    enum { STEPS = 20, CUT = 10 };
    float straight[STEPS], resumed[STEPS];
    char path[64];
    snprintf(path, sizeof path, "/tmp/dllm_gpu_resume_%d.ckpt", (int)getpid());
    gpu = &backend_cuda;
    train_steps(gpu, NULL, STEPS, straight, NULL, CUT, path);
    ModelSource ck;
    Error err;
    ck_assert_msg(checkpoint_load(path, &ck, &err) == 0, "%s", err.msg);
    train_steps(gpu, &ck, STEPS, resumed, NULL, 0, NULL);
    printf("  resumed at step %d on the GPU: final loss %.6f straight, %.6f resumed\n", CUT,
           straight[STEPS - 1], resumed[STEPS - 1]);
    ck_assert_mem_eq(straight + CUT, resumed + CUT, (STEPS - CUT) * sizeof(float));

    Model mc, mg;
    gpu = &backend_cuda_fp32;
    ck_assert_msg(model_source_build(&ck, cpu, 2, &mc, &err) == 0, "%s", err.msg);
    ck_assert_msg(model_source_build(&ck, gpu, 2, &mg, &err) == 0, "%s", err.msg);
    int tokens[2 * 32];
    for (int i = 0; i < 64; i++) tokens[i] = i % 5 == 0 ? mc.cfg.mask_token_id : 'a' + i % 26;
    model_forward(&mc, tokens, 2, 32);
    model_forward(&mg, tokens, 2, 32);
    expect_act("GPU checkpoint on the CPU: logits", mg.acts.logits, mc.acts.logits,
               (size_t)64 * mc.cfg.vocab_size, 1e-4);
    model_free(&mc);
    model_free(&mg);
    model_source_free(&ck);
    remove(path);
}
END_TEST

// Greedy decoding on the CPU and the fp32 GPU backend from the same weights gives the same
// tokens: the AR sampler, and the diffusion sampler plain, with threshold decoding and the
// dual cache (rows recomputed against the cached rest), with the prefix cache, with guidance.
START_TEST(test_greedy_sampling_matches_cpu) {
    gpu = &backend_cuda_fp32;
    for (int variant = 0; variant < 5; variant++) {
        int causal = variant == 4;
        Model mc, mg;
        twin_models(&mc, &mg, causal, 4, 0.3f);
        SamplerConfig sc = sampler_config_default();
        sc.gen_length = 16, sc.block_length = 8, sc.steps = 8, sc.temperature = 0.0f;
        sc.eos_id = -1;
        static const char *const names[] = {"MDM reference", "MDM threshold + dual cache",
                                            "MDM prefix cache", "MDM guidance 1.0", "AR"};
        if (variant == 1) sc.threshold = 0.2f, sc.cache = CACHE_DUAL;
        if (variant == 2) sc.cache = CACHE_PREFIX;
        if (variant == 3) sc.cfg_scale = 1.0f;
        int prompt[5] = {'a', 'b', 'c', 'd', 'e'};
        const int *prompts[2] = {prompt, prompt + 2};
        int lens[2] = {5, 3}, out_c[2 * 21], out_g[2 * 21], len_c[2], len_g[2];
        SampleStats st;
        Error err;
        int (*gen)(Model *, const SamplerConfig *, const int *const *, const int *, int, int *,
                   int *, SampleStats *, StepCallback, void *, Error *) =
            causal ? ar_generate : llada_generate;
        ck_assert_msg(gen(&mc, &sc, prompts, lens, 2, out_c, len_c, &st, NULL, NULL, &err) == 0,
                      "%s", err.msg);
        ck_assert_msg(gen(&mg, &sc, prompts, lens, 2, out_g, len_g, &st, NULL, NULL, &err) == 0,
                      "%s", err.msg);
        ck_assert_mem_eq(out_c, out_g, sizeof out_c);
        printf("  %s greedy sampling: same %d tokens on cpu and gpu (%d forward passes)\n",
               names[variant], 2 * 21, st.nfe);
        model_free(&mc);
        model_free(&mg);
    }
}
END_TEST

// Speculative decoding on the fp32 GPU backend gives the CPU's tokens and the AR sampler's,
// with an AR and an MDM drafter (drafts, verdicts and both KV caches on the device).
START_TEST(test_speculative_matches_cpu) {
    gpu = &backend_cuda_fp32;
    for (int draft_causal = 0; draft_causal <= 1; draft_causal++) {
        Model tc, tg, dc, dg;
        twin_models(&tc, &tg, 1, 2, 0.3f);
        twin_models(&dc, &dg, draft_causal, 2, 0.31f);  // close to the target: some agree
        SamplerConfig sc = sampler_config_default();
        sc.gen_length = 16, sc.draft_length = 3, sc.eos_id = -1;
        int prompt[5] = {'a', 'b', 'c', 'd', 'e'};
        const int *prompts[2] = {prompt, prompt + 2};
        int lens[2] = {5, 3}, out_c[2 * 21], out_g[2 * 21], out_a[2 * 21], len[2];
        SampleStats st;
        Error err;
        ck_assert_msg(ar_generate(&tc, &sc, prompts, lens, 2, out_a, len, &st, NULL, NULL,
                                  &err) == 0, "%s", err.msg);
        ck_assert_msg(speculative_generate(&tc, &dc, &sc, prompts, lens, 2, out_c, len, &st,
                                           NULL, NULL, &err) == 0, "%s", err.msg);
        ck_assert_msg(speculative_generate(&tg, &dg, &sc, prompts, lens, 2, out_g, len, &st,
                                           NULL, NULL, &err) == 0, "%s", err.msg);
        ck_assert_mem_eq(out_c, out_g, sizeof out_c);
        ck_assert_mem_eq(out_c, out_a, sizeof out_c);
        printf("  speculative greedy, %s drafter: the AR sampler's %d tokens on cpu and gpu "
               "(%ld of %ld drafts accepted)\n", draft_causal ? "AR" : "MDM", 2 * 21,
               st.accepted, st.drafted);
        model_free(&tc), model_free(&tg), model_free(&dc), model_free(&dg);
    }
}
END_TEST

// A failed CUDA call is recorded, not an exit: the table's device_error returns it once (the
// CLI decides what to do), and the CPU backend never reports one.
void cuda_fail(const char *message, const char *what, const char *file, int line);

START_TEST(test_device_failures_are_reported_not_exits) {
    Error err;
    ck_assert_int_eq(backend_cuda.device_error(&err), 0);
    cuda_fail("an injected failure", "cudaMemcpy(...)", "memory.cu", 42);
    cuda_fail("a later failure", "kernel launch", "rows.cu", 7);  // the first one is kept
    ck_assert_int_eq(backend_cuda.device_error(&err), -1);
    ck_assert_str_eq(err.msg, "CUDA error (an injected failure) in cudaMemcpy(...) at "
                              "memory.cu:42");
    ck_assert_int_eq(backend_cuda_fp32.device_error(&err), 0);  // read once
    ck_assert_int_eq(backend_cpu.device_error(&err), 0);
    // a head size the kernels do not implement is refused, not computed over its first 128
    for (int i = 0; i < 2; i++) {
        const Backend *b = gpus[i];
        Act *x = b->alloc(160 * b->act_bytes), *out = b->alloc(160 * b->act_bytes);
        float *lse = b->alloc(sizeof(float));
        b->attention_forward(out, lse, x, x, x, NULL, 1, 1, 1, 0, 1, 1, 160, ATTN_FULL);
        ck_assert_int_eq(b->device_error(&err), -1);
        ck_assert_msg(strstr(err.msg, "head size 160 is above the 128"), "%s", err.msg);
        b->free(x), b->free(out), b->free(lse);
    }
}
END_TEST

// CUDA does not survive fork: a process that has used it cannot hand it to the children
// Check forks for its tests (their first CUDA call fails). So the device query runs in a
#if defined(DLLM_NCCL) && !defined(DLLM_CUDA_EMULATION)
// NCCL's exchanges on one device (a job of one rank): the shard exchange sends the vector to
// itself, the gather to rank 0 copies it; multi-GPU jobs need a machine with several GPUs.
START_TEST(test_nccl_exchanges_on_one_device) {
    gpu = &backend_cuda;
    Comm c = {.rank = 0, .size = 1, .timeout = 60, .be = gpu};
    Error err;
    ck_assert_msg(comm_nccl_open(&c, &err) == 0, "%s", err.msg);
    size_t n = 3 * SUM_SQUARES_CHUNK + 5;
    float *x = randn(n, 31), *gx = up(x, n), *gy = gpu->alloc(n * sizeof(float));
    ck_assert_msg(comm_nccl_exchange_shards(&c, gx, gy, n, &err) == 0, "%s", err.msg);
    expect_close("NCCL shard exchange (1 rank)", gy, x, n, 0.0);
    gpu->zero(gy, n * sizeof(float));
    ck_assert_msg(comm_nccl_gather_to_root(&c, gx, gy, n, &err) == 0, "%s", err.msg);
    expect_close("NCCL gather to rank 0 (1 rank)", gy, x, n, 0.0);
    comm_nccl_close(&c);
    free(x);
    gpu->free(gx), gpu->free(gy);
}
END_TEST
#endif

// child of its own; this process never touches CUDA, and each test's child starts it afresh.
static int cuda_device_present(void) {
    pid_t pid = fork();
    if (pid == 0) _exit(backend_cuda_available() ? 0 : 1);
    int status;
    return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
           WEXITSTATUS(status) == 0;
}

int main(void) {
    if (!cuda_device_present()) {
        printf("test_gpu: skipped: no CUDA device\n");
        return getenv("DLLM_REQUIRE_GPU") ? 1 : 0;
    }
#ifdef DLLM_CUDA_EMULATION
    // make test-cuda-emu: the kernels' logic on the CPU emulation, not a GPU run
    printf("test_gpu: CUDA kernels under the CPU emulation (tests/cuda_emu), no GPU involved\n");
    Suite *s = suite_create("cuda kernels, emulated");
#else
    Suite *s = suite_create("gpu");
#endif
    // four cases: "ops", "moe" and "attention" (each kernel against its twin; all tagged "ops":
    // CK_INCLUDE_TAGS=ops is what `make test SAN=...` runs on the emulation, where the
    // model-level tests take too long; attention alone is what a race checker runs) and
    // "model" (everything after)
    TCase *ops = tcase_create("ops");
    tcase_set_tags(ops, "ops");
    tcase_set_timeout(ops, 300);
    tcase_add_test(ops, test_matmul);
    tcase_add_test(ops, test_row_ops);
    tcase_add_test(ops, test_elementwise_and_optimizer);
    tcase_add_test(ops, test_rope);
    tcase_add_test(ops, test_pick_tokens);
    tcase_add_test(ops, test_bd3_reductions);
    tcase_add_test(ops, test_device_failures_are_reported_not_exits);
    tcase_add_test(ops, test_bf16_weight_backward_ops);
    suite_add_tcase(s, ops);
    TCase *moe = tcase_create("moe");
    tcase_set_tags(moe, "ops");
    tcase_set_timeout(moe, 300);
    tcase_add_test(moe, test_moe_ops);
    suite_add_tcase(s, moe);
    TCase *attention = tcase_create("attention");
    tcase_set_tags(attention, "ops attention");
    tcase_set_timeout(attention, 300);
    tcase_add_test(attention, test_attention);
    suite_add_tcase(s, attention);
    TCase *tc = tcase_create("model");
    tcase_set_tags(tc, "model");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_whole_model);
    tcase_add_test(tc, test_bf16_weights);
    tcase_add_test(tc, test_lora_adapters);
    tcase_add_test(tc, test_ternary_model);
    tcase_add_test(tc, test_training_tracks_cpu_and_is_deterministic);
    tcase_add_test(tc, test_resume_and_checkpoints_across_backends);
    tcase_add_test(tc, test_greedy_sampling_matches_cpu);
    tcase_add_test(tc, test_speculative_matches_cpu);
#if defined(DLLM_NCCL) && !defined(DLLM_CUDA_EMULATION)
    tcase_add_test(tc, test_nccl_exchanges_on_one_device);
#endif
    suite_add_tcase(s, tc);
    return run_suite(s);
}
#else
int main(void) {
    printf("test_gpu: skipped: no CUDA device (this build has no CUDA backend)\n");
    return getenv("DLLM_REQUIRE_GPU") ? 1 : 0;
}
#endif

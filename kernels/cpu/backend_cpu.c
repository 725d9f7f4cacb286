// The CPU backend: host memory and the reference ops, gathered into one Backend table.
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/cpu/cpu_ops.h"

static void *cpu_alloc(size_t bytes) { return calloc(1, bytes ? bytes : 1); }
static void cpu_free(void *ptr) { free(ptr); }
static void cpu_zero(void *ptr, size_t bytes) { memset(ptr, 0, bytes); }
static void cpu_copy(void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }

static void cpu_copy_rows(void *dst, size_t dst_stride, const void *src, size_t src_stride,
                          size_t row_bytes, size_t rows) {
    for (size_t r = 0; r < rows; r++)
        memcpy((char *)dst + r * dst_stride, (const char *)src + r * src_stride, row_bytes);
}

// The reference ops work on floats, the CPU's activation type; these adapt them to the
// table's Act * signatures (a void * converts to float * as is).
static void act_to_host(float *dst, const Act *src, size_t n) {
    memcpy(dst, src, n * sizeof(float));
}
static void act_to_device(Act *dst, const float *src, size_t n) {
    memcpy(dst, src, n * sizeof(float));
}
static void embedding_forward(Act *out, const int *tokens, const float *table, int N, int C) {
    cpu_embedding_forward(out, tokens, table, N, C);
}
static void embedding_backward(float *dtable, const Act *dout, const int *tokens, int N, int C,
                               int V) {
    cpu_embedding_backward(dtable, dout, tokens, N, C, V);
}
static void rmsnorm_forward(Act *out, float *rstd, const Act *inp, const float *weight, int N,
                            int C, float eps) {
    cpu_rmsnorm_forward(out, rstd, inp, weight, N, C, eps);
}
static void rmsnorm_backward(Act *dinp, float *dweight, const Act *dout, const Act *inp,
                             const float *weight, const float *rstd, int N, int C) {
    cpu_rmsnorm_backward(dinp, dweight, dout, inp, weight, rstd, N, C);
}
static void matmul_forward(Act *out, const Act *inp, const float *weight, int N, int C_in,
                           int C_out) {
    // OpenBLAS repacks the weights on every call: at 6..64 rows our kernel, which does not,
    // is faster; at 1..5 rows (AR decoding) and at training's thousands, OpenBLAS is
    if (N >= 6 && N <= 64) cpu_matmul_forward_rows(out, inp, weight, N, C_in, C_out);
    else cpu_matmul_forward_blas(out, inp, weight, N, C_in, C_out);
}
static void matmul_backward(Act *dinp, float *dweight, const Act *dout, const Act *inp,
                            const float *weight, int N, int C_in, int C_out) {
    cpu_matmul_backward_blas(dinp, dweight, dout, inp, weight, N, C_in, C_out);
}
static void bias_forward(Act *x, const float *bias, int N, int C) {
    cpu_bias_forward(x, bias, N, C);
}
static void bias_backward(float *dbias, const Act *dout, int N, int C) {
    cpu_bias_backward(dbias, dout, N, C);
}
static void rope_forward(Act *x, const float *cos, const float *sin, int B, int T, int pos0,
                         int H, int head_dim) {
    cpu_rope_forward(x, cos, sin, B, T, pos0, H, head_dim);
}
static void rope_backward(Act *dx, const float *cos, const float *sin, int B, int T, int pos0,
                          int H, int head_dim) {
    cpu_rope_backward(dx, cos, sin, B, T, pos0, H, head_dim);
}
static void attention_forward(Act *out, float *lse, const Act *q, const Act *k, const Act *v,
                              const int *key_start, int B, int Tq, int Tk, int q_pos0, int H,
                              int Hkv, int head_dim, int mask) {
    cpu_attention_forward_blas(out, lse, q, k, v, key_start, B, Tq, Tk, q_pos0, H, Hkv, head_dim,
                               mask);
}
static void attention_backward(Act *dq, Act *dk, Act *dv, const Act *dout, const Act *out,
                               const float *lse, const Act *q, const Act *k, const Act *v, int B,
                               int T, int H, int Hkv, int head_dim, int mask) {
    cpu_attention_backward_blas(dq, dk, dv, dout, out, lse, q, k, v, B, T, H, Hkv, head_dim,
                                mask);
}
static void swiglu_forward(Act *out, const Act *gate, const Act *up, size_t n) {
    cpu_swiglu_forward(out, gate, up, n);
}
static void swiglu_backward(Act *dgate, Act *dup, const Act *dout, const Act *gate, const Act *up,
                            size_t n) {
    cpu_swiglu_backward(dgate, dup, dout, gate, up, n);
}
static void add(Act *out, const Act *a, const Act *b, size_t n) { cpu_add(out, a, b, n); }
static void add_scaled(Act *out, const Act *x, float s, size_t n) { cpu_add_scaled(out, x, s, n); }
static void guide(Act *cond, const Act *uncond, float w, size_t n) {
    cpu_guide(cond, uncond, w, n);
}
static void cross_entropy_forward(float *losses, const Act *logits, const int *targets, int N,
                                  int V) {
    cpu_cross_entropy_forward(losses, logits, targets, N, V);
}
static void cross_entropy_fused(float *losses, Act *dlogits, const Act *logits,
                                const int *targets, const float *weights, int N, int V) {
    cpu_cross_entropy_fused(losses, dlogits, logits, targets, weights, N, V);
}
static void pick_tokens(int *tokens, double *confidence, const Act *logits, int B,
                        int rows_per_seq, int first, int count, int V, float cfg,
                        float temperature, uint64_t seed, int banned) {
    cpu_pick_tokens(tokens, confidence, logits, B, rows_per_seq, first, count, V, cfg,
                    temperature, seed, banned);
}

// Forward ops on bf16 weights, for the bf16-weight twin (the pointer typed float * holds bf16).
static void embedding_forward_w16(Act *out, const int *tokens, const float *table, int N, int C) {
    cpu_embedding_forward_w16(out, tokens, (const uint16_t *)(const void *)table, N, C);
}
static void rmsnorm_forward_w16(Act *out, float *rstd, const Act *inp, const float *weight, int N,
                                int C, float eps) {
    cpu_rmsnorm_forward_w16(out, rstd, inp, (const uint16_t *)(const void *)weight, N, C, eps);
}
static void matmul_forward_w16(Act *out, const Act *inp, const float *weight, int N, int C_in,
                               int C_out) {
    cpu_matmul_forward_w16(out, inp, (const uint16_t *)(const void *)weight, N, C_in, C_out);
}
// (the frozen base's backward: dweight is always NULL there)
static void rmsnorm_backward_w16(Act *dinp, float *dweight, const Act *dout, const Act *inp,
                                 const float *weight, const float *rstd, int N, int C) {
    (void)dweight;
    cpu_rmsnorm_backward_w16(dinp, dout, inp, (const uint16_t *)(const void *)weight, rstd, N, C);
}
static void matmul_backward_w16(Act *dinp, float *dweight, const Act *dout, const Act *inp,
                                const float *weight, int N, int C_in, int C_out) {
    (void)dweight, (void)inp;
    cpu_matmul_backward_w16(dinp, dout, (const uint16_t *)(const void *)weight, N, C_in, C_out);
}
static void bias_forward_w16(Act *x, const float *bias, int N, int C) {
    cpu_bias_forward_w16(x, (const uint16_t *)(const void *)bias, N, C);
}

static void quantize_rows(Act *out, const Act *x, int N, int C) {
    cpu_quantize_rows(out, x, N, C);
}

static void quantize_rows_int8(int8_t *out, float *q, const Act *x, int N, int C) {
    cpu_quantize_rows_int8(out, q, x, N, C);
}
static void matmul_ternary(Act *out, const int8_t *xq, const float *q, const uint8_t *w, float s,
                           int N, int C_in, int C_out) {
    cpu_matmul_ternary(out, xq, q, w, s, N, C_in, C_out);
}

static void matmul_forward_panels(Act *out, const Act *inp, const float *panels, int N, int C_in,
                                  int C_out) {
    cpu_matmul_forward_panels(out, inp, panels, N, C_in, C_out);
}

static int device_error(Error *err) {
    (void)err;
    return 0;
}

const Backend backend_cpu = {
    .name = "cpu",
    .device_error = device_error,
    .act_bytes = sizeof(float),
    .weight_bytes = sizeof(float),
    .alloc = cpu_alloc,
    .free = cpu_free,
    .zero = cpu_zero,
    .to_device = cpu_copy,
    .to_host = cpu_copy,
    .copy_rows = cpu_copy_rows,
    .to_device_rows = cpu_copy_rows,
    .act_to_host = act_to_host,
    .act_to_device = act_to_device,
    .embedding_forward = embedding_forward,
    .embedding_backward = embedding_backward,
    .rmsnorm_forward = rmsnorm_forward,
    .rmsnorm_backward = rmsnorm_backward,
    .matmul_forward = matmul_forward,
    .matmul_backward = matmul_backward,
    .bias_forward = bias_forward,
    .bias_backward = bias_backward,
    .rope_forward = rope_forward,
    .rope_backward = rope_backward,
    .attention_forward = attention_forward,
    .attention_backward = attention_backward,
    .swiglu_forward = swiglu_forward,
    .swiglu_backward = swiglu_backward,
    .add = add,
    .add_scaled = add_scaled,
    .guide = guide,
    .pick_tokens = pick_tokens,
    .cross_entropy_forward = cross_entropy_forward,
    .cross_entropy_fused = cross_entropy_fused,
    .panels_convert = cpu_panels_convert,
    .matmul_forward_panels = matmul_forward_panels,
    .ternarize = cpu_ternarize,
    .quantize_rows = quantize_rows,
    .quantize_rows_int8 = quantize_rows_int8,
    .matmul_ternary = matmul_ternary,
    .sum_squares = cpu_sum_squares,
    .scale = cpu_scale,
    .adamw_update = cpu_adamw_update,
};

const Backend *backend_cpu_bf16_weights(void) {
    static Backend b;
    if (!b.name) {
        b = backend_cpu;
        backend_make_bf16_weights(&b);
        b.embedding_forward = embedding_forward_w16;
        b.rmsnorm_forward = rmsnorm_forward_w16;
        b.rmsnorm_backward = rmsnorm_backward_w16;
        b.matmul_forward = matmul_forward_w16;
        b.matmul_backward = matmul_backward_w16;
        b.bias_forward = bias_forward_w16;
        b.name = "cpu";  // set last: the table is complete once it has a name
    }
    return &b;
}

// The CPU reference implementations of the ops in kernels/backend.h (fp32, OpenMP).
// Each parallel loop gives every output element to exactly one thread and sums in a fixed
// order, so results do not depend on the thread count.
#ifndef DLLM_CPU_OPS_H
#define DLLM_CPU_OPS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/attn_mask.h"
#include "kernels/backend.h"

// 1 when a loop's work (multiply-adds, or values touched) is worth a second thread: some 10 to
// 50 us of one core's work. A parallel region costs a wake-up and a join: 12 us when idle
// threads sleep at once, ~1.5 us with dllm's brief spin (cli/dllm.c). On a busy machine a join
// could wait a whole time slice for a descheduled thread: threads_adapt (common/threads.c) then
// runs one thread, so 2 threads never lose to 1 there (bench/threads.sh).
static inline int worth_threads(double work) { return work >= 1e5; }

void cpu_embedding_forward(Act *out, const int *tokens, const float *table, int N, int C);
void cpu_embedding_backward(float *dtable, const Act *dout, const int *tokens, int N, int C, int V);

// 1 / sqrt(mean(x^2) + eps) of one row of C values
float cpu_rmsnorm_rstd(const float *x, int C, float eps);
// the same for rows [n0, n0 + RSTD_ROWS) of x (fewer at N) into rstd[n0..], the same bits
enum { RSTD_ROWS = 8 };
void cpu_rmsnorm_rstd_rows(float *rstd, const float *x, int n0, int N, int C, float eps);
void cpu_rmsnorm_forward(Act *out, float *rstd, const Act *inp, const float *weight, int N, int C,
                         float eps);
// dweight NULL: the input gradient alone (frozen weights), as in every backward that has one
void cpu_rmsnorm_backward(Act *dinp, float *dweight, const Act *dout, const Act *inp,
                          const float *weight, const float *rstd, int N, int C);

void cpu_matmul_forward(float *out, const float *inp, const float *weight, int N, int C_in,
                        int C_out);
void cpu_matmul_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                         const float *weight, int N, int C_in, int C_out);

void cpu_bias_forward(Act *x, const float *bias, int N, int C);
void cpu_bias_backward(float *dbias, const Act *dout, int N, int C);

// The same through OpenBLAS (matmul_blas.c): what the CPU backend table runs.
void cpu_matmul_forward_blas(float *out, const float *inp, const float *weight, int N, int C_in,
                             int C_out);
void cpu_matmul_backward_blas(Act *dinp, float *dweight, const Act *dout, const Act *inp,
                              const float *weight, int N, int C_in, int C_out);

// The forward for a few rows (matmul_rows.c: the input transposed instead of the weight packed;
// each output one chain of multiply-adds, the same bits at any thread count).
void cpu_matmul_forward_rows(float *out, const float *inp, const float *weight, int N, int C_in,
                             int C_out);
// The same reading bf16 weight rows (each weight widened as it is broadcast).
void cpu_matmul_forward_rows_w16(float *out, const float *inp, const float *weight_bf16, int N,
                                 int C_in, int C_out);

// The forward over weights in panels (matmul_panels.c: blocks of 16 output rows stored
// transposed in place, for inference), and the in-place conversion (to_panels 0: back to rows).
void cpu_matmul_forward_panels(Act *out, const Act *inp, const float *panels, int N, int C_in,
                               int C_out);
void cpu_panels_convert(float *w, int C_out, int C_in, int to_panels);
// The same over bf16 weights (the bf16-weight table's): panels of bf16, widened in registers,
// so the outputs are the fp32 kernels' over the widened weights.
void cpu_matmul_forward_panels_w16(Act *out, const Act *inp, const float *panels_bf16, int N,
                                   int C_in, int C_out);
void cpu_panels_convert_w16(float *w_bf16, int C_out, int C_in, int to_panels);
// bf16 weights in pairs times inputs rounded to bf16, fp32 sums (matmul_bf16_pairs.c: the
// arithmetic of vdpbf16ps; C_in even): the layout's conversion, the table's matmul (VNNI-BF16
// where built) and the plain loop of the same bits.
void cpu_panels_convert_pairs(float *w_bf16, int C_out, int C_in, int to_panels);
void cpu_matmul_forward_pairs(Act *out, const Act *inp, const float *panels, int N, int C_in,
                              int C_out);
void cpu_matmul_pairs_ref(float *out, const float *inp, const float *panels, int N, int C_in,
                          int C_out);

void cpu_rope_forward(Act *x, const float *cos, const float *sin, int B, int T, int pos0, int H,
                      int head_dim, int rot);
void cpu_rope_backward(Act *dx, const float *cos, const float *sin, int B, int T, int pos0, int H,
                       int head_dim, int rot);

// Attention tensors are [B, T, heads, head_dim]: where head h of position t of sequence b
// starts, and the keys [.., end) that query row t (at position q_pos0 + t) sees.
static inline size_t attention_offset(int b, int t, int h, int T, int heads, int head_dim) {
    return (((size_t)b * T + t) * heads + h) * head_dim;
}

void cpu_attention_forward(float *out, float *lse, const float *q, const float *k,
                           const float *v, const int *key_start, int B, int Tq, int Tk, int q_pos0,
                           int H, int Hkv, int head_dim, int mask);
void cpu_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *out,
                            const float *lse, const float *q, const float *k, const float *v,
                            int B, int T, int H, int Hkv, int head_dim, int mask);
// The same a tile of query rows at a time through OpenBLAS (attention_blas.c): what the CPU
// backend table runs.
void cpu_attention_forward_blas(Act *out, float *lse, const Act *q, const Act *k, const Act *v,
                                const int *key_start, int B, int Tq, int Tk, int q_pos0, int H,
                                int Hkv, int head_dim, int mask);
void cpu_attention_backward_blas(Act *dq, Act *dk, Act *dv, const Act *dout, const Act *out,
                                 const float *lse, const Act *q, const Act *k, const Act *v, int B,
                                 int T, int H, int Hkv, int head_dim, int mask);

void cpu_swiglu_forward(Act *out, const Act *gate, const Act *up, size_t n);
void cpu_swiglu_backward(Act *dgate, Act *dup, const Act *dout, const Act *gate, const Act *up,
                         size_t n);

void cpu_pick_tokens(int *tokens, double *confidence, const Act *logits, int B, int rows_per_seq,
                     int first, int count, int V, float cfg, float temperature, uint64_t seed,
                     int banned);

void cpu_add(Act *out, const Act *a, const Act *b, size_t n);
void cpu_moe_route(int *pick, float *weight, float *probs, const Act *logits, const float *bias,
                   int N, int E, int k, int router, int n_groups, int topk_groups,
                   float routed_scale);
void cpu_moe_route_backward(Act *dlogits, const float *dweight, const int *pick,
                            const float *probs, const float *aux, int N, int E, int k,
                            int router, float routed_scale);
void cpu_gather_rows(Act *dst, const Act *src, const int *rows, int n, int C);
void cpu_moe_combine(Act *out, const Act *ys, const int *slot, const float *weight, int N, int k,
                     int C);
void cpu_moe_combine_backward(Act *dys, float *dweight, const Act *dout, const Act *ys,
                              const int *slot, const float *weight, int N, int k, int C);
void cpu_add_scaled(Act *out, const Act *x, float s, size_t n);
void cpu_guide(Act *cond, const Act *uncond, float w, size_t n);

void cpu_cross_entropy_forward(float *losses, const Act *logits, const int *targets, int N, int V);
void cpu_cross_entropy_fused(float *losses, Act *dlogits, const Act *logits, const int *targets,
                             const float *weights, int N, int V);

// The ops that read weights, on bf16 weights (kernels/cpu/weights_bf16.c); the backward ones
// give the input gradient alone (a frozen base).
// The weight-reading ops on bf16 weights (kernels/cpu/weights_bf16.c), in the table's types:
// each weight pointer holds bf16 values.
void cpu_embedding_forward_w16(Act *out, const int *tokens, const float *table, int N, int C);
void cpu_rmsnorm_forward_w16(Act *out, float *rstd, const Act *inp, const float *weight, int N,
                             int C, float eps);
void cpu_matmul_forward_w16(Act *out, const Act *inp, const float *weight, int N, int C_in,
                            int C_out);
void cpu_bias_forward_w16(Act *x, const float *bias, int N, int C);
void cpu_rmsnorm_backward_w16(Act *dinp, float *dweight, const Act *dout, const Act *inp,
                              const float *weight, const float *rstd, int N, int C);
void cpu_matmul_backward_w16(Act *dinp, float *dweight, const Act *dout, const Act *inp,
                             const float *weight, int N, int C_in, int C_out);

float cpu_row_multiplier(const float *row, int C);
static inline float quantize_level(float x, float q) {
    return fminf(fmaxf(rintf(x * q), -128.0f), 127.0f);
}
void cpu_ternarize(float *dst, const float *src, size_t n);
void cpu_quantize_rows(Act *out, const Act *x, int N, int C);

// Packed ternary inference (ternary.c, layouts in kernels/ternary.h): rows of x [N, C] to 8-bit
// integers (out: rows ternary_padded(C) apart, zero-padded; q[n] the row's multiplier, so
// out / q is cpu_quantize_rows's value), and out [N, C_out] = their products with a packed
// matrix w of scale s. _ref is the plain loop the SIMD one is checked against (same bits).
void cpu_quantize_rows_int8(int8_t *out, float *q, const Act *x, int N, int C);
void cpu_matmul_ternary(Act *out, const int8_t *xq, const float *q, const uint8_t *w, float s,
                        int N, int C_in, int C_out);
void cpu_matmul_ternary_ref(float *out, const int8_t *xq, const float *q, const uint8_t *w,
                            float s, int N, int C_in, int C_out);

// Block-quantised weights (matmul_qblocks.c, layout and arithmetic in kernels/qblocks.h): rows
// of x [N, C] quantised to 8 bits per block of 32 (xq: rows of qb_row_bytes(C), dx [N, C / 32]
// scales); out [N, C_out] = those rows times w (qb_matrix_bytes(bits, C_out, C_in), bits 8 or
// 4); _ref is the plain loop the VNNI one is checked against (the same bits). The embedding:
// rows `tokens` of a table in the same layout, decoded.
void cpu_quantize_rows_q8(uint8_t *xq, float *dx, const Act *x, int N, int C);
void cpu_matmul_qb(Act *out, const uint8_t *xq, const float *dx, const uint8_t *w, int bits,
                   int N, int C_in, int C_out);
void cpu_matmul_qb_ref(float *out, const uint8_t *xq, const float *dx, const uint8_t *w, int bits,
                       int N, int C_in, int C_out);
void cpu_embedding_qb(Act *out, const int *tokens, const uint8_t *table, int bits, int N, int C);

double cpu_sum_squares(const float *x, size_t n);
void cpu_sum_squares_chunks(double *partials, const float *x, size_t n);
void cpu_scale(float *x, size_t n, float s);
void cpu_accumulate(float *dst, const float *src, size_t n);
void cpu_adamw_update(float *params, const float *grads, float *m, float *v, size_t n, float lr,
                      float beta1, float beta2, float eps, float weight_decay, long t);

#endif

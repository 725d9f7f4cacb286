// The CUDA ops behind backend_cuda and backend_cuda_fp32 (kernels/cuda/*.cu): one twin for each
// CPU reference op in kernels/cpu/cpu_ops.h, with the same arguments and the same "backward
// adds" convention. Every pointer is device memory. Reductions run in a fixed order, so
// results do not change from run to run (no atomics): the determinism that bit-exact resumes
// need. Ops that touch activations are templates over the activation type A (float or
// __nv_bfloat16), instantiated for both in their .cu file; backend_cuda.cu builds one table
// per type. Arithmetic is fp32 whatever A is.
#ifndef DLLM_CUDA_OPS_H
#define DLLM_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#ifdef __cplusplus
extern "C" {
#endif

// Records the first failure (the call site and the library's message) for
// cuda_device_error, the table's device_error: a failed launch or copy leaves the device in a
// state no op can repair, so the caller stops at its next check. The .cu files check through
// kernels/cuda/check.cuh.
void cuda_fail(const char *message, const char *what, const char *file, int line);

// Number of usable CUDA devices (0 without a GPU or driver).
int cuda_device_count(void);
// The first recorded failure since the last call, into err (-1), or 0.
int cuda_device_error(Error *err);

#ifdef __cplusplus
}

void *cuda_alloc(size_t bytes);
void cuda_free(void *ptr);
void cuda_zero(void *ptr, size_t bytes);
void cuda_to_device(void *dst, const void *src, size_t bytes);
void cuda_to_host(void *dst, const void *src, size_t bytes);
void cuda_copy_rows(void *dst, size_t dst_stride, const void *src, size_t src_stride,
                    size_t row_bytes, size_t rows);
void cuda_to_device_rows(void *dst, size_t dst_stride, const void *src, size_t src_stride,
                         size_t row_bytes, size_t rows);
// Scratch memory for ops that need some (attention backward, sums), grown on demand; one
// user at a time (ops run one after another on the default stream).
void *cuda_scratch(size_t bytes);
double cuda_sum_squares(const float *x, size_t n);
void cuda_sum_squares_chunks(double *partials, const float *x, size_t n);
// BitNet b1.58's quantisers (quantize.cu)
void cuda_ternarize(float *dst, const float *src, size_t n);
template <typename A>
void cuda_quantize_rows(void *out, const void *x, int N, int C);
void cuda_scale(float *x, size_t n, float s);
void cuda_accumulate(float *dst, const float *src, size_t n);
void cuda_adamw_update(float *params, const float *grads, float *m, float *v, size_t n, float lr,
                       float beta1, float beta2, float eps, float weight_decay, long t);

template <typename A>
void cuda_act_to_host(float *dst, const void *src, size_t n);
template <typename A>
void cuda_act_to_device(void *dst, const float *src, size_t n);
// n device floats into activations of type A (device to device)
template <typename A>
void cuda_floats_to_act(void *dst, const float *src, size_t n);
// The forward ops that read weights take the weight type W as well (float, or bf16 in the
// bf16-weight table, where the `const float *` argument holds bf16 values).
template <typename A, typename W = float>
void cuda_embedding_forward(void *out, const int *tokens, const float *table, int N, int C);
template <typename A>
void cuda_embedding_backward(float *dtable, const void *dout, const int *tokens, int N, int C,
                             int V);
template <typename A, typename W = float>
void cuda_rmsnorm_forward(void *out, float *rstd, const void *inp, const float *weight, int N,
                          int C, float eps);
// dweight NULL (here and in the matmul backward): the input gradient alone (frozen weights)
template <typename A, typename W = float>
void cuda_rmsnorm_backward(void *dinp, float *dweight, const void *dout, const void *inp,
                           const float *weight, const float *rstd, int N, int C);
// fp32 activations multiply in fp32; bf16 ones on the tensor cores (the fp32 weights rounded
// to bf16 once per op), accumulating in fp32.
template <typename A>
void cuda_matmul_forward(void *out, const void *inp, const float *weight, int N, int C_in,
                         int C_out);
// bf16 activations times bf16 weights as stored (no rounding pass); the backward gives the
// input gradient alone (a frozen base: dweight is NULL)
void cuda_matmul_forward_w16(void *out, const void *inp, const float *weight, int N, int C_in,
                             int C_out);
void cuda_matmul_backward_w16(void *dinp, float *dweight, const void *dout, const void *inp,
                              const float *weight, int N, int C_in, int C_out);
template <typename A>
void cuda_matmul_backward(void *dinp, float *dweight, const void *dout, const void *inp,
                          const float *weight, int N, int C_in, int C_out);
template <typename A, typename W = float>
void cuda_bias_forward(void *x, const float *bias, int N, int C);
template <typename A>
void cuda_bias_backward(float *dbias, const void *dout, int N, int C);
template <typename A>
void cuda_rope_forward(void *x, const float *cos, const float *sin, int B, int T, int pos0, int H,
                       int head_dim, int rot);
template <typename A>
void cuda_rope_backward(void *dx, const float *cos, const float *sin, int B, int T, int pos0,
                        int H, int head_dim, int rot);
// bf16 activations with head size 64 or 128 take the tensor-core kernels (attention_tc.cu)
// where the device's shared memory allows; everything else the fp32 CUDA-core ones.
template <typename A>
void cuda_attention_forward(void *out, float *lse, const void *q, const void *k, const void *v,
                            const int *key_start, int B, int Tq, int Tk, int q_pos0, int H,
                            int Hkv, int head_dim, int mask);
template <typename A>
void cuda_attention_backward(void *dq, void *dk, void *dv, const void *dout, const void *out,
                             const float *lse, const void *q, const void *k, const void *v, int B,
                             int T, int H, int Hkv, int head_dim, int mask);
// The tensor-core attention on bf16 activations: 1 when it ran, 0 when the caller should take
// the CUDA-core kernels. D[B, H, T] = dout . out per row, the backward's softmax term.
int cuda_attention_tc_forward(void *out, float *lse, const void *q, const void *k, const void *v,
                              const int *key_start, int B, int Tq, int Tk, int q_pos0, int H,
                              int Hkv, int head_dim, int mask);
int cuda_attention_tc_backward(void *dq, void *dk, void *dv, const void *dout, const float *D,
                               const float *lse, const void *q, const void *k, const void *v,
                               int B, int T, int H, int Hkv, int head_dim, int mask);
template <typename A>
void cuda_moe_route(int *pick, float *weight, float *probs, const void *logits,
                    const float *bias, int N, int E, int k, int router, int n_groups,
                    int topk_groups, float routed_scale);
template <typename A>
void cuda_moe_route_backward(void *dlogits, const float *dweight, const int *pick,
                             const float *probs, const float *aux, int N, int E, int k,
                             int router, float routed_scale);
template <typename A>
void cuda_gather_rows(void *dst, const void *src, const int *rows, int n, int C);
template <typename A>
void cuda_moe_combine(void *out, const void *ys, const int *slot, const float *weight, int N,
                      int k, int C);
template <typename A>
void cuda_moe_combine_backward(void *dys, float *dweight, const void *dout, const void *ys,
                               const int *slot, const float *weight, int N, int k, int C);
template <typename A>
void cuda_swiglu_forward(void *out, const void *gate, const void *up, size_t n);
template <typename A>
void cuda_swiglu_backward(void *dgate, void *dup, const void *dout, const void *gate,
                          const void *up, size_t n);
template <typename A>
void cuda_add(void *out, const void *a, const void *b, size_t n);
template <typename A>
void cuda_add_scaled(void *out, const void *x, float s, size_t n);
template <typename A>
void cuda_guide(void *cond, const void *uncond, float w, size_t n);
template <typename A>
void cuda_cross_entropy_forward(float *losses, const void *logits, const int *targets, int N,
                                int V);
template <typename A>
void cuda_cross_entropy_fused(float *losses, void *dlogits, const void *logits,
                              const int *targets, const float *weights, int N, int V);
template <typename A>
void cuda_pick_tokens(int *tokens, double *confidence, const void *logits, int B,
                      int rows_per_seq, int first, int count, int V, float cfg, float temperature,
                      uint64_t seed, int banned);
#endif

#endif

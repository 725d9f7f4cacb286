// The CUDA ops behind backend_cuda (kernels/cuda/*.cu): one twin for each CPU reference op in
// kernels/cpu/cpu_ops.h, with the same arguments and the same "backward adds" convention.
// Every pointer is device memory. Reductions run in a fixed order, so results do not change
// from run to run (no atomics): the determinism that bit-exact resumes need.
#ifndef DLLM_CUDA_OPS_H
#define DLLM_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Aborts naming the call site and the library's message: a failed launch or copy leaves the
// device in a state no caller can repair, so this is the one place dllm exits outside the CLI.
// The .cu files check through kernels/cuda/check.cuh.
void cuda_fail(const char *message, const char *what, const char *file, int line);

// Number of usable CUDA devices (0 without a GPU or driver).
int cuda_device_count(void);
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

void cuda_embedding_forward(float *out, const int *tokens, const float *table, int N, int C);
void cuda_embedding_backward(float *dtable, const float *dout, const int *tokens, int N, int C,
                             int V);
void cuda_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N,
                          int C, float eps);
void cuda_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                           const float *weight, const float *rstd, int N, int C);
void cuda_matmul_forward(float *out, const float *inp, const float *weight, int N, int C_in,
                         int C_out);
void cuda_matmul_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                          const float *weight, int N, int C_in, int C_out);
// 1 (the default): matmuls and attention multiply bf16 operands on the tensor cores with fp32
// accumulation (inputs and outputs stay fp32); 0: fp32 throughout (CPU-comparable).
void cuda_set_bf16(int on);
int cuda_bf16(void);
void cuda_rope_forward(float *x, const float *cos, const float *sin, int B, int T, int pos0, int H,
                       int head_dim);
void cuda_rope_backward(float *dx, const float *cos, const float *sin, int B, int T, int pos0,
                        int H, int head_dim);
void cuda_attention_forward(float *out, float *lse, const float *q, const float *k,
                            const float *v, const int *key_start, int B, int Tq, int Tk,
                            int q_pos0, int H, int head_dim, int causal);
void cuda_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *out,
                             const float *lse, const float *q, const float *k, const float *v,
                             int B, int T, int H, int head_dim, int causal);
// The tensor-core attention (attention_tc.cu) for head sizes 64 and 128 where the device's
// shared memory allows: 1 when it ran, 0 when the caller should take the fp32 kernels.
// D[B, H, T] = dout . out per row, as the backward's softmax term.
int cuda_attention_tc_forward(float *out, float *lse, const float *q, const float *k,
                              const float *v, const int *key_start, int B, int Tq, int Tk,
                              int q_pos0, int H, int head_dim, int causal);
int cuda_attention_tc_backward(float *dq, float *dk, float *dv, const float *dout, const float *D,
                               const float *lse, const float *q, const float *k, const float *v,
                               int B, int T, int H, int head_dim, int causal);
void cuda_swiglu_forward(float *out, const float *gate, const float *up, size_t n);
void cuda_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                          const float *up, size_t n);
void cuda_pick_tokens(int *tokens, float *confidence, const float *logits, int B,
                      int rows_per_seq, int first, int count, int V, float cfg, float temperature,
                      uint64_t seed, int banned);
void cuda_add(float *out, const float *a, const float *b, size_t n);
void cuda_cross_entropy_forward(float *losses, const float *logits, const int *targets, int N,
                                int V);
void cuda_cross_entropy_fused(float *losses, float *dlogits, const float *logits,
                              const int *targets, const float *weights, int N, int V);
double cuda_sum_squares(const float *x, size_t n);
void cuda_scale(float *x, size_t n, float s);
void cuda_adamw_update(float *params, const float *grads, float *m, float *v, size_t n, float lr,
                       float beta1, float beta2, float eps, float weight_decay, long t);

#ifdef __cplusplus
}
#endif

#endif

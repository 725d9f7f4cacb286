// The ops the model is built from, behind one interface with one implementation per device.
// The CPU backend (kernels/cpu/) is the fp32 reference and the truth every other backend
// is tested against. All pointers passed to ops are memory from the same backend's alloc.
//
// Layout conventions: activations are row-major [N, C] with N = B*T rows; attention
// q, k, v are [B, T, n_head * head_dim] (heads side by side in a row); weights are
// [C_out, C_in] so a linear layer is out = inp @ W^T.
//
// Gradient convention: every *_backward op ADDS into its gradient outputs (dinp, dweight, ...),
// so callers zero those buffers first. This lets residual branches and q/k/v projections
// sum their contributions without extra copies. rope_backward is the one in-place op.
#ifndef DLLM_BACKEND_H
#define DLLM_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

typedef struct {
    const char *name;

    // memory: alloc returns zeroed memory, or NULL when out of memory
    void *(*alloc)(size_t bytes);
    void (*free)(void *ptr);
    void (*zero)(void *ptr, size_t bytes);
    void (*to_device)(void *dst, const void *src, size_t bytes);
    void (*to_host)(void *dst, const void *src, size_t bytes);
    // `rows` rows of row_bytes each, a row every src_stride bytes of src to one every
    // dst_stride bytes of dst, in one transfer: device to device, and host to device
    void (*copy_rows)(void *dst, size_t dst_stride, const void *src, size_t src_stride,
                      size_t row_bytes, size_t rows);
    void (*to_device_rows)(void *dst, size_t dst_stride, const void *src, size_t src_stride,
                           size_t row_bytes, size_t rows);

    // out[N, C] = table[tokens[n], :]; dtable is [V, C]
    void (*embedding_forward)(float *out, const int *tokens, const float *table, int N, int C);
    void (*embedding_backward)(float *dtable, const float *dout, const int *tokens, int N, int C,
                               int V);

    // out = inp / rms(inp) * weight, one rms per row; rstd[N] saved for backward
    void (*rmsnorm_forward)(float *out, float *rstd, const float *inp, const float *weight, int N,
                            int C, float eps);
    void (*rmsnorm_backward)(float *dinp, float *dweight, const float *dout, const float *inp,
                             const float *weight, const float *rstd, int N, int C);

    // out[N, C_out] = inp[N, C_in] @ weight[C_out, C_in]^T
    void (*matmul_forward)(float *out, const float *inp, const float *weight, int N, int C_in,
                           int C_out);
    void (*matmul_backward)(float *dinp, float *dweight, const float *dout, const float *inp,
                            const float *weight, int N, int C_in, int C_out);

    // Rotary position embedding, in place, on x[B, T, H, head_dim] whose rows sit at positions
    // pos0 .. pos0 + T - 1; position p uses cos/sin[p, head_dim/2]. Backward rotates the
    // gradient back (also in place).
    void (*rope_forward)(float *x, const float *cos, const float *sin, int B, int T, int pos0,
                         int H, int head_dim);
    void (*rope_backward)(float *dx, const float *cos, const float *sin, int B, int T, int pos0,
                          int H, int head_dim);

    // Scaled dot-product attention of Tq queries (at positions q_pos0 ..) over Tk keys (at
    // positions 0 .. Tk - 1): q and out are [B, Tq, H * head_dim], k and v [B, Tk, H * head_dim],
    // lse [B, H, Tq] the log-sum-exp of each row's scaled scores (-inf for a row that sees no
    // key): all the backward needs to recompute the probabilities, so attention memory is O(T).
    // Training uses Tq = Tk, q_pos0 = 0; sampling with a KV cache asks for a few query rows
    // against the whole cached sequence.
    // causal = 1 masks keys after the query position (AR); 0 attends everywhere (MDM).
    // key_start[B] (or NULL: all 0) hides each sequence's keys before that position: the
    // left padding that lets prompts of different lengths share a batch. A query row with no
    // visible key gets zeros.
    void (*attention_forward)(float *out, float *lse, const float *q, const float *k,
                              const float *v, const int *key_start, int B, int Tq, int Tk,
                              int q_pos0, int H, int head_dim, int causal);
    // Backward of the square (training) case without key_start, from the forward's out and lse.
    void (*attention_backward)(float *dq, float *dk, float *dv, const float *dout,
                               const float *out, const float *lse, const float *q, const float *k,
                               const float *v, int B, int T, int H, int head_dim, int causal);

    // out = silu(gate) * up, elementwise over n values
    void (*swiglu_forward)(float *out, const float *gate, const float *up, size_t n);
    void (*swiglu_backward)(float *dgate, float *dup, const float *dout, const float *gate,
                            const float *up, size_t n);

    // out = a + b
    void (*add)(float *out, const float *a, const float *b, size_t n);

    // losses[n] = -log softmax(logits[n])[targets[n]]
    void (*cross_entropy_forward)(float *losses, const float *logits, const int *targets, int N,
                                  int V);
    // The training loss in one pass: losses as above, and dlogits[n] = weights[n] *
    // (softmax(logits[n]) - onehot(targets[n])), the gradient of sum_n weights[n] * losses[n]
    // (rows with weight 0 get zeros). dlogits is written, not added, so it may be logits
    // itself: the logits' gradient replaces them and no probabilities are stored.
    void (*cross_entropy_fused)(float *losses, float *dlogits, const float *logits,
                                const int *targets, const float *weights, int N, int V);

    // The sampler's per-position step, on the device so only a token and a confidence per
    // position come back, not a row of logits. Rows first .. first + count - 1 of each of the
    // B sequences of rows_per_seq logit rows: with cfg > 0 each row is first guided,
    // uncond + (cfg + 1) (cond - uncond), its unconditional twin B * rows_per_seq rows later.
    // Token `banned` ([MASK]) is excluded. tokens[b * count + i] = argmax of logits +
    // temperature * Gumbel noise (LLaDA's exp(l) / (-log u)^temperature, in log form; plain
    // argmax at 0, ties to the lower id), the noise drawn from (seed, (b * count + i) * V + v)
    // by kernels/noise.h; confidence = the token's softmax probability in the guided row.
    void (*pick_tokens)(int *tokens, float *confidence, const float *logits, int B,
                        int rows_per_seq, int first, int count, int V, float cfg,
                        float temperature, uint64_t seed, int banned);

    // optimizer
    double (*sum_squares)(const float *x, size_t n);
    void (*scale)(float *x, size_t n, float s);
    // one AdamW step with decoupled weight decay; t is the 1-based step for bias correction
    void (*adamw_update)(float *params, const float *grads, float *m, float *v, size_t n, float lr,
                         float beta1, float beta2, float eps, float weight_decay, long t);
} Backend;

extern const Backend backend_cpu;
extern const Backend backend_cuda;  // only in builds with CUDA (DLLM_CUDA)

// "cpu", "cuda" (built with CUDA and a device present), or "auto": cuda when it is available,
// else cpu. NULL and a message otherwise.
const Backend *backend_by_name(const char *name, Error *err);
// 1 when this build has the CUDA backend and a CUDA device is present.
int backend_cuda_available(void);

#endif

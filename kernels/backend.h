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
//
// Precision: parameters, their gradients, the optimizer state, per-row statistics (rstd, lse)
// and losses are fp32 (float *). Activations and their gradients (Act *) are stored in the
// backend's activation type, act_bytes per element: fp32 on the CPU and in backend_cuda_fp32,
// bf16 in backend_cuda. Every op computes in fp32; act_to_host / act_to_device convert.
// Weights are fp32 too, except in the bf16-weight twins (backend_bf16_weights): there the
// `const float *weight` / `table` / `bias` arguments point at bf16 values (weight_bytes 2), the
// weights as a bf16 checkpoint stores them: an inference model's, or a frozen base under LoRA
// adapters. The twins compute no weight gradients: matmul_backward and rmsnorm_backward give
// the input gradient alone (dweight NULL), the other weight-gradient and optimizer ops are NULL.
#ifndef DLLM_BACKEND_H
#define DLLM_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef void Act;  // an activation buffer, in the backend's activation type

enum { SUM_SQUARES_CHUNK = 4096 };  // see sum_squares_chunks

typedef struct {
    const char *name;
    size_t act_bytes;     // bytes per activation element: 4 (fp32) or 2 (bf16)
    size_t weight_bytes;  // bytes per weight: 4 (fp32), or 2 in a bf16-weight twin

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
    // n activations to or from host floats
    void (*act_to_host)(float *dst, const Act *src, size_t n);
    void (*act_to_device)(Act *dst, const float *src, size_t n);
    // The first device failure (a CUDA call or launch that failed) since the last call, as
    // "<what>: <message>" in err, and -1; 0 when there was none. Ops do not return errors: a
    // failed one records it and later ones compute nothing useful, so callers check at their
    // sync points (after a training step, a generation, an evaluation) and the CLI decides.
    // The CPU backend never fails.
    int (*device_error)(Error *err);

    // out[N, C] = table[tokens[n], :]; dtable is [V, C]
    void (*embedding_forward)(Act *out, const int *tokens, const float *table, int N, int C);
    void (*embedding_backward)(float *dtable, const Act *dout, const int *tokens, int N, int C,
                               int V);

    // out = inp / rms(inp) * weight, one rms per row; rstd[N] saved for backward
    void (*rmsnorm_forward)(Act *out, float *rstd, const Act *inp, const float *weight, int N,
                            int C, float eps);
    void (*rmsnorm_backward)(Act *dinp, float *dweight, const Act *dout, const Act *inp,
                             const float *weight, const float *rstd, int N, int C);

    // out[N, C_out] = inp[N, C_in] @ weight[C_out, C_in]^T
    void (*matmul_forward)(Act *out, const Act *inp, const float *weight, int N, int C_in,
                           int C_out);
    // dweight NULL (here and in rmsnorm_backward): the input gradient alone, for frozen weights
    void (*matmul_backward)(Act *dinp, float *dweight, const Act *dout, const Act *inp,
                            const float *weight, int N, int C_in, int C_out);

    // x[n, :] += bias, for each of the N rows of x[N, C] (the q/k/v biases)
    void (*bias_forward)(Act *x, const float *bias, int N, int C);
    // dbias[c] += sum over the rows n of dout[n, c]
    void (*bias_backward)(float *dbias, const Act *dout, int N, int C);

    // Rotary position embedding, in place, on x[B, T, H, head_dim] whose rows sit at positions
    // pos0 .. pos0 + T - 1: the first rot values of each head (rot = head_dim, or fewer: a
    // partial rotary) as pairs (i, i + rot/2), position p using cos/sin[p, rot/2]; the rest
    // untouched. Backward rotates the gradient back (also in place).
    void (*rope_forward)(Act *x, const float *cos, const float *sin, int B, int T, int pos0,
                         int H, int head_dim, int rot);
    void (*rope_backward)(Act *dx, const float *cos, const float *sin, int B, int T, int pos0,
                          int H, int head_dim, int rot);

    // Scaled dot-product attention of Tq queries (at positions q_pos0 ..) over Tk keys (at
    // positions 0 .. Tk - 1): q and out are [B, Tq, H * head_dim], k and v [B, Tk, Hkv *
    // head_dim] (grouped-query attention: query head h reads key/value head h / (H / Hkv);
    // Hkv = H is plain multi-head attention, and the KV cache holds only Hkv heads), lse [B, H, Tq] the log-sum-exp of each row's scaled scores (-inf for a row that sees no
    // key): all the backward needs to recompute the probabilities, so attention memory is O(T).
    // Training uses Tq = Tk, q_pos0 = 0; sampling with a KV cache asks for a few query rows
    // against the whole cached sequence.
    // mask (kernels/attn_mask.h) says which keys a query sees: ATTN_FULL everywhere (MDM),
    // ATTN_CAUSAL up to its position (AR), attn_block(L) block-causal (block diffusion's
    // sampler), attn_bd3(L) BD3-LM's training layout of [clean | noisy] copies.
    // key_start[B] (or NULL: all 0) hides each sequence's keys before that position: the
    // left padding that lets prompts of different lengths share a batch. A query row with no
    // visible key gets zeros.
    void (*attention_forward)(Act *out, float *lse, const Act *q, const Act *k, const Act *v,
                              const int *key_start, int B, int Tq, int Tk, int q_pos0, int H,
                              int Hkv, int head_dim, int mask);
    // Backward of the square (training) case without key_start, from the forward's out and lse.
    void (*attention_backward)(Act *dq, Act *dk, Act *dv, const Act *dout, const Act *out,
                               const float *lse, const Act *q, const Act *k, const Act *v, int B,
                               int T, int H, int Hkv, int head_dim, int mask);

    // out = silu(gate) * up, elementwise over n values
    void (*swiglu_forward)(Act *out, const Act *gate, const Act *up, size_t n);
    void (*swiglu_backward)(Act *dgate, Act *dup, const Act *dout, const Act *gate, const Act *up,
                            size_t n);

    // Mixture of experts (model/moe.h; the routers in model/config.h, the math of one row in
    // kernels/moe_route.h). Routing N rows of router logits [N, E]: pick[N * k] each row's k
    // experts (best first), weight[N * k] their weights, probs[N * E] (fp32) the softmax
    // probabilities or sigmoid scores they came from (the backward reads them). bias[E] (fp32;
    // NULL: none) shifts what the picks compare.
    void (*moe_route)(int *pick, float *weight, float *probs, const Act *logits,
                      const float *bias, int N, int E, int k, int router, int n_groups,
                      int topk_groups, float routed_scale);
    // dlogits[N, E] (written) from the weights' gradient dweight[N * k] and aux[E] (NULL:
    // none), a gradient on every row's probabilities (the load-balancing loss).
    void (*moe_route_backward)(Act *dlogits, const float *dweight, const int *pick,
                               const float *probs, const float *aux, int N, int E, int k,
                               int router, float routed_scale);
    // dst[i, :] = src[rows[i], :] for the n rows of C values: token rows into expert order
    void (*gather_rows)(Act *dst, const Act *src, const int *rows, int n, int C);
    // out[t, :] += sum over j < k of weight[t k + j] * ys[slot[t k + j], :] (weight NULL: 1),
    // j in order: each token's expert outputs (ys, in expert order) back into token order
    void (*moe_combine)(Act *out, const Act *ys, const int *slot, const float *weight, int N,
                        int k, int C);
    // Its backward: dys[slot[s], :] = weight[s] dout[t, :] and dweight[s] = dout[t, :] .
    // ys[slot[s], :], both written (every ys row is one slot's), s = t k + j.
    void (*moe_combine_backward)(Act *dys, float *dweight, const Act *dout, const Act *ys,
                                 const int *slot, const float *weight, int N, int k, int C);

    // out = a + b
    void (*add)(Act *out, const Act *a, const Act *b, size_t n);
    // out += s * x (a LoRA branch joining its projection)
    void (*add_scaled)(Act *out, const Act *x, float s, size_t n);
    // classifier-free guidance in place: cond = uncond + w (cond - uncond)
    void (*guide)(Act *cond, const Act *uncond, float w, size_t n);

    // losses[n] = -log softmax(logits[n])[targets[n]]
    void (*cross_entropy_forward)(float *losses, const Act *logits, const int *targets, int N,
                                  int V);
    // The training loss in one pass: losses as above, and dlogits[n] = weights[n] *
    // (softmax(logits[n]) - onehot(targets[n])), the gradient of sum_n weights[n] * losses[n]
    // (rows with weight 0 get zeros). dlogits is written, not added, so it may be logits
    // itself: the logits' gradient replaces them and no probabilities are stored.
    void (*cross_entropy_fused)(float *losses, Act *dlogits, const Act *logits,
                                const int *targets, const float *weights, int N, int V);

    // The sampler's per-position step, on the device so only a token and a confidence per
    // position come back, not a row of logits. Rows first .. first + count - 1 of each of the
    // B sequences of rows_per_seq logit rows: with cfg > 0 each row is first guided,
    // uncond + (cfg + 1) (cond - uncond), its unconditional twin B * rows_per_seq rows later.
    // Token `banned` ([MASK]; -1: none) is excluded. tokens[b * count + i] = argmax of logits +
    // temperature * Gumbel noise (LLaDA's exp(l) / (-log u)^temperature, in log form, in
    // double; plain argmax at 0, ties to the lower id), the noise drawn from
    // (seed, (b * count + i) * V + v) by kernels/noise.h; confidence = the token's softmax
    // probability in the guided row over the tokens not banned, in double as LLaDA's float64.
    void (*pick_tokens)(int *tokens, double *confidence, const Act *logits, int B,
                        int rows_per_seq, int first, int count, int V, float cfg,
                        float temperature, uint64_t seed, int banned);

    // Inference over weights in panels (CPU only, fp32 or bf16 weights; NULL on the other
    // tables): each block of 16 output rows of a [C_out, C_in] matrix (the last may have fewer)
    // stored transposed in its own place (kernels/cpu/matmul_panels.c), converted in place and
    // back (to_panels 0), and matmul_forward over it (the same bits as over the rows).
    void (*panels_convert)(float *w, int C_out, int C_in, int to_panels);
    void (*matmul_forward_panels)(Act *out, const Act *inp, const float *panels, int N,
                                  int C_in, int C_out);

    // BitNet b1.58 quantisers (ModelConfig.ternary). dst[i] = s * clamp(rint(src[i] / s), -1, 1)
    // with s = max(mean |src|, 1e-5) over the n values (one weight matrix), the mean summed in a
    // fixed order; and per row of x [N, C]: out = clamp(rint(x * q), -128, 127) / q with
    // q = 127 / max(max |x|, 1e-5) (rint: ties to even, as torch.round)
    void (*ternarize)(float *dst, const float *src, size_t n);
    void (*quantize_rows)(Act *out, const Act *x, int N, int C);
    // Inference over packed ternary weights (kernels/ternary.h; CPU only, NULL on the other
    // tables): rows of x [N, C] to int8 (rows ternary_padded(C) apart; q[N] host floats, the rows'
    // multipliers), and out [N, C_out] = those rows times the packed matrix w of scale s, summed
    // in integers: quantize_rows then matmul_forward with ternarize's weights, up to rounding.
    void (*quantize_rows_int8)(int8_t *out, float *q, const Act *x, int N, int C);
    void (*matmul_ternary)(Act *out, const int8_t *xq, const float *q, const uint8_t *w, float s,
                           int N, int C_in, int C_out);

    // Inference over block-quantised weights (kernels/qblocks.h; CPU only, NULL on the other
    // tables): rows of x [N, C] quantised to 8 bits per block of 32 (xq: N rows of
    // qb_row_bytes(C), the codes and their sums; dx [N, C / 32] host floats, the blocks'
    // scales), out [N, C_out] = those rows times the matrix w of `bits` (8 or 4) weights
    // (qb_matrix_bytes) in integer block sums, and the embedding's rows `tokens` decoded from a
    // table in the same layout.
    void (*quantize_rows_q8)(uint8_t *xq, float *dx, const Act *x, int N, int C);
    void (*matmul_qb)(Act *out, const uint8_t *xq, const float *dx, const uint8_t *w, int bits,
                      int N, int C_in, int C_out);
    void (*embedding_qb)(Act *out, const int *tokens, const uint8_t *table, int bits, int N,
                         int C);

    // optimizer
    double (*sum_squares)(const float *x, size_t n);
    // partials[c] (host memory): the sum of squares of chunk c of x, SUM_SQUARES_CHUNK values
    // (the last chunk shorter). On the CPU sum_squares is these partials added in order, so a
    // rank owning whole chunks of a gradient contributes its partials and the job's norm has
    // the bits of one process's.
    void (*sum_squares_chunks)(double *partials, const float *x, size_t n);
    void (*scale)(float *x, size_t n, float s);
    // dst[i] += src[i]: the gradients of micro-batches, and of ranks, summed one after another
    // in a fixed order (a step's gradient does not depend on how its rows were split)
    void (*accumulate)(float *dst, const float *src, size_t n);
    // one AdamW step with decoupled weight decay; t is the 1-based step for bias correction
    void (*adamw_update)(float *params, const float *grads, float *m, float *v, size_t n, float lr,
                         float beta1, float beta2, float eps, float weight_decay, long t);
} Backend;

extern const Backend backend_cpu;
const Backend *backend_cpu_bf16_weights(void);
// The same with bf16 inputs to the projections (their panels in pairs, vdpbf16ps's arithmetic:
// kernels/cpu/matmul_bf16_pairs.c); C_in of every projection even.
const Backend *backend_cpu_bf16_pairs(void);
// only in builds with CUDA (DLLM_CUDA): bf16 activations (--device cuda), and fp32 ones
// (--device cuda-fp32: the CPU's numbers up to summation order, for checking and debugging)
extern const Backend backend_cuda;
extern const Backend backend_cuda_fp32;
const Backend *cuda_backend_bf16_weights(void);  // backend_cuda's bf16-weight twin

// "cpu", "cuda" / "cuda-fp32" (built with CUDA and a device present), or "auto": cuda when
// it is available, else cpu. NULL and a message otherwise.
const Backend *backend_by_name(const char *name, Error *err);
// The same for a memory plan, which reads only a table's element sizes: a CUDA table even
// where no device is present (in a build with CUDA).
const Backend *backend_for_plan(const char *name, Error *err);
// Turns table b into a bf16-weight twin: weight_bytes 2, and no weight-gradient or optimizer
// ops (NULL). The caller then sets the ops that read weights: the four forward ones, and the
// input-gradient matmul_backward and rmsnorm_backward.
void backend_make_bf16_weights(Backend *b);
// The twin of be that keeps weights in bf16 (no weight gradients), or NULL when be has none
// (cuda-fp32: fp32 activations are for checking, with fp32 weights).
const Backend *backend_bf16_weights(const Backend *be);
// The reverse: the fp32-weight table with be's activations (be itself when its weights are
// fp32): what LoRA adapters, fp32 and trained, run on beside a bf16 base.
const Backend *backend_fp32_weights(const Backend *be);
// 1 when this build has the CUDA backend and a CUDA device is present.
int backend_cuda_available(void);

#ifdef __cplusplus
}
#endif

#endif

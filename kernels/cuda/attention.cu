// Attention, flash style: no [T, T] matrix ever reaches memory. The forward walks the keys in
// tiles held in shared memory with an online softmax (a running max and sum per query row)
// and keeps only each row's log-sum-exp; the backward recomputes the probabilities tile by
// tile from q, k and that log-sum-exp. One thread owns one query row (one key row in the
// dk/dv pass) with its accumulators in registers, so every sum runs in a fixed order:
// deterministic, no atomics. Grouped-query attention: query head h reads key/value head
// h / (H / Hkv); the dk/dv pass gives a block one key/value head and walks every query head of
// its group in order. The arithmetic is fp32 on the CUDA cores, the twin of
// kernels/cpu/attention.c, on activations of type A (float or bf16); with bf16 activations
// head sizes 64 and 128 go to the tensor-core kernels of attention_tc.cu instead.
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>

#include "kernels/attn_mask.h"
#include "kernels/cuda/act.cuh"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/cuda_ops.h"

#define TILE 64  // query (or key) rows per block, and rows per shared-memory tile

// Rows j0 .. j0 + TILE - 1 of one head of x into dst[TILE, hd] (zeros past T), the whole
// block cooperating; consecutive threads read consecutive floats of a row.
template <typename A>
__device__ void load_tile(float *dst, const A *x, int b, int h, int j0, int T, int H, int hd) {
    for (int idx = threadIdx.x; idx < TILE * hd; idx += blockDim.x) {
        int j = j0 + idx / hd, i = idx % hd;
        dst[idx] = j < T ? to_float(x[head_offset(b, j, h, T, H, hd) + i]) : 0.0f;
    }
}

// Row r of x's head h (zeros past hd and for inactive rows) into registers, times s.
template <int HDM, typename A>
__device__ void load_row(float *reg, const A *x, size_t offset, int hd, bool active, float s) {
#pragma unroll
    for (int i = 0; i < HDM; i++) reg[i] = active && i < hd ? to_float(x[offset + i]) * s : 0.0f;
}

template <int HDM>
__device__ float dot_row(const float *reg, const float *row, int hd) {
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < HDM; i++)
        if (i < hd) s += reg[i] * row[i];
    return s;
}

// grid (ceil(Tq / TILE), H, B), TILE threads, shared keys and values [2, TILE, hd]
template <int HDM, typename A>
__global__ void __launch_bounds__(TILE)
    flash_forward_kernel(A *out, float *lse, const A *q, const A *k, const A *v,
                         const int *key_start, int Tq, int Tk, int q_pos0, int H, int Hkv,
                         int hd, int mask) {
    extern __shared__ float smem[];
    float *sk = smem, *sv = smem + TILE * hd;
    int b = blockIdx.z, h = blockIdx.y, t = blockIdx.x * TILE + threadIdx.x;
    int g = h / (H / Hkv);  // the key/value head
    bool active = t < Tq;
    size_t row = head_offset(b, active ? t : 0, h, Tq, H, hd);
    float qr[HDM], acc[HDM];
    load_row<HDM>(qr, q, row, hd, active, rsqrtf((float)hd));
#pragma unroll
    for (int i = 0; i < HDM; i++) acc[i] = 0.0f;
    int first = key_start ? key_start[b] : 0;
    int end0, start1, end1;  // the keys this row sees: [first, end0) and [start1, end1)
    attn_keys(mask, q_pos0 + t, Tk, &end0, &start1, &end1);
    // the block's last row sees the furthest key of any of its rows
    int last = q_pos0 + min((int)blockIdx.x * TILE + TILE, Tq) - 1;
    int block_end = attn_keys_end(mask, last, Tk);
    float m = -INFINITY, l = 0.0f;
    for (int j0 = first - first % TILE; j0 < block_end; j0 += TILE) {
        __syncthreads();  // every thread is done with the previous tile
        load_tile(sk, k, b, g, j0, Tk, Hkv, hd);
        load_tile(sv, v, b, g, j0, Tk, Hkv, hd);
        __syncthreads();
        if (!active) continue;  // still takes part in the loads and barriers
        for (int jj = max(first - j0, 0); jj < TILE; jj++) {
            int j = j0 + jj;
            if (!attn_in_ranges(j, end0, start1, end1)) continue;
            float s = dot_row<HDM>(qr, sk + jj * hd, hd);
            if (s > m) {  // a new running max: rescale what was summed so far
                float c = expf(m - s);
                l *= c;
#pragma unroll
                for (int i = 0; i < HDM; i++) acc[i] *= c;
                m = s;
            }
            float p = expf(s - m);
            l += p;
            const float *vj = sv + jj * hd;
#pragma unroll
            for (int i = 0; i < HDM; i++)
                if (i < hd) acc[i] += p * vj[i];
        }
    }
    if (!active) return;
    float inv = l > 0.0f ? 1.0f / l : 0.0f;  // a row that sees no key gets zeros
#pragma unroll
    for (int i = 0; i < HDM; i++)
        if (i < hd) out[row + i] = from_float<A>(acc[i] * inv);
    lse[((size_t)b * H + h) * Tq + t] = l > 0.0f ? m + logf(l) : -INFINITY;
}

// D[b, h, t] = dout . out of the row: the softmax backward's row term.
template <typename A>
__global__ void attention_row_dot_kernel(float *D, const A *dout, const A *out, int B, int T,
                                         int H, int hd) {
    size_t r = (size_t)blockIdx.x * blockDim.x + threadIdx.x;  // row of [B, T, H]
    if (r >= (size_t)B * T * H) return;
    int h = r % H, t = (r / H) % T, b = r / ((size_t)H * T);
    float s = 0.0f;
    for (int i = 0; i < hd; i++) s += to_float(dout[r * hd + i]) * to_float(out[r * hd + i]);
    D[((size_t)b * H + h) * T + t] = s;
}

// dq of one query row per thread: dq += scale * sum_j P_j (dout . v_j - D) k_j.
template <int HDM, typename A>
__global__ void __launch_bounds__(TILE)
    flash_backward_dq_kernel(A *dq, const A *dout, const float *D, const float *lse, const A *q,
                             const A *k, const A *v, int T, int H, int Hkv, int hd, int mask) {
    extern __shared__ float smem[];
    float *sk = smem, *sv = smem + TILE * hd;
    int b = blockIdx.z, h = blockIdx.y, t = blockIdx.x * TILE + threadIdx.x;
    int g = h / (H / Hkv);
    size_t stat = ((size_t)b * H + h) * T + t;
    float row_lse = t < T ? lse[stat] : -INFINITY;
    bool live = row_lse != -INFINITY;  // rows that saw no key pass no gradient
    size_t row = head_offset(b, live ? t : 0, h, T, H, hd);
    float scale = rsqrtf((float)hd), qr[HDM], dor[HDM], acc[HDM];
    load_row<HDM>(qr, q, row, hd, live, scale);
    load_row<HDM>(dor, dout, row, hd, live, 1.0f);
#pragma unroll
    for (int i = 0; i < HDM; i++) acc[i] = 0.0f;
    float row_D = live ? D[stat] : 0.0f;
    int end0, start1, end1;
    attn_keys(mask, t, T, &end0, &start1, &end1);
    int block_end = attn_keys_end(mask, min((int)blockIdx.x * TILE + TILE, T) - 1, T);
    for (int j0 = 0; j0 < block_end; j0 += TILE) {
        __syncthreads();
        load_tile(sk, k, b, g, j0, T, Hkv, hd);
        load_tile(sv, v, b, g, j0, T, Hkv, hd);
        __syncthreads();
        if (!live) continue;
        for (int jj = 0; jj < TILE; jj++) {
            int j = j0 + jj;
            if (!attn_in_ranges(j, end0, start1, end1)) continue;
            const float *kj = sk + jj * hd;
            float p = expf(dot_row<HDM>(qr, kj, hd) - row_lse);
            float ds = p * (dot_row<HDM>(dor, sv + jj * hd, hd) - row_D);
#pragma unroll
            for (int i = 0; i < HDM; i++)
                if (i < hd) acc[i] += ds * kj[i];
        }
    }
    if (!live) return;
#pragma unroll
    for (int i = 0; i < HDM; i++)
        if (i < hd) dq[row + i] = from_float<A>(to_float(dq[row + i]) + scale * acc[i]);
}

// dk and dv of one key row per thread, walking the query rows that see it in tiles:
// dv += sum_t P_t dout_t, dk += scale * sum_t P_t (dout_t . v - D_t) q_t.
// Shared: query and dout tiles [2, TILE, hd], their lse and D [2, TILE], and each thread's
// own key and value rows [2, TILE, hd + 1] (padded: threads read their own rows without
// bank conflicts).
template <int HDM, typename A>
__global__ void __launch_bounds__(TILE)
    flash_backward_dkv_kernel(A *dk, A *dv, const A *dout, const float *D, const float *lse,
                              const A *q, const A *k, const A *v, int T, int H, int Hkv,
                              int hd, int mask) {
    extern __shared__ float smem[];
    float *sq = smem, *sdo = sq + TILE * hd, *slse = sdo + TILE * hd, *sD = slse + TILE;
    float *own_k = sD + TILE + threadIdx.x * (hd + 1), *own_v = own_k + TILE * (hd + 1);
    int b = blockIdx.z, g = blockIdx.y, j = blockIdx.x * TILE + threadIdx.x, group = H / Hkv;
    bool active = j < T;
    size_t row = head_offset(b, active ? j : 0, g, T, Hkv, hd);
    for (int i = 0; i < hd; i++) {
        own_k[i] = active ? to_float(k[row + i]) : 0.0f;
        own_v[i] = active ? to_float(v[row + i]) : 0.0f;
    }
    float scale = rsqrtf((float)hd), dka[HDM], dva[HDM];
#pragma unroll
    for (int i = 0; i < HDM; i++) dka[i] = dva[i] = 0.0f;
    for (int h = g * group; h < (g + 1) * group; h++) {  // the group's query heads, in order
        size_t stats = ((size_t)b * H + h) * T;
        // queries before the first one that sees the block's first key see none of its keys
        int q_first = attn_first_query(mask, (int)blockIdx.x * TILE, T) / TILE * TILE;
        for (int t0 = q_first; t0 < T; t0 += TILE) {
            __syncthreads();
            load_tile(sq, q, b, h, t0, T, H, hd);
            load_tile(sdo, dout, b, h, t0, T, H, hd);
            for (int i = threadIdx.x; i < TILE; i += blockDim.x) {
                slse[i] = t0 + i < T ? lse[stats + t0 + i] : -INFINITY;
                sD[i] = t0 + i < T ? D[stats + t0 + i] : 0.0f;
            }
            __syncthreads();
            if (!active) continue;
            for (int tt = 0; tt < min(T - t0, TILE); tt++) {
                if (slse[tt] == -INFINITY || !attn_sees(mask, t0 + tt, j, T)) continue;
                const float *qt = sq + tt * hd, *dot = sdo + tt * hd;
                float s = 0.0f, dp = 0.0f;
                for (int i = 0; i < hd; i++) {
                    s += qt[i] * own_k[i];
                    dp += dot[i] * own_v[i];
                }
                float p = expf(s * scale - slse[tt]);
                float ds = p * (dp - sD[tt]);
#pragma unroll
                for (int i = 0; i < HDM; i++)
                    if (i < hd) {
                        dva[i] += p * dot[i];
                        dka[i] += ds * qt[i];
                    }
            }
        }
    }
    if (!active) return;
#pragma unroll
    for (int i = 0; i < HDM; i++)
        if (i < hd) {
            dk[row + i] = from_float<A>(to_float(dk[row + i]) + scale * dka[i]);
            dv[row + i] = from_float<A>(to_float(dv[row + i]) + dva[i]);
        }
}

// Launches kernel with `shared` bytes of dynamic shared memory, above the 48 KiB default
// when a large head needs it.
template <typename Kernel, typename... Args>
static void launch(Kernel kernel, dim3 grid, size_t shared, Args... args) {
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)shared));
    kernel<<<grid, TILE, shared>>>(args...);
    CUDA_CHECK_LAUNCH();
}

template <int HDM, typename A>
static void forward(void *out, float *lse, const void *q, const void *k, const void *v,
                    const int *key_start, int B, int Tq, int Tk, int q_pos0, int H, int Hkv,
                    int hd, int mask) {
    dim3 grid((Tq + TILE - 1) / TILE, H, B);
    launch(flash_forward_kernel<HDM, A>, grid, 2 * TILE * hd * sizeof(float), (A *)out, lse,
           (const A *)q, (const A *)k, (const A *)v, key_start, Tq, Tk, q_pos0, H, Hkv, hd,
           mask);
}

template <int HDM, typename A>
static void backward(void *dq, void *dk, void *dv, const void *dout, const float *D,
                     const float *lse, const void *q, const void *k, const void *v, int B, int T,
                     int H, int Hkv, int hd, int mask) {
    dim3 grid((T + TILE - 1) / TILE, H, B), kv_grid((T + TILE - 1) / TILE, Hkv, B);
    launch(flash_backward_dq_kernel<HDM, A>, grid, 2 * TILE * hd * sizeof(float), (A *)dq,
           (const A *)dout, D, lse, (const A *)q, (const A *)k, (const A *)v, T, H, Hkv, hd,
           mask);
    size_t dkv_shared = (2 * TILE * hd + 2 * TILE + 2 * TILE * (hd + 1)) * sizeof(float);
    launch(flash_backward_dkv_kernel<HDM, A>, kv_grid, dkv_shared, (A *)dk, (A *)dv,
           (const A *)dout, D, lse, (const A *)q, (const A *)k, (const A *)v, T, H, Hkv, hd,
           mask);
}

// bf16 activations try the tensor-core kernels first
template <typename A>
static int tensor_core_forward(void *out, float *lse, const void *q, const void *k,
                               const void *v, const int *key_start, int B, int Tq, int Tk,
                               int q_pos0, int H, int Hkv, int head_dim, int mask) {
    return sizeof(A) == sizeof(bf16) &&
           cuda_attention_tc_forward(out, lse, q, k, v, key_start, B, Tq, Tk, q_pos0, H, Hkv,
                                     head_dim, mask);
}

// The kernels hold a query row in registers of at most 128 values: a larger head is refused
// (recorded as a device error), never computed over its first 128 dimensions.
static int head_too_large(int head_dim, const char *what) {
    if (head_dim <= 128) return 0;
    static char message[96];
    snprintf(message, sizeof message, "head size %d is above the 128 the kernels implement",
             head_dim);
    cuda_fail(message, what, __FILE__, __LINE__);
    return 1;
}

template <typename A>
void cuda_attention_forward(void *out, float *lse, const void *q, const void *k, const void *v,
                            const int *key_start, int B, int Tq, int Tk, int q_pos0, int H,
                            int Hkv, int head_dim, int mask) {
    if (head_too_large(head_dim, "attention forward")) return;
    if (tensor_core_forward<A>(out, lse, q, k, v, key_start, B, Tq, Tk, q_pos0, H, Hkv, head_dim,
                               mask))
        return;
    if (head_dim <= 32)
        forward<32, A>(out, lse, q, k, v, key_start, B, Tq, Tk, q_pos0, H, Hkv, head_dim, mask);
    else if (head_dim <= 64)
        forward<64, A>(out, lse, q, k, v, key_start, B, Tq, Tk, q_pos0, H, Hkv, head_dim, mask);
    else
        forward<128, A>(out, lse, q, k, v, key_start, B, Tq, Tk, q_pos0, H, Hkv, head_dim,
                         mask);
}

template <typename A>
void cuda_attention_backward(void *dq, void *dk, void *dv, const void *dout, const void *out,
                             const float *lse, const void *q, const void *k, const void *v, int B,
                             int T, int H, int Hkv, int head_dim, int mask) {
    if (head_too_large(head_dim, "attention backward")) return;
    float *D = (float *)cuda_scratch((size_t)B * H * T * sizeof(float));
    size_t rows = (size_t)B * T * H;
    attention_row_dot_kernel<A><<<blocks_for(rows, 256), 256>>>(D, (const A *)dout, (const A *)out,
                                                                B, T, H, head_dim);
    CUDA_CHECK_LAUNCH();
    if (sizeof(A) == sizeof(bf16) &&
        cuda_attention_tc_backward(dq, dk, dv, dout, D, lse, q, k, v, B, T, H, Hkv, head_dim,
                                   mask))
        return;
    if (head_dim <= 32)
        backward<32, A>(dq, dk, dv, dout, D, lse, q, k, v, B, T, H, Hkv, head_dim, mask);
    else if (head_dim <= 64)
        backward<64, A>(dq, dk, dv, dout, D, lse, q, k, v, B, T, H, Hkv, head_dim, mask);
    else
        backward<128, A>(dq, dk, dv, dout, D, lse, q, k, v, B, T, H, Hkv, head_dim, mask);
}

template void cuda_attention_forward<float>(void *, float *, const void *, const void *,
                                            const void *, const int *, int, int, int, int, int,
                                            int, int, int);
template void cuda_attention_forward<bf16>(void *, float *, const void *, const void *,
                                           const void *, const int *, int, int, int, int, int,
                                           int, int, int);
template void cuda_attention_backward<float>(void *, void *, void *, const void *, const void *,
                                             const float *, const void *, const void *,
                                             const void *, int, int, int, int, int, int);
template void cuda_attention_backward<bf16>(void *, void *, void *, const void *, const void *,
                                            const float *, const void *, const void *,
                                            const void *, int, int, int, int, int, int);

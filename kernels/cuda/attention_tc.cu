// Flash attention on the tensor cores (bf16 operands, fp32 accumulation and softmax), the
// path cuda_attention_* take with bf16 activations for head sizes 64 and 128. Same contract
// as the CUDA-core kernels in attention.cu: out and each row's log-sum-exp forward, the
// gradients from those in the backward, nothing of size T x T in memory.
//
// A block is 4 warps that own 16 rows each of a 64-row tile (queries in the forward and the
// dq pass, keys in the dk/dv pass) and walk the other side in tiles of 64. Every product
// (S = Q K^T, O += P V, dP = dO V^T, dq += dS K, dk += dS^T Q, dv += P^T dO) is a
// 16x16x16 wmma over tiles staged in shared memory as bf16; the softmax and the elementwise
// steps run in fp32 on the tile the warp just stored, one row at a time across the warp's 32
// lanes (two columns each: consecutive lanes read consecutive words, no bank conflicts), row
// sums by warp shuffles. q is rounded to bf16 already scaled by 1/sqrt(head_dim). Sums run in
// a fixed order: deterministic. Grouped-query attention as in attention.cu: query head h
// reads key/value head h / (H / Hkv), and a dk/dv block walks its group's query heads in order.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <mma.h>

#include "kernels/attn_mask.h"
#include "kernels/cuda/act.cuh"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/reduce.cuh"

using namespace nvcuda;

#define TILE 64  // rows of a block's own tile, and of each tile it walks
#define WARPS 4  // 16 own rows each
#define THREADS (WARPS * 32)

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> FragA;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> FragB;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> FragBt;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> FragC;

// Rows r0 .. r0 + TILE - 1 of one head of x, times s, into dst[TILE, HD] (zeros past T); the
// whole block cooperates.
template <int HD>
__device__ void stage_rows(bf16 *dst, const bf16 *x, int b, int h, int r0, int T, int H, float s) {
    for (int idx = threadIdx.x; idx < TILE * HD; idx += blockDim.x) {
        int r = r0 + idx / HD, i = idx % HD;
        float value = r < T ? __bfloat162float(x[head_offset(b, r, h, T, H, HD) + i]) * s : 0.0f;
        dst[idx] = __float2bfloat16(value);
    }
}

// dst[i] += v, a bf16 activation gradient
__device__ inline void add_to(bf16 *dst, float v) {
    *dst = __float2bfloat16(__bfloat162float(*dst) + v);
}

// Per-row floats (lse, D) of rows r0 .. r0 + TILE - 1 into dst (fill past T).
__device__ void stage_stats(float *dst, const float *stats, int r0, int T, float fill) {
    for (int i = threadIdx.x; i < TILE; i += blockDim.x) dst[i] = r0 + i < T ? stats[r0 + i] : fill;
}

// out[16, 64] (float, ld TILE) = a[16, HD] (row-major, ld HD) times the transpose of
// b[64, HD] (row-major, ld HD): the 16 rows' dot products with the tile's 64 rows.
template <int HD>
__device__ void warp_row_dots(float *out, const bf16 *a, const bf16 *b) {
    for (int n = 0; n < TILE / 16; n++) {
        FragC acc;
        wmma::fill_fragment(acc, 0.0f);
        for (int k = 0; k < HD / 16; k++) {
            FragA fa;
            FragBt fb;  // column-major reading of b's rows is b transposed
            wmma::load_matrix_sync(fa, a + k * 16, HD);
            wmma::load_matrix_sync(fb, b + n * 16 * HD + k * 16, HD);
            wmma::mma_sync(acc, fa, fb, acc);
        }
        wmma::store_matrix_sync(out + n * 16, acc, TILE, wmma::mem_row_major);
    }
}

// acc[16, HD] (float, ld HD) += a[16, 64] (row-major, ld TILE) times b[64, HD] (row-major).
template <int HD>
__device__ void warp_accumulate(float *acc, const bf16 *a, const bf16 *b) {
    for (int d = 0; d < HD / 16; d++) {
        FragC c;
        wmma::load_matrix_sync(c, acc + d * 16, HD, wmma::mem_row_major);
        for (int k = 0; k < TILE / 16; k++) {
            FragA fa;
            FragB fb;
            wmma::load_matrix_sync(fa, a + k * 16, TILE);
            wmma::load_matrix_sync(fb, b + k * 16 * HD + d * 16, HD);
            wmma::mma_sync(c, fa, fb, c);
        }
        wmma::store_matrix_sync(acc + d * 16, c, HD, wmma::mem_row_major);
    }
}

// Shared-memory carving: bf16 tiles and float tiles, each 128-byte aligned.
struct Carver {
    unsigned char *p;
    template <typename X>
    __device__ X *take(size_t n) {
        X *out = (X *)p;
        p += (n * sizeof(X) + 127) / 128 * 128;
        return out;
    }
};

template <int HD>
static size_t forward_shared_bytes(void) {
    size_t b = 0;
    b += 3 * ((TILE * HD * sizeof(bf16) + 127) / 128 * 128);  // q, k, v
    b += TILE * TILE * sizeof(float);                         // scores
    b += TILE * TILE * sizeof(bf16);                          // probabilities
    b += TILE * HD * sizeof(float);                           // output accumulator
    return b;
}

// grid (ceil(Tq / TILE), H, B), THREADS threads
template <int HD>
__global__ void __launch_bounds__(THREADS)
    flash_tc_forward_kernel(bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v,
                            const int *key_start, int Tq, int Tk, int q_pos0, int H, int Hkv,
                            int mask) {
    extern __shared__ __align__(128) unsigned char smem[];
    Carver c = {smem};
    bf16 *sq = c.take<bf16>(TILE * HD), *sk = c.take<bf16>(TILE * HD);
    bf16 *sv = c.take<bf16>(TILE * HD);
    float *ss = c.take<float>(TILE * TILE);
    bf16 *sp = c.take<bf16>(TILE * TILE);
    float *so = c.take<float>(TILE * HD);
    int b = blockIdx.z, h = blockIdx.y, t0 = blockIdx.x * TILE, g = h / (H / Hkv);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, row0 = warp * 16;  // the warp's rows
    stage_rows<HD>(sq, q, b, h, t0, Tq, H, rsqrtf((float)HD));
    for (int i = threadIdx.x; i < TILE * HD; i += blockDim.x) so[i] = 0.0f;
    int first = key_start ? key_start[b] : 0;
    // the block's last row sees the furthest key of any of its rows
    int block_end = attn_keys_end(mask, q_pos0 + min(t0 + TILE, Tq) - 1, Tk);
    float m[16], l[16];  // running max and sum of each of the warp's rows (every lane holds all)
#pragma unroll
    for (int r = 0; r < 16; r++) m[r] = -INFINITY, l[r] = 0.0f;
    __syncthreads();  // q and the zeroed accumulator, even when no key tile follows
    for (int j0 = first - first % TILE; j0 < block_end; j0 += TILE) {
        __syncthreads();  // every warp is done with the previous tiles
        stage_rows<HD>(sk, k, b, g, j0, Tk, Hkv, 1.0f);
        stage_rows<HD>(sv, v, b, g, j0, Tk, Hkv, 1.0f);
        __syncthreads();
        warp_row_dots<HD>(ss + row0 * TILE, sq + row0 * HD, sk);
        __syncwarp();
#pragma unroll
        for (int r = 0; r < 16; r++) {  // online softmax, a row at a time
            int row = row0 + r, t = t0 + row;
            int end0, start1, end1;
            attn_keys(mask, q_pos0 + t, Tk, &end0, &start1, &end1);
            float sc[2], e[2], tile_max = -INFINITY, sum = 0.0f;
            for (int c = 0; c < 2; c++) {
                int jj = lane + 32 * c, j = j0 + jj;
                bool sees = j >= first && attn_in_ranges(j, end0, start1, end1);
                sc[c] = sees ? ss[row * TILE + jj] : -INFINITY;
                tile_max = fmaxf(tile_max, sc[c]);
            }
            float m_new = fmaxf(m[r], warp_max(tile_max));
            for (int c = 0; c < 2; c++) {
                e[c] = sc[c] == -INFINITY ? 0.0f : expf(sc[c] - m_new);
                sp[row * TILE + lane + 32 * c] = __float2bfloat16(e[c]);
                sum += e[c];
            }
            float rescale = m_new == -INFINITY ? 1.0f : expf(m[r] - m_new);  // what came before
            l[r] = l[r] * rescale + warp_sum(sum);
            m[r] = m_new;
            for (int i = lane; i < HD; i += 32) so[row * HD + i] *= rescale;
        }
        __syncwarp();
        warp_accumulate<HD>(so + row0 * HD, sp + row0 * TILE, sv);
        __syncwarp();
    }
#pragma unroll
    for (int r = 0; r < 16; r++) {
        int row = row0 + r, t = t0 + row;
        if (t >= Tq) continue;
        float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;  // a row that sees no key gets zeros
        bf16 *dst = out + head_offset(b, t, h, Tq, H, HD);
        for (int i = lane; i < HD; i += 32) dst[i] = __float2bfloat16(so[row * HD + i] * inv);
        if (lane == 0)
            lse[((size_t)b * H + h) * Tq + t] = l[r] > 0.0f ? m[r] + logf(l[r]) : -INFINITY;
    }
}

template <int HD>
static size_t backward_shared_bytes(void) {
    size_t b = 0;
    b += 4 * ((TILE * HD * sizeof(bf16) + 127) / 128 * 128);  // own rows x 2, walked x 2
    b += 2 * TILE * sizeof(float);                            // lse, D of the query side
    b += 2 * TILE * TILE * sizeof(float);                     // S (then P), dP
    b += 2 * TILE * TILE * sizeof(bf16);                      // P, dS as bf16
    b += 2 * TILE * HD * sizeof(float);                       // up to two accumulators
    return b;
}

// dq for 64 query rows per block: for each key tile, S = Qs K^T, P, dP = dO V^T, dS,
// dq += dS K; finally dq = scale * dq added into the output.
template <int HD>
__global__ void __launch_bounds__(THREADS)
    flash_tc_backward_dq_kernel(bf16 *dq, const bf16 *dout, const float *D, const float *lse,
                                const bf16 *q, const bf16 *k, const bf16 *v, int T, int H,
                                int Hkv, int mask) {
    extern __shared__ __align__(128) unsigned char smem[];
    Carver c = {smem};
    bf16 *sq = c.take<bf16>(TILE * HD), *sdo = c.take<bf16>(TILE * HD);
    bf16 *sk = c.take<bf16>(TILE * HD), *sv = c.take<bf16>(TILE * HD);
    float *ss = c.take<float>(TILE * TILE), *sdp = c.take<float>(TILE * TILE);
    bf16 *sp = c.take<bf16>(TILE * TILE), *sds = c.take<bf16>(TILE * TILE);
    float *sacc = c.take<float>(TILE * HD);
    int b = blockIdx.z, h = blockIdx.y, t0 = blockIdx.x * TILE, g = h / (H / Hkv);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, row0 = warp * 16;
    float scale = rsqrtf((float)HD);
    stage_rows<HD>(sq, q, b, h, t0, T, H, scale);
    stage_rows<HD>(sdo, dout, b, h, t0, T, H, 1.0f);
    for (int i = threadIdx.x; i < TILE * HD; i += blockDim.x) sacc[i] = 0.0f;
    size_t stats = ((size_t)b * H + h) * T;
    float row_lse[16], row_D[16];  // -inf lse: past T, or a row that saw no key (no gradient)
#pragma unroll
    for (int r = 0; r < 16; r++) {
        int t = t0 + row0 + r;
        row_lse[r] = t < T ? lse[stats + t] : -INFINITY;
        row_D[r] = t < T ? D[stats + t] : 0.0f;
    }
    int block_end = attn_keys_end(mask, min(t0 + TILE, T) - 1, T);
    for (int j0 = 0; j0 < block_end; j0 += TILE) {
        __syncthreads();
        stage_rows<HD>(sk, k, b, g, j0, T, Hkv, 1.0f);
        stage_rows<HD>(sv, v, b, g, j0, T, Hkv, 1.0f);
        __syncthreads();
        warp_row_dots<HD>(ss + row0 * TILE, sq + row0 * HD, sk);
        warp_row_dots<HD>(sdp + row0 * TILE, sdo + row0 * HD, sv);
        __syncwarp();
#pragma unroll
        for (int r = 0; r < 16; r++) {  // query t0 + row against keys j0 + jj
            int row = row0 + r, t = t0 + row;
            for (int jj = lane; jj < TILE; jj += 32) {
                int key = j0 + jj, at = row * TILE + jj;
                bool visible = row_lse[r] != -INFINITY && key < T && attn_sees(mask, t, key, T);
                float p = visible ? expf(ss[at] - row_lse[r]) : 0.0f;
                sp[at] = __float2bfloat16(p);
                sds[at] = __float2bfloat16(p * (sdp[at] - row_D[r]));
            }
        }
        __syncwarp();
        warp_accumulate<HD>(sacc + row0 * HD, sds + row0 * TILE, sk);
        __syncwarp();
    }
#pragma unroll
    for (int r = 0; r < 16; r++) {
        int row = row0 + r, t = t0 + row;
        if (row_lse[r] == -INFINITY) continue;
        bf16 *dst = dq + head_offset(b, t, h, T, H, HD);
        for (int i = lane; i < HD; i += 32) add_to(&dst[i], scale * sacc[row * HD + i]);
    }
}

// dk and dv for 64 key rows per block: for each query tile, S^T = K Qs^T, P^T = exp(S^T -
// lse), dP^T = V dO^T, dS^T = P^T (dP^T - D), dv += P^T dO, dk += dS^T Qs (the scale is in Qs).
template <int HD>
__global__ void __launch_bounds__(THREADS)
    flash_tc_backward_dkv_kernel(bf16 *dk, bf16 *dv, const bf16 *dout, const float *D,
                                 const float *lse, const bf16 *q, const bf16 *k, const bf16 *v,
                                 int T, int H, int Hkv, int mask) {
    extern __shared__ __align__(128) unsigned char smem[];
    Carver c = {smem};
    bf16 *sk = c.take<bf16>(TILE * HD), *sv = c.take<bf16>(TILE * HD);
    bf16 *sq = c.take<bf16>(TILE * HD), *sdo = c.take<bf16>(TILE * HD);
    float *slse = c.take<float>(TILE), *sD = c.take<float>(TILE);
    float *ss = c.take<float>(TILE * TILE), *sdp = c.take<float>(TILE * TILE);
    bf16 *sp = c.take<bf16>(TILE * TILE), *sds = c.take<bf16>(TILE * TILE);
    float *sdk = c.take<float>(TILE * HD), *sdv = c.take<float>(TILE * HD);
    int b = blockIdx.z, g = blockIdx.y, j0 = blockIdx.x * TILE, group = H / Hkv;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, row0 = warp * 16;
    float scale = rsqrtf((float)HD);
    stage_rows<HD>(sk, k, b, g, j0, T, Hkv, 1.0f);
    stage_rows<HD>(sv, v, b, g, j0, T, Hkv, 1.0f);
    for (int i = threadIdx.x; i < TILE * HD; i += blockDim.x) sdk[i] = sdv[i] = 0.0f;
    for (int h = g * group; h < (g + 1) * group; h++) {  // the group's query heads, in order
        size_t stats = ((size_t)b * H + h) * T;
        // queries before the first one that sees the block's first key see none of its keys
        for (int t0 = attn_first_query(mask, j0, T) / TILE * TILE; t0 < T; t0 += TILE) {
            __syncthreads();
            stage_rows<HD>(sq, q, b, h, t0, T, H, scale);
            stage_rows<HD>(sdo, dout, b, h, t0, T, H, 1.0f);
            stage_stats(slse, lse + stats, t0, T, INFINITY);  // past T: not finite, no gradient
            stage_stats(sD, D + stats, t0, T, 0.0f);
            __syncthreads();
            warp_row_dots<HD>(ss + row0 * TILE, sk + row0 * HD, sq);
            warp_row_dots<HD>(sdp + row0 * TILE, sv + row0 * HD, sdo);
            __syncwarp();
#pragma unroll
            for (int r = 0; r < 16; r++) {  // key j0 + row against queries t0 + qi
                int row = row0 + r, j = j0 + row;
                for (int qi = lane; qi < TILE; qi += 32) {
                    int query = t0 + qi, at = row * TILE + qi;
                    // a query past T (staged +inf) or one that saw no key (-inf): no gradient
                    bool visible = j < T && query < T && attn_sees(mask, query, j, T) &&
                                   isfinite(slse[qi]);
                    float p = visible ? expf(ss[at] - slse[qi]) : 0.0f;
                    sp[at] = __float2bfloat16(p);
                    sds[at] = __float2bfloat16(p * (sdp[at] - sD[qi]));
                }
            }
            __syncwarp();
            warp_accumulate<HD>(sdv + row0 * HD, sp + row0 * TILE, sdo);
            warp_accumulate<HD>(sdk + row0 * HD, sds + row0 * TILE, sq);
            __syncwarp();
        }
    }
#pragma unroll
    for (int r = 0; r < 16; r++) {
        int row = row0 + r, j = j0 + row;
        if (j >= T) continue;
        size_t at = head_offset(b, j, g, T, Hkv, HD);
        for (int i = lane; i < HD; i += 32) {
            add_to(&dk[at + i], sdk[row * HD + i]);
            add_to(&dv[at + i], sdv[row * HD + i]);
        }
    }
}

// 1 when a block may have `bytes` of shared memory on this device (the HD 128 backward
// needs about 177 KB: an H100 has 227, an A100 163, which then takes the fp32 kernels).
static int shared_fits(size_t bytes) {
    static int limit = -1;
    if (limit < 0) {
        int device;
        CUDA_CHECK(cudaGetDevice(&device));
        CUDA_CHECK(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    }
    return bytes <= (size_t)limit;
}

template <typename Kernel, typename... Args>
static void launch_tc(Kernel kernel, dim3 grid, size_t shared, Args... args) {
    CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shared));
    kernel<<<grid, THREADS, shared>>>(args...);
    CUDA_CHECK_LAUNCH();
}

template <int HD>
static void tc_forward(void *out, float *lse, const void *q, const void *k, const void *v,
                       const int *key_start, int B, int Tq, int Tk, int q_pos0, int H, int Hkv,
                       int mask) {
    dim3 grid((Tq + TILE - 1) / TILE, H, B);
    launch_tc(flash_tc_forward_kernel<HD>, grid, forward_shared_bytes<HD>(), (bf16 *)out, lse,
              (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, key_start, Tq, Tk, q_pos0, H,
              Hkv, mask);
}

template <int HD>
static void tc_backward(void *dq, void *dk, void *dv, const void *dout, const float *D,
                        const float *lse, const void *q, const void *k, const void *v, int B, int T,
                        int H, int Hkv, int mask) {
    dim3 grid((T + TILE - 1) / TILE, H, B), kv_grid((T + TILE - 1) / TILE, Hkv, B);
    size_t shared = backward_shared_bytes<HD>();
    launch_tc(flash_tc_backward_dq_kernel<HD>, grid, shared, (bf16 *)dq, (const bf16 *)dout, D, lse,
              (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, T, H, Hkv, mask);
    launch_tc(flash_tc_backward_dkv_kernel<HD>, kv_grid, shared, (bf16 *)dk, (bf16 *)dv,
              (const bf16 *)dout, D, lse, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, T, H,
              Hkv, mask);
}

int cuda_attention_tc_forward(void *out, float *lse, const void *q, const void *k, const void *v,
                              const int *key_start, int B, int Tq, int Tk, int q_pos0, int H,
                              int Hkv, int head_dim, int mask) {
    if (head_dim == 64 && shared_fits(forward_shared_bytes<64>()))
        tc_forward<64>(out, lse, q, k, v, key_start, B, Tq, Tk, q_pos0, H, Hkv, mask);
    else if (head_dim == 128 && shared_fits(forward_shared_bytes<128>()))
        tc_forward<128>(out, lse, q, k, v, key_start, B, Tq, Tk, q_pos0, H, Hkv, mask);
    else
        return 0;
    return 1;
}

int cuda_attention_tc_backward(void *dq, void *dk, void *dv, const void *dout, const float *D,
                               const float *lse, const void *q, const void *k, const void *v, int B,
                               int T, int H, int Hkv, int head_dim, int mask) {
    if (head_dim == 64 && shared_fits(backward_shared_bytes<64>()))
        tc_backward<64>(dq, dk, dv, dout, D, lse, q, k, v, B, T, H, Hkv, mask);
    else if (head_dim == 128 && shared_fits(backward_shared_bytes<128>()))
        tc_backward<128>(dq, dk, dv, dout, D, lse, q, k, v, B, T, H, Hkv, mask);
    else
        return 0;
    return 1;
}

// CPU emulation of the CUDA subset dllm's kernels use: every thread of a block is a fiber
// (its own stack, switched by emu.cpp) on one OS thread; __syncthreads, __syncwarp, shuffles
// and wmma collectives switch fibers. Blocks run one after another. Dynamic shared memory is
// filled with 0xff bytes (NaN floats) so that reads of unwritten shared memory show.
// What the hardware would refuse, the emulation refuses too (emu.cpp): a launch with an empty
// grid, more than 1024 threads, or more dynamic shared memory than allowed (48 KiB unless
// cudaFuncSetAttribute raised the kernel's limit, 227 KiB at most) fails with the launch's
// error and does not run; a runtime call from a child forked after the parent used CUDA
// fails with cudaErrorInitializationError; a barrier (block or warp) that the block's live
// threads reach at different call sites, and a kernel that wrote past an allocation (guard
// zones around every cudaMalloc), abort with a message. EMU_ORDER=reverse runs each block's
// threads and the grid's blocks in reverse order: a race-free kernel gives the same bits, which
// EMU_DIGEST=1 shows (a hash of every byte copied device-to-host, printed at exit).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <type_traits>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) alignas(n)

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
typedef dim3 uint3;

extern dim3 threadIdx, blockIdx, blockDim, gridDim;

typedef int cudaError_t;
enum {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInitializationError = 3,
    cudaErrorInvalidConfiguration = 9,
};
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize };
enum cudaDeviceAttr { cudaDevAttrMaxSharedMemoryPerBlockOptin };

// emu.cpp: the process check, the sticky launch error, allocations with guard zones, the digest
cudaError_t emu_process_check(void);
const char *cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetLastError(void);
cudaError_t emu_malloc(void **p, size_t n);
cudaError_t cudaFree(void *p);
void emu_digest_add(const void *p, size_t n);
void emu_set_shared_limit(const void *kernel, int bytes);

inline cudaError_t cudaGetDeviceCount(int *n) {
    *n = 1;
    return emu_process_check();
}
inline cudaError_t cudaGetDevice(int *d) {
    *d = 0;
    return emu_process_check();
}
inline cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr, int) {
    *v = 227 * 1024;
    return emu_process_check();
}
template <typename K>
inline cudaError_t cudaFuncSetAttribute(K kernel, cudaFuncAttribute, int bytes) {
    if (bytes > 227 * 1024) return cudaErrorInvalidValue;
    emu_set_shared_limit((const void *)kernel, bytes);
    return emu_process_check();
}
template <typename T>
inline cudaError_t cudaMalloc(T **p, size_t n) {
    return emu_malloc((void **)p, n);
}
inline cudaError_t cudaMemset(void *p, int v, size_t n) {
    if (cudaError_t e = emu_process_check()) return e;
    memset(p, v, n);
    return cudaSuccess;
}
inline cudaError_t cudaMemcpy(void *d, const void *s, size_t n, cudaMemcpyKind kind) {
    if (cudaError_t e = emu_process_check()) return e;
    memmove(d, s, n);
    if (kind == cudaMemcpyDeviceToHost) emu_digest_add(d, n);
    return cudaSuccess;
}
inline cudaError_t cudaMemcpy2D(void *d, size_t dpitch, const void *s, size_t spitch, size_t width,
                                size_t height, cudaMemcpyKind) {
    if (cudaError_t e = emu_process_check()) return e;
    for (size_t r = 0; r < height; r++)
        memmove((char *)d + r * dpitch, (const char *)s + r * spitch, width);
    return cudaSuccess;
}

inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
using std::isfinite;

// ---- fibers ----
// A barrier's call site is the address it returns to: every live thread must wait at one site.
void emu_syncthreads(void);
void emu_syncwarp(void);
#define __syncthreads() emu_syncthreads()
#define __syncwarp(...) emu_syncwarp()
void *emu_dyn_smem(void);
void emu_run(const void *kernel, dim3 grid, dim3 block, size_t shared, std::function<void()> body);

extern uint64_t emu_slots[32][32];
template <typename T>
T __shfl_xor_sync(unsigned, T v, int off) {
    unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof v);
    emu_slots[warp][lane] = bits;
    emu_syncwarp();
    uint64_t got = emu_slots[warp][lane ^ off];
    emu_syncwarp();
    T r;
    memcpy(&r, &got, sizeof r);
    return r;
}

template <typename K>
struct EmuLauncher {
    K kernel;
    dim3 grid, block;
    size_t shared;
    template <typename... A>
    void operator()(A... args) {
        K k = kernel;
        emu_run((const void *)kernel, grid, block, shared, [=]() { k(args...); });
    }
};
template <typename K>
EmuLauncher<K> emu_launcher(K k, dim3 grid, dim3 block, size_t shared = 0) {
    return EmuLauncher<K>{k, grid, block, shared};
}

// ---- bf16 ----
struct __nv_bfloat16 {
    uint16_t bits;
};
inline __nv_bfloat16 __float2bfloat16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return {(uint16_t)((u >> 16) | 0x40)};  // NaN
    uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);  // to nearest, ties to even
    return {(uint16_t)((u + rounding) >> 16)};
}
inline float __bfloat162float(__nv_bfloat16 b) {
    uint32_t u = (uint32_t)b.bits << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
inline float emu_to_float(float f) { return f; }
inline float emu_to_float(__nv_bfloat16 b) { return __bfloat162float(b); }

// ---- wmma (16x16x16 only) ----
namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };
template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
    float x[16][16];
};
template <typename F>
inline void fill_fragment(F &f, float v) {
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) f.x[i][j] = v;
}
template <typename Use, int M, int N, int K, typename T, typename Layout>
inline void load_matrix_sync(fragment<Use, M, N, K, T, Layout> &f, const T *p, unsigned ld) {
    emu_syncwarp();
    bool row = std::is_same<Layout, row_major>::value;
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) f.x[i][j] = emu_to_float(row ? p[i * ld + j] : p[j * ld + i]);
    emu_syncwarp();
}
template <int M, int N, int K>
inline void load_matrix_sync(fragment<accumulator, M, N, K, float> &f, const float *p, unsigned ld,
                             layout_t l) {
    emu_syncwarp();
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) f.x[i][j] = l == mem_row_major ? p[i * ld + j] : p[j * ld + i];
    emu_syncwarp();
}
template <int M, int N, int K>
inline void store_matrix_sync(float *p, const fragment<accumulator, M, N, K, float> &f, unsigned ld,
                              layout_t l) {
    emu_syncwarp();
    if (threadIdx.x % 32 == 0)
        for (int i = 0; i < 16; i++)
            for (int j = 0; j < 16; j++)
                (l == mem_row_major ? p[i * ld + j] : p[j * ld + i]) = f.x[i][j];
    emu_syncwarp();
}
template <typename FA, typename FB, int M, int N, int K>
inline void mma_sync(fragment<accumulator, M, N, K, float> &d, const FA &a, const FB &b,
                     const fragment<accumulator, M, N, K, float> &c) {
    fragment<accumulator, M, N, K, float> r;
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) {
            float s = c.x[i][j];
            for (int k = 0; k < 16; k++) s += a.x[i][k] * b.x[k][j];
            r.x[i][j] = s;
        }
    d = r;
}
}  // namespace wmma
}  // namespace nvcuda

// The fiber scheduler behind tests/cuda_emu/cuda_runtime.h: a block's threads run one at a
// time, each until it reaches a barrier (block or warp) or ends; a barrier opens when every
// live thread of its scope waits at it. No runnable thread and no open barrier: a deadlock,
// reported and aborted (on a GPU that kernel would hang or misbehave).
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <sys/mman.h>
#include <unistd.h>

#include <map>

dim3 threadIdx, blockIdx, blockDim, gridDim;
uint64_t emu_slots[32][32];

enum { READY, WAIT_BLOCK, WAIT_WARP, DONE };

// ---- the runtime's state: the process that owns CUDA, the sticky error, allocations ----

static pid_t owner;                  // the process that first used the emulated CUDA
static cudaError_t last_error;       // what cudaGetLastError returns next
static std::map<char *, size_t> allocations;  // user pointer -> bytes, guard zones around
static std::map<const void *, int> shared_limits;  // kernel -> its dynamic shared memory limit
static uint64_t digest = 1469598103934665603ull;  // FNV-1a over device-to-host bytes
static size_t digest_bytes;
// kernel -> the most threads per block and dynamic shared bytes it was launched with
static std::map<const void *, std::pair<unsigned, size_t>> launched;

// CUDA does not survive fork: once a process has used it, its forked children's runtime calls
// fail (on a GPU the child's first call reports an initialisation error).
cudaError_t emu_process_check(void) {
    if (!owner) owner = getpid();
    return owner == getpid() ? cudaSuccess : cudaErrorInitializationError;
}

const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInitializationError: return "initialization error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    default: return "emulated error";
    }
}

cudaError_t cudaGetLastError(void) {
    cudaError_t e = last_error ? last_error : emu_process_check();
    last_error = cudaSuccess;
    return e;
}

// Guard zones before and after every allocation, checked after each kernel and at cudaFree, so
// a kernel writing out of bounds fails loudly. Under AddressSanitizer there are none: its own
// red zones also catch reads.
#ifdef __SANITIZE_ADDRESS__
enum { GUARD = 0 };
#else
enum { GUARD = 64 };
#endif
static const unsigned char GUARD_BYTE = 0xa5;

cudaError_t emu_malloc(void **p, size_t n) {
    if (cudaError_t e = emu_process_check()) return e;
    char *base = (char *)malloc(n + 2 * GUARD + 1);
    if (!base) return cudaErrorMemoryAllocation;
    memset(base, GUARD_BYTE, GUARD);
    memset(base + GUARD, 0xff, n);  // unwritten device memory reads as NaN
    memset(base + GUARD + n, GUARD_BYTE, GUARD);
    allocations[base + GUARD] = n;
    *p = base + GUARD;
    return cudaSuccess;
}

// Aborts when a guard zone of the allocation at p (n bytes) was written.
static void check_guards(char *p, size_t n, const char *when) {
    for (int i = 0; i < GUARD; i++)
        if ((unsigned char)p[-1 - i] != GUARD_BYTE || (unsigned char)p[n + i] != GUARD_BYTE) {
            fprintf(stderr, "emu: %s: bytes around a %zu-byte device allocation were written "
                    "(%s its end)\n", when, n, (unsigned char)p[n + i] != GUARD_BYTE ? "past"
                                                                                 : "before");
            abort();
        }
}

cudaError_t cudaFree(void *ptr) {
    if (cudaError_t e = emu_process_check()) return e;
    auto it = allocations.find((char *)ptr);
    if (it == allocations.end()) {
        fprintf(stderr, "emu: cudaFree of %p, which cudaMalloc did not return\n", ptr);
        abort();
    }
    check_guards(it->first, it->second, "cudaFree");
    free(it->first - GUARD);
    allocations.erase(it);
    return cudaSuccess;
}

void emu_set_shared_limit(const void *kernel, int bytes) { shared_limits[kernel] = bytes; }

void emu_digest_add(const void *p, size_t n) {
    const unsigned char *bytes = (const unsigned char *)p;
    for (size_t i = 0; i < n; i++) digest = (digest ^ bytes[i]) * 1099511628211ull;
    digest_bytes += n;
}

static void print_digest(void) {
    fprintf(stderr, "emu digest: %016llx over %zu device-to-host bytes\n",
            (unsigned long long)digest, digest_bytes);
}

// EMU_LAUNCHES=FILE: appends "OFFSET THREADS SHARED" for every kernel launched, OFFSET its
// address in the executable (nm's symbol value), for scripts/cuda_resources.sh to weigh
// against ptxas's register and shared-memory counts.
static void write_launches(void) {
    FILE *f = fopen(getenv("EMU_LAUNCHES"), "a");
    if (!f) return;
    for (auto &k : launched) {
        Dl_info info;
        if (!dladdr(k.first, &info)) continue;
        unsigned long offset = (const char *)k.first - (const char *)info.dli_fbase;
        fprintf(f, "%016lx %u %zu\n", offset, k.second.first, k.second.second);  // as nm prints
    }
    fclose(f);
}

static bool reverse_order(void) {
    static int order = -1;
    if (order < 0) {
        const char *e = getenv("EMU_ORDER");
        order = e && strcmp(e, "reverse") == 0;
        if (getenv("EMU_DIGEST")) atexit(print_digest);
        if (getenv("EMU_LAUNCHES")) atexit(write_launches);
    }
    return order == 1;
}

// A fiber switch without ucontext's signal-mask system calls (they made the emulation several
// times slower): save the callee-saved registers on the current stack, swap stack pointers.
#if !defined(__x86_64__)
#error "the CUDA emulation's fiber switch is written for x86-64"
#endif
extern "C" void emu_switch(void **save_sp, void *load_sp);
asm(R"(
    .text
    .globl emu_switch
emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
)");

struct Fiber {
    void *sp;
    char *stack;
    int state;
    void *site;  // where it waits: the barrier call's return address
};
static std::vector<Fiber> fibers;
static void *sched_sp;
static int cur;
static std::function<void()> body;
static std::vector<unsigned char> dyn;
static const size_t STACK = 256 * 1024;

void *emu_dyn_smem(void) { return dyn.data(); }

static void wait_as(int state, void *site) {
    fibers[cur].state = state;
    fibers[cur].site = site;
    emu_switch(&fibers[cur].sp, sched_sp);
}
__attribute__((noinline)) void emu_syncthreads(void) {
    wait_as(WAIT_BLOCK, __builtin_return_address(0));
}
__attribute__((noinline)) void emu_syncwarp(void) {
    wait_as(WAIT_WARP, __builtin_return_address(0));
}

// Opens the barrier threads [lo, hi) wait at (as `state`); every one must wait at one call site.
static void release(int lo, int hi, int state, const char *what) {
    int first = -1;
    for (int i = lo; i < hi; i++) {
        if (fibers[i].state != state) continue;
        if (first < 0) first = i;
        if (fibers[i].site != fibers[first].site) {
            fprintf(stderr, "emu: block (%u,%u,%u): threads %d and %d wait at different %s "
                    "calls (%p, %p): divergent barrier\n", blockIdx.x, blockIdx.y, blockIdx.z,
                    first, i, what, fibers[first].site, fibers[i].site);
            abort();
        }
        fibers[i].state = READY;
    }
}

static void entry(void) {
    body();
    fibers[cur].state = DONE;
    emu_switch(&fibers[cur].sp, sched_sp);  // never resumed
}

// A fresh stack whose first switch "returns" into entry with the ABI's alignment.
static void *initial_sp(char *stack) {
    uintptr_t top = ((uintptr_t)stack + STACK) & ~(uintptr_t)15;
    void **sp = (void **)top;
    *--sp = nullptr;         // entry's own return address (it never returns)
    *--sp = (void *)entry;   // where emu_switch's ret goes
    for (int i = 0; i < 6; i++) *--sp = nullptr;  // rbp rbx r12 r13 r14 r15
    return sp;
}

static void run_block(void) {
    int n = blockDim.x;
    for (int i = 0; i < n; i++) {
        fibers[i].sp = initial_sp(fibers[i].stack);
        fibers[i].state = READY;
    }
    bool reverse = reverse_order();
    for (;;) {
        bool ran = false;
        for (int k = 0; k < n; k++) {
            int i = reverse ? n - 1 - k : k;
            if (fibers[i].state == READY) {
                cur = i;
                threadIdx = dim3(i);
                emu_switch(&sched_sp, fibers[i].sp);
                ran = true;
            }
        }
        int live = 0, at_block = 0;
        for (int i = 0; i < n; i++) {
            live += fibers[i].state != DONE;
            at_block += fibers[i].state == WAIT_BLOCK;
        }
        if (live == 0) return;
        if (at_block == live) {
            release(0, n, WAIT_BLOCK, "__syncthreads");
            continue;
        }
        bool released = false;
        for (int w = 0; w * 32 < n; w++) {
            int wl = 0, ww = 0;
            for (int i = w * 32; i < n && i < w * 32 + 32; i++) {
                wl += fibers[i].state != DONE;
                ww += fibers[i].state == WAIT_WARP;
            }
            if (wl > 0 && ww == wl) {
                release(w * 32, n < w * 32 + 32 ? n : w * 32 + 32, WAIT_WARP, "warp");
                released = true;
            }
        }
        if (!released && !ran) {
            fprintf(stderr, "emu: deadlock in block (%u,%u,%u): %d live, %d at __syncthreads\n",
                    blockIdx.x, blockIdx.y, blockIdx.z, live, at_block);
            abort();
        }
    }
}

// What the hardware refuses to launch: "" when the launch is valid.
static const char *launch_problem(const void *kernel, dim3 grid, dim3 block, size_t shared) {
    if (grid.x < 1 || grid.y < 1 || grid.z < 1) return "an empty grid";
    if (grid.y > 65535 || grid.z > 65535) return "grid y or z above 65535";
    if (block.x < 1 || (size_t)block.x * block.y * block.z > 1024)
        return "a block of no threads or more than 1024";
    auto it = shared_limits.find(kernel);
    size_t limit = it != shared_limits.end() && it->second > 48 * 1024 ? it->second : 48 * 1024;
    if (shared > limit)
        return it == shared_limits.end() ? "dynamic shared memory above 48 KiB without "
                                           "cudaFuncAttributeMaxDynamicSharedMemorySize"
                                         : "dynamic shared memory above the kernel's limit";
    return "";
}

void emu_run(const void *kernel, dim3 grid, dim3 block, size_t shared, std::function<void()> b) {
    if (cudaError_t e = emu_process_check()) {
        last_error = e;
        return;
    }
    const char *problem = launch_problem(kernel, grid, block, shared);
    if (*problem) {
        fprintf(stderr, "emu: launch of grid (%u,%u,%u), block (%u,%u,%u), %zu bytes shared "
                "refused: %s\n", grid.x, grid.y, grid.z, block.x, block.y, block.z, shared,
                problem);
        last_error = shared > 48 * 1024 ? cudaErrorInvalidValue : cudaErrorInvalidConfiguration;
        return;
    }
    if (block.y > 1 || block.z > 1) {
        fprintf(stderr, "emu: blocks of more than one dimension are not emulated\n");
        abort();
    }
    if (fibers.size() < block.x) {
        size_t old = fibers.size();
        fibers.resize(block.x);
        // mapped, not malloc'd: the stacks live as long as the process (every launch reuses
        // them), which a leak checker would otherwise report
        for (size_t i = old; i < fibers.size(); i++) {
            void *stack = mmap(NULL, STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                               -1, 0);
            if (stack == MAP_FAILED) abort();
            fibers[i].stack = (char *)stack;
        }
    }
    body = b;
    gridDim = grid;
    blockDim = block;
    bool reverse = reverse_order();
    auto &most = launched[kernel];
    most.first = block.x > most.first ? block.x : most.first;
    most.second = shared > most.second ? shared : most.second;
    size_t blocks = (size_t)grid.x * grid.y * grid.z;
    for (size_t k = 0; k < blocks; k++) {
        size_t at = reverse ? blocks - 1 - k : k;
        blockIdx = dim3(at % grid.x, at / grid.x % grid.y, at / grid.x / grid.y);
        dyn.assign(shared, 0xff);
        run_block();
    }
    for (auto &a : allocations) check_guards(a.first, a.second, "after a kernel");
}

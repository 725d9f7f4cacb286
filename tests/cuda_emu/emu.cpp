// The fiber scheduler behind tests/cuda_emu/cuda_runtime.h: a block's threads run one at a
// time, each until it reaches a barrier (block or warp) or ends; a barrier opens when every
// live thread of its scope waits at it. No runnable thread and no open barrier: a deadlock,
// reported and aborted (on a GPU that kernel would hang or misbehave).
#include <cuda_runtime.h>
#include <sys/mman.h>

dim3 threadIdx, blockIdx, blockDim, gridDim;
uint64_t emu_slots[32][32];

enum { READY, WAIT_BLOCK, WAIT_WARP, DONE };

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
};
static std::vector<Fiber> fibers;
static void *sched_sp;
static int cur;
static std::function<void()> body;
static std::vector<unsigned char> dyn;
static const size_t STACK = 256 * 1024;

void *emu_dyn_smem(void) { return dyn.data(); }

static void wait_as(int state) {
    fibers[cur].state = state;
    emu_switch(&fibers[cur].sp, sched_sp);
}
void emu_syncthreads(void) { wait_as(WAIT_BLOCK); }
void emu_syncwarp(void) { wait_as(WAIT_WARP); }

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
    for (;;) {
        bool ran = false;
        for (int i = 0; i < n; i++)
            if (fibers[i].state == READY) {
                cur = i;
                threadIdx = dim3(i);
                emu_switch(&sched_sp, fibers[i].sp);
                ran = true;
            }
        int live = 0, at_block = 0;
        for (int i = 0; i < n; i++) {
            live += fibers[i].state != DONE;
            at_block += fibers[i].state == WAIT_BLOCK;
        }
        if (live == 0) return;
        if (at_block == live) {
            for (int i = 0; i < n; i++)
                if (fibers[i].state == WAIT_BLOCK) fibers[i].state = READY;
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
                for (int i = w * 32; i < n && i < w * 32 + 32; i++)
                    if (fibers[i].state == WAIT_WARP) fibers[i].state = READY;
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

void emu_run(dim3 grid, dim3 block, size_t shared, std::function<void()> b) {
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
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                blockIdx = dim3(x, y, z);
                dyn.assign(shared, 0xff);
                run_block();
            }
}

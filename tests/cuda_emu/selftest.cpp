// The CUDA emulation's own checks, each on a kernel that breaks one rule the hardware has: a
// launch it would refuse, a barrier reached at two call sites, a write past an allocation, a
// runtime call after fork, and an inter-block race that EMU_ORDER=reverse changes. Each
// breaking case runs in a child process; the test passes when the emulation caught it.
// Prints "N passed, 0 failed".
#include <cuda_runtime.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void fill(float *x) { x[threadIdx.x] = (float)threadIdx.x; }

static void divergent_barrier(float *x) {
    if (threadIdx.x < 16) {
        __syncthreads();
        x[threadIdx.x] = 1.0f;
    } else {
        x[threadIdx.x] = 2.0f;
        __syncthreads();
    }
}

static void write_past_end(float *x) { x[threadIdx.x + 1] = 0.0f; }

// Block b reads what block b - 1 wrote: right only when the blocks run in increasing order.
static void inter_block_race(float *x) {
    if (threadIdx.x == 0) x[blockIdx.x + 1] = x[blockIdx.x] + 1.0f;
}

static int passed, failed;

static void check(const char *what, bool ok) {
    printf("  %-62s %s\n", what, ok ? "caught" : "MISSED");
    ok ? passed++ : failed++;
}

// Runs fn in a child; true when the child aborted (the emulation's verdict on a broken kernel;
// under AddressSanitizer, which replaces the guard zones, its error exit).
static bool aborts(void (*fn)(void)) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        freopen("/dev/null", "w", stderr);
        fn();
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    return (WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT) ||
           (WIFEXITED(status) && WEXITSTATUS(status) != 0);
}

static void run_divergent(void) {
    float *x;
    cudaMalloc(&x, 32 * sizeof(float));
    emu_launcher(divergent_barrier, 1, 32)(x);
}

static void run_write_past_end(void) {
    float *x;
    cudaMalloc(&x, 32 * sizeof(float));
    emu_launcher(write_past_end, 1, 32)(x);
}

// The first launch's error, cleared.
static cudaError_t launch_error(dim3 grid, dim3 block, size_t shared) {
    float *x;
    cudaMalloc(&x, 1024 * sizeof(float));
    emu_launcher(fill, grid, block, shared)(x);
    cudaError_t e = cudaGetLastError();
    cudaFree(x);
    return e;
}

int main(void) {
    // first, while this process has not used CUDA (its forked children could not)
    check("__syncthreads reached at two call sites aborts", aborts(run_divergent));
    check("a write past the end of an allocation aborts", aborts(run_write_past_end));
    check("a block of 1025 threads is refused",
          launch_error(1, 1025, 0) == cudaErrorInvalidConfiguration);
    check("an empty grid is refused", launch_error(0, 32, 0) == cudaErrorInvalidConfiguration);
    check("64 KiB of dynamic shared memory without the attribute is refused",
          launch_error(1, 32, 64 * 1024) == cudaErrorInvalidValue);
    cudaFuncSetAttribute(fill, cudaFuncAttributeMaxDynamicSharedMemorySize, 100 * 1024);
    check("... and allowed once the kernel's limit is raised", launch_error(1, 32, 64 * 1024) == 0);
    pid_t pid = fork();  // this process has used CUDA: its child may not
    if (pid == 0) {
        float *x;
        _exit(cudaMalloc(&x, 4) == cudaErrorInitializationError ? 0 : 1);
    }
    int status;
    waitpid(pid, &status, 0);
    check("cudaMalloc in a child forked after CUDA was used fails",
          WIFEXITED(status) && WEXITSTATUS(status) == 0);
    float *x, host[9];
    cudaMalloc(&x, 9 * sizeof(float));
    cudaMemset(x, 0, 9 * sizeof(float));
    emu_launcher(inter_block_race, 8, 32)(x);
    cudaMemcpy(host, x, sizeof host, cudaMemcpyDeviceToHost);
    const char *order = getenv("EMU_ORDER");
    bool reversed = order && strcmp(order, "reverse") == 0;
    // increasing order counts 0..8; reversed, each block reads a slot not yet written
    check(reversed ? "reversed block order changes an inter-block race's result"
                   : "blocks in increasing order (the race's other outcome)",
          reversed ? host[8] != 8.0f : host[8] == 8.0f);
    cudaFree(x);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}

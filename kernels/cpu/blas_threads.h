// Keeping OpenBLAS on one thread while dllm does the threading. OpenBLAS's OpenMP build runs
// single-threaded inside an active parallel region; outside one it follows omp_get_max_threads(),
// so work dllm keeps on one thread runs with this thread's limit set to 1 for the call.
// (openblas_set_num_threads(1) is no way out: in that build it calls omp_set_num_threads(1) and
// silently took every OpenMP loop of dllm down to one thread.)
#ifndef DLLM_BLAS_THREADS_H
#define DLLM_BLAS_THREADS_H

#include <omp.h>

#include "kernels/cpu/cpu_ops.h"

// Threads for `work` multiply-adds done by sgemm (about 16 times the reference loops' speed, so
// it pays for threads only at 16 times their work); with 1, OpenBLAS is held to one thread too
// until blas_restore_threads(*saved).
static inline int blas_threads(double work, int *saved) {
    *saved = omp_get_max_threads();
    if (worth_threads(work / 16.0)) return *saved;
    omp_set_num_threads(1);
    return 1;
}

static inline void blas_restore_threads(int saved) { omp_set_num_threads(saved); }

#endif

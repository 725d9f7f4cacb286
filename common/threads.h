// OpenMP threads that fit the machine right now. Two threads on two cores beside one busy
// process time-share a core, and every join then waits for a descheduled thread: training and
// sampling ran 10% slower on 2 threads than on 1 that way (bench/threads.sh). Before each
// forward pass dllm looks at how many other tasks are runnable (not counting its own threads,
// which may still be spinning after the last parallel region) and uses only the cores left
// (at least one, at most what OMP_NUM_THREADS or the core count allowed at start). Results do
// not depend on the thread count, so this changes speed only.
#ifndef DLLM_THREADS_H
#define DLLM_THREADS_H

// Sets omp_set_num_threads from /proc/loadavg, at most every 50 ms.
void threads_adapt(void);

#endif

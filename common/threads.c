#include "common/threads.h"

#include <omp.h>
#include <stdio.h>
#include <unistd.h>

#include "common/progress.h"

// Tasks runnable now, this one included: /proc/loadavg's "running/total" field; -1 if unknown.
static int runnable_tasks(void) {
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f) return -1;
    int running = -1, total;
    if (fscanf(f, "%*f %*f %*f %d/%d", &running, &total) != 2) running = -1;
    fclose(f);
    return running;
}

void threads_adapt(void) {
    static int allowed;  // the limit at the first call: OMP_NUM_THREADS or the cores
    static double last = -1.0;
    if (!allowed) allowed = omp_get_max_threads();
    double now = now_seconds();
    if (allowed == 1 || (last >= 0.0 && now - last < 0.05)) return;
    last = now;
    int running = runnable_tasks();
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (running < 1 || cores < 1) return;
    // between passes this process's other threads sleep: the other runnable tasks are the rest
    int free_cores = (int)cores - (running - 1);
    omp_set_num_threads(free_cores < 1 ? 1 : free_cores < allowed ? free_cores : allowed);
}

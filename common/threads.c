#include "common/threads.h"

#include <dirent.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>
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

// This process's threads runnable now (state R in /proc/self/task/*/stat): the caller, and
// any OpenMP thread still spinning after the last parallel region, which /proc/loadavg counts
// too but which is no other task's; 1 if unknown.
static int own_runnable_threads(void) {
    DIR *dir = opendir("/proc/self/task");
    if (!dir) return 1;
    int running = 0;
    struct dirent *e;
    while ((e = readdir(dir))) {
        if (e->d_name[0] == '.') continue;
        char path[64], state = 0;
        snprintf(path, sizeof path, "/proc/self/task/%.20s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        // "pid (comm) S ...": comm may hold spaces and parentheses, the state follows the last ')'
        char line[512];
        size_t n = fread(line, 1, sizeof line - 1, f);
        fclose(f);
        line[n] = 0;
        char *close = strrchr(line, ')');
        if (close && close[1] == ' ') state = close[2];
        running += state == 'R';
    }
    closedir(dir);
    return running > 0 ? running : 1;
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
    int free_cores = (int)cores - (running - own_runnable_threads());
    omp_set_num_threads(free_cores < 1 ? 1 : free_cores < allowed ? free_cores : allowed);
}

#include "common/progress.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void progress_bar(char *buf, int width, double fraction) {
    if (fraction < 0.0) fraction = 0.0;
    if (fraction > 1.0) fraction = 1.0;
    int filled = (int)(fraction * width);
    buf[0] = '[';
    memset(buf + 1, '#', (size_t)filled);
    memset(buf + 1 + filled, '.', (size_t)(width - filled));
    buf[width + 1] = ']';
    buf[width + 2] = '\0';
}

void format_duration(char *buf, size_t cap, double seconds) {
    long s = seconds > 0.0 ? (long)(seconds + 0.5) : 0;
    if (s < 60) snprintf(buf, cap, "%lds", s);
    else if (s < 3600) snprintf(buf, cap, "%ldm%02lds", s / 60, s % 60);
    else snprintf(buf, cap, "%ldh%02ldm", s / 3600, s % 3600 / 60);
}

void format_bytes(char *buf, size_t cap, size_t bytes) {
    if (bytes < 1000000) snprintf(buf, cap, "%.0f KB", bytes / 1e3);
    else if (bytes < 1000000000) snprintf(buf, cap, "%.1f MB", bytes / 1e6);
    else snprintf(buf, cap, "%.2f GB", bytes / 1e9);
}

// Wall time and the pieces of a progress display (bar, durations), shared by every long job.
#ifndef DLLM_PROGRESS_H
#define DLLM_PROGRESS_H

#include <stddef.h>

// Seconds on a monotonic clock (differences only).
double now_seconds(void);
// "[######......]": width characters between the brackets, filled to fraction (0..1).
void progress_bar(char *buf, int width, double fraction);
// "45s", "3m12s", "2h05m".
void format_duration(char *buf, size_t cap, double seconds);
// "512 KB", "3.4 MB", "12.31 GB" (powers of 1000).
void format_bytes(char *buf, size_t cap, size_t bytes);

#endif

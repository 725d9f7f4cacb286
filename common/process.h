// Child processes whose output a caller wants: the sweep report's samples.
#ifndef DLLM_PROCESS_H
#define DLLM_PROCESS_H

#include <stddef.h>

// Runs argv (argv[0] a path) and collects up to cap - 1 bytes of its stdout into out
// (NUL-terminated; stderr dropped). Output past that is read and discarded, so a talkative
// child never blocks on a full pipe. Returns the exit status, or -1.
int run_capture(char **argv, char *out, size_t cap);

#endif

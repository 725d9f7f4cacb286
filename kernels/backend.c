// Picks a backend by the name given to --device.
#include <string.h>

#include "kernels/backend.h"

const Backend *backend_by_name(const char *name, Error *err) {
    if (strcmp(name, "cpu") == 0) return &backend_cpu;
    if (strcmp(name, "cuda") == 0)
        error_set(err, "--device cuda: the CUDA backend is not part of this build yet");
    else
        error_set(err, "--device %s: unknown device (expected cpu or cuda)", name);
    return NULL;
}

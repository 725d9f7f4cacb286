// A safetensors file: the header length, the JSON header (dtypes, shapes, offsets, overlaps),
// then every tensor read as fp32. Any input: an error or tensors, never a crash or a read
// outside the file.
#include <stdlib.h>

#include "model/safetensors.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Safetensors st;
    Error err;
    if (safetensors_open(&st, fuzz_file("safetensors", data, size), &err)) return 0;
    for (int i = 0; i < st.n_tensors; i++) {
        SafetensorsTensor *t = &st.tensors[i];
        size_t n = 1;
        for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
        float *out = malloc((n ? n : 1) * sizeof(float));
        if (out && safetensors_read(&st, t->name, t->shape, t->ndim, out, &err) != 0) abort();
        free(out);
    }
    safetensors_close(&st);
    return 0;
}

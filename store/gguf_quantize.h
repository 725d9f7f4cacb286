// dllm quantize: a GGUF file rewritten with its matrices in Q8_0 or Q4_0, the rest as it was.
// The file's metadata is copied key for key (general.file_type and
// general.quantization_version set as llama.cpp's quantizer sets them); every tensor of two or
// more dimensions whose rows are whole blocks of 32 is decoded from F32, F16 or BF16 and
// quantised row by row with ggml's reference quantisers (the blocks gguf-py writes), so the
// output is what llama.cpp and dllm read, and no more than one tensor is in memory at a time.
// Requantising (a matrix already in a block type: Q8_0, Q4_0, a K type) is refused by name: it
// would add a second rounding to the first.
#ifndef DLLM_GGUF_QUANTIZE_H
#define DLLM_GGUF_QUANTIZE_H

#include <stdio.h>

#include "common/error.h"
#include "common/gguf.h"

typedef struct {
    int quantised, kept;       // tensors
    size_t in_bytes, out_bytes;  // tensor data
} QuantizeStats;

// in_path (GGUF) into out_path with matrices in `to` (GGML_Q8_0 or GGML_Q4_0); written to a
// temporary file renamed at the end, so a failure leaves no output.
int gguf_quantize(const char *in_path, const char *out_path, GgmlType to, QuantizeStats *stats,
                  Error *err);
// The same for a parsed file g, its output written to f (what gguf_quantize writes to the
// temporary file; the fuzz target's way in).
int gguf_quantize_to(FILE *f, const Gguf *g, GgmlType to, QuantizeStats *stats, Error *err);

#endif

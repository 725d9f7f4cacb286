// Shared by the libFuzzer targets (make fuzz): the input as a file, for the parsers that read
// files the way the CLI gives them.
#ifndef DLLM_FUZZ_H
#define DLLM_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

// Writes the input to a file of this process (one per target and process) and returns its
// path; the same file is rewritten for every input.
static inline const char *fuzz_file(const char *name, const uint8_t *data, size_t size) {
    static char path[256];
    snprintf(path, sizeof path, "/tmp/dllm_fuzz_%d_%s", (int)getpid(), name);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    fwrite(data, 1, size, f);
    fclose(f);
    return path;
}

// The input as a NUL-terminated string (malloc'd).
static inline char *fuzz_text(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) abort();
    for (size_t i = 0; i < size; i++) text[i] = (char)data[i];
    text[size] = '\0';
    return text;
}

#endif

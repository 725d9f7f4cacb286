// One error message, filled by the function that failed and printed once by the CLI.
// Library code never exits: it returns -1 and leaves the reason here.
#ifndef DLLM_ERROR_H
#define DLLM_ERROR_H

#ifdef __cplusplus
extern "C" {  // the SentencePiece shim (C++) reports through it too
#endif

typedef struct {
    char msg[512];
} Error;

// Formats the message into err (if err is not NULL) and returns -1, so callers can
// write `return error_set(err, "...")`.
int error_set(Error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif

#endif

// Long command-line flags from a table: `--name value` or `--name=value`.
// The same table prints --help (with defaults) and the settings at the start of a run.
#ifndef DLLM_FLAGS_H
#define DLLM_FLAGS_H

#include <stdio.h>

#include "common/error.h"

typedef enum { FLAG_INT, FLAG_INT64, FLAG_U64, FLAG_FLOAT, FLAG_STRING } FlagType;

// What a checkpoint fixes of a training flag: nothing; the run's settings (giving the flag
// with --resume is an error); or the model too (an error with --init as well).
typedef enum { FLAG_FREE = 0, FIXED_BY_RUN = 1, FIXED_BY_MODEL = 2 } FlagFixed;

typedef struct {
    const char *name;    // without the leading dashes
    FlagType type;
    void *value;         // int, int64_t, uint64_t, float or const char * (points into argv)
    const char *help;
    FlagFixed fixed;
    int set;             // filled by flags_parse: given on the command line
} Flag;

// Returns 0, 1 when --help was given, or -1 with a message naming the bad flag.
int flags_parse(Flag *flags, int n_flags, int argc, char **argv, Error *err);
void flags_print_help(FILE *f, const char *usage, const Flag *flags, int n_flags);
const Flag *flags_find(const Flag *flags, int n_flags, const char *name);
// Index of value in choices[n], or -1 with a message naming the flag.
int flags_choice(const char *flag, const char *value, const char *const *choices, int n,
                 Error *err);

// For commands: parses, and on --help prints the usage and flags (returns 1), on a bad flag
// prints the one error line (returns -1); 0 means go on. A command returns `rc < 0` then.
int flags_parse_command(Flag *flags, int n_flags, int argc, char **argv, const char *usage);
// Prints "dllm: msg" as the command's one error line; returns the exit code 1.
int cli_fail(const char *msg);

// --weights of the inference commands (model_source_choose_weights)
#define WEIGHTS_FLAG_HELP                                                                    \
    "auto (as stored: Q8_0 / Q4_0 GGUF files in 8 / 4 bits on the CPU, bf16 as bf16), fp32 "  \
    "(every weight decoded to fp32), bf16 (bf16 weights and projection inputs, fp32 sums, "    \
    "CPU), q8 or q4 (matrices in 8- or 4-bit blocks of 32, inputs in 8 bits, CPU)"

// Splits a comma-separated list in place into at most max items; returns the count.
int flags_split_list(char *list, const char **items, int max);

#endif

// Helpers shared by the test suites: seeded fills and a finite-difference gradient check.
#ifndef DLLM_TESTUTIL_H
#define DLLM_TESTUTIL_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "model/model.h"
#include "dataset/data.h"
#include "train/trainer.h"

void fill_normal(float *x, size_t n, uint64_t seed, float std);
double dot_double(const float *a, const float *b, size_t n);

// A scalar function of some float buffer, recomputed from scratch on every call.
typedef double (*ScalarFn)(void *ctx);

// Compares analytic[i] with the numeric derivative of f along x[i] (central differences at
// steps h and h/2, Richardson-extrapolated) for every i < n (or a spread of max_checks indices when n is larger) and returns
// max |analytic - numeric| / max |numeric|: the error relative to the gradient's scale.
double grad_check(ScalarFn f, void *ctx, float *x, const float *analytic, size_t n, float h,
                  size_t max_checks);

// Writes a temporary file with the given bytes and returns its path (static storage).
const char *write_temp_file(const char *name, const void *data, size_t n);

// A 2-layer, d_model 64 model and an SFT trainer (batch 8, seeded init) on the prompt/response
// JSONL at path, byte-tokenized into rows of seq_len: the setting of the memorisation tests.
void tiny_sft_run(Model *m, Trainer *tr, SftData *d, const char *path, Objective objective,
                  int seq_len, int steps);

void tiny_sft_free(Model *m, Trainer *tr, SftData *d);

// Starts `sh -c cmd` in the background; returns its pid.
pid_t spawn_shell(const char *cmd);
// Waits for pid: its exit status, or 128 + the signal that ended it.
int wait_exit(pid_t pid);

// Runs a suite (Check prints its summary line) and returns the process exit code.
int run_suite(Suite *s);

// "the quick brown fox jumps over the lazy dog. " repeated to about 3000 byte tokens.
TokenData verse_data(void);
// A 2-layer, d_model 64, seq_len 32 model (seeded init) and a trainer on data: the setting of
// the overfitting and regeneration tests.
void tiny_verse_run(Model *m, Trainer *tr, Objective objective, int batch_size, int steps,
                    const TokenData *data);

// Block diffusion's two reductions on backend be, for a random-weight model (2 layers, d 32,
// 16 positions, vocabulary 40): the largest error relative to the larger of the two losses
// (and, for the MDM one, of the gradients) over a few random batches.
// block_size = seq_len: the bd3 loss and gradients of [x | xt] equal the MDM's on xt.
double bd3_mdm_reduction_error(const Backend *be);
// block_size = 1, every position masked: the bd3 loss equals the AR loss of the same weights
// read as an AR model that predicts x_i from x_<i and a [MASK] at i (one causal pass per i).
double bd3_ar_reduction_error(const Backend *be);

// A reference fixture's tokens [B, T] and logits [B, T, V] (DIR/reference.safetensors, written
// by the fixture scripts from transformers' outputs).
typedef struct {
    int B, T, V;
    int *tokens;
    float *logits;
} Reference;
Reference reference_read(const char *dir);
// max |a - b| / max |b|
double max_relative_error(const float *a, const float *b, size_t n);
// The index of the largest of x[0..n) (the first of ties).
size_t argmax_row(const float *x, int n);

#endif

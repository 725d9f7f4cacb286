// dllm: one program, one subcommand per task.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} Command;

static const Command commands[] = {
    {"tokenizer", cmd_tokenizer, "train a SentencePiece tokenizer; encode or decode with one"},
    {"prepare", cmd_prepare, "tokenize text or JSONL files into train/validation shards"},
    {"train", cmd_train, "train or fine-tune a masked-diffusion (or AR baseline) model"},
    {"eval", cmd_eval, "likelihood (ELBO / perplexity) and multiple-choice accuracy, side by side"},
    {"plot", cmd_plot, "loss curves of runs (train and validation) overlaid in a PNG"},
    {"sweep", cmd_sweep, "run a markdown plan of training runs unattended; write REPORT.md"},
    {"task", cmd_task, "write a synthetic task (reversal, addition, sudoku) as SFT JSONL"},
    {"sample", cmd_sample, "generate text from a checkpoint: parallel denoising (MDM) or AR"},
    {"serve", cmd_serve, "a local OpenAI-compatible HTTP server for a model, with a page that shows it denoise"},
    {"export", cmd_export, "a model as a Hugging Face directory (LLaDA / LLaMA layout, safetensors)"},
    {"logits", cmd_logits, "a model's logits for given token ids, as safetensors (compare implementations)"},
    {"quantize", cmd_quantize, "a GGUF file's matrices in Q8_0 or Q4_0 (for llama.cpp and dllm)"},
};
static const int n_commands = sizeof commands / sizeof commands[0];

static void print_usage(FILE *f) {
    fprintf(f, "usage: dllm <command> [--flag value ...]\n\ncommands:\n");
    for (int i = 0; i < n_commands; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n`dllm <command> --help` lists a command's flags and their defaults.\n");
}

// OpenBLAS's kernels for this CPU when its own detection may not know the model (in a VM it
// fell back to its SSE3 "Prescott" kernels: 2.5x slower sampling), chosen by the CPU's
// features; NULL leaves the choice to OpenBLAS.
static const char *blas_core_type(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
    return NULL;
}

// Settings the libraries read once, as the program loads, so they must be in the environment
// before it starts (hence running the program again); a setting already there wins.
// GOMP_SPINCOUNT: libgomp's default lets an idle thread spin 300000 times (milliseconds) before
// it sleeps, so with one other busy process on the machine (a sweep's next run, a server) every
// parallel region waited for a spinning thread's time slice: sampling took 33 s instead of
// 1.3 s that way. Sleeping at once (OMP_WAIT_POLICY=passive) costs a futex wake-up per region
// instead, 12 us here, more than a small model's ops take; 1000 spins (10-20 us) keep a thread
// awake between the ops of one pass and asleep between passes. A loaded machine gets one
// thread anyway (threads_adapt). OPENBLAS_CORETYPE: blas_core_type.
static void set_library_defaults(char **argv) {
    int changed = 0;
    if (!getenv("OMP_WAIT_POLICY") && !getenv("GOMP_SPINCOUNT"))
        changed = !setenv("GOMP_SPINCOUNT", "1000", 1);
    const char *core = blas_core_type();
    if (core && !getenv("OPENBLAS_CORETYPE")) changed |= !setenv("OPENBLAS_CORETYPE", core, 1);
    if (changed) execv("/proc/self/exe", argv);  // returns only on failure: go on as we are
}

int main(int argc, char **argv) {
    set_library_defaults(argv);
    if (argc < 2) {
        print_usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        print_usage(stdout);
        return 0;
    }
    for (int i = 0; i < n_commands; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 2, argv + 2);
    fprintf(stderr, "dllm: unknown command '%s' (see dllm --help)\n", argv[1]);
    return 2;
}

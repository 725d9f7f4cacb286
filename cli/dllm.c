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
    {"export", cmd_export, "a model as a Hugging Face directory (LLaDA / LLaMA layout, safetensors)"},
    {"logits", cmd_logits, "a model's logits for given token ids, as safetensors (compare implementations)"},
};
static const int n_commands = sizeof commands / sizeof commands[0];

static void print_usage(FILE *f) {
    fprintf(f, "usage: dllm <command> [--flag value ...]\n\ncommands:\n");
    for (int i = 0; i < n_commands; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n`dllm <command> --help` lists a command's flags and their defaults.\n");
}

// libgomp reads OMP_WAIT_POLICY once, as the program loads. Its default lets idle threads spin
// before they sleep, so with one other busy process on the machine (a sweep's next run, a
// server) every parallel region waits for a spinning thread's time slice: sampling took 33 s
// instead of 1.3 s that way. Passive waiting is dllm's default; a setting in the environment
// wins. The variable must be there before libgomp starts, hence running the program again.
static void default_to_passive_waiting(char **argv) {
    if (getenv("OMP_WAIT_POLICY")) return;
    setenv("OMP_WAIT_POLICY", "passive", 1);
    execv("/proc/self/exe", argv);  // only returns on failure: then go on with the default
}

int main(int argc, char **argv) {
    default_to_passive_waiting(argv);
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

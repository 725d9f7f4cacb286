// dllm task NAME --out DIR: writes a synthetic task's train.jsonl and test.jsonl (tasks/tasks.h).
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/flags.h"
#include "tasks/tasks.h"

int cmd_task(int argc, char **argv) {
    if (argc < 1 || strncmp(argv[0], "--", 2) == 0) {
        if (argc > 0 && strcmp(argv[0], "--help") == 0) {
            printf("usage: dllm task reversal|addition|sudoku --out DIR [--train N] [--test N] "
                   "[--digits D] [--holes H] [--answer grid|holes|solver] [--seed S]\n");
            return 0;
        }
        return cli_fail("task: name a task: reversal, addition or sudoku (see --help)");
    }
    Error err;
    TaskKind kind;
    if (task_by_name(argv[0], &kind, &err)) return cli_fail(err.msg);
    TaskOptions o = task_defaults(kind);
    const char *out = NULL, *answer = "grid";
    Flag flags[] = {
        {"out", FLAG_STRING, &out, "directory for train.jsonl and test.jsonl (required)",
         FLAG_FREE, 0},
        {"train", FLAG_INT, &o.n_train, "training examples (reversal: set by --test)",
         FLAG_FREE, 0},
        {"test", FLAG_INT, &o.n_test, "test examples (reversal: held-out reverse questions)",
         FLAG_FREE, 0},
        {"digits", FLAG_INT, &o.digits, "addition: digits per operand", FLAG_FREE, 0},
        {"holes", FLAG_INT, &o.holes, "sudoku: blank cells per 4x4 puzzle", FLAG_FREE, 0},
        {"answer", FLAG_STRING, &answer,
         "sudoku: grid (the solved grid), holes (the holes' digits in reading order) or solver "
         "(cell and digit of each hole in a constraint solver's order: \"h1 a4 ...\")",
         FLAG_FREE, 0},
        {"text", FLAG_INT, &o.text,
         "reversal: 1 writes pretraining text (train.txt) and sentence-start questions",
         FLAG_FREE, 0},
        {"seed", FLAG_U64, &o.seed, "the same seed gives the same files", FLAG_FREE, 0},
    };
    int rc = flags_parse_command(flags, sizeof flags / sizeof flags[0], argc - 1, argv + 1,
                                 "usage: dllm task NAME --out DIR [flags]");
    if (rc) return rc < 0;
    if (!out) return cli_fail("task: --out DIR is required");
    static const char *const answers[] = {"grid", "holes", "solver"};
    int a = 0;
    while (a < 3 && strcmp(answer, answers[a]) != 0) a++;
    if (a == 3) return cli_fail("task: --answer must be grid, holes or solver");
    if (a && kind != TASK_SUDOKU) return cli_fail("task: --answer is for the sudoku task");
    o.answer = (SudokuAnswer)a;
    TaskData d;
    if (task_generate(kind, &o, &d, &err)) return cli_fail(err.msg);
    rc = task_write(&d, out, &err);
    if (rc == 0 && d.text)
        printf("wrote %s/train.txt (%d lines), %s/test.jsonl (%d) and test_forward.jsonl, e.g. "
               "\"%s\" -> \"%s\"\n", out, d.n_train, out, d.n_test, d.test[0].prompt,
               d.test[0].response);
    else if (rc == 0)
        printf("wrote %s/train.jsonl (%d examples) and %s/test.jsonl (%d), e.g. \"%s\" -> \"%s\"\n",
               out, d.n_train, out, d.n_test, d.test[0].prompt, d.test[0].response);
    task_free(&d);
    return rc ? cli_fail(err.msg) : 0;
}

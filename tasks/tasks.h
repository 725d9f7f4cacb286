// Synthetic tasks dllm generates itself (nothing downloaded), written as SFT JSON lines
// {"prompt", "response"} with a train and a test split that share no prompt, scored by exact
// match of the generated answer. The three probe where diffusion and AR are said to differ:
//   reversal - facts "Who is A's parent?" -> B for every pair; the reverse question
//              "Who is B's child?" -> A is trained for half the pairs and tested on the other
//              half (the reversal curse: AR models fail it, masked diffusion need not). As
//              text (pretraining: every name can be masked): train.txt states "A's parent is
//              B." for every pair and "B's child is A." for the first half, lines shuffled;
//              test.jsonl asks "B's child is" -> " A." for the other half, test_forward.jsonl
//              "A's parent is" -> " B." for the same pairs (did the model learn the fact?),
//              and both as 4-way multiple choice among names of the same role
//              (test_choices.jsonl, test_forward_choices.jsonl);
//   addition - "123+456=" -> "579": test sums use operand pairs never seen in training;
//   sudoku   - 4x4 puzzles with a unique solution ("12.4 ..." -> "1234 ..."), test puzzles
//              from solution grids that never occur in training (a constraint puzzle that
//              rewards filling in any order). The answer is the whole grid, or the holes
//              alone: their digits in reading order ("3142..."), or in the order a solver
//              fills them, each with its cell a..p in reading order ("h1 a4 ...": forced
//              cells first, as constraint propagation finds them).
#ifndef DLLM_TASKS_H
#define DLLM_TASKS_H

#include <stdint.h>

#include "common/error.h"

typedef enum { TASK_REVERSAL, TASK_ADDITION, TASK_SUDOKU } TaskKind;
typedef enum { SUDOKU_GRID, SUDOKU_HOLES, SUDOKU_SOLVER } SudokuAnswer;

typedef struct {
    int n_train, n_test;  // examples wanted (reversal: pairs = n_test * 2; sudoku: capped by
                          // the 288 grids there are)
    int digits;           // addition: digits per operand
    int holes;            // sudoku: blank cells per puzzle
    SudokuAnswer answer;  // sudoku: what the response writes
    int text;             // reversal: pretraining text instead of SFT questions
    uint64_t seed;
} TaskOptions;

typedef struct {
    char prompt[96], response[64];
} TaskExample;

typedef struct {
    TaskExample *train, *test, *forward;  // text: a train "example" is one line (its prompt)
    int n_train, n_test, n_forward;
    int text;
} TaskData;

// "reversal", "addition", "sudoku"; -1 with a message otherwise.
int task_by_name(const char *name, TaskKind *kind, Error *err);
TaskOptions task_defaults(TaskKind kind);
int task_generate(TaskKind kind, const TaskOptions *o, TaskData *d, Error *err);
void task_free(TaskData *d);
// Writes dir/train.jsonl (text: dir/train.txt and dir/test_forward.jsonl) and dir/test.jsonl.
int task_write(const TaskData *d, const char *dir, Error *err);

#endif

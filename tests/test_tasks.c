// Synthetic tasks: the same seed gives the same examples, no test prompt leaks into training,
// every answer is right (sums add up, sudoku solutions solve their puzzles, reversal questions
// ask about facts the training set states forwards); and exact-match scoring through the
// samplers on tiny models trained to memorise a few items.
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "eval/exact_match.h"
#include "tasks/tasks.h"
#include "tests/testutil.h"
#include "dataset/sft.h"
#include "train/trainer.h"

static TaskData make(TaskKind kind, uint64_t seed) {
    TaskOptions o = task_defaults(kind);
    o.seed = seed;
    o.n_train = 500, o.n_test = 60;
    TaskData d;
    Error err;
    ck_assert_msg(task_generate(kind, &o, &d, &err) == 0, "%s", err.msg);
    return d;
}

static int same_examples(const TaskExample *a, const TaskExample *b, int n) {
    for (int i = 0; i < n; i++)
        if (strcmp(a[i].prompt, b[i].prompt) || strcmp(a[i].response, b[i].response)) return 0;
    return 1;
}

START_TEST(test_seeded_and_disjoint) {
    for (int k = 0; k < 3; k++) {
        TaskData a = make((TaskKind)k, 7), b = make((TaskKind)k, 7), c = make((TaskKind)k, 8);
        ck_assert_int_eq(a.n_train, b.n_train);
        ck_assert(same_examples(a.train, b.train, a.n_train));
        ck_assert(same_examples(a.test, b.test, a.n_test));
        ck_assert(!same_examples(a.test, c.test, a.n_test));
        int leaks = 0;
        for (int i = 0; i < a.n_test; i++)
            for (int j = 0; j < a.n_train; j++) leaks += strcmp(a.test[i].prompt, a.train[j].prompt) == 0;
        printf("  %-8s %d train, %d test, %d test prompts in train; e.g. \"%s\" -> \"%s\"\n",
               k == 0 ? "reversal" : k == 1 ? "addition" : "sudoku", a.n_train, a.n_test, leaks,
               a.test[0].prompt, a.test[0].response);
        ck_assert_int_eq(leaks, 0);
        task_free(&a);
        task_free(&b);
        task_free(&c);
    }
}
END_TEST

START_TEST(test_answers_are_right) {
    TaskData add = make(TASK_ADDITION, 3);
    for (int i = 0; i < add.n_train; i++) {
        long a, b;
        ck_assert(sscanf(add.train[i].prompt, "%ld+%ld=", &a, &b) == 2);
        ck_assert_int_eq(atol(add.train[i].response), a + b);
    }
    task_free(&add);
    TaskData sud = make(TASK_SUDOKU, 3);
    for (int i = 0; i < sud.n_test; i++) {
        const char *p = sud.test[i].prompt + strlen("sudoku "), *s = sud.test[i].response;
        int digits[16], n = 0;
        for (int j = 0; s[j]; j++) {
            if (s[j] == ' ') continue;
            ck_assert(p[j] == '.' || p[j] == s[j]);  // the solution keeps every given digit
            digits[n++] = s[j] - '0';
        }
        ck_assert_int_eq(n, 16);
        for (int u = 0; u < 4; u++) {  // rows, columns and boxes hold 1..4 once each
            int row = 0, col = 0, box = 0;
            for (int v = 0; v < 4; v++) {
                row |= 1 << digits[u * 4 + v];
                col |= 1 << digits[v * 4 + u];
                box |= 1 << digits[(u / 2 * 2 + v / 2) * 4 + u % 2 * 2 + v % 2];
            }
            ck_assert(row == 0x1E && col == 0x1E && box == 0x1E);
        }
    }
    task_free(&sud);
    // every held-out reverse question is about a pair whose forward fact is trained
    TaskData rev = make(TASK_REVERSAL, 3);
    for (int i = 0; i < rev.n_test; i++) {
        char forward[96];
        snprintf(forward, sizeof forward, "Who is %s's parent?", rev.test[i].response);
        int found = 0;
        for (int j = 0; j < rev.n_train; j++)
            found |= strcmp(rev.train[j].prompt, forward) == 0 &&
                     strncmp(rev.test[i].prompt + 7, rev.train[j].response,
                             strlen(rev.train[j].response)) == 0;
        ck_assert_msg(found, "no forward fact for '%s'", rev.test[i].prompt);
    }
    task_free(&rev);
}
END_TEST

// Eight sums learnt by heart; greedy generation must give them back exactly.
static void memorise_and_generate(Objective objective) {
    const char *items =
        "{\"prompt\": \"12+30=\", \"response\": \"42\"}\n{\"prompt\": \"5+5=\", \"response\": \"10\"}\n"
        "{\"prompt\": \"7+0=\", \"response\": \"7\"}\n{\"prompt\": \"40+41=\", \"response\": \"81\"}\n"
        "{\"prompt\": \"9+9=\", \"response\": \"18\"}\n{\"prompt\": \"3+60=\", \"response\": \"63\"}\n"
        "{\"prompt\": \"21+2=\", \"response\": \"23\"}\n{\"prompt\": \"8+11=\", \"response\": \"19\"}\n";
    const char *path = write_temp_file("sums.jsonl", items, strlen(items));
    Tokenizer t;
    tokenizer_init_bytes(&t);
    SftData d;
    Model m;
    Trainer tr;
    Error err;
    tiny_sft_run(&m, &tr, &d, path, objective, 16, 400);
    for (int s = 0; s < tr.tc.steps; s++) trainer_step(&tr);
    ExactOptions eo = {.chat = 1, .show = 1};
    ExactResult r;
    ck_assert_msg(exact_match(&m, &t, path, &eo, &r, &err) == 0, "%s", err.msg);
    printf("  %s: %d/%d sums generated exactly after %lld steps\n",
           objective == OBJECTIVE_AR ? "AR " : "MDM", r.correct, r.items, (long long)tr.tc.steps);
    ck_assert_int_eq(r.items, 8);
    ck_assert_int_eq(r.correct, 8);
    tiny_sft_free(&m, &tr, &d);
}

// The holes-only answers: the reading-order digits and the solver's cells fill exactly the
// holes, with the solution's digits, each hole once; both forms come from the same puzzles as
// the grid form.
START_TEST(test_sudoku_hole_answers) {
    TaskOptions o = task_defaults(TASK_SUDOKU);
    o.n_train = 300, o.n_test = 40, o.holes = 10;
    TaskData forms[3];
    Error err;
    for (int a = 0; a < 3; a++) {
        o.answer = (SudokuAnswer)a;
        ck_assert_msg(task_generate(TASK_SUDOKU, &o, &forms[a], &err) == 0, "%s", err.msg);
    }
    for (int i = 0; i < forms[0].n_train; i++) {
        const char *p = forms[0].train[i].prompt + strlen("sudoku ");
        ck_assert_str_eq(forms[1].train[i].prompt, forms[0].train[i].prompt);
        ck_assert_str_eq(forms[2].train[i].prompt, forms[0].train[i].prompt);
        char puzzle[17], solution[17];
        for (int j = 0, n = 0, m = 0; p[j]; j++)
            if (p[j] != ' ') puzzle[n++] = p[j], solution[m++] = forms[0].train[i].response[j];
        const char *holes = forms[1].train[i].response, *solver = forms[2].train[i].response;
        int h = 0, filled = 0;
        for (int c = 0; c < 16; c++)
            if (puzzle[c] == '.') ck_assert_int_eq(holes[h++], solution[c]);
        ck_assert_int_eq(h, 10);
        ck_assert_int_eq((int)strlen(holes), 10);
        for (const char *e = solver; *e; e += e[2] ? 3 : 2) {
            int cell = e[0] - 'a';
            ck_assert(cell >= 0 && cell < 16 && puzzle[cell] == '.');
            ck_assert_int_eq(e[1], solution[cell]);
            puzzle[cell] = 'x';  // each hole once
            filled++;
        }
        ck_assert_int_eq(filled, 10);
    }
    printf("  sudoku %s -> holes %s, solver %s\n", forms[0].test[0].prompt + 7,
           forms[1].test[0].response, forms[2].test[0].response);
    for (int a = 0; a < 3; a++) task_free(&forms[a]);
}
END_TEST

START_TEST(test_exact_match_mdm) { memorise_and_generate(OBJECTIVE_MDM); }
END_TEST

START_TEST(test_exact_match_ar) { memorise_and_generate(OBJECTIVE_AR); }
END_TEST

START_TEST(test_bad_options) {
    TaskOptions o = task_defaults(TASK_ADDITION);
    o.digits = 1, o.n_train = 100;
    TaskData d;
    Error err;
    ck_assert(task_generate(TASK_ADDITION, &o, &d, &err) == -1);
    ck_assert_msg(strstr(err.msg, "too many for 1-digit operands"), "%s", err.msg);
    TaskKind k;
    ck_assert(task_by_name("chess", &k, &err) == -1);
    ck_assert_msg(strstr(err.msg, "unknown task 'chess'"), "%s", err.msg);
}
END_TEST

int main(void) {
    Suite *s = suite_create("tasks");
    TCase *tc = tcase_create("synthetic tasks");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_seeded_and_disjoint);
    tcase_add_test(tc, test_answers_are_right);
    tcase_add_test(tc, test_sudoku_hole_answers);
    tcase_add_test(tc, test_exact_match_mdm);
    tcase_add_test(tc, test_exact_match_ar);
    tcase_add_test(tc, test_bad_options);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

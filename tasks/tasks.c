#include "tasks/tasks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "common/rng.h"

int task_by_name(const char *name, TaskKind *kind, Error *err) {
    static const char *const names[] = {"reversal", "addition", "sudoku"};
    for (int i = 0; i < 3; i++)
        if (strcmp(name, names[i]) == 0) {
            *kind = (TaskKind)i;
            return 0;
        }
    return error_set(err, "unknown task '%s' (reversal, addition or sudoku)", name);
}

TaskOptions task_defaults(TaskKind kind) {
    TaskOptions o = {.n_train = 2000, .n_test = 200, .digits = 3, .holes = 6, .seed = 1};
    if (kind == TASK_REVERSAL) o.n_test = 100;
    return o;
}

// ---- a set of 64-bit keys (open addressing) to keep examples unique ----

typedef struct {
    uint64_t *keys;  // 0 marks an empty slot, so keys are stored + 1
    size_t cap;
} KeySet;

static int set_init(KeySet *s, size_t n) {
    s->cap = 16;
    while (s->cap < 2 * n + 16) s->cap *= 2;
    s->keys = calloc(s->cap, sizeof *s->keys);
    return s->keys ? 0 : -1;
}

// Adds key; returns 1 when it was new.
static int set_add(KeySet *s, uint64_t key) {
    key++;
    size_t i = (size_t)(key * 0x9E3779B97F4A7C15ull) & (s->cap - 1);
    while (s->keys[i]) {
        if (s->keys[i] == key) return 0;
        i = (i + 1) & (s->cap - 1);
    }
    s->keys[i] = key;
    return 1;
}

static int alloc_examples(TaskData *d, int n_train, int n_test, Error *err) {
    d->train = calloc((size_t)n_train + 1, sizeof *d->train);
    d->test = calloc((size_t)n_test + 1, sizeof *d->test);
    d->n_train = d->n_test = 0;
    if (d->train && d->test) return 0;
    task_free(d);
    return error_set(err, "out of memory for %d examples", n_train + n_test);
}

// ---- reversal ----

// A pronounceable name of three syllables, e.g. "Bodeka", or (short) of three letters, e.g.
// "Bod".
static void make_name(Rng *rng, int short_name, char *out) {
    static const char consonants[] = "bdfgklmnprstvz", vowels[] = "aeiou";
    int n = 0;
    for (int s = 0; s < (short_name ? 1 : 3); s++) {
        out[n++] = consonants[rng_below(rng, sizeof consonants - 1)];
        out[n++] = vowels[rng_below(rng, sizeof vowels - 1)];
    }
    if (short_name) out[n++] = consonants[rng_below(rng, sizeof consonants - 1)];
    out[n] = '\0';
    out[0] = (char)(out[0] - 'a' + 'A');
}

static uint64_t name_key(const char *s) {
    uint64_t k = 0;
    for (; *s; s++) k = k * 131 + (unsigned char)*s;
    return k;
}

// A child and a parent whose names no earlier pair used.
static void draw_pair(Rng *rng, int short_names, KeySet *seen, char *child, char *parent) {
    do make_name(rng, short_names, child);
    while (!set_add(seen, name_key(child)));
    do make_name(rng, short_names, parent);
    while (!set_add(seen, name_key(parent)));
}

static int generate_reversal(const TaskOptions *o, Rng *rng, TaskData *d, Error *err) {
    int pairs = 2 * o->n_test, half = o->n_test;
    if (alloc_examples(d, pairs + half, half, err)) return -1;
    KeySet seen;
    if (set_init(&seen, 2 * (size_t)pairs)) return error_set(err, "out of memory");
    for (int i = 0; i < pairs; i++) {
        char child[8], parent[8];
        draw_pair(rng, 0, &seen, child, parent);
        TaskExample *fwd = &d->train[d->n_train++];
        snprintf(fwd->prompt, sizeof fwd->prompt, "Who is %s's parent?", child);
        snprintf(fwd->response, sizeof fwd->response, "%s", parent);
        // the reverse question: trained for the first half of the pairs, tested on the rest
        TaskExample *rev = i < half ? &d->train[d->n_train++] : &d->test[d->n_test++];
        snprintf(rev->prompt, sizeof rev->prompt, "Who is %s's child?", parent);
        snprintf(rev->response, sizeof rev->response, "%s", child);
    }
    free(seen.keys);
    return 0;
}

// The same pairs as plain text: statements to pretrain on, questions as sentence starts.
static int generate_reversal_text(const TaskOptions *o, Rng *rng, TaskData *d, Error *err) {
    int pairs = 2 * o->n_test, half = o->n_test;
    if (alloc_examples(d, pairs + half, half, err)) return -1;
    d->forward = calloc((size_t)half + 1, sizeof *d->forward);
    KeySet seen;
    if (!d->forward || set_init(&seen, 2 * (size_t)pairs)) return error_set(err, "out of memory");
    d->text = 1;
    for (int i = 0; i < pairs; i++) {
        char child[8], parent[8];
        // three letters: an MDM on bytes learns "A given B" only from rows where all of A is
        // masked and all of B is not, t^k (1 - t)^k of them for names of k tokens
        draw_pair(rng, 1, &seen, child, parent);
        snprintf(d->train[d->n_train++].prompt, sizeof d->train[0].prompt, "%s's parent is %s.",
                 child, parent);
        if (i < half) {
            snprintf(d->train[d->n_train++].prompt, sizeof d->train[0].prompt,
                     "%s's child is %s.", parent, child);
            continue;
        }
        TaskExample *rev = &d->test[d->n_test++], *fwd = &d->forward[d->n_forward++];
        snprintf(rev->prompt, sizeof rev->prompt, "%s's child is", parent);
        snprintf(rev->response, sizeof rev->response, " %s.", child);
        snprintf(fwd->prompt, sizeof fwd->prompt, "%s's parent is", child);
        snprintf(fwd->response, sizeof fwd->response, " %s.", parent);
    }
    for (int i = d->n_train - 1; i > 0; i--) {  // no pair's two lines side by side
        int j = (int)rng_below(rng, (uint64_t)i + 1);
        TaskExample t = d->train[i];
        d->train[i] = d->train[j];
        d->train[j] = t;
    }
    free(seen.keys);
    return 0;
}

// ---- addition ----

static int generate_addition(const TaskOptions *o, Rng *rng, TaskData *d, Error *err) {
    if (o->digits < 1 || o->digits > 9) return error_set(err, "digits must be in 1..9");
    uint64_t range = 1;
    for (int i = 0; i < o->digits; i++) range *= 10;
    if ((double)o->n_train + o->n_test > 0.5 * (double)range * range)
        return error_set(err, "%d examples is too many for %d-digit operands",
                         o->n_train + o->n_test, o->digits);
    if (alloc_examples(d, o->n_train, o->n_test, err)) return -1;
    KeySet seen;
    if (set_init(&seen, (size_t)(o->n_train + o->n_test))) return error_set(err, "out of memory");
    while (d->n_test < o->n_test || d->n_train < o->n_train) {
        uint64_t a = rng_below(rng, range), b = rng_below(rng, range);
        if (!set_add(&seen, a * range + b)) continue;  // every operand pair once: no leaks
        TaskExample *e = d->n_test < o->n_test ? &d->test[d->n_test++] : &d->train[d->n_train++];
        snprintf(e->prompt, sizeof e->prompt, "%llu+%llu=", (unsigned long long)a,
                 (unsigned long long)b);
        snprintf(e->response, sizeof e->response, "%llu", (unsigned long long)(a + b));
    }
    free(seen.keys);
    return 0;
}

// ---- 4x4 sudoku ----

typedef struct {
    char cell[16];  // 1..4, 0 = blank
} Grid;

static int fits(const Grid *g, int pos, int v) {
    int r = pos / 4, c = pos % 4, br = r / 2 * 2, bc = c / 2 * 2;
    for (int i = 0; i < 4; i++)
        if (g->cell[r * 4 + i] == v || g->cell[i * 4 + c] == v ||
            g->cell[(br + i / 2) * 4 + bc + i % 2] == v)
            return 0;
    return 1;
}

// Counts the completions of g (stopping at limit); with all != NULL, stores every full grid.
static int solve(Grid *g, int pos, int limit, Grid *all, int *n_all) {
    while (pos < 16 && g->cell[pos]) pos++;
    if (pos == 16) {
        if (all) all[(*n_all)++] = *g;
        return 1;
    }
    int count = 0;
    for (int v = 1; v <= 4 && count < limit; v++)
        if (fits(g, pos, v)) {
            g->cell[pos] = (char)v;
            count += solve(g, pos + 1, limit - count, all, n_all);
            g->cell[pos] = 0;
        }
    return count;
}

// "12.4 3..1 ...." (rows separated by spaces)
static void grid_text(const Grid *g, char *out) {
    int n = 0;
    for (int i = 0; i < 16; i++) {
        if (i && i % 4 == 0) out[n++] = ' ';
        out[n++] = g->cell[i] ? (char)('0' + g->cell[i]) : '.';
    }
    out[n] = '\0';
}

static uint64_t grid_key(const Grid *g) {
    uint64_t k = 0;
    for (int i = 0; i < 16; i++) k = k * 5 + (uint64_t)g->cell[i];
    return k;
}

// A puzzle from solution s with `holes` blanks and exactly one solution.
static void make_puzzle(const Grid *s, int holes, Rng *rng, Grid *puzzle) {
    do {
        *puzzle = *s;
        for (int h = 0; h < holes;) {
            int pos = (int)rng_below(rng, 16);
            if (puzzle->cell[pos]) puzzle->cell[pos] = 0, h++;
        }
    } while (solve(puzzle, 0, 2, NULL, NULL) != 1);
}

// The candidates of empty cell pos as a bit set (bit v for value v).
static int candidates(const Grid *g, int pos) {
    int set = 0;
    for (int v = 1; v <= 4; v++)
        if (fits(g, pos, v)) set |= 1 << v;
    return set;
}

static int bit_count(int x) { return __builtin_popcount((unsigned)x); }

// The next cell a constraint-propagation solver fills: the first empty cell with one
// candidate (a naked single); else the first cell that is the only place for a value in one of
// its row, column or box (a hidden single); else the first cell with the fewest candidates (a
// search would branch there; the unique solution says which branch holds).
static int next_solver_cell(const Grid *g) {
    int best = -1, fewest = 5;
    for (int pos = 0; pos < 16; pos++)
        if (!g->cell[pos] && bit_count(candidates(g, pos)) == 1) return pos;
    for (int pos = 0; pos < 16; pos++) {
        if (g->cell[pos]) continue;
        int r = pos / 4, c = pos % 4, br = r / 2 * 2, bc = c / 2 * 2, set = candidates(g, pos);
        int unit[3][4];  // its row, column and box
        for (int i = 0; i < 4; i++) {
            unit[0][i] = r * 4 + i;
            unit[1][i] = i * 4 + c;
            unit[2][i] = (br + i / 2) * 4 + bc + i % 2;
        }
        for (int v = 1; v <= 4; v++) {
            if (!(set >> v & 1)) continue;
            for (int u = 0; u < 3; u++) {
                int elsewhere = 0;
                for (int i = 0; i < 4; i++) {
                    int q = unit[u][i];
                    elsewhere |= q != pos && !g->cell[q] && (candidates(g, q) >> v & 1);
                }
                if (!elsewhere) return pos;
            }
        }
        if (bit_count(set) < fewest) fewest = bit_count(set), best = pos;
    }
    return best;
}

// The response for puzzle p of solution s in the chosen form.
static void sudoku_answer(const Grid *p, const Grid *s, SudokuAnswer form, char *out) {
    int n = 0;
    if (form == SUDOKU_GRID) {
        grid_text(s, out);
        return;
    }
    if (form == SUDOKU_HOLES) {
        for (int pos = 0; pos < 16; pos++)
            if (!p->cell[pos]) out[n++] = (char)('0' + s->cell[pos]);
        out[n] = '\0';
        return;
    }
    Grid g = *p;
    for (int pos; (pos = next_solver_cell(&g)) >= 0;) {
        g.cell[pos] = s->cell[pos];
        if (n) out[n++] = ' ';
        out[n++] = (char)('a' + pos);
        out[n++] = (char)('0' + s->cell[pos]);
    }
    out[n] = '\0';
}

static int generate_sudoku(const TaskOptions *o, Rng *rng, TaskData *d, Error *err) {
    if (o->holes < 1 || o->holes > 10) return error_set(err, "holes must be in 1..10");
    Grid empty = {{0}}, all[288];
    int n_all = 0;
    solve(&empty, 0, 1000, all, &n_all);
    for (int i = n_all - 1; i > 0; i--) {  // shuffle, then split the grids themselves
        int j = (int)rng_below(rng, (uint64_t)i + 1);
        Grid t = all[i];
        all[i] = all[j];
        all[j] = t;
    }
    // a sixth of the grids (48 of 288) only ever appear in test puzzles
    int test_grids = n_all / 6;
    if (alloc_examples(d, o->n_train, o->n_test, err)) return -1;
    KeySet seen;
    if (set_init(&seen, (size_t)(o->n_train + o->n_test))) return error_set(err, "out of memory");
    for (int tries = 0; (d->n_test < o->n_test || d->n_train < o->n_train) && tries < 1000000;
         tries++) {
        int test = d->n_test < o->n_test;
        const Grid *s = test ? &all[rng_below(rng, (uint64_t)test_grids)]
                             : &all[test_grids + rng_below(rng, (uint64_t)(n_all - test_grids))];
        Grid puzzle;
        make_puzzle(s, o->holes, rng, &puzzle);
        if (!set_add(&seen, grid_key(&puzzle))) continue;
        TaskExample *e = test ? &d->test[d->n_test++] : &d->train[d->n_train++];
        char text[24];
        grid_text(&puzzle, text);
        snprintf(e->prompt, sizeof e->prompt, "sudoku %s", text);
        sudoku_answer(&puzzle, s, o->answer, e->response);
    }
    free(seen.keys);
    if (d->n_train < o->n_train || d->n_test < o->n_test)
        return error_set(err, "only %d train and %d test distinct puzzles with %d holes",
                         d->n_train, d->n_test, o->holes);
    return 0;
}

int task_generate(TaskKind kind, const TaskOptions *o, TaskData *d, Error *err) {
    memset(d, 0, sizeof *d);
    if (o->n_train < 1 || o->n_test < 1) return error_set(err, "need at least 1 train and 1 test example");
    Rng rng;
    rng_seed(&rng, o->seed);
    if (o->text && kind != TASK_REVERSAL)
        return error_set(err, "text is for the reversal task");
    int rc = kind == TASK_REVERSAL   ? (o->text ? generate_reversal_text : generate_reversal)(
                                           o, &rng, d, err)
             : kind == TASK_ADDITION ? generate_addition(o, &rng, d, err)
                                     : generate_sudoku(o, &rng, d, err);
    if (rc) task_free(d);
    return rc;
}

void task_free(TaskData *d) {
    free(d->train);
    free(d->test);
    free(d->forward);
    memset(d, 0, sizeof *d);
}

static int write_split(const TaskExample *e, int n, const char *path, Error *err) {
    AtomicFile f;
    if (atomic_open(&f, path, err)) return -1;
    for (int i = 0; i < n; i++)  // prompts and answers hold no characters JSON must escape
        fprintf(f.f, "{\"prompt\": \"%s\", \"response\": \"%s\"}\n", e[i].prompt, e[i].response);
    return atomic_commit(&f, err);
}

// One line of text per train example (its prompt).
static int write_lines(const TaskExample *e, int n, const char *path, Error *err) {
    AtomicFile f;
    if (atomic_open(&f, path, err)) return -1;
    for (int i = 0; i < n; i++) fprintf(f.f, "%s\n", e[i].prompt);
    return atomic_commit(&f, err);
}

// The same questions as 4-way multiple choice: the answer and the answers of the next three
// items (other names of the same role), the answer at index i % 4.
static int write_choices(const TaskExample *e, int n, const char *path, Error *err) {
    if (n < 4) return error_set(err, "%s: multiple choice needs at least 4 items", path);
    AtomicFile f;
    if (atomic_open(&f, path, err)) return -1;
    for (int i = 0; i < n; i++) {
        fprintf(f.f, "{\"prompt\": \"%s\", \"choices\": [", e[i].prompt);
        for (int k = 0; k < 4; k++)
            fprintf(f.f, "%s\"%s\"", k ? ", " : "", e[(i + (k - i % 4 + 4) % 4) % n].response);
        fprintf(f.f, "], \"answer\": %d}\n", i % 4);
    }
    return atomic_commit(&f, err);
}

int task_write(const TaskData *d, const char *dir, Error *err) {
    char path[4200];
    if (make_dirs(dir, err)) return -1;
    if (d->text) {
        snprintf(path, sizeof path, "%s/train.txt", dir);
        if (write_lines(d->train, d->n_train, path, err)) return -1;
        snprintf(path, sizeof path, "%s/test_forward.jsonl", dir);
        if (write_split(d->forward, d->n_forward, path, err)) return -1;
        snprintf(path, sizeof path, "%s/test_forward_choices.jsonl", dir);
        if (write_choices(d->forward, d->n_forward, path, err)) return -1;
        snprintf(path, sizeof path, "%s/test_choices.jsonl", dir);
        if (write_choices(d->test, d->n_test, path, err)) return -1;
        snprintf(path, sizeof path, "%s/test.jsonl", dir);
        return write_split(d->test, d->n_test, path, err);
    }
    snprintf(path, sizeof path, "%s/train.jsonl", dir);
    if (write_split(d->train, d->n_train, path, err)) return -1;
    snprintf(path, sizeof path, "%s/test.jsonl", dir);
    return write_split(d->test, d->n_test, path, err);
}

// The documentation names files and code that exist: every path under one of the project's own
// folders that README.md, AGENTS.md and docs/*.md mention (and no doc is empty), every file of
// README's layout, every snake_case name in backticks (a function renamed leaves its old name
// behind in the prose otherwise); and the project's text tells no history.
#include <check.h>
#include <ctype.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/file.h"
#include "tests/testutil.h"

static const char *const FOLDERS[] = {"common/",  "tokenizer/", "kernels/", "model/", "store/",
                                      "dataset/", "train/",     "eval/",    "serve/", "sampler/",
                                      "sweep/",   "cli/",       "report/",  "tasks/", "bench/",
                                      "docs/",    "scripts/",   "tests/",   ".ci/",   NULL};

static int path_char(char c) { return isalnum((unsigned char)c) || (c && strchr("_./*-", c)); }

// Does folder/name (or a glob) exist?
static int exists_in(const char *folder, const char *name) {
    char path[600];
    snprintf(path, sizeof path, "%s%s", folder, name);
    if (!strchr(path, '*')) return access(path, F_OK) == 0;
    glob_t g;
    int found = glob(path, 0, NULL, &g) == 0 && g.gl_pathc > 0;
    globfree(&g);
    return found;
}

// Checks every path in one file; returns how many it checked, counting the missing ones.
static int check_file(const char *doc, int *missing) {
    char *text;
    size_t n;
    Error err;
    ck_assert_msg(file_read_all(doc, &text, &n, &err) == 0, "%s", err.msg);
    int checked = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && (path_char(text[i - 1]) || text[i - 1] == '/')) continue;  // mid-path
        for (int f = 0; FOLDERS[f]; f++) {
            size_t k = strlen(FOLDERS[f]);
            if (strncmp(text + i, FOLDERS[f], k) != 0) continue;
            size_t end = i + k;
            while (end < n && path_char(text[end])) end++;
            while (end > i + k && strchr(".-", text[end - 1])) end--;  // sentence punctuation
            char path[512];
            snprintf(path, sizeof path, "%.*s", (int)(end - i), text + i);
            // a file (a dot in its last part) or a folder (a trailing slash); words such as
            // "train/validation" are prose
            const char *last = strrchr(path, '/');
            if (!strchr(last, '.') && last[1] != '\0') {
                i = end;
                break;
            }
            if (!exists_in("", path)) {
                fprintf(stderr, "%s names %s, which does not exist\n", doc, path);
                (*missing)++;
            }
            checked++;
            i = end;
            break;
        }
    }
    free(text);
    return checked;
}

// README's layout block names files by their bare names under each folder's line:
//     kernels/cuda/       the CUDA twins (cuda_ops.h, *.cu: attention.cu ...) and backend_cuda.cu
// every name with a source extension must be in that folder.
START_TEST(test_readme_layout_names_existing_files) {
    char *text;
    size_t n;
    Error err;
    ck_assert(file_read_all("README.md", &text, &n, &err) == 0);
    char *block = strstr(text, "## Layout\n");
    ck_assert_msg(block != NULL, "README.md has no Layout section");
    block = strstr(block, "```\n") + 4;
    char *end = strstr(block, "```");
    ck_assert(end != NULL);
    *end = '\0';
    char folder[200] = "";
    int checked = 0, missing = 0;
    char *save = NULL;
    for (char *line = strtok_r(block, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (!isspace((unsigned char)line[0])) {  // a new folder (or a top-level file)
            size_t k = strcspn(line, " ");
            snprintf(folder, sizeof folder, "%.*s", (int)k, line);
            if (folder[k - 1] != '/') folder[0] = '\0';
            line += k;
        }
        for (char *p = line; *p;) {
            if (!path_char(*p)) {
                p++;
                continue;
            }
            size_t k = 0;
            while (path_char(p[k])) k++;
            char word[200];
            snprintf(word, sizeof word, "%.*s", (int)k, p);
            while (strlen(word) && strchr(".-", word[strlen(word) - 1])) word[strlen(word) - 1] = 0;
            const char *dot = strrchr(word, '.');
            static const char *const exts[] = {".c", ".h", ".cu", ".cuh", ".cc", ".sh", ".py",
                                               ".pl", ".md", NULL};
            int source = 0;
            for (int e = 0; dot && exts[e]; e++) source |= strcmp(dot, exts[e]) == 0;
            if (source && folder[0] && dot != word) {
                checked++;
                if (!exists_in(folder, word)) {
                    fprintf(stderr, "README.md layout: %s%s does not exist\n", folder, word);
                    missing++;
                }
            }
            p += k;
        }
    }
    free(text);
    printf("readme layout: %d file names checked, %d missing\n", checked, missing);
    fflush(stdout);
    ck_assert_int_gt(checked, 40);
    ck_assert_int_eq(missing, 0);
}
END_TEST

START_TEST(test_docs_name_existing_files) {
    glob_t g;
    ck_assert_int_eq(glob("docs/*.md", 0, NULL, &g), 0);
    int missing = 0, checked = check_file("README.md", &missing) +
                              check_file("AGENTS.md", &missing);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        char *text;
        size_t n;
        Error err;
        ck_assert(file_read_all(g.gl_pathv[i], &text, &n, &err) == 0);
        ck_assert_msg(n > 0, "%s is empty", g.gl_pathv[i]);
        free(text);
        checked += check_file(g.gl_pathv[i], &missing);
    }
    globfree(&g);
    printf("docs: %d file paths named, %d missing\n", checked, missing);
    fflush(stdout);
    ck_assert_int_gt(checked, 50);
    ck_assert_int_eq(missing, 0);
}
END_TEST

// ---- names of code in backticks ----

// The text of every source and script file of the project, one buffer.
static char *all_code(void) {
    static const char *const patterns[] = {"*/*.[ch]", "*/*/*.[ch]", "*/*/*.cu", "*/*/*.cuh",
                                           "*/*/*.cpp", "*/*.sh", "*/*/*.sh", "*/*.py",
                                           "*/*/*.pl", "Makefile", ".ci/run", NULL};
    size_t len = 0;
    char *code = NULL;
    for (int p = 0; patterns[p]; p++) {
        glob_t g;
        if (glob(patterns[p], 0, NULL, &g) != 0) continue;
        for (size_t i = 0; i < g.gl_pathc; i++) {
            if (strncmp(g.gl_pathv[i], "build/", 6) == 0) continue;
            char *text;
            size_t n;
            Error err;
            ck_assert_msg(file_read_all(g.gl_pathv[i], &text, &n, &err) == 0, "%s", err.msg);
            code = realloc(code, len + n + 2);
            memcpy(code + len, text, n);
            len += n;
            code[len++] = '\n';
            free(text);
        }
        globfree(&g);
    }
    code[len] = '\0';
    return code;
}

static int word_char(char c) { return isalnum((unsigned char)c) || c == '_'; }

// Does `word` stand in text as a whole word?
static int has_word(const char *text, const char *word) {
    size_t k = strlen(word);
    for (const char *p = text; (p = strstr(p, word)) != NULL; p++)
        if ((p == text || !word_char(p[-1])) && !word_char(p[k])) return 1;
    return 0;
}

// Every snake_case name in backticks in one document (a function, field or variable the text
// points a reader to: `model_loss_backward`, `act_at(m, a, i)`) must exist in the code.
static int check_names(const char *doc, const char *code, int *missing) {
    char *text;
    size_t n;
    Error err;
    ck_assert_msg(file_read_all(doc, &text, &n, &err) == 0, "%s", err.msg);
    int checked = 0;
    for (char *open = strchr(text, '`'); open; open = strchr(open, '`')) {
        if (open[1] == '`') {  // a fence or an empty span: past its backticks
            while (*open == '`') open++;
            continue;
        }
        char *close = strchr(open + 1, '`'), *eol = strchr(open + 1, '\n');
        if (!close) break;
        if (eol && eol < close) {  // spans are one line long; this backtick opens none
            open = eol;
            continue;
        }
        for (char *p = open + 1; p < close;) {
            if (!islower((unsigned char)*p) || (p > open + 1 && strchr("-./", p[-1])) ||
                word_char(p[-1])) {
                p++;
                continue;
            }
            size_t k = 0;
            while (p + k < close && word_char(p[k])) k++;
            char word[128];
            snprintf(word, sizeof word, "%.*s", (int)k, p);
            int snake = strchr(word, '_') && word[k - 1] != '_' &&
                        !strpbrk(word, "ABCDEFGHIJKLMNOPQRSTUVWXYZ");
            if (snake && !(p + k < close && strchr("-./", p[k]))) {  // not part of a path or flag
                checked++;
                if (!has_word(code, word)) {
                    fprintf(stderr, "%s names `%s`, which the code does not have\n", doc, word);
                    (*missing)++;
                }
            }
            p += k;
        }
        open = close + 1;
    }
    free(text);
    return checked;
}

START_TEST(test_docs_name_existing_code) {
    char *code = all_code();
    glob_t g;
    ck_assert_int_eq(glob("docs/*.md", 0, NULL, &g), 0);
    int missing = 0, checked = check_names("README.md", code, &missing) +
                              check_names("AGENTS.md", code, &missing);
    for (size_t i = 0; i < g.gl_pathc; i++) checked += check_names(g.gl_pathv[i], code, &missing);
    globfree(&g);
    free(code);
    printf("docs: %d names of code in backticks, %d missing\n", checked, missing);
    fflush(stdout);
    ck_assert_int_gt(checked, 100);
    ck_assert_int_eq(missing, 0);
}
END_TEST

// The project's text speaks of the project: what it is, how to use it, what was measured (by
// date and commit), never of work sessions or numbered work items.
START_TEST(test_docs_hold_no_history) {
    static const char *const banned[] = {"session", "issue #", "State (after", "work item", NULL};
    glob_t g;
    ck_assert_int_eq(glob("{README.md,AGENTS.md,docs/*.md,docs/examples/README.md,bench/*.md}",
                          GLOB_BRACE, NULL, &g), 0);
    int found = 0;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        char *text;
        size_t n;
        Error err;
        ck_assert_msg(file_read_all(g.gl_pathv[i], &text, &n, &err) == 0, "%s", err.msg);
        for (char *p = text; *p; p++) {
            for (int b = 0; banned[b]; b++)
                if (strncasecmp(p, banned[b], strlen(banned[b])) == 0) {
                    fprintf(stderr, "%s: \"%.40s\"\n", g.gl_pathv[i], p);
                    found++;
                }
            // "issue 12", "issues 3 and 4": a numbered work item
            if (strncasecmp(p, "issue", 5) == 0) {
                const char *q = p + 5 + (p[5] == 's');
                if (*q == ' ' && isdigit((unsigned char)q[1])) {
                    fprintf(stderr, "%s: \"%.40s\"\n", g.gl_pathv[i], p);
                    found++;
                }
            }
        }
        free(text);
    }
    printf("docs: %zu files read for history, %d mentions\n", g.gl_pathc, found);
    fflush(stdout);
    ck_assert_int_gt((int)g.gl_pathc, 5);
    globfree(&g);
    ck_assert_int_eq(found, 0);
}
END_TEST

int main(void) {
    Suite *s = suite_create("docs");
    TCase *tc = tcase_create("paths");
    tcase_add_test(tc, test_docs_name_existing_files);
    tcase_add_test(tc, test_readme_layout_names_existing_files);
    tcase_add_test(tc, test_docs_name_existing_code);
    tcase_add_test(tc, test_docs_hold_no_history);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

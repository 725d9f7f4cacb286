// The code's layering, checked on its #include lines: every folder has a layer, a file includes
// only folders of its own layer or below, and the folders' include graph has no circle (two
// concerns of one layer may lean on each other one way, never both ways).
//   common -> tokenizer, kernels, report, tasks -> model -> store, dataset
//          -> train, sampler, eval -> sweep, serve -> cli
#include <check.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "tests/testutil.h"

static const struct {
    const char *folder;
    int layer;
} LAYERS[] = {
    {"common", 0},  {"tokenizer", 1}, {"kernels", 1}, {"report", 1}, {"tasks", 1}, {"dist", 2},
    {"model", 2},   {"store", 3},     {"dataset", 3}, {"train", 4},  {"sampler", 4},
    {"eval", 4},    {"sweep", 5},     {"serve", 5},   {"cli", 6},
};
enum { N_FOLDERS = sizeof LAYERS / sizeof LAYERS[0] };

static int folder_index(const char *path) {
    for (int i = 0; i < N_FOLDERS; i++) {
        size_t k = strlen(LAYERS[i].folder);
        if (strncmp(path, LAYERS[i].folder, k) == 0 && path[k] == '/') return i;
    }
    return -1;
}

// Adds the folder-to-folder edges of one file's #include "folder/..." lines into edges; counts
// the includes that point up a layer (printing each).
static int scan_file(const char *path, int edges[N_FOLDERS][N_FOLDERS]) {
    int from = folder_index(path);
    if (from < 0) return 0;
    char *text;
    size_t n;
    Error err;
    ck_assert_msg(file_read_all(path, &text, &n, &err) == 0, "%s", err.msg);
    int upward = 0;
    for (char *line = text; line; line = strchr(line, '\n')) {
        line += *line == '\n';
        if (strncmp(line, "#include \"", 10) != 0) continue;
        int to = folder_index(line + 10);
        if (to < 0 || to == from) continue;
        edges[from][to] = 1;
        if (LAYERS[to].layer > LAYERS[from].layer) {
            char *end = strchr(line + 10, '"');
            fprintf(stderr, "%s includes %.*s: %s is above %s\n", path,
                    end ? (int)(end - line - 10) : 20, line + 10, LAYERS[to].folder,
                    LAYERS[from].folder);
            upward++;
        }
    }
    free(text);
    return upward;
}

// Is there a path from `from` back to `target` (depth-first, over folders not yet seen)?
static int reaches(int edges[N_FOLDERS][N_FOLDERS], int from, int target, int *seen) {
    if (from == target) return 1;
    if (seen[from]) return 0;
    seen[from] = 1;
    for (int j = 0; j < N_FOLDERS; j++)
        if (edges[from][j] && reaches(edges, j, target, seen)) return 1;
    return 0;
}

START_TEST(test_includes_point_down_and_never_in_a_circle) {
    static const char *const patterns[] = {"*/*.[ch]", "*/*/*.[ch]", "*/*/*.cu", "*/*/*.cuh",
                                           "*/*.cc", NULL};
    int edges[N_FOLDERS][N_FOLDERS] = {{0}};
    int files = 0, upward = 0;
    for (int p = 0; patterns[p]; p++) {
        glob_t g;
        if (glob(patterns[p], 0, NULL, &g) != 0) continue;
        for (size_t i = 0; i < g.gl_pathc; i++) {
            if (folder_index(g.gl_pathv[i]) < 0) continue;  // tests, bench, build
            upward += scan_file(g.gl_pathv[i], edges);
            files++;
        }
        globfree(&g);
    }
    int circles = 0, n_edges = 0;
    for (int i = 0; i < N_FOLDERS; i++)
        for (int j = 0; j < N_FOLDERS; j++) {
            if (!edges[i][j]) continue;
            n_edges++;
            int seen[N_FOLDERS] = {0};
            if (reaches(edges, j, i, seen)) {
                fprintf(stderr, "%s and %s include each other (through a circle)\n",
                        LAYERS[i].folder, LAYERS[j].folder);
                circles++;
            }
        }
    printf("layout: %d files, %d folder edges, %d upward includes, %d in circles\n", files,
           n_edges, upward, circles);
    fflush(stdout);
    ck_assert_int_gt(files, 100);
    ck_assert_int_eq(upward, 0);
    ck_assert_int_eq(circles, 0);
}
END_TEST

// The commands that only use a model (sample, serve, eval, logits, export), the sweep and the
// server reach models through store/, never through training.
START_TEST(test_inference_paths_do_not_include_train) {
    static const char *const patterns[] = {"cli/sample_cmd.c", "cli/serve_cmd.c",
                                           "cli/eval_cmd.c", "cli/logits_cmd.c",
                                           "cli/export_cmd.c", "sweep/*.[ch]", "serve/*.[ch]",
                                           "eval/*.[ch]", "store/*.[ch]", "sampler/*.[ch]",
                                           NULL};
    int checked = 0, found = 0;
    for (int p = 0; patterns[p]; p++) {
        glob_t g;
        ck_assert_int_eq(glob(patterns[p], 0, NULL, &g), 0);
        for (size_t i = 0; i < g.gl_pathc; i++) {
            char *text;
            size_t n;
            Error err;
            ck_assert_msg(file_read_all(g.gl_pathv[i], &text, &n, &err) == 0, "%s", err.msg);
            if (strstr(text, "#include \"train/")) {
                fprintf(stderr, "%s includes train/\n", g.gl_pathv[i]);
                found++;
            }
            free(text);
            checked++;
        }
        globfree(&g);
    }
    printf("layout: %d files of inference paths, %d include train/\n", checked, found);
    ck_assert_int_gt(checked, 20);
    ck_assert_int_eq(found, 0);
}
END_TEST

int main(void) {
    Suite *s = suite_create("layout");
    TCase *tc = tcase_create("includes");
    tcase_add_test(tc, test_includes_point_down_and_never_in_a_circle);
    tcase_add_test(tc, test_inference_paths_do_not_include_train);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

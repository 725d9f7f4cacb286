// Reading run logs back and drawing them: the PNG decodes to the requested size, each series
// shows up in its palette color where its points are, and bad output paths fail cleanly.
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#include "stb_image.h"

#include "report/plot.h"
#include "report/run_log.h"
#include "tests/testutil.h"

// Pixels of exactly this color.
static int count_color(const unsigned char *img, int w, int h, int r, int g, int b) {
    int n = 0;
    for (int i = 0; i < w * h; i++)
        n += img[3 * i] == r && img[3 * i + 1] == g && img[3 * i + 2] == b;
    return n;
}

START_TEST(test_plot_png) {
    double x[50], falling[50], rising[50];
    for (int i = 0; i < 50; i++) x[i] = i * 10, falling[i] = 5.0 - i * 0.05, rising[i] = 1.0 + i * 0.02;
    falling[7] = NAN;  // skipped, not drawn as garbage
    Series s[2] = {{"falling", x, falling, 50, 0, 0, 1, 0}, {"rising", x, rising, 50, 1, 0, 0, 0}};
    PlotSpec spec = {.title = "test", .x_label = "step", .y_label = "loss", .width = 640,
                     .height = 400};
    char path[256];
    snprintf(path, sizeof path, "/tmp/dllm_plot_%d.png", (int)getpid());
    Error err;
    ck_assert_msg(plot_png(path, &spec, s, 2, &err) == 0, "%s", err.msg);
    int w, h, c;
    unsigned char *img = stbi_load(path, &w, &h, &c, 3);
    ck_assert_msg(img != NULL, "not a PNG");
    ck_assert_int_eq(w, 640);
    ck_assert_int_eq(h, 400);
    int blue = count_color(img, w, h, 31, 119, 180), red = count_color(img, w, h, 214, 39, 40);
    printf("  640x400 PNG: %d pixels of series 0's color, %d of series 1's\n", blue, red);
    ck_assert(blue > 500 && red > 500);
    // the falling series starts high: its color appears in the upper-left quarter
    int upper_left = 0;
    for (int y = 0; y < h / 3; y++)
        for (int xx = 0; xx < w / 3; xx++) {
            const unsigned char *p = img + 3 * (y * w + xx);
            upper_left += p[0] == 31 && p[1] == 119 && p[2] == 180;
        }
    ck_assert(upper_left > 20);
    stbi_image_free(img);
    remove(path);
    ck_assert(plot_png("/nonexistent/dir/x.png", &spec, s, 2, &err) == -1);
    ck_assert_msg(strstr(err.msg, "/nonexistent/dir/x.png"), "%s", err.msg);
}
END_TEST

START_TEST(test_run_log) {
    char dir[128], cmd[300];
    snprintf(dir, sizeof dir, "/tmp/dllm_runlog_%d", (int)getpid());
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    ck_assert(system(cmd) == 0);
    char path[300];
    snprintf(path, sizeof path, "%s/log.jsonl", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"type\":\"event\",\"step\":0,\"event\":\"start\",\"detail\":\"\"}\n"
               "{\"type\":\"train\",\"step\":1,\"loss\":4,\"tokens_per_s\":100,\"elapsed_s\":1}\n"
               "{\"type\":\"train\",\"step\":2,\"loss\":null,\"skipped\":true,\"tokens_per_s\":300,\"elapsed_s\":2}\n"
               "{\"type\":\"eval\",\"step\":2,\"val_loss\":3.5,\"elapsed_s\":2.5}\n"
               "{\"type\":\"train\",\"step\":3,\"loss\":2,\"tokens_per_s\":200,\"elapsed_s\":3}\n"
               "{\"type\":\"eval\",\"step\":3,\"val_loss\":3.25,\"elapsed_s\":3.5}\n"
               "{\"type\":\"event\",\"step\":3,\"event\":\"done\",\"detail\":\"\"}\n"
               "{\"type\":\"train\",\"st");  // a line cut short by a kill
    fclose(f);
    RunLog log;
    Error err;
    ck_assert_msg(run_log_read(dir, &log, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(log.n_train, 3);
    ck_assert_int_eq(log.n_eval, 2);
    ck_assert(isnan(log.train_loss[1]));
    ck_assert_double_eq(log.tokens_per_s, 200.0);
    ck_assert_double_eq(log.elapsed_s, 3.5);
    ck_assert_str_eq(log.last_event, "done");
    double step;
    ck_assert_double_eq(run_log_best_eval(&log, &step), 3.25);
    ck_assert_double_eq(step, 3);
    ck_assert_double_eq(run_log_final_train_loss(&log, 1), 2.0);
    ck_assert_double_eq(run_log_final_train_loss(&log, 2), 3.0);  // the NAN is passed over
    run_log_free(&log);
    // the tail reader skips the cut line and the events after the last step
    long long last;
    double loss;
    ck_assert_int_eq(run_log_last_step(dir, &last, &loss), 0);
    ck_assert_int_eq(last, 3);
    ck_assert_double_eq(loss, 2.0);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert(system(cmd) == 0);
    ck_assert(run_log_read(dir, &log, &err) == -1);
    ck_assert_msg(strstr(err.msg, "log.jsonl"), "%s", err.msg);
}
END_TEST

int main(void) {
    Suite *s = suite_create("report");
    TCase *tc = tcase_create("plots and logs");
    tcase_add_test(tc, test_plot_png);
    tcase_add_test(tc, test_run_log);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

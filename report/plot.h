// Line charts as PNG files (stb_image_write; text from stb_easy_font): axes with "nice" ticks,
// a light grid, several series overlaid, a legend. Enough for loss curves and metric-vs-setting
// plots without any plotting library.
#ifndef DLLM_PLOT_H
#define DLLM_PLOT_H

#include "common/error.h"

typedef struct {
    const char *label;     // legend text (NULL: not in the legend)
    const double *x, *y;   // n points, x ascending for lines
    int n;
    int color;             // index into the palette (runs get one color each)
    int faint;             // drawn thin and pale (raw training loss under the validation curve)
    int markers;           // a square at every point
    int no_line;           // markers only
} Series;

typedef struct {
    const char *title, *x_label, *y_label;
    const char *const *x_names;  // NULL, or names for x = 0, 1, ... (categorical axis)
    int n_x_names;
    int width, height;     // pixels (0: 960 x 600)
} PlotSpec;

// Draws the series and writes path (via path.tmp and a rename). Non-finite points are skipped.
int plot_png(const char *path, const PlotSpec *spec, const Series *series, int n_series,
             Error *err);

#endif

#include "report/plot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_WRITE_NO_STDIO
#include "stb_image_write.h"
#include "stb_easy_font.h"

#include "common/file.h"

typedef struct {
    unsigned char *rgb;
    int w, h;
} Canvas;

typedef struct {
    unsigned char r, g, b;
} Rgb;

static const Rgb palette[] = {
    {31, 119, 180}, {214, 39, 40}, {44, 160, 44}, {255, 127, 14}, {148, 103, 189},
    {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207},
};
static const Rgb black = {0, 0, 0}, grid = {225, 225, 225}, white = {255, 255, 255};

static Rgb series_color(const Series *s) {
    Rgb c = palette[s->color % (int)(sizeof palette / sizeof palette[0])];
    if (s->faint)  // halfway to white
        c = (Rgb){(unsigned char)((c.r + 255) / 2), (unsigned char)((c.g + 255) / 2),
                  (unsigned char)((c.b + 255) / 2)};
    return c;
}

static void put_pixel(Canvas *cv, int x, int y, Rgb c) {
    if (x < 0 || y < 0 || x >= cv->w || y >= cv->h) return;
    unsigned char *p = cv->rgb + 3 * ((size_t)y * cv->w + x);
    p[0] = c.r, p[1] = c.g, p[2] = c.b;
}

static void fill_rect(Canvas *cv, int x0, int y0, int x1, int y1, Rgb c) {
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) put_pixel(cv, x, y, c);
}

// A line of the given thickness: squares stamped along the longer axis.
static void draw_line(Canvas *cv, double x0, double y0, double x1, double y1, int thick, Rgb c) {
    double dx = x1 - x0, dy = y1 - y0;
    int steps = (int)ceil(fmax(fabs(dx), fabs(dy)));
    if (steps < 1) steps = 1;
    for (int i = 0; i <= steps; i++) {
        int x = (int)lround(x0 + dx * i / steps), y = (int)lround(y0 + dy * i / steps);
        fill_rect(cv, x - thick / 2, y - thick / 2, x - thick / 2 + thick, y - thick / 2 + thick, c);
    }
}

// Text with its top-left corner at (x, y), each font pixel drawn as scale x scale.
static void draw_text(Canvas *cv, int x, int y, const char *text, int scale, Rgb c) {
    static char buf[60000];
    int quads = stb_easy_font_print(0, 0, (char *)text, NULL, buf, sizeof buf);
    for (int q = 0; q < quads; q++) {
        const float *v = (const float *)(buf + (size_t)q * 64);  // 4 vertices of 16 bytes
        float x0 = v[0], y0 = v[1], x1 = v[8], y1 = v[9];        // opposite corners
        fill_rect(cv, x + (int)(x0 * scale), y + (int)(y0 * scale), x + (int)(x1 * scale),
                  y + (int)(y1 * scale), c);
    }
}

static int text_width(const char *text, int scale) {
    return stb_easy_font_width((char *)text) * scale;
}

// A tick spacing of 1, 2 or 5 times a power of ten giving about `target` ticks over span.
static double nice_step(double span, int target) {
    double raw = span / target, mag = pow(10.0, floor(log10(raw)));
    double f = raw / mag;
    return (f < 1.5 ? 1.0 : f < 3.5 ? 2.0 : f < 7.5 ? 5.0 : 10.0) * mag;
}

static void data_range(const Series *s, int n, double *x0, double *x1, double *y0, double *y1) {
    *x0 = *y0 = INFINITY;
    *x1 = *y1 = -INFINITY;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < s[i].n; k++) {
            if (!isfinite(s[i].x[k]) || !isfinite(s[i].y[k])) continue;
            *x0 = fmin(*x0, s[i].x[k]), *x1 = fmax(*x1, s[i].x[k]);
            *y0 = fmin(*y0, s[i].y[k]), *y1 = fmax(*y1, s[i].y[k]);
        }
    if (!isfinite(*x0)) *x0 = 0, *x1 = 1, *y0 = 0, *y1 = 1;
    if (*x1 <= *x0) *x0 -= 0.5, *x1 += 0.5;
    if (*y1 <= *y0) *y0 -= 0.5, *y1 += 0.5;
    double pad = 0.04 * (*y1 - *y0);
    *y0 -= pad, *y1 += pad;
}

typedef struct {
    int left, top, right, bottom;  // the plot area in pixels
    double x0, x1, y0, y1;         // the data range it shows
} Frame;

static double px(const Frame *f, double x) {
    return f->left + (x - f->x0) / (f->x1 - f->x0) * (f->right - f->left);
}

static double py(const Frame *f, double y) {
    return f->bottom - (y - f->y0) / (f->y1 - f->y0) * (f->bottom - f->top);
}

static void draw_axes(Canvas *cv, const Frame *f, const PlotSpec *spec) {
    char label[64];
    double ystep = nice_step(f->y1 - f->y0, 6);
    for (double y = ceil(f->y0 / ystep) * ystep; y <= f->y1; y += ystep) {
        int yy = (int)lround(py(f, y));
        draw_line(cv, f->left, yy, f->right, yy, 1, grid);
        draw_line(cv, f->left - 5, yy, f->left, yy, 1, black);
        snprintf(label, sizeof label, "%g", fabs(y) < ystep * 1e-6 ? 0.0 : y);
        draw_text(cv, f->left - 9 - text_width(label, 2), yy - 6, label, 2, black);
    }
    if (spec->x_names) {
        for (int i = 0; i < spec->n_x_names; i++) {
            int xx = (int)lround(px(f, i));
            draw_line(cv, xx, f->bottom, xx, f->bottom + 5, 1, black);
            draw_text(cv, xx - text_width(spec->x_names[i], 2) / 2, f->bottom + 10,
                      spec->x_names[i], 2, black);
        }
    } else {
        double xstep = nice_step(f->x1 - f->x0, 8);
        for (double x = ceil(f->x0 / xstep) * xstep; x <= f->x1; x += xstep) {
            int xx = (int)lround(px(f, x));
            draw_line(cv, xx, f->top, xx, f->bottom, 1, grid);
            draw_line(cv, xx, f->bottom, xx, f->bottom + 5, 1, black);
            snprintf(label, sizeof label, "%g", x);
            draw_text(cv, xx - text_width(label, 2) / 2, f->bottom + 10, label, 2, black);
        }
    }
    draw_line(cv, f->left, f->top, f->left, f->bottom, 2, black);
    draw_line(cv, f->left, f->bottom, f->right, f->bottom, 2, black);
    if (spec->title)
        draw_text(cv, (cv->w - text_width(spec->title, 3)) / 2, 12, spec->title, 3, black);
    if (spec->y_label) draw_text(cv, 10, f->top - 28, spec->y_label, 2, black);
    if (spec->x_label)
        draw_text(cv, (f->left + f->right - text_width(spec->x_label, 2)) / 2, cv->h - 28,
                  spec->x_label, 2, black);
}

static void draw_series(Canvas *cv, const Frame *f, const Series *s) {
    Rgb c = series_color(s);
    int thick = s->faint ? 1 : 3;
    double last_x = NAN, last_y = NAN;
    for (int k = 0; k < s->n; k++) {
        if (!isfinite(s->x[k]) || !isfinite(s->y[k])) continue;
        double x = px(f, s->x[k]), y = py(f, s->y[k]);
        if (!s->no_line && isfinite(last_x)) draw_line(cv, last_x, last_y, x, y, thick, c);
        if (s->markers) fill_rect(cv, (int)x - 4, (int)y - 4, (int)x + 5, (int)y + 5, c);
        last_x = x, last_y = y;
    }
}

// The legend box in the top-right corner of the plot area.
static void draw_legend(Canvas *cv, const Frame *f, const Series *s, int n) {
    int rows = 0, width = 0;
    for (int i = 0; i < n; i++)
        if (s[i].label) rows++, width = width > text_width(s[i].label, 2) ? width : text_width(s[i].label, 2);
    if (rows == 0) return;
    int x0 = f->right - width - 60, y0 = f->top + 10, row_h = 22;
    fill_rect(cv, x0, y0, f->right - 10, y0 + rows * row_h + 10, white);
    draw_line(cv, x0, y0, f->right - 10, y0, 1, black);
    draw_line(cv, x0, y0 + rows * row_h + 10, f->right - 10, y0 + rows * row_h + 10, 1, black);
    draw_line(cv, x0, y0, x0, y0 + rows * row_h + 10, 1, black);
    draw_line(cv, f->right - 10, y0, f->right - 10, y0 + rows * row_h + 10, 1, black);
    int row = 0;
    for (int i = 0; i < n; i++) {
        if (!s[i].label) continue;
        int y = y0 + 10 + row * row_h + 6;
        Rgb c = series_color(&s[i]);
        draw_line(cv, x0 + 8, y, x0 + 36, y, s[i].faint ? 1 : 3, c);
        if (s[i].markers) fill_rect(cv, x0 + 18, y - 4, x0 + 27, y + 5, c);
        draw_text(cv, x0 + 44, y - 6, s[i].label, 2, black);
        row++;
    }
}

static void write_to_file(void *ctx, void *data, int size) {
    fwrite(data, 1, (size_t)size, (FILE *)ctx);
}

int plot_png(const char *path, const PlotSpec *spec, const Series *series, int n_series,
             Error *err) {
    Canvas cv = {NULL, spec->width ? spec->width : 960, spec->height ? spec->height : 600};
    cv.rgb = malloc((size_t)cv.w * cv.h * 3);
    if (!cv.rgb) return error_set(err, "%s: out of memory for the image", path);
    memset(cv.rgb, 255, (size_t)cv.w * cv.h * 3);
    Frame f = {90, 50, cv.w - 25, cv.h - 60, 0, 0, 0, 0};
    data_range(series, n_series, &f.x0, &f.x1, &f.y0, &f.y1);
    if (spec->x_names) f.x0 = -0.5, f.x1 = spec->n_x_names - 0.5;
    draw_axes(&cv, &f, spec);
    for (int pass = 0; pass < 2; pass++)  // faint series first, under the others
        for (int i = 0; i < n_series; i++)
            if (series[i].faint == !pass) draw_series(&cv, &f, &series[i]);
    draw_legend(&cv, &f, series, n_series);
    AtomicFile a;
    int status = atomic_open(&a, path, err);
    if (status == 0) {
        if (!stbi_write_png_to_func(write_to_file, a.f, cv.w, cv.h, 3, cv.rgb, cv.w * 3)) {
            atomic_abort(&a);
            status = error_set(err, "%s: PNG encoding failed", path);
        } else {
            status = atomic_commit(&a, err);
        }
    }
    free(cv.rgb);
    return status;
}

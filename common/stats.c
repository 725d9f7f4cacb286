#include "common/stats.h"

#include <math.h>

double stats_mean(const double *x, int n) {
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += x[i];
    return n > 0 ? sum / n : NAN;
}

double stats_std(const double *x, int n) {
    if (n < 2) return NAN;
    double mean = stats_mean(x, n), sq = 0.0;
    for (int i = 0; i < n; i++) sq += (x[i] - mean) * (x[i] - mean);
    return sqrt(sq / (n - 1));
}

double stats_ratio_se(const double *x, const double *y, int n) {
    if (n < 2) return NAN;
    double sx = 0.0, sy = 0.0;
    for (int i = 0; i < n; i++) sx += x[i], sy += y[i];
    double r = sx / sy, sq = 0.0;
    for (int i = 0; i < n; i++) sq += (x[i] - r * y[i]) * (x[i] - r * y[i]);
    return sqrt(sq / ((double)n * (n - 1))) / (sy / n);
}

double stats_proportion_se(double p, int n) {
    return n > 0 ? sqrt(p * (1.0 - p) / n) : NAN;
}

// The few statistics a reviewer asks of a reported number: the mean and spread of a sample, and
// the standard error of a ratio of sums (nats over tokens), of a mean, and of a proportion.
#ifndef DLLM_STATS_H
#define DLLM_STATS_H

double stats_mean(const double *x, int n);
// The sample standard deviation (n - 1 in the denominator); NAN when n < 2.
double stats_std(const double *x, int n);
// The standard error of R = sum(x) / sum(y) over n independent pairs, by the delta method:
// sqrt(sum((x_i - R y_i)^2) / (n (n - 1))) / mean(y). With every y_i = 1 it is the standard
// error of the mean of x. NAN when n < 2.
double stats_ratio_se(const double *x, const double *y, int n);
// The standard error of a proportion p measured on n items: sqrt(p (1 - p) / n).
double stats_proportion_se(double p, int n);

#endif

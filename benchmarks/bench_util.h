/*
 * Timing helpers shared by the benchmarks' C programs (emu_bench.c, trap_bench.c,
 * qemu_kl_bench.c): a monotonic clock in nanoseconds and order statistics.
 */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <stdlib.h>
#include <time.h>

static inline double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static inline int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Sorts v in place. */
static inline double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return v[n / 2];
}

/* The p-quantile (0..1) of n sorted values. */
static inline double quantile(const double *sorted, int n, double p)
{
	return sorted[(int)(p * (n - 1) + 0.5)];
}

#endif /* BENCH_UTIL_H */

/*
 * Timing helpers shared by the benchmarks' C programs (emu_bench.c, trap_bench.c,
 * qemu_kl_bench.c): a monotonic clock, order statistics, pinning, and the one way
 * every ratio is measured: a paired, interleaved ratio.
 *
 * Why paired: these programs run on shared, noisy VMs whose speed changes over
 * seconds.  Two loops timed at different moments give the ratio of two moments,
 * not of two loops (five runs in a row once gave 0.52-1.07x for one figure).  So
 * each ratio is a pair of loops, A and B, timed close together:
 *
 *   - in each of PAIR_ROUNDS rounds, A and B alternate PAIR_TRIES times (which
 *     one goes first swaps every try and every round) and each side keeps its
 *     fastest try, which drops the tries a preemption or an interrupt landed in;
 *   - the ratio is the median and p10-p90 of the per-round ratios
 *     time(A)/time(B), per operation; a side's own figure is the median of its
 *     rounds;
 *   - the pairs take turns round by round (pairs_measure), so every pair's
 *     rounds span the whole run: a host that flips between states during the
 *     run widens every ratio's spread instead of biasing one ratio.
 *
 * Why a yardstick: pairing cancels a host that is slower in general, not one
 * whose slowness changes the ratio.  This host drops, for ~0.05-0.5 s at a
 * time, into a slow state that slows the emulator's call-heavy loops ~1.5x
 * and AES-NI's loops hardly at all, so each state has its own ratio.  To tell
 * the states apart without looking at the ratio, every round also times a
 * fixed loop, the yardstick (stores to one L1-resident buffer: ~1.5x slower in
 * the slow state and within ~1% inside the fast one, where a dependent ALU
 * chain moved by 0.3% between the states), keeping its fastest try like a
 * side.  The yardstick does not move the ratios: with functions aligned
 * (-falign-functions=64) they are the same with and without it.  put_ratio
 * prints every round's A, B and yardstick times, and bench_report.py puts the
 * rounds in host states by the yardstick and gives a ratio per state.
 *
 * A side is a callback that runs its loop once and returns the operations it
 * did, so the figures are nanoseconds and TSC ticks per operation, and a ratio
 * compares per-operation times even when A and B do different amounts of work.
 * A try should take a fraction of a millisecond: short enough that a preemption
 * misses most tries, long enough to dwarf the clock reads.
 *
 * A program may define PAIR_ROUNDS, PAIR_TRIES and PAIR_YARDSTICK_OPS before including this file.
 * Needs _GNU_SOURCE (sched_getcpu, CPU_SET) defined before the first include.
 */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#ifndef _GNU_SOURCE
#error "bench_util.h needs _GNU_SOURCE defined before the first #include"
#endif

#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <x86intrin.h>

#ifndef PAIR_ROUNDS
#define PAIR_ROUNDS 51
#endif
#ifndef PAIR_TRIES
#define PAIR_TRIES 8
#endif
#ifndef PAIR_YARDSTICK_OPS
#define PAIR_YARDSTICK_OPS 20000 /* about 27 us natively: each op is 8 stores */
#endif

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

/* The p-quantile (0..1) of n sorted values. */
static inline double quantile(const double *sorted, int n, double p)
{
	return sorted[(int)(p * (n - 1) + 0.5)];
}

/* Pins the process to one CPU, $BENCH_CPU or the one it runs on now (not a fixed
 * CPU 0, which the host may keep busier), so the two sides of a pair never run
 * on different CPUs.  Returns that CPU. */
static inline int pin_cpu(void)
{
	const char *env = getenv("BENCH_CPU");
	int cpu = env ? atoi(env) : sched_getcpu();
	cpu_set_t one;

	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	if (sched_setaffinity(0, sizeof(one), &one))
		perror("bench: sched_setaffinity (the sides may migrate between CPUs)");
	return cpu;
}

/* ---- paired, interleaved ratios ---------------------------------------------------------- */

struct timing {
	double ns, ticks; /* per operation */
};

struct pair_side {
	long (*run)(void *arg); /* runs the loop once; returns the operations it did */
	void *arg;
	struct timing round[PAIR_ROUNDS]; /* the fastest try of each round */
};

/* One ratio: time(a) / time(b) per operation, and the host's yardstick in each round. */
struct pair {
	struct pair_side a, b;
	double yardstick[PAIR_ROUNDS]; /* ns per yardstick op, the fastest try of each round */
};

struct ratio {
	double median, p10, p90;
};

/* One try of one side in round r; the first try of a round sets its figure. */
static inline void pair_try(struct pair_side *s, int r, int first)
{
	double t0 = now_ns();
	uint64_t c0 = __rdtsc();
	long ops = s->run(s->arg);
	uint64_t c1 = __rdtsc();
	double t1 = now_ns();
	struct timing t = {(t1 - t0) / (double)ops, (double)(c1 - c0) / (double)ops};

	if (first || t.ns < s->round[r].ns)
		s->round[r] = t;
}

/* The yardstick: ns per op of a fixed loop of eight stores to a 4 KiB buffer.
 * It measures the host, not the pair: the same loop in every round of every
 * program, never part of a ratio (volatile: the stores must happen). */
static inline double yardstick_try(void)
{
	static uint64_t buf[512];
	volatile uint64_t *p = buf;
	double t0 = now_ns();

	for (int i = 0; i < PAIR_YARDSTICK_OPS; i++) {
		int j = (i * 8) & 511;
		uint64_t v = (uint64_t)i;

		p[j] = v, p[j + 1] = v, p[j + 2] = v, p[j + 3] = v;
		p[j + 4] = v, p[j + 5] = v, p[j + 6] = v, p[j + 7] = v;
	}
	return (now_ns() - t0) / PAIR_YARDSTICK_OPS;
}

/* Round r of one pair: A and B alternate PAIR_TRIES times, the order swapping
 * every try and every round, so neither side always runs right after the other;
 * a yardstick try follows each A-B pair of tries, and its fastest is the round's. */
static inline void pair_round(struct pair *p, int r)
{
	for (int t = 0; t < PAIR_TRIES; t++) {
		int a_first = (r + t) & 1;
		double y;

		pair_try(a_first ? &p->a : &p->b, r, t == 0);
		pair_try(a_first ? &p->b : &p->a, r, t == 0);
		y = yardstick_try();
		if (t == 0 || y < p->yardstick[r])
			p->yardstick[r] = y;
	}
}

/* All pairs, taking turns round by round after one warm-up run of every side
 * (caches, branch predictors, clock frequency, lazy binding). */
static inline void pairs_measure(struct pair *const pairs[], int n)
{
	for (int i = 0; i < n; i++) {
		pairs[i]->a.run(pairs[i]->a.arg);
		pairs[i]->b.run(pairs[i]->b.arg);
	}
	for (int r = 0; r < PAIR_ROUNDS; r++)
		for (int i = 0; i < n; i++)
			pair_round(pairs[i], r);
}

/* A side's own figure: the median of its rounds, ns and ticks each. */
static inline struct timing side_median(const struct pair_side *s)
{
	double ns[PAIR_ROUNDS], ticks[PAIR_ROUNDS];

	for (int r = 0; r < PAIR_ROUNDS; r++) {
		ns[r] = s->round[r].ns;
		ticks[r] = s->round[r].ticks;
	}
	qsort(ns, PAIR_ROUNDS, sizeof(double), cmp_double);
	qsort(ticks, PAIR_ROUNDS, sizeof(double), cmp_double);
	return (struct timing){quantile(ns, PAIR_ROUNDS, 0.5), quantile(ticks, PAIR_ROUNDS, 0.5)};
}

/* The median and p10-p90 of the per-round ratios time(A)/time(B). */
static inline struct ratio pair_ratio(const struct pair *p)
{
	double v[PAIR_ROUNDS];

	for (int r = 0; r < PAIR_ROUNDS; r++)
		v[r] = p->a.round[r].ns / p->b.round[r].ns;
	qsort(v, PAIR_ROUNDS, sizeof(double), cmp_double);
	return (struct ratio){quantile(v, PAIR_ROUNDS, 0.5), quantile(v, PAIR_ROUNDS, 0.1),
			      quantile(v, PAIR_ROUNDS, 0.9)};
}

/* JSON members, one a line, followed by a comma unless last. */
static inline void put_timing(const char *name, struct timing t, int last)
{
	printf("\"%s\": {\"ns\": %.3f, \"ticks\": %.2f}%s\n", name, t.ns, t.ticks, last ? "" : ",");
}

/* `, "key": [v0, v1, ...]`: one value per round. */
static inline void put_rounds(const char *key, const double v[PAIR_ROUNDS])
{
	printf(", \"%s\": [", key);
	for (int r = 0; r < PAIR_ROUNDS; r++)
		printf("%s%.4f", r ? ", " : "", v[r]);
	printf("]");
}

/* The ratio's median and p10-p90, then every round's A, B and yardstick ns per
 * operation (a_ns, b_ns, yardstick_ns), which bench_report.py needs to give a
 * ratio per host state. */
static inline void put_ratio(const char *name, const struct pair *p, int last)
{
	struct ratio q = pair_ratio(p);
	double a[PAIR_ROUNDS], b[PAIR_ROUNDS];

	for (int r = 0; r < PAIR_ROUNDS; r++) {
		a[r] = p->a.round[r].ns;
		b[r] = p->b.round[r].ns;
	}
	printf("\"%s\": {\"median\": %.4f, \"p10\": %.4f, \"p90\": %.4f, \"rounds\": %d", name, q.median,
	       q.p10, q.p90, PAIR_ROUNDS);
	put_rounds("a_ns", a);
	put_rounds("b_ns", b);
	put_rounds("yardstick_ns", p->yardstick);
	printf("}%s\n", last ? "" : ",");
}

#endif /* BENCH_UTIL_H */

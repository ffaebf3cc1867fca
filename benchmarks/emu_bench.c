/*
 * Timing loops for benchmarks/bench_emulator.py: the emulated Key Locker
 * instructions against plain AES-NI on the same data, in one process.
 *
 * Pinned to one CPU.  Each ratio is its own pair of loops, A and B, measured
 * in REPS rounds after a warm-up.  In a round A and B alternate TRIES times
 * (a fraction of a millisecond each) and each side keeps its fastest try,
 * which drops the tries a preemption landed in; the ratio is the median and
 * p10-p90 of the per-round ratios, so a host that changes speed between
 * rounds moves both sides of every ratio alike.  The per-loop figures are
 * the medians of that loop's side.  Native and emulated loops have the same
 * shape: one call of a non-inlined function per operation, over the same
 * buffer.  Output is one JSON object (nanoseconds and TSC ticks per
 * operation, and the ratios); the Python side prints it.
 *
 *   (a) wide:  8 independent blocks per op, through a 64 KiB buffer
 *              (AESENCWIDE128KL vs 8 interleaved AES-NI blocks);
 *   (b) chain: one block, each op on the previous output
 *              (AESENC128KL vs a single-block AES-NI chain);
 *   (c) cold:  (b) with a different handle every call, so every call
 *              misses the unwrap cache.
 */
#define _GNU_SOURCE
#include <immintrin.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <x86intrin.h>

#include "klemu.h"
#include "bench_util.h"

#define REPS 51 /* rounds per ratio */
#define TRIES 8 /* A and B alternate this often in a round; each keeps its fastest */
#define WIDE_BLOCKS 4096 /* 64 KiB */
#define WIDE_PASSES 4 /* over the buffer per try */
#define CHAIN_OPS 10000
#define COLD_HANDLES 64 /* far more than KLEMU_CACHE_WAYS */
#define COLD_OPS 1000

#define AESNI __attribute__((target("aes,sse4.1"), noinline))

struct timing {
	double ns, ticks; /* per operation */
};

/* ---- native AES-NI reference -------------------------------------------- */

static __attribute__((target("aes,sse4.1"))) __m128i
expand_step(__m128i key, __m128i assist)
{
	assist = _mm_shuffle_epi32(assist, 0xff);
	key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
	key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
	key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
	return _mm_xor_si128(key, assist);
}

#define EXPAND(i, rcon) \
	rk[i] = expand_step(rk[i - 1], _mm_aeskeygenassist_si128(rk[i - 1], rcon))

static __attribute__((target("aes,sse4.1"))) void
native_expand128(const uint8_t key[16], __m128i rk[11])
{
	rk[0] = _mm_loadu_si128((const __m128i *)key);
	EXPAND(1, 0x01); EXPAND(2, 0x02); EXPAND(3, 0x04); EXPAND(4, 0x08);
	EXPAND(5, 0x10); EXPAND(6, 0x20); EXPAND(7, 0x40); EXPAND(8, 0x80);
	EXPAND(9, 0x1b); EXPAND(10, 0x36);
}

AESNI static void native_enc1(const __m128i *rk, uint8_t block[16])
{
	__m128i x = _mm_xor_si128(_mm_loadu_si128((__m128i *)block), rk[0]);

	for (int r = 1; r < 10; r++)
		x = _mm_aesenc_si128(x, rk[r]);
	_mm_storeu_si128((__m128i *)block, _mm_aesenclast_si128(x, rk[10]));
}

/* Eight named registers, not an array: GCC keeps an array of __m128i in
 * memory, which would make the baseline latency-bound and flatter us. */
AESNI static void native_enc8(const __m128i *rk, uint8_t blocks[8][16])
{
	__m128i x0 = _mm_xor_si128(_mm_loadu_si128((__m128i *)blocks[0]), rk[0]);
	__m128i x1 = _mm_xor_si128(_mm_loadu_si128((__m128i *)blocks[1]), rk[0]);
	__m128i x2 = _mm_xor_si128(_mm_loadu_si128((__m128i *)blocks[2]), rk[0]);
	__m128i x3 = _mm_xor_si128(_mm_loadu_si128((__m128i *)blocks[3]), rk[0]);
	__m128i x4 = _mm_xor_si128(_mm_loadu_si128((__m128i *)blocks[4]), rk[0]);
	__m128i x5 = _mm_xor_si128(_mm_loadu_si128((__m128i *)blocks[5]), rk[0]);
	__m128i x6 = _mm_xor_si128(_mm_loadu_si128((__m128i *)blocks[6]), rk[0]);
	__m128i x7 = _mm_xor_si128(_mm_loadu_si128((__m128i *)blocks[7]), rk[0]);

	for (int r = 1; r < 10; r++) {
		x0 = _mm_aesenc_si128(x0, rk[r]);
		x1 = _mm_aesenc_si128(x1, rk[r]);
		x2 = _mm_aesenc_si128(x2, rk[r]);
		x3 = _mm_aesenc_si128(x3, rk[r]);
		x4 = _mm_aesenc_si128(x4, rk[r]);
		x5 = _mm_aesenc_si128(x5, rk[r]);
		x6 = _mm_aesenc_si128(x6, rk[r]);
		x7 = _mm_aesenc_si128(x7, rk[r]);
	}
	_mm_storeu_si128((__m128i *)blocks[0], _mm_aesenclast_si128(x0, rk[10]));
	_mm_storeu_si128((__m128i *)blocks[1], _mm_aesenclast_si128(x1, rk[10]));
	_mm_storeu_si128((__m128i *)blocks[2], _mm_aesenclast_si128(x2, rk[10]));
	_mm_storeu_si128((__m128i *)blocks[3], _mm_aesenclast_si128(x3, rk[10]));
	_mm_storeu_si128((__m128i *)blocks[4], _mm_aesenclast_si128(x4, rk[10]));
	_mm_storeu_si128((__m128i *)blocks[5], _mm_aesenclast_si128(x5, rk[10]));
	_mm_storeu_si128((__m128i *)blocks[6], _mm_aesenclast_si128(x6, rk[10]));
	_mm_storeu_si128((__m128i *)blocks[7], _mm_aesenclast_si128(x7, rk[10]));
}

/* ---- the measured loops ------------------------------------------------ */

struct bench {
	struct klemu_ctx *ctx;
	__m128i rk[11];
	uint8_t handle[KLEMU_HANDLE128_SIZE];
	uint8_t (*cold)[KLEMU_HANDLE128_SIZE];
	uint8_t (*buf)[16];
	int errors; /* ZF=1 where 0 was expected: the figures would be lies */
	uint64_t cold_unwraps, cold_calls; /* (c) must miss the cache on every call */
};

enum loop {
	NATIVE_WIDE,
	EMU_WIDE,
	NATIVE_CHAIN,
	EMU_CHAIN,
	EMU_CHAIN_EXEC,
	EMU_COLD,
	LOOP_COUNT
};

static long run_loop(struct bench *b, enum loop which)
{
	uint8_t x[16] = {0};
	struct klemu_regs regs;
	int zf = 0;

	switch (which) {
	case NATIVE_WIDE:
		for (int p = 0; p < WIDE_PASSES; p++)
			for (int g = 0; g < WIDE_BLOCKS; g += 8)
				native_enc8(b->rk, &b->buf[g]);
		return WIDE_PASSES * WIDE_BLOCKS / 8;
	case EMU_WIDE:
		for (int p = 0; p < WIDE_PASSES; p++)
			for (int g = 0; g < WIDE_BLOCKS; g += 8) {
				klemu_aeswidekl(b->ctx, KLEMU_AESENCWIDE128KL, b->handle, &b->buf[g], &zf);
				b->errors += zf;
			}
		return WIDE_PASSES * WIDE_BLOCKS / 8;
	case NATIVE_CHAIN:
		for (int i = 0; i < CHAIN_OPS; i++)
			native_enc1(b->rk, x);
		break;
	case EMU_CHAIN:
		for (int i = 0; i < CHAIN_OPS; i++) {
			klemu_aeskl(b->ctx, KLEMU_AESENC128KL, b->handle, x, &zf);
			b->errors += zf;
		}
		break;
	case EMU_CHAIN_EXEC:
		/* What a trap layer pays: the full register-file interface. */
		memset(&regs, 0, sizeof(regs));
		for (int i = 0; i < CHAIN_OPS; i++) {
			klemu_exec(b->ctx, KLEMU_AESENC128KL, &regs, 0, 0, 0, NULL, b->handle);
			b->errors += (regs.rflags & KLEMU_FLAG_ZF) != 0;
		}
		break;
	case EMU_COLD: {
		uint64_t before = b->ctx->stats_unwraps;

		for (int i = 0; i < COLD_OPS; i++) {
			klemu_aeskl(b->ctx, KLEMU_AESENC128KL, b->cold[i % COLD_HANDLES], x, &zf);
			b->errors += zf;
		}
		b->cold_unwraps += b->ctx->stats_unwraps - before;
		b->cold_calls += COLD_OPS;
		return COLD_OPS;
	}
	case LOOP_COUNT:
		break;
	}
	/* Keep the chain's result alive so nothing is optimised away. */
	__asm__ __volatile__("" : : "r"(x) : "memory");
	return CHAIN_OPS;
}

/* One ratio's samples: A and B timed back to back in every round, the order
 * swapped every other round, so a host that changes speed between rounds
 * (this often runs in a shared VM) moves both sides of that round alike. */
struct pair {
	enum loop a, b;
	double a_ns[REPS], b_ns[REPS], a_ticks[REPS], b_ticks[REPS];
};

static void time_loop(struct bench *b, enum loop l, double *ns, double *ticks)
{
	double t0 = now_ns();
	uint64_t c0 = __rdtsc();
	long ops = run_loop(b, l);
	uint64_t c1 = __rdtsc();
	double t1 = now_ns();

	*ns = (t1 - t0) / (double)ops;
	*ticks = (double)(c1 - c0) / (double)ops;
}

/* One side's figure for a round: the fastest of its TRIES, which drops the
 * tries a preemption or an interrupt landed in. */
static void time_min(struct bench *b, enum loop l, int try, double *ns, double *ticks)
{
	double n, k;

	time_loop(b, l, &n, &k);
	if (try == 0 || n < *ns) {
		*ns = n;
		*ticks = k;
	}
}

/* Round r of one pair: A and B alternate TRIES times, each keeping its fastest. */
static void measure_round(struct bench *b, struct pair *p, int r)
{
	for (int t = 0; t < TRIES; t++) {
		int a_first = (r + t) & 1;

		if (a_first)
			time_min(b, p->a, t, &p->a_ns[r], &p->a_ticks[r]);
		time_min(b, p->b, t, &p->b_ns[r], &p->b_ticks[r]);
		if (!a_first)
			time_min(b, p->a, t, &p->a_ns[r], &p->a_ticks[r]);
	}
}

/* The pairs take turns round by round, so each pair's rounds span the whole
 * run: a host that flips between states during the run widens every ratio's
 * spread (and is reported as unstable) instead of biasing one ratio. */
static void measure_pairs(struct bench *b, struct pair *pairs[], int n)
{
	for (int i = 0; i < n; i++) {
		run_loop(b, pairs[i]->a); /* warm-up: caches, predictors, clocks */
		run_loop(b, pairs[i]->b);
	}
	for (int r = 0; r < REPS; r++)
		for (int i = 0; i < n; i++)
			measure_round(b, pairs[i], r);
}

static struct timing side(const double *ns, const double *ticks)
{
	double n[REPS], k[REPS];

	memcpy(n, ns, sizeof(n));
	memcpy(k, ticks, sizeof(k));
	return (struct timing){median(n, REPS), median(k, REPS)};
}

/* "name": {median, p10, p90} of the per-round ratios time(A)/time(B). */
static void put_ratio(const char *name, const struct pair *p, int last)
{
	double r[REPS];

	for (int i = 0; i < REPS; i++)
		r[i] = p->a_ns[i] / p->b_ns[i];
	qsort(r, REPS, sizeof(double), cmp_double);
	printf("    \"%s\": {\"median\": %.4f, \"p10\": %.4f, \"p90\": %.4f, \"rounds\": %d}%s\n", name,
	       quantile(r, REPS, 0.5), quantile(r, REPS, 0.1), quantile(r, REPS, 0.9), REPS, last ? "" : ",");
}

static void put(const char *name, struct timing t, int last)
{
	printf("  \"%s\": {\"ns\": %.3f, \"ticks\": %.2f}%s\n", name, t.ns, t.ticks,
	       last ? "" : ",");
}

int main(void)
{
	struct bench b;
	struct klemu_cpu cpu;
	struct klemu_iwkey iwkey;
	uint8_t key[16];
	uint32_t dest;

	cpu_set_t one;
	int pinned = getenv("BENCH_CPU") ? atoi(getenv("BENCH_CPU")) : sched_getcpu();

	CPU_ZERO(&one);
	CPU_SET(pinned, &one);
	sched_setaffinity(0, sizeof(one), &one); /* one CPU: no migration between the two sides */
	if (!__builtin_cpu_supports("aes")) {
		fprintf(stderr, "emu_bench: this CPU has no AES-NI to compare with\n");
		return 2;
	}
	memset(&b, 0, sizeof(b));
	b.ctx = aligned_alloc(64, (sizeof(*b.ctx) + 63) / 64 * 64);
	b.buf = aligned_alloc(64, WIDE_BLOCKS * 16);
	b.cold = malloc(COLD_HANDLES * sizeof(*b.cold));
	if (!b.ctx || !b.buf || !b.cold)
		return 2;
	klemu_cpu_tigerlake(&cpu);
	klemu_init(b.ctx, &cpu);
	for (int i = 0; i < 16; i++)
		iwkey.integrity[i] = (uint8_t)(0x5a ^ i);
	for (int i = 0; i < 32; i++)
		iwkey.enc[i] = (uint8_t)(0xa5 ^ i);
	iwkey.nobackup = 0;
	iwkey.keysource = 0;
	klemu_set_iwkey(b.ctx, &iwkey);
	for (int i = 0; i < 16; i++)
		key[i] = (uint8_t)(3 * i + 1);
	native_expand128(key, b.rk);
	klemu_encodekey128(b.ctx, 0, key, b.handle, &dest);
	for (int h = 0; h < COLD_HANDLES; h++) {
		key[0] = (uint8_t)h; /* a different key, so a different handle */
		klemu_encodekey128(b.ctx, 0, key, b.cold[h], &dest);
	}
	for (int i = 0; i < WIDE_BLOCKS * 16; i++)
		b.buf[i / 16][i % 16] = (uint8_t)(i * 7);

	/* Each pair is its own ratio; the figures per loop are their side's medians. */
	static struct pair wide = {NATIVE_WIDE, EMU_WIDE}, chain = {NATIVE_CHAIN, EMU_CHAIN},
			   exec = {NATIVE_CHAIN, EMU_CHAIN_EXEC}, cold = {EMU_COLD, EMU_CHAIN};
	struct pair *pairs[] = {&wide, &chain, &exec, &cold};

	measure_pairs(&b, pairs, 4);
	/* Every cold call must have unwrapped, or (c) measures the cache. */
	double cold_unwraps = (double)b.cold_unwraps / (double)b.cold_calls;

	printf("{\n  \"impl\": \"%s\",\n  \"errors\": %d,\n  \"rounds\": %d,\n", klemu_impl_name(), b.errors,
	       REPS);
	printf("  \"cold_unwraps_per_op\": %.3f,\n  \"cpu\": %d,\n", cold_unwraps, pinned);
	put("native_wide8", side(wide.a_ns, wide.a_ticks), 0);
	put("emu_wide8", side(wide.b_ns, wide.b_ticks), 0);
	put("native_chain", side(chain.a_ns, chain.a_ticks), 0);
	put("emu_chain", side(chain.b_ns, chain.b_ticks), 0);
	put("emu_chain_exec", side(exec.b_ns, exec.b_ticks), 0);
	put("emu_cold", side(cold.a_ns, cold.a_ticks), 0);
	printf("  \"ratios\": {\n");
	put_ratio("wide8", &wide, 0);
	put_ratio("chain", &chain, 0);
	put_ratio("chain_exec", &exec, 0);
	put_ratio("cold_over_hit", &cold, 1);
	printf("  }\n}\n");
	free(b.cold);
	free(b.buf);
	free(b.ctx);
	return b.errors ? 1 : 0;
}

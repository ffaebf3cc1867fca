/*
 * Timing loops for benchmarks/bench_emulator.py: the emulated Key Locker
 * instructions against plain AES-NI on the same data, in one process.
 *
 * Each ratio is a paired, interleaved ratio measured by bench_util.h (see
 * there why): pinned to one CPU, PAIR_ROUNDS rounds of A and B alternating
 * in short tries, the median and p10-p90 of the per-round ratios.  The
 * per-loop figures are the medians of that loop's side.  Native and emulated
 * loops have the same shape: one call of a non-inlined function per
 * operation, over the same buffer.  Output is one JSON object (nanoseconds
 * and TSC ticks per operation, and the ratios); the Python side prints it.
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
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "klemu.h"
#include "bench_util.h"

/* Sizes of one try: a fraction of a millisecond each. */
#define WIDE_BLOCKS 4096 /* 64 KiB */
#define WIDE_PASSES 4 /* over the buffer per try */
#define CHAIN_OPS 10000
#define COLD_HANDLES 64 /* far more than KLEMU_CACHE_WAYS */
#define COLD_OPS 1000

#define AESNI __attribute__((target("aes,sse4.1"), noinline))

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

/* ---- the measured loops: one side of a pair each ------------------------- */

struct bench {
	struct klemu_ctx *ctx;
	__m128i rk[11];
	uint8_t handle[KLEMU_HANDLE128_SIZE];
	uint8_t (*cold)[KLEMU_HANDLE128_SIZE];
	uint8_t (*buf)[16];
	int errors; /* ZF=1 where 0 was expected: the figures would be lies */
	uint64_t cold_unwraps, cold_calls; /* (c) must miss the cache on every call */
};

static long native_wide(void *arg)
{
	struct bench *b = arg;

	for (int p = 0; p < WIDE_PASSES; p++)
		for (int g = 0; g < WIDE_BLOCKS; g += 8)
			native_enc8(b->rk, &b->buf[g]);
	return WIDE_PASSES * WIDE_BLOCKS / 8;
}

static long emu_wide(void *arg)
{
	struct bench *b = arg;
	int zf = 0;

	for (int p = 0; p < WIDE_PASSES; p++)
		for (int g = 0; g < WIDE_BLOCKS; g += 8) {
			klemu_aeswidekl(b->ctx, KLEMU_AESENCWIDE128KL, b->handle, &b->buf[g], &zf);
			b->errors += zf;
		}
	return WIDE_PASSES * WIDE_BLOCKS / 8;
}

static long native_chain(void *arg)
{
	struct bench *b = arg;
	uint8_t x[16] = {0};

	for (int i = 0; i < CHAIN_OPS; i++)
		native_enc1(b->rk, x);
	__asm__ __volatile__("" : : "r"(x) : "memory"); /* keep the chain alive: nothing optimised away */
	return CHAIN_OPS;
}

static long emu_chain(void *arg)
{
	struct bench *b = arg;
	uint8_t x[16] = {0};
	int zf = 0;

	for (int i = 0; i < CHAIN_OPS; i++) {
		klemu_aeskl(b->ctx, KLEMU_AESENC128KL, b->handle, x, &zf);
		b->errors += zf;
	}
	return CHAIN_OPS;
}

/* What a trap layer pays: the full register-file interface. */
static long emu_chain_exec(void *arg)
{
	struct bench *b = arg;
	struct klemu_regs regs;

	memset(&regs, 0, sizeof(regs));
	for (int i = 0; i < CHAIN_OPS; i++) {
		klemu_exec(b->ctx, KLEMU_AESENC128KL, &regs, 0, 0, 0, NULL, b->handle);
		b->errors += (regs.rflags & KLEMU_FLAG_ZF) != 0;
	}
	return CHAIN_OPS;
}

static long emu_cold(void *arg)
{
	struct bench *b = arg;
	uint64_t before = b->ctx->stats_unwraps;
	uint8_t x[16] = {0};
	int zf = 0;

	for (int i = 0; i < COLD_OPS; i++) {
		klemu_aeskl(b->ctx, KLEMU_AESENC128KL, b->cold[i % COLD_HANDLES], x, &zf);
		b->errors += zf;
	}
	b->cold_unwraps += b->ctx->stats_unwraps - before;
	b->cold_calls += COLD_OPS;
	return COLD_OPS;
}

/* Each pair is its own ratio; the figures per loop are their side's medians. */
static struct bench bench;
static struct pair wide = {.a = {native_wide, &bench}, .b = {emu_wide, &bench}},
		   chain = {.a = {native_chain, &bench}, .b = {emu_chain, &bench}},
		   exec = {.a = {native_chain, &bench}, .b = {emu_chain_exec, &bench}},
		   cold = {.a = {emu_cold, &bench}, .b = {emu_chain, &bench}};

int main(void)
{
	struct klemu_cpu cpu;
	struct klemu_iwkey iwkey;
	uint8_t key[16];
	uint32_t dest;
	int pinned = pin_cpu();

	if (!__builtin_cpu_supports("aes")) {
		fprintf(stderr, "emu_bench: this CPU has no AES-NI to compare with\n");
		return 2;
	}
	bench.ctx = aligned_alloc(64, (sizeof(*bench.ctx) + 63) / 64 * 64);
	bench.buf = aligned_alloc(64, WIDE_BLOCKS * 16);
	bench.cold = malloc(COLD_HANDLES * sizeof(*bench.cold));
	if (!bench.ctx || !bench.buf || !bench.cold)
		return 2;
	klemu_cpu_tigerlake(&cpu);
	klemu_init(bench.ctx, &cpu);
	for (int i = 0; i < 16; i++)
		iwkey.integrity[i] = (uint8_t)(0x5a ^ i);
	for (int i = 0; i < 32; i++)
		iwkey.enc[i] = (uint8_t)(0xa5 ^ i);
	iwkey.nobackup = 0;
	iwkey.keysource = 0;
	klemu_set_iwkey(bench.ctx, &iwkey);
	for (int i = 0; i < 16; i++)
		key[i] = (uint8_t)(3 * i + 1);
	native_expand128(key, bench.rk);
	klemu_encodekey128(bench.ctx, 0, key, bench.handle, &dest);
	for (int h = 0; h < COLD_HANDLES; h++) {
		key[0] = (uint8_t)h; /* a different key, so a different handle */
		klemu_encodekey128(bench.ctx, 0, key, bench.cold[h], &dest);
	}
	for (int i = 0; i < WIDE_BLOCKS * 16; i++)
		bench.buf[i / 16][i % 16] = (uint8_t)(i * 7);

	pairs_measure((struct pair *const[]){&wide, &chain, &exec, &cold}, 4);
	/* Every cold call must have unwrapped, or (c) measures the cache. */
	double cold_unwraps = (double)bench.cold_unwraps / (double)bench.cold_calls;

	printf("{\"impl\": \"%s\", \"errors\": %d, \"rounds\": %d,\n", klemu_impl_name(), bench.errors,
	       PAIR_ROUNDS);
	printf("\"cold_unwraps_per_op\": %.3f, \"cpu\": %d,\n", cold_unwraps, pinned);
	put_timing("native_wide8", side_median(&wide.a), 0);
	put_timing("emu_wide8", side_median(&wide.b), 0);
	put_timing("native_chain", side_median(&chain.a), 0);
	put_timing("emu_chain", side_median(&chain.b), 0);
	put_timing("emu_chain_exec", side_median(&exec.b), 0);
	put_timing("emu_cold", side_median(&cold.a), 0);
	printf("\"ratios\": {\n");
	put_ratio("wide8", &wide, 0);
	put_ratio("chain", &chain, 0);
	put_ratio("chain_exec", &exec, 0);
	put_ratio("cold_over_hit", &cold, 1);
	printf("}}\n");
	free(bench.cold);
	free(bench.buf);
	free(bench.ctx);
	return bench.errors ? 1 : 0;
}

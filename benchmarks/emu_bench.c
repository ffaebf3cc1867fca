/*
 * Timing loops for benchmarks/bench_emulator.py: the emulated Key Locker
 * instructions against plain AES-NI on the same data, in one process.
 *
 * Every figure is the median of REPS timed repetitions after a warm-up, the
 * loops taking turns within each repetition; native and emulated loops have
 * the same shape: one call of a non-inlined function per operation, over
 * the same buffer.  Output is one JSON object
 * (nanoseconds and TSC ticks per operation); the Python side prints it.
 *
 *   (a) wide:  8 independent blocks per op, through a 64 KiB buffer
 *              (AESENCWIDE128KL vs 8 interleaved AES-NI blocks);
 *   (b) chain: one block, each op on the previous output
 *              (AESENC128KL vs a single-block AES-NI chain);
 *   (c) cold:  (b) with a different handle every call, so every call
 *              misses the unwrap cache.
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <x86intrin.h>

#include "klemu.h"
#include "bench_util.h"

#define REPS 15
#define WIDE_BLOCKS 4096 /* 64 KiB */
#define CHAIN_OPS 200000
#define COLD_HANDLES 64 /* far more than KLEMU_CACHE_WAYS */
#define COLD_OPS 20000

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
		for (int g = 0; g < WIDE_BLOCKS; g += 8)
			native_enc8(b->rk, &b->buf[g]);
		return WIDE_BLOCKS / 8;
	case EMU_WIDE:
		for (int g = 0; g < WIDE_BLOCKS; g += 8) {
			klemu_aeswidekl(b->ctx, KLEMU_AESENCWIDE128KL, b->handle, &b->buf[g], &zf);
			b->errors += zf;
		}
		return WIDE_BLOCKS / 8;
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
	case EMU_COLD:
		for (int i = 0; i < COLD_OPS; i++) {
			klemu_aeskl(b->ctx, KLEMU_AESENC128KL, b->cold[i % COLD_HANDLES], x, &zf);
			b->errors += zf;
		}
		return COLD_OPS;
	case LOOP_COUNT:
		break;
	}
	/* Keep the chain's result alive so nothing is optimised away. */
	__asm__ __volatile__("" : : "r"(x) : "memory");
	return CHAIN_OPS;
}

/* All loops round-robin within each repetition, so a noisy neighbour (this
 * often runs in a VM) disturbs native and emulated figures alike. */
static void measure_all(struct bench *b, struct timing t[LOOP_COUNT])
{
	static double ns[LOOP_COUNT][REPS], ticks[LOOP_COUNT][REPS];

	for (int l = 0; l < LOOP_COUNT; l++)
		run_loop(b, (enum loop)l); /* warm-up: caches, predictors, clocks */
	for (int r = 0; r < REPS; r++) {
		for (int l = 0; l < LOOP_COUNT; l++) {
			double t0 = now_ns();
			uint64_t c0 = __rdtsc();
			long ops = run_loop(b, (enum loop)l);
			uint64_t c1 = __rdtsc();
			double t1 = now_ns();

			ns[l][r] = (t1 - t0) / (double)ops;
			ticks[l][r] = (double)(c1 - c0) / (double)ops;
		}
	}
	for (int l = 0; l < LOOP_COUNT; l++)
		t[l] = (struct timing){median(ns[l], REPS), median(ticks[l], REPS)};
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

	struct timing t[LOOP_COUNT];
	uint64_t unwraps = b.ctx->stats_unwraps;

	measure_all(&b, t);
	/* Every cold call must have unwrapped, or (c) measures the cache. */
	double cold_unwraps = (double)(b.ctx->stats_unwraps - unwraps) /
			      ((REPS + 1.0) * COLD_OPS);

	printf("{\n  \"impl\": \"%s\",\n  \"errors\": %d,\n", klemu_impl_name(), b.errors);
	printf("  \"cold_unwraps_per_op\": %.3f,\n", cold_unwraps);
	put("native_wide8", t[NATIVE_WIDE], 0);
	put("emu_wide8", t[EMU_WIDE], 0);
	put("native_chain", t[NATIVE_CHAIN], 0);
	put("emu_chain", t[EMU_CHAIN], 0);
	put("emu_chain_exec", t[EMU_CHAIN_EXEC], 0);
	put("emu_cold", t[EMU_COLD], 1);
	printf("}\n");
	free(b.cold);
	free(b.buf);
	free(b.ctx);
	return b.errors ? 1 : 0;
}

/*
 * In-guest timing for benchmarks/bench_qemu_kl.py: Key Locker executed by qemu-kl against AES-NI
 * executed by the same QEMU's TCG, on the same vCPU, in paired, interleaved rounds.
 *
 *   chain: AES-128 of one block, each on the previous output: 10 AESENC + AESENCLAST (AES-NI)
 *          against one AESENC128KL (one KL instruction replaces eleven).
 *   wide:  8 independent blocks: AES-NI on 8 registers, round by round, against one
 *          AESENCWIDE128KL.
 *
 * Each round times A then B (B then A in odd rounds, so drift cancels) over the same number of
 * operations; the figure is the median of the per-round ratios A/B with its p10-p90, so a host
 * that changes speed between rounds moves both sides of every ratio alike.  Needs CR4.KL and an
 * IWKey (klhelper).  Output: one JSON object.
 */
#define _GNU_SOURCE
#include <immintrin.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"

#define ROUNDS 31
#define CHAIN_OPS 100000
#define WIDE_OPS 20000

#define AESNI __attribute__((target("aes,sse4.1"), noinline))

typedef void (*loop_fn)(void *data, int ops);

/* ---- AES-NI: the key schedule and the two loops -------------------------------------------- */

static __m128i rk[11];

#define EXPAND(i, rcon)                                                              \
	do {                                                                         \
		__m128i t = _mm_aeskeygenassist_si128(rk[i - 1], rcon);              \
		__m128i k = rk[i - 1];                                               \
		t = _mm_shuffle_epi32(t, 0xff);                                      \
		k = _mm_xor_si128(k, _mm_slli_si128(k, 4));                          \
		k = _mm_xor_si128(k, _mm_slli_si128(k, 4));                          \
		k = _mm_xor_si128(k, _mm_slli_si128(k, 4));                          \
		rk[i] = _mm_xor_si128(k, t);                                         \
	} while (0)

AESNI static void expand(const uint8_t key[16])
{
	rk[0] = _mm_loadu_si128((const __m128i *)key);
	EXPAND(1, 0x01); EXPAND(2, 0x02); EXPAND(3, 0x04); EXPAND(4, 0x08); EXPAND(5, 0x10);
	EXPAND(6, 0x20); EXPAND(7, 0x40); EXPAND(8, 0x80); EXPAND(9, 0x1b); EXPAND(10, 0x36);
}

AESNI static __m128i aesni_block(__m128i b)
{
	b = _mm_xor_si128(b, rk[0]);
	for (int r = 1; r < 10; r++)
		b = _mm_aesenc_si128(b, rk[r]);
	return _mm_aesenclast_si128(b, rk[10]);
}

AESNI static void aesni_chain(void *data, int ops)
{
	uint8_t *block = data;
	__m128i b = _mm_loadu_si128((const __m128i *)block);

	for (int i = 0; i < ops; i++)
		b = aesni_block(b);
	_mm_storeu_si128((__m128i *)block, b);
}

AESNI static void aesni_wide(void *data, int ops)
{
	uint8_t(*blocks)[16] = data;
	__m128i b[8];

	for (int j = 0; j < 8; j++)
		b[j] = _mm_loadu_si128((const __m128i *)blocks[j]);
	for (int i = 0; i < ops; i++) {
		for (int j = 0; j < 8; j++)
			b[j] = _mm_xor_si128(b[j], rk[0]);
		for (int r = 1; r < 10; r++)
			for (int j = 0; j < 8; j++)
				b[j] = _mm_aesenc_si128(b[j], rk[r]);
		for (int j = 0; j < 8; j++)
			b[j] = _mm_aesenclast_si128(b[j], rk[10]);
	}
	for (int j = 0; j < 8; j++)
		_mm_storeu_si128((__m128i *)blocks[j], b[j]);
}

/* ---- Key Locker ------------------------------------------------------------------------------ */

static uint8_t handle[48] __attribute__((aligned(16)));

static void make_handle(const uint8_t key[16])
{
	__asm__ volatile("movdqu (%[k]), %%xmm0\n\t"
			 ".byte 0xf3,0x0f,0x38,0xfa,0xc0\n\t" /* encodekey128 eax, eax (SRC = 0) */
			 "movdqu %%xmm0, 0x00(%[h])\n\tmovdqu %%xmm1, 0x10(%[h])\n\tmovdqu %%xmm2, 0x20(%[h])"
			 :
			 : [k] "r"(key), [h] "r"(handle), "a"(0)
			 : "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm4", "xmm5", "xmm6");
}

__attribute__((noinline)) static void kl_chain(void *block, int ops)
{
	__asm__ volatile("movdqu (%[b]), %%xmm0\n\t"
			 "1: .byte 0xf3,0x0f,0x38,0xdc,0x07\n\t" /* aesenc128kl xmm0, [rdi] */
			 "dec %[n]\n\tjnz 1b\n\t"
			 "movdqu %%xmm0, (%[b])"
			 : [n] "+r"(ops)
			 : [b] "r"(block), "D"(handle)
			 : "memory", "cc", "xmm0");
}

__attribute__((noinline)) static void kl_wide(void *blocks, int ops)
{
	__asm__ volatile("movdqu 0x00(%[b]), %%xmm0\n\tmovdqu 0x10(%[b]), %%xmm1\n\t"
			 "movdqu 0x20(%[b]), %%xmm2\n\tmovdqu 0x30(%[b]), %%xmm3\n\t"
			 "movdqu 0x40(%[b]), %%xmm4\n\tmovdqu 0x50(%[b]), %%xmm5\n\t"
			 "movdqu 0x60(%[b]), %%xmm6\n\tmovdqu 0x70(%[b]), %%xmm7\n\t"
			 "1: .byte 0xf3,0x0f,0x38,0xd8,0x07\n\t" /* aesencwide128kl [rdi] */
			 "dec %[n]\n\tjnz 1b\n\t"
			 "movdqu %%xmm0, 0x00(%[b])\n\tmovdqu %%xmm7, 0x70(%[b])"
			 : [n] "+r"(ops)
			 : [b] "r"(blocks), "D"(handle)
			 : "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7");
}

/* ---- paired rounds ---------------------------------------------------------------------------- */

struct pair {
	double a_ns[ROUNDS], b_ns[ROUNDS], ratio[ROUNDS];
};

/* One round: A then B (B then A in odd rounds, so drift cancels), and the ratio A/B. */
static void time_round(struct pair *p, int r, loop_fn a, void *xa, loop_fn b, void *xb, int ops)
{
	int a_first = !(r & 1);
	double t0 = now_ns(), t1, t2;

	(a_first ? a : b)(a_first ? xa : xb, ops);
	t1 = now_ns();
	(a_first ? b : a)(a_first ? xb : xa, ops);
	t2 = now_ns();
	p->a_ns[r] = a_first ? t1 - t0 : t2 - t1;
	p->b_ns[r] = a_first ? t2 - t1 : t1 - t0;
	p->ratio[r] = p->a_ns[r] / p->b_ns[r];
}

static void report(const char *name, struct pair *p, int ops, int blocks, int last)
{
	double a[ROUNDS], b[ROUNDS];

	memcpy(a, p->a_ns, sizeof(a));
	memcpy(b, p->b_ns, sizeof(b));
	qsort(a, ROUNDS, sizeof(double), cmp_double);
	qsort(b, ROUNDS, sizeof(double), cmp_double);
	qsort(p->ratio, ROUNDS, sizeof(double), cmp_double);
	printf("\"%s\":{\"aesni_ns_per_block\":%.2f,\"kl_ns_per_block\":%.2f,\"ratio_median\":%.4f,"
	       "\"ratio_p10\":%.4f,\"ratio_p90\":%.4f,\"rounds\":%d}%s",
	       name, quantile(a, ROUNDS, 0.5) / ops / blocks, quantile(b, ROUNDS, 0.5) / ops / blocks, quantile(p->ratio, ROUNDS, 0.5),
	       quantile(p->ratio, ROUNDS, 0.1), quantile(p->ratio, ROUNDS, 0.9), ROUNDS, last ? "" : ",");
}

int main(void)
{
	static const uint8_t key[16] = {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
					0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f};
	uint8_t x[16] = {0}, y[16] = {0}, wx[8][16], wy[8][16];
	static struct pair chain, wide;
	cpu_set_t one;

	CPU_ZERO(&one);
	CPU_SET(0, &one);
	sched_setaffinity(0, sizeof(one), &one);
	expand(key);
	make_handle(key);
	memset(wx, 1, sizeof(wx));
	memset(wy, 1, sizeof(wy));

	/* Same key, same start: the two sides must agree, or the comparison means nothing. */
	aesni_chain(x, 3);
	kl_chain(y, 3);
	if (memcmp(x, y, 16)) {
		fprintf(stderr, "qemu_kl_bench: AESENC128KL and AES-NI disagree: is an IWKey loaded (klhelper)?\n");
		return 1;
	}
	aesni_chain(x, CHAIN_OPS / 10); /* warm-up: translation, caches */
	kl_chain(y, CHAIN_OPS / 10);
	for (int r = 0; r < ROUNDS; r++) {
		time_round(&chain, r, aesni_chain, x, kl_chain, y, CHAIN_OPS);
		time_round(&wide, r, aesni_wide, wx, kl_wide, wy, WIDE_OPS);
	}
	printf("{");
	report("chain", &chain, CHAIN_OPS, 1, 0);
	report("wide", &wide, WIDE_OPS, 8, 1);
	printf("}\n");
	return 0;
}

/*
 * In-guest timing for benchmarks/bench_qemu_kl.py: Key Locker executed by qemu-kl against AES-NI
 * executed by the same QEMU's TCG, on the same vCPU, as paired, interleaved ratios (bench_util.h,
 * which says why).
 *
 *   chain: AES-128 of one block, each on the previous output: 10 AESENC + AESENCLAST (AES-NI)
 *          against one AESENC128KL (one KL instruction replaces eleven).
 *   wide:  8 independent blocks: AES-NI on 8 registers, round by round, against one
 *          AESENCWIDE128KL.
 *
 * The figure is the median of the per-round ratios time(AES-NI)/time(KL) per block with its
 * p10-p90, so above 1 KL is faster.  Needs CR4.KL and an IWKey (klhelper).  Output: one JSON object.
 */
#define _GNU_SOURCE
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define PAIR_ROUNDS 31 /* fewer than the default: everything runs under TCG */
#include "bench_util.h"

/* Operations of one try, per side.  Returned as blocks, so the figures are per block. */
#define CHAIN_OPS 12500
#define WIDE_OPS 2500

#define AESNI __attribute__((target("aes,sse4.1"), noinline))

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

AESNI static long aesni_chain(void *data)
{
	uint8_t *block = data;
	__m128i b = _mm_loadu_si128((const __m128i *)block);

	for (int i = 0; i < CHAIN_OPS; i++)
		b = aesni_block(b);
	_mm_storeu_si128((__m128i *)block, b);
	return CHAIN_OPS;
}

AESNI static long aesni_wide(void *data)
{
	uint8_t(*blocks)[16] = data;
	__m128i b[8];

	for (int j = 0; j < 8; j++)
		b[j] = _mm_loadu_si128((const __m128i *)blocks[j]);
	for (int i = 0; i < WIDE_OPS; i++) {
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
	return WIDE_OPS * 8;
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

__attribute__((noinline)) static long kl_chain(void *block)
{
	int ops = CHAIN_OPS;

	__asm__ volatile("movdqu (%[b]), %%xmm0\n\t"
			 "1: .byte 0xf3,0x0f,0x38,0xdc,0x07\n\t" /* aesenc128kl xmm0, [rdi] */
			 "dec %[n]\n\tjnz 1b\n\t"
			 "movdqu %%xmm0, (%[b])"
			 : [n] "+r"(ops)
			 : [b] "r"(block), "D"(handle)
			 : "memory", "cc", "xmm0");
	return CHAIN_OPS;
}

__attribute__((noinline)) static long kl_wide(void *blocks)
{
	int ops = WIDE_OPS;

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
	return WIDE_OPS * 8;
}

/* ---- the pairs ------------------------------------------------------------------------------- */

static uint8_t x[16], y[16], wx[8][16], wy[8][16];
static struct pair chain = {.a = {aesni_chain, x}, .b = {kl_chain, y}},
		   wide = {.a = {aesni_wide, wx}, .b = {kl_wide, wy}};

static void report(const char *name, const struct pair *p, int last)
{
	struct ratio q = pair_ratio(p);

	printf("\"%s\":{\"aesni_ns_per_block\":%.2f,\"kl_ns_per_block\":%.2f,\"ratio_median\":%.4f,"
	       "\"ratio_p10\":%.4f,\"ratio_p90\":%.4f,\"rounds\":%d}%s",
	       name, side_median(&p->a).ns, side_median(&p->b).ns, q.median, q.p10, q.p90, PAIR_ROUNDS,
	       last ? "" : ",");
}

int main(void)
{
	static const uint8_t key[16] = {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
					0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f};

	pin_cpu();
	expand(key);
	make_handle(key);
	memset(wx, 1, sizeof(wx));
	memset(wy, 1, sizeof(wy));

	/* Same key, same start: the two sides must agree, or the comparison means nothing. */
	aesni_chain(x);
	kl_chain(y);
	if (memcmp(x, y, 16)) {
		fprintf(stderr, "qemu_kl_bench: AESENC128KL and AES-NI disagree: is an IWKey loaded (klhelper)?\n");
		return 1;
	}
	pairs_measure((struct pair *const[]){&chain, &wide}, 2);
	printf("{");
	report("chain", &chain, 0);
	report("wide", &wide, 1);
	printf("}\n");
	return 0;
}

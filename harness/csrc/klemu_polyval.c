/*
 * POLYVAL (RFC 8452 section 3), portable and with PCLMULQDQ.
 *
 * A field element is 16 bytes read as a little-endian 128-bit polynomial:
 * bit i of byte j is the coefficient of x^(8j + i).  The field is GF(2^128)
 * modulo P = x^128 + x^127 + x^126 + x^121 + 1, and
 *     dot(a, b) = a * b * x^-128 mod P,
 *     POLYVAL(H, X_1..X_s) = S_s,  S_0 = 0,  S_j = dot(S_{j-1} + X_j, H).
 * Because POLYVAL is little-endian the bytes load straight into 64-bit
 * words or an XMM register; no byte reversal as in GHASH.
 *
 * Reduction by x^-128 (used by both paths): for a 256-bit product
 * d3:d2:d1:d0 (64-bit words), adding d0 * P clears d0 (P has constant term
 * 1) and adds d0 * (x^121 + x^126 + x^127 + x^128) above it; dropping the
 * now-zero low word divides by x^64.  Doing that twice divides by x^128.
 * The term d0 * (x^57 + x^62 + x^63), placed at word 1, is one carry-less
 * multiply by 0xc200000000000000.
 */
#include <immintrin.h>
#include <string.h>

#include "klemu_internal.h"

struct u128 {
	uint64_t lo, hi;
};

static struct u128 load128(const uint8_t b[16])
{
	struct u128 v;

	/* x86 is little-endian, which is POLYVAL's order. */
	memcpy(&v.lo, b, 8);
	memcpy(&v.hi, b + 8, 8);
	return v;
}

static void store128(uint8_t b[16], struct u128 v)
{
	memcpy(b, &v.lo, 8);
	memcpy(b + 8, &v.hi, 8);
}

/* ---- portable code ---------------------------------------------------- */

/* 64 x 64 -> 128-bit carry-less product, one bit of b at a time. */
static struct u128 clmul64(uint64_t a, uint64_t b)
{
	struct u128 r = {0, 0};

	for (int i = 0; i < 64; i++) {
		uint64_t mask = 0 - ((b >> i) & 1);

		r.lo ^= (a << i) & mask;
		if (i)
			r.hi ^= (a >> (64 - i)) & mask;
	}
	return r;
}

/* One folding step: clear word w0, pushing w0 * (P - 1) / x^64 into w1, w2. */
static void fold(uint64_t w0, uint64_t *w1, uint64_t *w2)
{
	*w1 ^= (w0 << 57) ^ (w0 << 62) ^ (w0 << 63);
	*w2 ^= w0 ^ (w0 >> 7) ^ (w0 >> 2) ^ (w0 >> 1);
}

static struct u128 portable_dot(struct u128 a, struct u128 b)
{
	struct u128 ll = clmul64(a.lo, b.lo), hh = clmul64(a.hi, b.hi);
	struct u128 lh = clmul64(a.lo, b.hi), hl = clmul64(a.hi, b.lo);
	uint64_t d0 = ll.lo;
	uint64_t d1 = ll.hi ^ lh.lo ^ hl.lo;
	uint64_t d2 = hh.lo ^ lh.hi ^ hl.hi;
	uint64_t d3 = hh.hi;

	fold(d0, &d1, &d2);
	fold(d1, &d2, &d3);
	return (struct u128){d2, d3};
}

/* ---- PCLMULQDQ --------------------------------------------------------- */

#define CLMUL __attribute__((target("pclmul,sse4.1")))

/* lo:hi is a 256-bit product; returns it times x^-128 mod P. */
CLMUL static __m128i ni_reduce(__m128i lo, __m128i hi)
{
	const __m128i poly = _mm_set_epi64x((long long)0xc200000000000000ULL, 0);
	__m128i t;

	/* fold d0 into d1:d2, then d1 into d2:d3; the swap moves the word
	 * being cleared out of the way and brings d1 down. */
	t = _mm_clmulepi64_si128(lo, poly, 0x10);
	lo = _mm_xor_si128(_mm_shuffle_epi32(lo, 0x4e), t);
	t = _mm_clmulepi64_si128(lo, poly, 0x10);
	lo = _mm_xor_si128(_mm_shuffle_epi32(lo, 0x4e), t);
	return _mm_xor_si128(lo, hi);
}

/* Sum of a[i] * b[i] (unreduced), then one reduction: valid because
 * multiplication by x^-128 is linear. */
CLMUL static void ni_sum_of_products(const uint8_t (*a)[16],
				     const uint8_t (*b)[16], size_t n,
				     uint8_t out[16])
{
	__m128i lo = _mm_setzero_si128(), mid = lo, hi = lo;

	for (size_t i = 0; i < n; i++) {
		__m128i x = _mm_loadu_si128((const __m128i *)a[i]);
		__m128i y = _mm_loadu_si128((const __m128i *)b[i]);

		lo = _mm_xor_si128(lo, _mm_clmulepi64_si128(x, y, 0x00));
		hi = _mm_xor_si128(hi, _mm_clmulepi64_si128(x, y, 0x11));
		mid = _mm_xor_si128(mid, _mm_clmulepi64_si128(x, y, 0x01));
		mid = _mm_xor_si128(mid, _mm_clmulepi64_si128(x, y, 0x10));
	}
	lo = _mm_xor_si128(lo, _mm_slli_si128(mid, 8));
	hi = _mm_xor_si128(hi, _mm_srli_si128(mid, 8));
	_mm_storeu_si128((__m128i *)out, ni_reduce(lo, hi));
}

/* ---- dispatch ---------------------------------------------------------- */

void klemu_polyval_dot(const uint8_t a[16], const uint8_t b[16],
		       uint8_t out[16])
{
	if (klemu_accel()) {
		uint8_t x[1][16], y[1][16];

		memcpy(x[0], a, 16);
		memcpy(y[0], b, 16);
		ni_sum_of_products((const uint8_t(*)[16])x,
				   (const uint8_t(*)[16])y, 1, out);
		return;
	}
	store128(out, portable_dot(load128(a), load128(b)));
}

void klemu_polyval(const uint8_t hpow[KLEMU_POLYVAL_MAX_BLOCKS][16],
		   const uint8_t (*x)[16], size_t n, uint8_t out[16])
{
	if (klemu_accel()) {
		/* S_n = sum_j dot(X_j, H^(n-j+1)): pair X_1 with H^n. */
		uint8_t h[KLEMU_POLYVAL_MAX_BLOCKS][16];

		for (size_t j = 0; j < n; j++)
			memcpy(h[j], hpow[n - 1 - j], 16);
		ni_sum_of_products(x, (const uint8_t(*)[16])h, n, out);
		return;
	}
	/* Horner's rule exactly as RFC 8452 writes it. */
	struct u128 s = {0, 0}, hk = load128(hpow[0]);

	for (size_t j = 0; j < n; j++) {
		struct u128 xj = load128(x[j]);

		s.lo ^= xj.lo;
		s.hi ^= xj.hi;
		s = portable_dot(s, hk);
	}
	store128(out, s);
}

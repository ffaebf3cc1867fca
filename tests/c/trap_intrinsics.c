/*
 * A Key Locker program as a user would write it: GCC's -mkl -mwidekl
 * intrinsics, nothing of klharness.  tests/test_trap.py runs it under
 * LD_PRELOAD=libklemu-preload.so and compares every line with the Python
 * reference model.
 *
 * Data (mirrored in the test): key128 = 00..0f, key256 = 00..1f, the
 * single block is FIPS-197's 00112233..ff, the eight wide blocks are that
 * block with byte 0 XOR the lane number.  Output lines:
 *   encodekey128 <restrictions> <dest> <handle hex>
 *   encodekey256 0 <dest> <handle hex>
 *   <op> <zf> <output hex>           for the AES forms
 */
#include <immintrin.h>
#include <stdio.h>
#include <string.h>

static const unsigned char KEY[32] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
				      16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
static const unsigned char PT[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
				     0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};

static void hex(const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		printf("%02x", b[i]);
}

static void line(const char *op, unsigned zf, const void *out, size_t n)
{
	printf("%s %u ", op, zf);
	hex(out, n);
	printf("\n");
}

int main(void)
{
	unsigned char h128[48], h256[64], hr[48];
	__m128i k0 = _mm_loadu_si128((const __m128i *)KEY), k1 = _mm_loadu_si128((const __m128i *)(KEY + 16));
	__m128i pt = _mm_loadu_si128((const __m128i *)PT), ct, back;
	__m128i lanes[8], wout[8], wback[8];
	unsigned dest;

	setvbuf(stdout, NULL, _IONBF, 0); /* every line out before a signal could end us */
	for (unsigned r = 0; r < 8; r++) {
		dest = _mm_encodekey128_u32(r, k0, hr);
		printf("encodekey128 %u %u ", r, dest);
		hex(hr, sizeof(hr));
		printf("\n");
	}
	dest = _mm_encodekey128_u32(0, k0, h128);
	dest = _mm_encodekey256_u32(0, k0, k1, h256);
	printf("encodekey256 0 %u ", dest);
	hex(h256, sizeof(h256));
	printf("\n");

	line("aesenc128kl", _mm_aesenc128kl_u8(&ct, pt, h128), &ct, 16);
	line("aesdec128kl", _mm_aesdec128kl_u8(&back, ct, h128), &back, 16);
	line("aesenc256kl", _mm_aesenc256kl_u8(&ct, pt, h256), &ct, 16);
	line("aesdec256kl", _mm_aesdec256kl_u8(&back, ct, h256), &back, 16);

	for (int i = 0; i < 8; i++) {
		unsigned char b[16];

		memcpy(b, PT, 16);
		b[0] ^= (unsigned char)i;
		lanes[i] = _mm_loadu_si128((const __m128i *)b);
	}
	line("aesencwide128kl", _mm_aesencwide128kl_u8(wout, lanes, h128), wout, sizeof(wout));
	line("aesdecwide128kl", _mm_aesdecwide128kl_u8(wback, wout, h128), wback, sizeof(wback));
	line("aesencwide256kl", _mm_aesencwide256kl_u8(wout, lanes, h256), wout, sizeof(wout));
	line("aesdecwide256kl", _mm_aesdecwide256kl_u8(wback, wout, h256), wback, sizeof(wback));

	/* Refusals: ZF=1 (the stored data is GCC's business, not compared). */
	h128[20] ^= 1; /* a tag bit */
	printf("tampered %u\n", _mm_aesenc128kl_u8(&ct, pt, h128));
	_mm_encodekey128_u32(2, k0, hr); /* no-encrypt */
	printf("noencrypt_enc %u\n", _mm_aesenc128kl_u8(&ct, pt, hr));
	printf("noencrypt_dec %u\n", _mm_aesdec128kl_u8(&ct, pt, hr));
	printf("h256_on_128 %u\n", _mm_aesenc128kl_u8(&ct, pt, h256));
	return 0;
}

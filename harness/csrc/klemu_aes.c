/*
 * AES-128/192/256 (FIPS-197): key schedule and block cipher, in a portable
 * byte-oriented form and with AES-NI.
 *
 * Why both: the emulator must run on any x86-64 guest, but the Key Locker
 * instructions it stands in for are used by code that expects roughly
 * AES-NI speed, so the fast path is AES-NI with precomputed round keys and
 * the portable path is the simple, obviously-FIPS-197 one (table-based
 * S-box; timing side channels do not matter for a test emulator).
 * klemu_accel() picks one; KLEMU_FORCE_PORTABLE=1 forces the portable path
 * so the tests can compare the two.
 *
 * Byte conventions are those of AES-NI and FIPS-197: a 16-byte block is the
 * state in column-major order (byte i = row i % 4, column i / 4), exactly
 * what MOVDQU loads into an XMM register.
 */
#include <immintrin.h>
#include <string.h>

#include "klemu_internal.h"

static const uint8_t SBOX[256] = {
	0x63, 0x7c, 0x77, 0x7b, 0xf2, 0x6b, 0x6f, 0xc5, 0x30, 0x01, 0x67, 0x2b,
	0xfe, 0xd7, 0xab, 0x76, 0xca, 0x82, 0xc9, 0x7d, 0xfa, 0x59, 0x47, 0xf0,
	0xad, 0xd4, 0xa2, 0xaf, 0x9c, 0xa4, 0x72, 0xc0, 0xb7, 0xfd, 0x93, 0x26,
	0x36, 0x3f, 0xf7, 0xcc, 0x34, 0xa5, 0xe5, 0xf1, 0x71, 0xd8, 0x31, 0x15,
	0x04, 0xc7, 0x23, 0xc3, 0x18, 0x96, 0x05, 0x9a, 0x07, 0x12, 0x80, 0xe2,
	0xeb, 0x27, 0xb2, 0x75, 0x09, 0x83, 0x2c, 0x1a, 0x1b, 0x6e, 0x5a, 0xa0,
	0x52, 0x3b, 0xd6, 0xb3, 0x29, 0xe3, 0x2f, 0x84, 0x53, 0xd1, 0x00, 0xed,
	0x20, 0xfc, 0xb1, 0x5b, 0x6a, 0xcb, 0xbe, 0x39, 0x4a, 0x4c, 0x58, 0xcf,
	0xd0, 0xef, 0xaa, 0xfb, 0x43, 0x4d, 0x33, 0x85, 0x45, 0xf9, 0x02, 0x7f,
	0x50, 0x3c, 0x9f, 0xa8, 0x51, 0xa3, 0x40, 0x8f, 0x92, 0x9d, 0x38, 0xf5,
	0xbc, 0xb6, 0xda, 0x21, 0x10, 0xff, 0xf3, 0xd2, 0xcd, 0x0c, 0x13, 0xec,
	0x5f, 0x97, 0x44, 0x17, 0xc4, 0xa7, 0x7e, 0x3d, 0x64, 0x5d, 0x19, 0x73,
	0x60, 0x81, 0x4f, 0xdc, 0x22, 0x2a, 0x90, 0x88, 0x46, 0xee, 0xb8, 0x14,
	0xde, 0x5e, 0x0b, 0xdb, 0xe0, 0x32, 0x3a, 0x0a, 0x49, 0x06, 0x24, 0x5c,
	0xc2, 0xd3, 0xac, 0x62, 0x91, 0x95, 0xe4, 0x79, 0xe7, 0xc8, 0x37, 0x6d,
	0x8d, 0xd5, 0x4e, 0xa9, 0x6c, 0x56, 0xf4, 0xea, 0x65, 0x7a, 0xae, 0x08,
	0xba, 0x78, 0x25, 0x2e, 0x1c, 0xa6, 0xb4, 0xc6, 0xe8, 0xdd, 0x74, 0x1f,
	0x4b, 0xbd, 0x8b, 0x8a, 0x70, 0x3e, 0xb5, 0x66, 0x48, 0x03, 0xf6, 0x0e,
	0x61, 0x35, 0x57, 0xb9, 0x86, 0xc1, 0x1d, 0x9e, 0xe1, 0xf8, 0x98, 0x11,
	0x69, 0xd9, 0x8e, 0x94, 0x9b, 0x1e, 0x87, 0xe9, 0xce, 0x55, 0x28, 0xdf,
	0x8c, 0xa1, 0x89, 0x0d, 0xbf, 0xe6, 0x42, 0x68, 0x41, 0x99, 0x2d, 0x0f,
	0xb0, 0x54, 0xbb, 0x16,
};

static const uint8_t INV_SBOX[256] = {
	0x52, 0x09, 0x6a, 0xd5, 0x30, 0x36, 0xa5, 0x38, 0xbf, 0x40, 0xa3, 0x9e,
	0x81, 0xf3, 0xd7, 0xfb, 0x7c, 0xe3, 0x39, 0x82, 0x9b, 0x2f, 0xff, 0x87,
	0x34, 0x8e, 0x43, 0x44, 0xc4, 0xde, 0xe9, 0xcb, 0x54, 0x7b, 0x94, 0x32,
	0xa6, 0xc2, 0x23, 0x3d, 0xee, 0x4c, 0x95, 0x0b, 0x42, 0xfa, 0xc3, 0x4e,
	0x08, 0x2e, 0xa1, 0x66, 0x28, 0xd9, 0x24, 0xb2, 0x76, 0x5b, 0xa2, 0x49,
	0x6d, 0x8b, 0xd1, 0x25, 0x72, 0xf8, 0xf6, 0x64, 0x86, 0x68, 0x98, 0x16,
	0xd4, 0xa4, 0x5c, 0xcc, 0x5d, 0x65, 0xb6, 0x92, 0x6c, 0x70, 0x48, 0x50,
	0xfd, 0xed, 0xb9, 0xda, 0x5e, 0x15, 0x46, 0x57, 0xa7, 0x8d, 0x9d, 0x84,
	0x90, 0xd8, 0xab, 0x00, 0x8c, 0xbc, 0xd3, 0x0a, 0xf7, 0xe4, 0x58, 0x05,
	0xb8, 0xb3, 0x45, 0x06, 0xd0, 0x2c, 0x1e, 0x8f, 0xca, 0x3f, 0x0f, 0x02,
	0xc1, 0xaf, 0xbd, 0x03, 0x01, 0x13, 0x8a, 0x6b, 0x3a, 0x91, 0x11, 0x41,
	0x4f, 0x67, 0xdc, 0xea, 0x97, 0xf2, 0xcf, 0xce, 0xf0, 0xb4, 0xe6, 0x73,
	0x96, 0xac, 0x74, 0x22, 0xe7, 0xad, 0x35, 0x85, 0xe2, 0xf9, 0x37, 0xe8,
	0x1c, 0x75, 0xdf, 0x6e, 0x47, 0xf1, 0x1a, 0x71, 0x1d, 0x29, 0xc5, 0x89,
	0x6f, 0xb7, 0x62, 0x0e, 0xaa, 0x18, 0xbe, 0x1b, 0xfc, 0x56, 0x3e, 0x4b,
	0xc6, 0xd2, 0x79, 0x20, 0x9a, 0xdb, 0xc0, 0xfe, 0x78, 0xcd, 0x5a, 0xf4,
	0x1f, 0xdd, 0xa8, 0x33, 0x88, 0x07, 0xc7, 0x31, 0xb1, 0x12, 0x10, 0x59,
	0x27, 0x80, 0xec, 0x5f, 0x60, 0x51, 0x7f, 0xa9, 0x19, 0xb5, 0x4a, 0x0d,
	0x2d, 0xe5, 0x7a, 0x9f, 0x93, 0xc9, 0x9c, 0xef, 0xa0, 0xe0, 0x3b, 0x4d,
	0xae, 0x2a, 0xf5, 0xb0, 0xc8, 0xeb, 0xbb, 0x3c, 0x83, 0x53, 0x99, 0x61,
	0x17, 0x2b, 0x04, 0x7e, 0xba, 0x77, 0xd6, 0x26, 0xe1, 0x69, 0x14, 0x63,
	0x55, 0x21, 0x0c, 0x7d,
};

/* Round constants of the key schedule (FIPS-197 5.2). */
static const uint8_t RCON[10] = {
	0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x1b, 0x36,
};

int klemu_aes_rounds(int key_bits)
{
	switch (key_bits) {
	case 128:
		return 10;
	case 192:
		return 12;
	case 256:
		return 14;
	default:
		return 0;
	}
}

/* ---- portable code ---------------------------------------------------- */

/* Multiplication by x in GF(2^8) modulo x^8 + x^4 + x^3 + x + 1. */
static uint8_t xtime(uint8_t a)
{
	return (uint8_t)((a << 1) ^ ((a >> 7) * 0x1b));
}

static void xor_block(uint8_t *s, const uint8_t *k)
{
	for (int i = 0; i < 16; i++)
		s[i] ^= k[i];
}

/* SubBytes and ShiftRows: row r of column c comes from column c + r. */
static void sub_shift(uint8_t s[16])
{
	uint8_t t[16];

	for (int c = 0; c < 4; c++)
		for (int r = 0; r < 4; r++)
			t[4 * c + r] = SBOX[s[4 * ((c + r) & 3) + r]];
	memcpy(s, t, 16);
}

/* InvSubBytes and InvShiftRows: row r of column c comes from column c - r. */
static void inv_sub_shift(uint8_t s[16])
{
	uint8_t t[16];

	for (int c = 0; c < 4; c++)
		for (int r = 0; r < 4; r++)
			t[4 * c + r] = INV_SBOX[s[4 * ((c - r) & 3) + r]];
	memcpy(s, t, 16);
}

static void mix_columns(uint8_t s[16])
{
	for (int c = 0; c < 4; c++) {
		uint8_t *col = s + 4 * c;
		uint8_t a0 = col[0], a1 = col[1], a2 = col[2], a3 = col[3];
		uint8_t all = a0 ^ a1 ^ a2 ^ a3;

		/* 2a0 + 3a1 + a2 + a3 = a0 + all + 2(a0 + a1), and so on. */
		col[0] = a0 ^ all ^ xtime(a0 ^ a1);
		col[1] = a1 ^ all ^ xtime(a1 ^ a2);
		col[2] = a2 ^ all ^ xtime(a2 ^ a3);
		col[3] = a3 ^ all ^ xtime(a3 ^ a0);
	}
}

/* InvMixColumns as a cheap pre-step followed by MixColumns ("The Design of
 * Rijndael", 4.1.3): {0e,0b,0d,09} = {02,03,01,01} x {05,00,04,00}. */
static void inv_mix_columns(uint8_t s[16])
{
	for (int c = 0; c < 4; c++) {
		uint8_t *col = s + 4 * c;
		uint8_t u = xtime(xtime(col[0] ^ col[2]));
		uint8_t v = xtime(xtime(col[1] ^ col[3]));

		col[0] ^= u;
		col[1] ^= v;
		col[2] ^= u;
		col[3] ^= v;
	}
	mix_columns(s);
}

/* FIPS-197 5.2 KeyExpansion, words stored as 4 bytes each.  Always inlined
 * into expand_enc with a constant nk, so i % nk and i / nk are not
 * divisions (which made this 20x slower). */
static inline __attribute__((always_inline)) void
expand_words(const uint8_t *key, int nk, int words, uint8_t *rk)
{
	memcpy(rk, key, (size_t)(4 * nk));
	for (int i = nk; i < words; i++) {
		uint8_t t[4];

		memcpy(t, rk + 4 * (i - 1), 4);
		if (i % nk == 0) {
			uint8_t t0 = t[0]; /* RotWord, SubWord, Rcon */

			t[0] = SBOX[t[1]] ^ RCON[i / nk - 1];
			t[1] = SBOX[t[2]];
			t[2] = SBOX[t[3]];
			t[3] = SBOX[t0];
		} else if (nk > 6 && i % nk == 4) {
			for (int j = 0; j < 4; j++)
				t[j] = SBOX[t[j]];
		}
		for (int j = 0; j < 4; j++)
			rk[4 * i + j] = rk[4 * (i - nk) + j] ^ t[j];
	}
}

static void expand_enc(const uint8_t *key, int key_bits, uint8_t *rk)
{
	switch (key_bits) {
	case 128:
		expand_words(key, 4, 44, rk);
		break;
	case 192:
		expand_words(key, 6, 52, rk);
		break;
	case 256:
		expand_words(key, 8, 60, rk);
		break;
	}
}

/* Equivalent inverse cipher keys: reversed, InvMixColumns on the middle. */
static void portable_dec_keys(const uint8_t *enc_rk, int rounds, uint8_t *dec_rk)
{
	memcpy(dec_rk, enc_rk + 16 * rounds, 16);
	for (int r = 1; r < rounds; r++) {
		memcpy(dec_rk + 16 * r, enc_rk + 16 * (rounds - r), 16);
		inv_mix_columns(dec_rk + 16 * r);
	}
	memcpy(dec_rk + 16 * rounds, enc_rk, 16);
}

static void portable_enc(const uint8_t *rk, int rounds, uint8_t *s)
{
	xor_block(s, rk);
	for (int r = 1; r < rounds; r++) {
		sub_shift(s);
		mix_columns(s);
		xor_block(s, rk + 16 * r);
	}
	sub_shift(s);
	xor_block(s, rk + 16 * rounds);
}

/* Same round structure as AESDEC/AESDECLAST with equivalent-inverse keys. */
static void portable_dec(const uint8_t *drk, int rounds, uint8_t *s)
{
	xor_block(s, drk);
	for (int r = 1; r < rounds; r++) {
		inv_sub_shift(s);
		inv_mix_columns(s);
		xor_block(s, drk + 16 * r);
	}
	inv_sub_shift(s);
	xor_block(s, drk + 16 * rounds);
}

/* ---- AES-NI ------------------------------------------------------------ */

#define AESNI __attribute__((target("aes,sse4.1")))
#define LOADK(rk, r) _mm_loadu_si128((const __m128i *)((rk) + 16 * (r)))

AESNI static void ni_dec_keys(const uint8_t *enc_rk, int rounds, uint8_t *dec_rk)
{
	_mm_storeu_si128((__m128i *)dec_rk, LOADK(enc_rk, rounds));
	for (int r = 1; r < rounds; r++)
		_mm_storeu_si128((__m128i *)(dec_rk + 16 * r),
				 _mm_aesimc_si128(LOADK(enc_rk, rounds - r)));
	_mm_storeu_si128((__m128i *)(dec_rk + 16 * rounds), LOADK(enc_rk, 0));
}

/* Key schedule with AESKEYGENASSIST (Intel's AES-NI white paper, 2010):
 * the cold path of every unwrap runs one, so it is worth the few lines. */
AESNI static __m128i ni_schedule_step(__m128i prev, __m128i assist)
{
	prev = _mm_xor_si128(prev, _mm_slli_si128(prev, 4));
	prev = _mm_xor_si128(prev, _mm_slli_si128(prev, 4));
	prev = _mm_xor_si128(prev, _mm_slli_si128(prev, 4));
	return _mm_xor_si128(prev, assist);
}

/* The immediate of AESKEYGENASSIST must be a constant, hence the macros. */
#define NI_STEP128(i, rcon)                                                    \
	k[i] = ni_schedule_step(                                               \
		k[i - 1],                                                      \
		_mm_shuffle_epi32(_mm_aeskeygenassist_si128(k[i - 1], rcon), 0xff))
/* AES-256 alternates RotWord+SubWord+Rcon (from the odd key) and SubWord
 * alone (from the even key, word 3 of AESKEYGENASSIST's output). */
#define NI_STEP256(i, rcon)                                                    \
	do {                                                                   \
		k[i] = ni_schedule_step(                                       \
			k[i - 2], _mm_shuffle_epi32(                           \
				_mm_aeskeygenassist_si128(k[i - 1], rcon), 0xff)); \
		if (i + 1 < 15)                                                \
			k[i + 1] = ni_schedule_step(                           \
				k[i - 1], _mm_shuffle_epi32(                   \
					_mm_aeskeygenassist_si128(k[i], 0), 0xaa)); \
	} while (0)

AESNI static void ni_expand128(const uint8_t *key, uint8_t *rk)
{
	__m128i k[11];

	k[0] = _mm_loadu_si128((const __m128i *)key);
	NI_STEP128(1, 0x01);
	NI_STEP128(2, 0x02);
	NI_STEP128(3, 0x04);
	NI_STEP128(4, 0x08);
	NI_STEP128(5, 0x10);
	NI_STEP128(6, 0x20);
	NI_STEP128(7, 0x40);
	NI_STEP128(8, 0x80);
	NI_STEP128(9, 0x1b);
	NI_STEP128(10, 0x36);
	for (int i = 0; i < 11; i++)
		_mm_storeu_si128((__m128i *)(rk + 16 * i), k[i]);
}

AESNI static void ni_expand256(const uint8_t *key, uint8_t *rk)
{
	__m128i k[15];

	k[0] = _mm_loadu_si128((const __m128i *)key);
	k[1] = _mm_loadu_si128((const __m128i *)(key + 16));
	NI_STEP256(2, 0x01);
	NI_STEP256(4, 0x02);
	NI_STEP256(6, 0x04);
	NI_STEP256(8, 0x08);
	NI_STEP256(10, 0x10);
	NI_STEP256(12, 0x20);
	NI_STEP256(14, 0x40);
	for (int i = 0; i < 15; i++)
		_mm_storeu_si128((__m128i *)(rk + 16 * i), k[i]);
}

/* One block: the rounds form a dependency chain, so loading each round key
 * as AESENC's memory operand costs nothing. */
AESNI static void ni_enc1(const uint8_t *rk, int rounds, uint8_t *b)
{
	__m128i x = _mm_xor_si128(_mm_loadu_si128((const __m128i *)b), LOADK(rk, 0));

	for (int r = 1; r < rounds; r++)
		x = _mm_aesenc_si128(x, LOADK(rk, r));
	x = _mm_aesenclast_si128(x, LOADK(rk, rounds));
	_mm_storeu_si128((__m128i *)b, x);
}

AESNI static void ni_dec1(const uint8_t *rk, int rounds, uint8_t *b)
{
	__m128i x = _mm_xor_si128(_mm_loadu_si128((const __m128i *)b), LOADK(rk, 0));

	for (int r = 1; r < rounds; r++)
		x = _mm_aesdec_si128(x, LOADK(rk, r));
	x = _mm_aesdeclast_si128(x, LOADK(rk, rounds));
	_mm_storeu_si128((__m128i *)b, x);
}

/* Eight independent blocks interleaved so the AES unit's pipeline stays
 * full: this is what makes the emulated AES*WIDE*KL close to AES-NI. */
#define NI_WIDE(name, round_fn, last_fn)                                       \
	AESNI static void name(const uint8_t *rk, int rounds,                 \
			       uint8_t (*b)[16])                               \
	{                                                                      \
		__m128i k = LOADK(rk, 0);                                      \
		__m128i x0 = _mm_xor_si128(_mm_loadu_si128((void *)b[0]), k); \
		__m128i x1 = _mm_xor_si128(_mm_loadu_si128((void *)b[1]), k); \
		__m128i x2 = _mm_xor_si128(_mm_loadu_si128((void *)b[2]), k); \
		__m128i x3 = _mm_xor_si128(_mm_loadu_si128((void *)b[3]), k); \
		__m128i x4 = _mm_xor_si128(_mm_loadu_si128((void *)b[4]), k); \
		__m128i x5 = _mm_xor_si128(_mm_loadu_si128((void *)b[5]), k); \
		__m128i x6 = _mm_xor_si128(_mm_loadu_si128((void *)b[6]), k); \
		__m128i x7 = _mm_xor_si128(_mm_loadu_si128((void *)b[7]), k); \
		for (int r = 1; r < rounds; r++) {                             \
			k = LOADK(rk, r);                                      \
			x0 = round_fn(x0, k);                                  \
			x1 = round_fn(x1, k);                                  \
			x2 = round_fn(x2, k);                                  \
			x3 = round_fn(x3, k);                                  \
			x4 = round_fn(x4, k);                                  \
			x5 = round_fn(x5, k);                                  \
			x6 = round_fn(x6, k);                                  \
			x7 = round_fn(x7, k);                                  \
		}                                                              \
		k = LOADK(rk, rounds);                                         \
		_mm_storeu_si128((void *)b[0], last_fn(x0, k));                \
		_mm_storeu_si128((void *)b[1], last_fn(x1, k));                \
		_mm_storeu_si128((void *)b[2], last_fn(x2, k));                \
		_mm_storeu_si128((void *)b[3], last_fn(x3, k));                \
		_mm_storeu_si128((void *)b[4], last_fn(x4, k));                \
		_mm_storeu_si128((void *)b[5], last_fn(x5, k));                \
		_mm_storeu_si128((void *)b[6], last_fn(x6, k));                \
		_mm_storeu_si128((void *)b[7], last_fn(x7, k));                \
	}

NI_WIDE(ni_enc8, _mm_aesenc_si128, _mm_aesenclast_si128)
NI_WIDE(ni_dec8, _mm_aesdec_si128, _mm_aesdeclast_si128)

/* ---- dispatch ---------------------------------------------------------- */

void klemu_aes_expand(const uint8_t *key, int key_bits,
		      uint8_t enc_rk[KLEMU_AES_RK_BYTES],
		      uint8_t dec_rk[KLEMU_AES_RK_BYTES])
{
	int rounds = klemu_aes_rounds(key_bits);

	int accel = klemu_accel();

	/* AES-192 exists only for klemu_aes_*_block; its schedule stays
	 * portable on both paths. */
	if (accel && key_bits == 128)
		ni_expand128(key, enc_rk);
	else if (accel && key_bits == 256)
		ni_expand256(key, enc_rk);
	else
		expand_enc(key, key_bits, enc_rk);
	if (!dec_rk)
		return;
	if (accel)
		ni_dec_keys(enc_rk, rounds, dec_rk);
	else
		portable_dec_keys(enc_rk, rounds, dec_rk);
}

void klemu_aes_enc_blocks(const uint8_t *enc_rk, int rounds,
			  uint8_t (*blocks)[16], size_t n)
{
	if (!klemu_accel()) {
		for (size_t i = 0; i < n; i++)
			portable_enc(enc_rk, rounds, blocks[i]);
		return;
	}
	for (; n >= 8; n -= 8, blocks += 8)
		ni_enc8(enc_rk, rounds, blocks);
	for (size_t i = 0; i < n; i++)
		ni_enc1(enc_rk, rounds, blocks[i]);
}

void klemu_aes_dec_blocks(const uint8_t *dec_rk, int rounds,
			  uint8_t (*blocks)[16], size_t n)
{
	if (!klemu_accel()) {
		for (size_t i = 0; i < n; i++)
			portable_dec(dec_rk, rounds, blocks[i]);
		return;
	}
	for (; n >= 8; n -= 8, blocks += 8)
		ni_dec8(dec_rk, rounds, blocks);
	for (size_t i = 0; i < n; i++)
		ni_dec1(dec_rk, rounds, blocks[i]);
}

/* ---- public: AES on a raw key ------------------------------------------ */

static void raw_block(const uint8_t *key, int key_bits, const uint8_t in[16],
		      uint8_t out[16], int decrypt)
{
	uint8_t enc_rk[KLEMU_AES_RK_BYTES], dec_rk[KLEMU_AES_RK_BYTES];
	uint8_t block[1][16];
	int rounds = klemu_aes_rounds(key_bits);

	if (rounds == 0) { /* not an AES key size: defined, useless output */
		memset(out, 0, 16);
		return;
	}
	memcpy(block[0], in, 16);
	klemu_aes_expand(key, key_bits, enc_rk, decrypt ? dec_rk : NULL);
	if (decrypt)
		klemu_aes_dec_blocks(dec_rk, rounds, block, 1);
	else
		klemu_aes_enc_blocks(enc_rk, rounds, block, 1);
	memcpy(out, block[0], 16);
	klemu_wipe(enc_rk, sizeof(enc_rk));
	klemu_wipe(dec_rk, sizeof(dec_rk));
}

void klemu_aes_encrypt_block(const uint8_t *key, int key_bits,
			     const uint8_t in[16], uint8_t out[16])
{
	raw_block(key, key_bits, in, out, 0);
}

void klemu_aes_decrypt_block(const uint8_t *key, int key_bits,
			     const uint8_t in[16], uint8_t out[16])
{
	raw_block(key, key_bits, in, out, 1);
}

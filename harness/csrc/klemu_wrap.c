/*
 * The handle wrap of KEYLOCKER.md section 4 [model], and the per-VM IWKey
 * derivation.
 *
 * The wrap is the AES-256-GCM-SIV core of RFC 8452 (section 4) with:
 *   - the per-nonce key derivation left out: the POLYVAL key is the IWKey
 *     integrity key and the AES-256 key is the IWKey encryption key;
 *   - a zero 96-bit nonce;
 *   - AAD = the 16-byte handle metadata, plaintext = the raw AES key.
 * Both inputs are whole blocks, so no padding is ever needed:
 *   S   = POLYVAL(H, AAD, key blocks..., length block)
 *   S  ^= nonce (a no-op for the zero nonce)
 *   S[15] &= 0x7f
 *   tag = AES-256(S)
 *   counter block = tag with bit 7 of byte 15 set; keystream block i is
 *   AES-256(counter + i), the +i a 32-bit little-endian add in bytes 0-3
 *   handle = AAD || tag || (key XOR keystream)
 * Unwrapping recomputes the tag over the decrypted key and compares it in
 * constant time.
 */
#include <string.h>

#include "klemu_internal.h"

/* Byte layout of klemu_ctx.wrap_state (kept as bytes so no type punning). */
#define WS_AES_RK 0                       /* AES-256 encryption round keys */
#define WS_HPOW (WS_AES_RK + KLEMU_AES_RK_BYTES) /* H^1..H^4 for POLYVAL */
#define WS_END (WS_HPOW + 16 * KLEMU_POLYVAL_MAX_BLOCKS)

_Static_assert(WS_END <= sizeof(((struct klemu_ctx *)0)->wrap_state),
	       "wrap_state too small");

#define WRAP_ROUNDS 14 /* the wrapping cipher is always AES-256 */

static const uint8_t (*hpow(const uint8_t *ws))[16]
{
	return (const uint8_t(*)[16])(ws + WS_HPOW);
}

void klemu_wrap_prepare(uint8_t *ws, const struct klemu_iwkey *iwkey)
{
	uint8_t(*h)[16] = (uint8_t(*)[16])(ws + WS_HPOW);

	klemu_aes_expand(iwkey->enc, 256, ws + WS_AES_RK, NULL);
	memcpy(h[0], iwkey->integrity, 16);
	for (int i = 1; i < KLEMU_POLYVAL_MAX_BLOCKS; i++)
		klemu_polyval_dot(h[i - 1], h[0], h[i]);
}

/* The synthetic IV: POLYVAL over AAD, key and lengths, masked, encrypted. */
static void siv_tag(const uint8_t *ws, const uint8_t aad[16],
		    const uint8_t *key, int key_blocks, uint8_t tag[16])
{
	uint8_t x[KLEMU_POLYVAL_MAX_BLOCKS][16];
	uint8_t s[1][16];
	uint64_t aad_bits = 128, key_bits = 128u * (unsigned)key_blocks;

	memcpy(x[0], aad, 16);
	memcpy(x[1], key, (size_t)(16 * key_blocks));
	/* Length block: bit lengths of AAD and plaintext, 64-bit LE each. */
	memcpy(x[1 + key_blocks], &aad_bits, 8);
	memcpy(x[1 + key_blocks] + 8, &key_bits, 8);
	klemu_polyval(hpow(ws), (const uint8_t(*)[16])x,
		      (size_t)key_blocks + 2, s[0]);
	/* RFC 8452 XORs the nonce into bytes 0-11 here; it is zero. */
	s[0][15] &= 0x7f;
	klemu_aes_enc_blocks(ws + WS_AES_RK, WRAP_ROUNDS, s, 1);
	memcpy(tag, s[0], 16);
	klemu_wipe(x, sizeof(x));
}

/* AES-256-CTR with the GCM-SIV counter: out = in XOR keystream(tag). */
static void siv_ctr(const uint8_t *ws, const uint8_t tag[16],
		    const uint8_t *in, uint8_t *out, int key_blocks)
{
	uint8_t ks[2][16];

	for (int i = 0; i < key_blocks; i++) {
		uint32_t ctr;

		memcpy(ks[i], tag, 16);
		ks[i][15] |= 0x80;
		memcpy(&ctr, ks[i], 4); /* little-endian, wraps mod 2^32 */
		ctr += (uint32_t)i;
		memcpy(ks[i], &ctr, 4);
	}
	klemu_aes_enc_blocks(ws + WS_AES_RK, WRAP_ROUNDS, ks, (size_t)key_blocks);
	for (int i = 0; i < 16 * key_blocks; i++)
		out[i] = in[i] ^ ks[i / 16][i % 16];
	klemu_wipe(ks, sizeof(ks));
}

void klemu_wrap(const uint8_t *ws, const uint8_t aad[16], const uint8_t *key,
		int key_bits, uint8_t *handle)
{
	int key_blocks = key_bits / 128;

	memcpy(handle, aad, 16);
	siv_tag(ws, aad, key, key_blocks, handle + 16);
	siv_ctr(ws, handle + 16, key, handle + 32, key_blocks);
}

int klemu_unwrap(const uint8_t *ws, const uint8_t *handle, int key_bits,
		 uint8_t *key)
{
	int key_blocks = key_bits / 128;
	uint8_t tag[16];
	uint8_t diff = 0;

	siv_ctr(ws, handle + 16, handle + 32, key, key_blocks);
	siv_tag(ws, handle, key, key_blocks, tag);
	for (int i = 0; i < 16; i++)
		diff |= (uint8_t)(tag[i] ^ handle[16 + i]);
	if (diff != 0) {
		klemu_wipe(key, (size_t)(16 * key_blocks));
		return 0;
	}
	return 1;
}

void klemu_derive_iwkey(const uint8_t secret[32], const uint8_t boot_id[16],
			struct klemu_iwkey *out)
{
	uint8_t rk[KLEMU_AES_RK_BYTES];
	uint8_t block[3][16];

	klemu_aes_expand(secret, 256, rk, NULL);
	for (int i = 0; i < 3; i++) {
		memcpy(block[i], boot_id, 16);
		block[i][15] ^= (uint8_t)(0xA0 + i);
	}
	klemu_aes_enc_blocks(rk, 14, block, 3);
	memset(out, 0, sizeof(*out));
	memcpy(out->integrity, block[0], 16);
	memcpy(out->enc, block[1], 16);
	memcpy(out->enc + 16, block[2], 16);
	klemu_wipe(rk, sizeof(rk));
	klemu_wipe(block, sizeof(block));
}

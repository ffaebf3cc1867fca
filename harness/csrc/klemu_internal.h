/*
 * Internal interfaces between the emulator's files.  Not for the probe or
 * the vectors tool: they use klemu.h only.
 *
 *   klemu_dispatch.c  the one-time choice AES-NI/PCLMULQDQ vs portable
 *   klemu_aes.c       AES key schedule and block cipher (both paths)
 *   klemu_polyval.c   POLYVAL of RFC 8452 (both paths)
 *   klemu_wrap.c      the handle wrap of KEYLOCKER.md section 4
 *   klemu_cache.c     the unwrapped-handle cache
 *   klemu.c           the instructions, their checks and the CPU model
 *
 * Round keys are always stored in the FIPS-197 byte order, 16 bytes per
 * round, so both paths share one layout and a cache entry filled by one is
 * valid for the other.  Decryption keys are those of the "equivalent inverse
 * cipher" (FIPS-197 5.3.5), which is the form AESDEC expects.
 */
#ifndef KLEMU_INTERNAL_H
#define KLEMU_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "klemu.h"

#define KLEMU_AES_RK_BYTES (15 * 16) /* room for AES-256: 14 rounds + 1 */

/* 1 when AES-NI and PCLMULQDQ are used, 0 for the portable code.  Decided on
 * the first call from CPUID and KLEMU_FORCE_PORTABLE, then constant. */
int klemu_accel(void);

/* AES.  key_bits is 128, 192 or 256; rounds = 10, 12 or 14. */
int klemu_aes_rounds(int key_bits);
void klemu_aes_expand(const uint8_t *key, int key_bits,
		      uint8_t enc_rk[KLEMU_AES_RK_BYTES],
		      uint8_t dec_rk[KLEMU_AES_RK_BYTES]);
/* Encrypt/decrypt n blocks in place.  n == 8 is the WIDE case and is
 * interleaved on the AES-NI path. */
void klemu_aes_enc_blocks(const uint8_t *enc_rk, int rounds,
			  uint8_t (*blocks)[16], size_t n);
void klemu_aes_dec_blocks(const uint8_t *dec_rk, int rounds,
			  uint8_t (*blocks)[16], size_t n);

/* POLYVAL (RFC 8452 section 3).  hpow[i] = H^(i+1) in the dot-product
 * sense (hpow[1] = dot(H, H), ...), which lets the AES-NI path sum all
 * products before a single reduction.  n <= KLEMU_POLYVAL_MAX_BLOCKS. */
#define KLEMU_POLYVAL_MAX_BLOCKS 4
void klemu_polyval_dot(const uint8_t a[16], const uint8_t b[16],
		       uint8_t out[16]);
void klemu_polyval(const uint8_t hpow[KLEMU_POLYVAL_MAX_BLOCKS][16],
		   const uint8_t (*x)[16], size_t n, uint8_t out[16]);

/* The handle wrap.  wrap_state is klemu_ctx.wrap_state. */
void klemu_wrap_prepare(uint8_t *wrap_state, const struct klemu_iwkey *iwkey);
void klemu_wrap(const uint8_t *wrap_state, const uint8_t aad[16],
		const uint8_t *key, int key_bits, uint8_t *handle);
/* Returns 1 and the raw key when the handle authenticates, else 0 (key is
 * then zeroed). */
int klemu_unwrap(const uint8_t *wrap_state, const uint8_t *handle,
		 int key_bits, uint8_t *key);

/* The cache entry with the round keys of handle (size 48 or 64, key_bits
 * 128 or 256), unwrapping on a miss; NULL when the handle does not
 * authenticate under the current IWKey. */
const struct klemu_cache_entry *
klemu_cache_get(struct klemu_ctx *ctx, const uint8_t *handle, size_t size,
		int key_bits);

/* memset that the compiler may not drop: for key material on the stack. */
void klemu_wipe(void *p, size_t n);

#endif /* KLEMU_INTERNAL_H */

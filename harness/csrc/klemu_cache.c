/*
 * The unwrapped-handle cache.
 *
 * Why: a real CPU unwraps the handle on every AES*KL instruction, but in
 * software that is a POLYVAL, three AES-256 blocks and a key schedule -
 * several times the cost of the AES itself.  Software uses one handle for
 * many blocks, so we remember the round keys of the last few handles.
 *
 * Why it cannot change results: an entry is found only by the *full* handle
 * bytes (AAD, tag and ciphertext) and the IWKey generation, so a tampered
 * handle or a handle after LOADIWKEY always misses and is authenticated
 * afresh.  The per-instruction checks on the AAD (CPL, restrictions, key
 * type) are made by the caller before every lookup, hit or miss.  Failed
 * unwraps are never cached.
 */
#include <string.h>

#include "klemu_internal.h"

/* Equality of two 48- or 64-byte handles, as word compares the compiler
 * turns into a few vector instructions (cheaper than a memcmp call). */
static int handle_equal(const uint8_t *a, const uint8_t *b, size_t size)
{
	uint64_t diff = 0;

	for (size_t i = 0; i < size; i += 8) {
		uint64_t x, y;

		memcpy(&x, a + i, 8);
		memcpy(&y, b + i, 8);
		diff |= x ^ y;
	}
	return diff == 0;
}

static const struct klemu_cache_entry *lookup(const struct klemu_ctx *ctx,
					      const uint8_t *handle,
					      size_t size)
{
	/* Newest first: a loop over one handle hits on the first compare. */
	for (unsigned i = 1; i <= KLEMU_CACHE_WAYS; i++) {
		const struct klemu_cache_entry *e =
			&ctx->cache[(ctx->cache_next + KLEMU_CACHE_WAYS - i) %
				    KLEMU_CACHE_WAYS];

		if (e->handle_size == size &&
		    e->generation == ctx->iwkey_generation &&
		    handle_equal(e->handle, handle, size))
			return e;
	}
	return NULL;
}

const struct klemu_cache_entry *
klemu_cache_get(struct klemu_ctx *ctx, const uint8_t *handle, size_t size,
		int key_bits)
{
	const struct klemu_cache_entry *hit = lookup(ctx, handle, size);
	struct klemu_cache_entry *e;
	uint8_t copy[KLEMU_HANDLE256_SIZE];
	uint8_t key[32];

	if (hit) {
		ctx->stats_cache_hits++;
		return hit;
	}
	/* The handle is read once: what we authenticate is what we cache,
	 * even if another thread rewrites the memory meanwhile. */
	memcpy(copy, handle, size);
	ctx->stats_unwraps++;
	if (!klemu_unwrap(ctx->wrap_state, copy, key_bits, key))
		return NULL;
	e = &ctx->cache[ctx->cache_next];
	ctx->cache_next = (ctx->cache_next + 1) % KLEMU_CACHE_WAYS;
	memset(e->handle, 0, sizeof(e->handle));
	memcpy(e->handle, copy, size);
	e->handle_size = size;
	e->generation = ctx->iwkey_generation;
	e->key_bits = key_bits;
	klemu_aes_expand(key, key_bits, e->enc_rk, e->dec_rk);
	klemu_wipe(key, sizeof(key));
	return e;
}

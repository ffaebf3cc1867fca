/*
 * Register-level checks of the emulator that the vectors tool cannot see
 * (it shows only the data registers and flags): which XMM registers each
 * instruction reads and writes, that faults change nothing, the cache and
 * its invalidation, the backend's signal mapping.  Built and run by
 * tests/test_emulator_vs_model.py; prints "FAIL ..." lines and exits 1 on
 * a failed check, and prints a few values for Python to compare with the
 * reference model ("derive <hex>", "aes192 <hex>").
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "klbackend.h"
#include "check.h"

static void print_hex(const char *label, const uint8_t *p, size_t n)
{
	printf("%s ", label);
	for (size_t i = 0; i < n; i++)
		printf("%02x", p[i]);
	printf("\n");
}

/* Every XMM byte distinct, so any stray write shows. */
static void pattern_regs(struct klemu_regs *regs)
{
	for (int r = 0; r < 16; r++)
		for (int i = 0; i < 16; i++)
			regs->xmm[r][i] = (uint8_t)(16 * r + i);
	regs->eax = 0;
	regs->rflags = 0x2 | KLEMU_ARITH_FLAGS;
}

static int xmm_equal(const struct klemu_regs *a, const struct klemu_regs *b,
		     int r)
{
	return memcmp(a->xmm[r], b->xmm[r], 16) == 0;
}

static void ref_iwkey(struct klemu_iwkey *k)
{
	memset(k, 0, sizeof(*k));
	for (int i = 0; i < 16; i++)
		k->integrity[i] = (uint8_t)i;
	for (int i = 0; i < 32; i++)
		k->enc[i] = (uint8_t)(0x10 + i);
}

static void test_encodekey_registers(struct klemu_ctx *ctx)
{
	struct klemu_regs before, regs;
	uint32_t dest = 99;

	pattern_regs(&before);
	regs = before;
	CHECK(klemu_exec(ctx, KLEMU_ENCODEKEY128, &regs, 0, 1, 0, &dest, NULL) ==
	      KLEMU_OK);
	CHECK(dest == 0);
	CHECK((regs.rflags & KLEMU_ARITH_FLAGS) == 0 && (regs.rflags & 0x2));
	CHECK(xmm_equal(&regs, &before, 3)); /* XMM3 untouched by the 128 form */
	for (int r = 4; r <= 6; r++)
		for (int i = 0; i < 16; i++)
			CHECK(regs.xmm[r][i] == 0);
	for (int r = 7; r < 16; r++)
		CHECK(xmm_equal(&regs, &before, r));
	CHECK(regs.xmm[0][0] == 0 && regs.xmm[0][3] == 0); /* AAD: no restrictions */

	regs = before;
	CHECK(klemu_exec(ctx, KLEMU_ENCODEKEY256, &regs, 0, 1, 5, &dest, NULL) ==
	      KLEMU_OK);
	CHECK(regs.xmm[0][0] == 5 && regs.xmm[0][3] == 1); /* restrictions, type */
	CHECK(!xmm_equal(&regs, &before, 3));
	for (int i = 0; i < 16; i++)
		CHECK(regs.xmm[6][i] == 0);
	CHECK(xmm_equal(&regs, &before, 7));

	/* Faults change nothing at all, not even the flags or DEST. */
	regs = before;
	dest = 99;
	CHECK(klemu_exec(ctx, KLEMU_ENCODEKEY128, &regs, 0, 1, 8, &dest, NULL) ==
	      KLEMU_GP);
	CHECK(memcmp(&regs, &before, sizeof(regs)) == 0 && dest == 99);
}

static void test_aeskl_registers(struct klemu_ctx *ctx)
{
	struct klemu_regs before, regs;
	uint8_t key[16] = {0}, handle[KLEMU_HANDLE128_SIZE];
	struct klemu_iwkey iwkey;
	uint32_t dest;

	/* Not the all-zero IWKey: its POLYVAL key is 0, so under the section 4
	 * construction the tag does not depend on the handle at all. */
	ref_iwkey(&iwkey);
	klemu_set_iwkey(ctx, &iwkey);
	CHECK(klemu_encodekey128(ctx, 0, key, handle, &dest) == KLEMU_OK);
	pattern_regs(&before);

	/* The data register is ModRM.reg; nothing else moves. */
	regs = before;
	CHECK(klemu_exec(ctx, KLEMU_AESENC128KL, &regs, 9, 0, 0, NULL, handle) ==
	      KLEMU_OK);
	CHECK((regs.rflags & KLEMU_ARITH_FLAGS) == 0);
	for (int r = 0; r < 16; r++)
		CHECK(xmm_equal(&regs, &before, r) == (r != 9));

	/* WIDE: XMM0-7 in place, XMM8-15 untouched. */
	regs = before;
	CHECK(klemu_exec(ctx, KLEMU_AESENCWIDE128KL, &regs, 0, 0, 0, NULL,
			 handle) == KLEMU_OK);
	for (int r = 0; r < 16; r++)
		CHECK(xmm_equal(&regs, &before, r) == (r >= 8));

	/* ZF=1 leaves every register but RFLAGS as it was. */
	regs = before;
	handle[40] ^= 1;
	CHECK(klemu_exec(ctx, KLEMU_AESENCWIDE128KL, &regs, 0, 0, 0, NULL,
			 handle) == KLEMU_OK);
	handle[40] ^= 1;
	CHECK((regs.rflags & KLEMU_ARITH_FLAGS) == KLEMU_FLAG_ZF);
	regs.rflags = before.rflags;
	CHECK(memcmp(&regs, &before, sizeof(regs)) == 0);

	/* A missing memory operand is a fault, and WIDE needs EBX[2]. */
	regs = before;
	CHECK(klemu_exec(ctx, KLEMU_AESENC128KL, &regs, 0, 0, 0, NULL, NULL) ==
	      KLEMU_GP);
	ctx->cpu.leaf19_ebx &= ~KLEMU_L19_EBX_WIDE;
	CHECK(klemu_exec(ctx, KLEMU_AESENCWIDE128KL, &regs, 0, 0, 0, NULL,
			 handle) == KLEMU_UD);
	CHECK(klemu_exec(ctx, KLEMU_AESENC128KL, &regs, 0, 0, 0, NULL, handle) ==
	      KLEMU_OK);
	ctx->cpu.leaf19_ebx |= KLEMU_L19_EBX_WIDE;
}

static void test_loadiwkey_operands_and_cache(struct klemu_ctx *ctx)
{
	struct klemu_regs before, regs;
	struct klemu_iwkey ref;
	uint8_t key[16] = {0}, handle[KLEMU_HANDLE128_SIZE];
	uint8_t ref_handle[KLEMU_HANDLE128_SIZE], data[16] = {0};
	uint64_t unwraps, hits;
	uint32_t dest;
	int zf = -1;

	ref_iwkey(&ref);
	for (int i = 0; i < 16; i++)
		key[i] = (uint8_t)i;
	/* A handle under the reference IWKey, loaded the VMM way. */
	klemu_set_iwkey(ctx, &ref);
	CHECK(klemu_encodekey128(ctx, 0, key, ref_handle, &dest) == KLEMU_OK);

	/* The same IWKey through LOADIWKEY with rm = XMM5 (EncKey low) and
	 * reg = XMM12 (EncKey high) must produce the same handle. */
	pattern_regs(&before);
	memcpy(before.xmm[0], ref.integrity, 16);
	memcpy(before.xmm[5], ref.enc, 16);
	memcpy(before.xmm[12], ref.enc + 16, 16);
	regs = before;
	ctx->cpu.cpl = 3;
	CHECK(klemu_exec(ctx, KLEMU_LOADIWKEY, &regs, 12, 5, 0, NULL, NULL) ==
	      KLEMU_GP);
	ctx->cpu.cpl = 0;
	klemu_set_iwkey(ctx, &(struct klemu_iwkey){0});
	CHECK(klemu_exec(ctx, KLEMU_LOADIWKEY, &regs, 12, 5, 0, NULL, NULL) ==
	      KLEMU_OK);
	CHECK((regs.rflags & KLEMU_ARITH_FLAGS) == 0);
	regs.rflags = before.rflags;
	CHECK(memcmp(&regs, &before, sizeof(regs)) == 0); /* sources kept */
	CHECK(klemu_encodekey128(ctx, 0, key, handle, &dest) == KLEMU_OK);
	CHECK(memcmp(handle, ref_handle, sizeof(handle)) == 0);
	ctx->cpu.cpl = 3;

	/* First use unwraps, the second hits the cache. */
	unwraps = ctx->stats_unwraps;
	hits = ctx->stats_cache_hits;
	CHECK(klemu_aeskl(ctx, KLEMU_AESENC128KL, handle, data, &zf) == KLEMU_OK && zf == 0);
	CHECK(klemu_aeskl(ctx, KLEMU_AESDEC128KL, handle, data, &zf) == KLEMU_OK && zf == 0);
	CHECK(ctx->stats_unwraps == unwraps + 1 && ctx->stats_cache_hits == hits + 1);
	for (int i = 0; i < 16; i++)
		CHECK(data[i] == 0);

	/* A tampered copy misses (and fails); the original still hits. */
	handle[20] ^= 0x80;
	CHECK(klemu_aeskl(ctx, KLEMU_AESENC128KL, handle, data, &zf) == KLEMU_OK && zf == 1);
	handle[20] ^= 0x80;
	CHECK(ctx->stats_unwraps == unwraps + 2);
	CHECK(klemu_aeskl(ctx, KLEMU_AESENC128KL, handle, data, &zf) == KLEMU_OK && zf == 0);
	CHECK(ctx->stats_cache_hits == hits + 2);

	/* A CPL0-only handle cached at CPL 0 is still refused at CPL 3. */
	ctx->cpu.cpl = 0;
	CHECK(klemu_encodekey128(ctx, KLEMU_RESTRICT_CPL0, key, handle, &dest) == KLEMU_OK);
	CHECK(klemu_aeskl(ctx, KLEMU_AESENC128KL, handle, data, &zf) == KLEMU_OK && zf == 0);
	ctx->cpu.cpl = 3;
	CHECK(klemu_aeskl(ctx, KLEMU_AESENC128KL, handle, data, &zf) == KLEMU_OK && zf == 1);

	/* A new IWKey invalidates the cache: the old handle now fails. */
	CHECK(klemu_aeskl(ctx, KLEMU_AESENC128KL, ref_handle, data, &zf) == KLEMU_OK && zf == 0);
	klemu_set_iwkey(ctx, &(struct klemu_iwkey){0});
	CHECK(klemu_aeskl(ctx, KLEMU_AESENC128KL, ref_handle, data, &zf) == KLEMU_OK && zf == 1);
}

static void test_backend(struct klemu_ctx *ctx)
{
	struct kl_backend be;
	struct klemu_regs regs;
	struct kl_outcome res;
	struct klemu_iwkey key;
	uint32_t dest = 99;

	kl_backend_emulated(&be, ctx);
	CHECK(strcmp(be.name, "emulated") == 0);
	ref_iwkey(&key);
	key.nobackup = 1;
	key.keysource = 1;
	klemu_set_iwkey(ctx, &key);
	pattern_regs(&regs);
	res = be.exec(be.self, KLEMU_ENCODEKEY128, &regs, 0, &dest, NULL);
	CHECK(res.signal == 0 && res.zf == 0 && res.rflags == 0);
	CHECK(dest == 3 && regs.eax == 3); /* DEST is EAX */
	res = be.exec(be.self, KLEMU_ENCODEKEY128, &regs, 8, &dest, NULL);
	CHECK(res.signal == SIGSEGV);
	ctx->cpu.cpl = 3;
	res = be.exec(be.self, KLEMU_LOADIWKEY, &regs, 0, NULL, NULL);
	CHECK(res.signal == SIGSEGV);
	ctx->cpu.cr4_kl = 0;
	res = be.exec(be.self, KLEMU_AESENC128KL, &regs, 0, NULL, regs.xmm);
	CHECK(res.signal == SIGILL);
	ctx->cpu.cr4_kl = 1;
}

static void test_cpu_and_names(struct klemu_ctx *ctx)
{
	uint32_t leaf[4];

	klemu_cpuid19(ctx, leaf);
	CHECK(leaf[0] == 7 && leaf[1] == 0x15 && leaf[2] == 3 && leaf[3] == 0);
	CHECK(klemu_cpuid7_ecx_kl(ctx) == KLEMU_CPUID7_ECX_KL);
	ctx->cpu.aeskle_enabled = 0;
	klemu_cpuid19(ctx, leaf);
	CHECK(leaf[1] == 0x14);
	ctx->cpu.aeskle_enabled = 1;
	for (int op = 0; op < KLEMU_OP_COUNT; op++)
		CHECK(klemu_op_from_name(klemu_op_name((enum klemu_op)op)) == op);
	CHECK(klemu_op_name(KLEMU_OP_COUNT) == NULL);
	CHECK(klemu_op_from_name("aesenc512kl") == -1);
}

static void print_values(void)
{
	uint8_t secret[32], boot_id[16], key192[24], out[16];
	uint8_t pt[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
			  0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
	struct klemu_iwkey k;

	for (int i = 0; i < 32; i++)
		secret[i] = (uint8_t)i;
	for (int i = 0; i < 16; i++)
		boot_id[i] = (uint8_t)(100 + i);
	for (int i = 0; i < 24; i++)
		key192[i] = (uint8_t)i;
	klemu_derive_iwkey(secret, boot_id, &k);
	print_hex("derive", (const uint8_t *)&k, 48);
	CHECK(k.nobackup == 0 && k.keysource == 0);
	klemu_aes_encrypt_block(key192, 192, pt, out);
	print_hex("aes192", out, 16);
	klemu_aes_decrypt_block(key192, 192, out, out);
	CHECK(memcmp(out, pt, 16) == 0);
}

int main(void)
{
	struct klemu_ctx *ctx = malloc(sizeof(*ctx));
	struct klemu_cpu cpu;

	if (!ctx)
		return 2;
	klemu_cpu_tigerlake(&cpu);
	klemu_init(ctx, &cpu);
	printf("impl %s\n", klemu_impl_name());
	test_encodekey_registers(ctx);
	test_aeskl_registers(ctx);
	test_loadiwkey_operands_and_cache(ctx);
	test_backend(ctx);
	test_cpu_and_names(ctx);
	print_values();
	free(ctx);
	printf("%s\n", failures ? "FAILED" : "OK");
	return failures ? 1 : 0;
}

/*
 * The trap layer's pure parts, without signals (tests/test_trap.py):
 *
 *   trap_unit decode FILE   decode FILE (raw bytes, e.g. the .text of an
 *                           object GNU as assembled) instruction by
 *                           instruction; one line per instruction:
 *                           "op len reg rm base index scale disp addr32 seg"
 *                           or "not-kl <offset>" and stop
 *   trap_unit checks        effective addresses, refusals, and the CPUID
 *                           answer; "FAIL ..." lines and exit 1 on failure
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "klemu_decode.h"
#include "klemu_trap.h"
#include "check.h"

static int decode_file(const char *path)
{
	static uint8_t buf[1 << 16];
	FILE *f = fopen(path, "rb");
	size_t n, at = 0;

	if (!f) {
		perror(path);
		return 2;
	}
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	while (at < n) {
		struct klemu_insn in;

		if (klemu_decode(buf + at, n - at, &in) != KLEMU_DECODE_OK) {
			printf("not-kl %zu\n", at);
			return 0;
		}
		printf("%s %u %u %u %d %d %u %d %d %s\n", klemu_op_name(in.op), in.len, in.reg, in.rm,
		       in.base, in.index, in.scale, in.disp, in.addr32, in.seg ? klemu_seg_name(in.seg) : "-");
		at += in.len;
	}
	return 0;
}

static int decodes(const uint8_t *code, size_t n, struct klemu_insn *in)
{
	return klemu_decode(code, n, in) == KLEMU_DECODE_OK;
}

static void check_refusals(void)
{
	struct klemu_insn in;
	static const uint8_t aesni[] = {0x66, 0x0f, 0x38, 0xdc, 0x07};        /* AES-NI aesenc */
	static const uint8_t both[] = {0x66, 0xf3, 0x0f, 0x38, 0xdc, 0x07};   /* 66 and F3 */
	static const uint8_t lock[] = {0xf0, 0xf3, 0x0f, 0x38, 0xdc, 0x07};   /* LOCK: #UD */
	static const uint8_t wide4[] = {0xf3, 0x0f, 0x38, 0xd8, 0x27};        /* D8 /4 */
	static const uint8_t dd_reg[] = {0xf3, 0x0f, 0x38, 0xdd, 0xc1};       /* DD mod=11 */
	static const uint8_t fa_mem[] = {0xf3, 0x0f, 0x38, 0xfa, 0x07};       /* FA mod!=11 */
	static const uint8_t ud2[] = {0x0f, 0x0b};
	static const uint8_t rex_then_66[] = {0xf3, 0x48, 0x66, 0x0f, 0x38, 0xdc, 0x07};
	static const uint8_t rex_cancelled[] = {0x44, 0xf3, 0x0f, 0x38, 0xdc, 0x08}; /* REX before F3 */
	static const uint8_t short_disp[] = {0xf3, 0x0f, 0x38, 0xdc, 0x87, 0x01, 0x02};
	uint8_t long_insn[20];

	CHECK(!decodes(aesni, sizeof(aesni), &in));
	CHECK(!decodes(both, sizeof(both), &in));
	CHECK(!decodes(lock, sizeof(lock), &in));
	CHECK(!decodes(wide4, sizeof(wide4), &in));
	CHECK(!decodes(dd_reg, sizeof(dd_reg), &in));
	CHECK(!decodes(fa_mem, sizeof(fa_mem), &in));
	CHECK(!decodes(ud2, sizeof(ud2), &in));
	CHECK(!decodes(rex_then_66, sizeof(rex_then_66), &in));
	CHECK(klemu_decode(short_disp, sizeof(short_disp), &in) == KLEMU_DECODE_TRUNCATED);
	/* A REX byte followed by a legacy prefix does not count: xmm1, not xmm9. */
	CHECK(decodes(rex_cancelled, sizeof(rex_cancelled), &in) && in.reg == 1 && in.len == 6);
	/* 11 redundant segment prefixes + 5 bytes = 16 > 15: not an instruction. */
	memset(long_insn, 0x3e, 11);
	memcpy(long_insn + 11, (const uint8_t[]){0xf3, 0x0f, 0x38, 0xdc, 0x07}, 5);
	CHECK(!decodes(long_insn, 16, &in));
	CHECK(decodes(long_insn + 1, 15, &in) && in.len == 15);
}

static void check_ea(void)
{
	struct klemu_insn in;
	uint64_t gpr[16];
	/* aesenc128kl 0x12345678(%r13,%r14,8), %xmm11 */
	static const uint8_t sib[] = {0xf3, 0x47, 0x0f, 0x38, 0xdc, 0x9c, 0xf5, 0x78, 0x56, 0x34, 0x12};
	/* aesdec256kl -8(%rsp), %xmm15 */
	static const uint8_t disp8[] = {0xf3, 0x44, 0x0f, 0x38, 0xdf, 0x7c, 0x24, 0xf8};
	/* aesenc128kl 0x4c(%rip), %xmm3 */
	static const uint8_t riprel[] = {0xf3, 0x0f, 0x38, 0xdc, 0x1d, 0x4c, 0x00, 0x00, 0x00};
	/* aesenc128kl (%r12d,%r8d,1), %xmm0  (67h) */
	static const uint8_t a32[] = {0x67, 0xf3, 0x43, 0x0f, 0x38, 0xdc, 0x04, 0x04};
	/* aesenc128kl %fs:0x10, %xmm2 (SIB, no base, no index, disp32) */
	static const uint8_t fs[] = {0x64, 0xf3, 0x0f, 0x38, 0xdc, 0x14, 0x25, 0x10, 0x00, 0x00, 0x00};
	/* aesenc128kl 0x0(,%r12,2), %xmm0 */
	static const uint8_t noindexbase[] = {0xf3, 0x42, 0x0f, 0x38, 0xdc, 0x04, 0x65, 0, 0, 0, 0};
	/* aesenc128kl -4(%eip), %xmm0: 67h with RIP-relative wraps at 4 GiB */
	static const uint8_t eiprel[] = {0x67, 0xf3, 0x0f, 0x38, 0xdc, 0x05, 0xfc, 0xff, 0xff, 0xff};

	for (int i = 0; i < 16; i++)
		gpr[i] = 0x1000u * (uint64_t)(i + 1);
	CHECK(decodes(sib, sizeof(sib), &in) && in.len == 11 && in.reg == 11);
	CHECK(klemu_decode_ea(&in, gpr, 0, 0) == gpr[13] + gpr[14] * 8 + 0x12345678);
	CHECK(decodes(disp8, sizeof(disp8), &in) && in.op == KLEMU_AESDEC256KL && in.mem_size == 64);
	CHECK(klemu_decode_ea(&in, gpr, 0, 0) == gpr[4] - 8);
	CHECK(decodes(riprel, sizeof(riprel), &in) && in.base == KLEMU_BASE_RIP);
	CHECK(klemu_decode_ea(&in, gpr, 0x400000, 0) == 0x400000 + 9 + 0x4c);
	gpr[12] = 0xffffffff00000010ull; /* upper halves ignored under 67h */
	gpr[8] = 0x20;
	CHECK(decodes(a32, sizeof(a32), &in) && in.addr32 && in.len == 8);
	CHECK(klemu_decode_ea(&in, gpr, 0, 0) == 0x30);
	gpr[12] = 0xfffffff0;
	CHECK(klemu_decode_ea(&in, gpr, 0, 0) == 0x10); /* wraps at 4 GiB */
	CHECK(decodes(fs, sizeof(fs), &in) && in.seg == KLEMU_SEG_FS && in.base == KLEMU_NO_REG &&
	      in.index == KLEMU_NO_REG);
	CHECK(klemu_decode_ea(&in, gpr, 0, 0x7f0000000000ull) == 0x7f0000000010ull);
	gpr[12] = 0x5000;
	CHECK(decodes(noindexbase, sizeof(noindexbase), &in) && in.base == KLEMU_NO_REG && in.index == 12);
	CHECK(klemu_decode_ea(&in, gpr, 0, 0) == 0xa000);
	CHECK(decodes(eiprel, sizeof(eiprel), &in) && in.addr32);
	CHECK(klemu_decode_ea(&in, gpr, 0x100000000ull, 0) == 10 - 4);
}

static void check_cpuid(void)
{
	struct klemu_ctx ctx;
	struct klemu_cpu cpu;
	const uint32_t real0[4] = {0x10, 0x68747541, 0x444d4163, 0x69746e65};
	const uint32_t real7[4] = {0, 0x219c91a9, 0x00400004, 0x10};
	const uint32_t real1[4] = {0xa00f11, 0x800, 0xfed83203, 0x178bfbff};
	const uint32_t zero[4] = {0, 0, 0, 0};
	uint32_t out[4];

	klemu_cpu_tigerlake(&cpu);
	klemu_init(&ctx, &cpu);
	klemu_trap_cpuid_answer(&ctx, 0, 0, real0, out);
	CHECK(out[0] == 0x19 && out[1] == real0[1] && out[2] == real0[2] && out[3] == real0[3]);
	klemu_trap_cpuid_answer(&ctx, 7, 0, real7, out);
	CHECK(out[2] == (real7[2] | (1u << 23)) && out[0] == real7[0] && out[1] == real7[1] && out[3] == real7[3]);
	klemu_trap_cpuid_answer(&ctx, 7, 1, real7, out);
	CHECK(memcmp(out, real7, sizeof(out)) == 0); /* subleaf 1 untouched */
	klemu_trap_cpuid_answer(&ctx, 0x19, 0, zero, out);
	CHECK(out[0] == 0x7 && out[1] == 0x15 && out[2] == 0x3 && out[3] == 0);
	klemu_trap_cpuid_answer(&ctx, 1, 0, real1, out);
	CHECK(memcmp(out, real1, sizeof(out)) == 0);

	/* KL hidden by the VMM: bit 23 cleared even if the real CPU had it. */
	cpu.kl_present = 0;
	klemu_init(&ctx, &cpu);
	klemu_trap_cpuid_answer(&ctx, 7, 0, (const uint32_t[4]){0, 0, 1u << 23, 0}, out);
	CHECK(out[2] == 0);
	klemu_trap_cpuid_answer(&ctx, 0, 0, real0, out);
	CHECK(out[0] == 0x10);
	klemu_trap_cpuid_answer(&ctx, 0x19, 0, (const uint32_t[4]){7, 0x15, 3, 0}, out);
	CHECK(out[0] == 0 && out[1] == 0 && out[2] == 0 && out[3] == 0);

	/* CR4.KL clear: KL enumerated, AESKLE 0. */
	klemu_cpu_tigerlake(&cpu);
	cpu.cr4_kl = 0;
	klemu_init(&ctx, &cpu);
	klemu_trap_cpuid_answer(&ctx, 0x19, 0, zero, out);
	CHECK(out[1] == 0x14);
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "decode"))
		return decode_file(argv[2]);
	if (argc == 2 && !strcmp(argv[1], "checks")) {
		check_refusals();
		check_ea();
		check_cpuid();
		printf("%s\n", failures ? "failed" : "ok");
		return failures ? 1 : 0;
	}
	fprintf(stderr, "usage: trap_unit decode FILE | checks\n");
	return 2;
}

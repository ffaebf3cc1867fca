/*
 * Key Locker instructions in the encodings compiled and hand-written code
 * uses, each executed for real (tests/test_trap.py runs this under
 * LD_PRELOAD=libklemu-preload.so; build with -no-pie so the 67h form can
 * address the handle with 32 bits, and so the TLS and absolute forms
 * link):
 *
 *   the kernel selftest's `.byte` ENCODEKEY128 %eax,%eax; ENCODEKEY with
 *   REX (r9d/r10d); SIB with REX.X/B and disp32 into xmm11; disp8 < 0 into
 *   xmm15; RIP-relative; 67h with garbage in the upper half of the base;
 *   %fs: on a TLS variable; %gs: with a GS base set by arch_prctl; WIDE on
 *   (%r12) and on an index-only SIB; flags before/after; ENCODEKEY128 of
 *   an all-zero key with XMM0-15 all zero (SSE state in its init
 *   configuration, which XSAVE may mark unused in the signal frame).
 *
 * Data as in trap_intrinsics.c: KEY = 00..1f, PT = 00112233..ff, wide lane
 * i = PT with byte 0 XOR i.  Output lines "<form> <zf> <hex>".
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static const uint8_t KEY[32] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
				16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
static const uint8_t PT[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
			       0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};

uint8_t g_h128[48] __attribute__((aligned(16)));
uint8_t g_h256[64] __attribute__((aligned(16)));
uint8_t g_gsbuf[256] __attribute__((aligned(16)));
__thread uint8_t t_h128[48] __attribute__((aligned(16)));

static void hex(const char *form, unsigned zf, const void *p, size_t n)
{
	const uint8_t *b = p;

	printf("%s %u ", form, zf);
	for (size_t i = 0; i < n; i++)
		printf("%02x", b[i]);
	printf("\n");
}

/* encodekey128 %eax, %eax exactly as the kernel selftest spells it. */
static void selftest_form(void)
{
	uint8_t x[3][16];
	uint32_t eax = 0; /* restrictions in, DEST out */

	__asm__ volatile("movdqu (%[k]), %%xmm0\n\t"
			 ".byte 0xf3, 0x0f, 0x38, 0xfa, 0xc0\n\t"
			 "movdqu %%xmm0, 0(%[x])\n\tmovdqu %%xmm1, 16(%[x])\n\tmovdqu %%xmm2, 32(%[x])\n\t"
			 : "+a"(eax)
			 : [k] "r"(KEY), [x] "r"(x)
			 : "xmm0", "xmm1", "xmm2", "xmm4", "xmm5", "xmm6", "memory", "cc");
	memcpy(g_h128, x, 48);
	hex("selftest_encodekey128", eax, x, 48);
}

/* encodekey128 %r9d, %r10d (f3 45 0f 38 fa d1): SRC r9d = 1 (CPL0-only),
 * DEST r10d; r10's upper half must be zeroed; XMM3 kept, XMM4-6 zeroed. */
static void rex_encode(void)
{
	uint8_t x[7][16];
	register uint64_t r9 __asm__("r9") = 1;
	register uint64_t r10 __asm__("r10") = 0xdeadbeefdeadbeefull;

	memset(x, 0xa5, sizeof(x));
	__asm__ volatile("movdqu (%[k]), %%xmm0\n\tmovdqu 48(%[x]), %%xmm3\n\tmovdqu 64(%[x]), %%xmm4\n\t"
			 "movdqu 80(%[x]), %%xmm5\n\tmovdqu 96(%[x]), %%xmm6\n\t"
			 ".byte 0xf3, 0x45, 0x0f, 0x38, 0xfa, 0xd1\n\t"
			 "movdqu %%xmm0, 0(%[x])\n\tmovdqu %%xmm1, 16(%[x])\n\tmovdqu %%xmm2, 32(%[x])\n\t"
			 "movdqu %%xmm3, 48(%[x])\n\tmovdqu %%xmm4, 64(%[x])\n\tmovdqu %%xmm5, 80(%[x])\n\t"
			 "movdqu %%xmm6, 96(%[x])\n\t"
			 : "+r"(r10)
			 : "r"(r9), [k] "r"(KEY), [x] "r"(x)
			 : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "memory", "cc");
	printf("rex_encodekey128_r10 %016llx\n", (unsigned long long)r10);
	hex("rex_encodekey128", 0, x, sizeof(x));
}

/* encodekey256 %ecx, %eax as .byte. */
static void encode256(void)
{
	uint8_t x[4][16];
	uint32_t eax = 0;

	__asm__ volatile("movdqu (%[k]), %%xmm0\n\tmovdqu 16(%[k]), %%xmm1\n\t"
			 ".byte 0xf3, 0x0f, 0x38, 0xfb, 0xc1\n\t"
			 "movdqu %%xmm0, 0(%[x])\n\tmovdqu %%xmm1, 16(%[x])\n\t"
			 "movdqu %%xmm2, 32(%[x])\n\tmovdqu %%xmm3, 48(%[x])\n\t"
			 : "+a"(eax)
			 : "c"(0), [k] "r"(KEY), [x] "r"(x)
			 : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "memory", "cc");
	memcpy(g_h256, x, 64);
	hex("encodekey256", eax, x, 64);
}

/* aesenc128kl 0x12345678(%r13,%r14,8), %xmm11; XMM0 must stay as it was. */
static void sib_disp32(void)
{
	uint8_t out[2][16];
	uint8_t zf;
	register uint64_t r13 __asm__("r13") = (uint64_t)(uintptr_t)g_h128 - 0x12345678 - 3 * 8;
	register uint64_t r14 __asm__("r14") = 3;

	memset(out, 0x5c, sizeof(out));
	__asm__ volatile("movdqu (%[p]), %%xmm11\n\tmovdqu 16(%[o]), %%xmm0\n\t"
			 ".byte 0xf3, 0x47, 0x0f, 0x38, 0xdc, 0x9c, 0xf5, 0x78, 0x56, 0x34, 0x12\n\t"
			 "setz %[zf]\n\tmovdqu %%xmm11, 0(%[o])\n\tmovdqu %%xmm0, 16(%[o])\n\t"
			 : [zf] "=r"(zf)
			 : "r"(r13), "r"(r14), [p] "r"(PT), [o] "r"(out)
			 : "xmm0", "xmm11", "memory", "cc");
	hex("sib_disp32_xmm11", zf, out, sizeof(out));
}

/* aesdec256kl -64(%rbx), %xmm15 (disp8 < 0) on the encryption of PT. */
static void disp8_negative(void)
{
	uint8_t block[16];
	uint8_t zf;

	__asm__ volatile("movdqu (%[p]), %%xmm15\n\t"
			 "aesenc256kl -64(%%rbx), %%xmm15\n\t"
			 "aesdec256kl -64(%%rbx), %%xmm15\n\t"
			 "setz %[zf]\n\tmovdqu %%xmm15, (%[o])\n\t"
			 : [zf] "=r"(zf)
			 : "b"(g_h256 + 64), [p] "r"(PT), [o] "r"(block)
			 : "xmm15", "memory", "cc");
	hex("disp8_roundtrip_xmm15", zf, block, 16);
}

/* aesenc128kl g_h128(%rip), %xmm3 */
static void rip_relative(void)
{
	uint8_t block[16];
	uint8_t zf;

	__asm__ volatile("movdqu (%[p]), %%xmm3\n\t"
			 "aesenc128kl g_h128(%%rip), %%xmm3\n\t"
			 "setz %[zf]\n\tmovdqu %%xmm3, (%[o])\n\t"
			 : [zf] "=r"(zf)
			 : [p] "r"(PT), [o] "r"(block)
			 : "xmm3", "memory", "cc");
	hex("rip_relative_xmm3", zf, block, 16);
}

/* 67h: aesenc128kl (%eax), %xmm1 with garbage in RAX[63:32]. */
static void addr32(void)
{
	uint8_t block[16];
	uint8_t zf;
	uint64_t rax = 0xabcdef0100000000ull | (uint32_t)(uintptr_t)g_h128;

	__asm__ volatile("movdqu (%[p]), %%xmm1\n\t"
			 "aesenc128kl (%%eax), %%xmm1\n\t"
			 "setz %[zf]\n\tmovdqu %%xmm1, (%[o])\n\t"
			 : [zf] "=r"(zf)
			 : "a"(rax), [p] "r"(PT), [o] "r"(block)
			 : "xmm1", "memory", "cc");
	hex("addr32_xmm1", zf, block, 16);
}

/* %fs: a thread-local handle, local-exec TLS as compilers emit it. */
static void fs_tls(void)
{
	uint8_t block[16];
	uint8_t zf;

	memcpy(t_h128, g_h128, 48);
	__asm__ volatile("movdqu (%[p]), %%xmm2\n\t"
			 "aesenc128kl %%fs:t_h128@tpoff, %%xmm2\n\t"
			 "setz %[zf]\n\tmovdqu %%xmm2, (%[o])\n\t"
			 : [zf] "=r"(zf)
			 : [p] "r"(PT), [o] "r"(block)
			 : "xmm2", "memory", "cc");
	hex("fs_tls_xmm2", zf, block, 16);
}

/* %gs:(%rbx) with the GS base pointing at g_gsbuf. */
static void gs_base(void)
{
	uint8_t block[16];
	uint8_t zf;

	memcpy(g_gsbuf + 80, g_h128, 48);
	if (syscall(SYS_arch_prctl, ARCH_SET_GS, (unsigned long)g_gsbuf)) {
		printf("gs_base_xmm2 unsupported\n");
		return;
	}
	__asm__ volatile("movdqu (%[p]), %%xmm2\n\t"
			 "aesenc128kl %%gs:(%%rbx), %%xmm2\n\t"
			 "setz %[zf]\n\tmovdqu %%xmm2, (%[o])\n\t"
			 : [zf] "=r"(zf)
			 : "b"(80), [p] "r"(PT), [o] "r"(block)
			 : "xmm2", "memory", "cc");
	hex("gs_base_xmm2", zf, block, 16);
}

static void lanes(uint8_t x[8][16])
{
	for (int i = 0; i < 8; i++) {
		memcpy(x[i], PT, 16);
		x[i][0] ^= (uint8_t)i;
	}
}

#define LOAD8 "movdqu 0(%[x]), %%xmm0\n\tmovdqu 16(%[x]), %%xmm1\n\tmovdqu 32(%[x]), %%xmm2\n\t" \
	      "movdqu 48(%[x]), %%xmm3\n\tmovdqu 64(%[x]), %%xmm4\n\tmovdqu 80(%[x]), %%xmm5\n\t"   \
	      "movdqu 96(%[x]), %%xmm6\n\tmovdqu 112(%[x]), %%xmm7\n\t"
#define STORE8 "movdqu %%xmm0, 0(%[x])\n\tmovdqu %%xmm1, 16(%[x])\n\tmovdqu %%xmm2, 32(%[x])\n\t" \
	       "movdqu %%xmm3, 48(%[x])\n\tmovdqu %%xmm4, 64(%[x])\n\tmovdqu %%xmm5, 80(%[x])\n\t"  \
	       "movdqu %%xmm6, 96(%[x])\n\tmovdqu %%xmm7, 112(%[x])\n\t"
#define CLOBBER8 "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "memory", "cc"

/* aesencwide128kl (%r12): f3 41 0f 38 d8 04 24 */
static void wide_r12(void)
{
	uint8_t x[8][16];
	uint8_t zf;
	register const uint8_t *r12 __asm__("r12") = g_h128;

	lanes(x);
	__asm__ volatile(LOAD8 ".byte 0xf3, 0x41, 0x0f, 0x38, 0xd8, 0x04, 0x24\n\tsetz %[zf]\n\t" STORE8
			 : [zf] "=r"(zf)
			 : "r"(r12), [x] "r"(x)
			 : CLOBBER8);
	hex("wide128_r12", zf, x, sizeof(x));
}

/* aesencwide256kl then aesdecwide256kl g_h256(,%rcx,1): no base, index only. */
static void wide_index_only(void)
{
	uint8_t x[8][16];
	uint8_t zf;

	lanes(x);
	__asm__ volatile(LOAD8 "aesencwide256kl g_h256(,%%rcx,1)\n\tsetz %[zf]\n\t" STORE8
			 : [zf] "=r"(zf)
			 : "c"(0), [x] "r"(x)
			 : CLOBBER8);
	hex("wide256_index_only", zf, x, sizeof(x));
}

static void init_state(void)
{
	uint8_t x[3][16];

	__asm__ volatile("pxor %%xmm0, %%xmm0\n\tpxor %%xmm1, %%xmm1\n\tpxor %%xmm2, %%xmm2\n\t"
			 "pxor %%xmm3, %%xmm3\n\tpxor %%xmm4, %%xmm4\n\tpxor %%xmm5, %%xmm5\n\t"
			 "pxor %%xmm6, %%xmm6\n\tpxor %%xmm7, %%xmm7\n\tpxor %%xmm8, %%xmm8\n\t"
			 "pxor %%xmm9, %%xmm9\n\tpxor %%xmm10, %%xmm10\n\tpxor %%xmm11, %%xmm11\n\t"
			 "pxor %%xmm12, %%xmm12\n\tpxor %%xmm13, %%xmm13\n\tpxor %%xmm14, %%xmm14\n\t"
			 "pxor %%xmm15, %%xmm15\n\t"
			 "encodekey128 %%eax, %%eax\n\t"
			 "movdqu %%xmm0, 0(%[x])\n\tmovdqu %%xmm1, 16(%[x])\n\tmovdqu %%xmm2, 32(%[x])\n\t"
			 : : "a"(0), [x] "r"(x)
			 : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
			   "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "memory", "cc");
	hex("init_state_encodekey128", 0, x, sizeof(x));
}

/* CF/OF set before, all arithmetic flags as KL leaves them after. */
static void flags(void)
{
	uint64_t f_ok, f_bad;
	uint8_t bad[48];

	memcpy(bad, g_h128, 48);
	bad[40] ^= 0x80;
	__asm__ volatile("movdqu (%[p]), %%xmm0\n\t"
			 "mov $0x7f, %%al\n\tadd $1, %%al\n\tstc\n\t" /* OF, SF, AF, CF set */
			 "aesenc128kl (%[h]), %%xmm0\n\tpushfq\n\tpopq %[ok]\n\t"
			 "mov $0x7f, %%al\n\tadd $1, %%al\n\tstc\n\t"
			 "aesenc128kl (%[b]), %%xmm0\n\tpushfq\n\tpopq %[bad]\n\t"
			 : [ok] "=&r"(f_ok), [bad] "=&r"(f_bad)
			 : [p] "r"(PT), [h] "r"(g_h128), [b] "r"(bad)
			 : "rax", "xmm0", "memory", "cc");
	printf("flags %llx %llx\n", (unsigned long long)(f_ok & 0x8d5), (unsigned long long)(f_bad & 0x8d5));
}

int main(void)
{
	selftest_form();
	rex_encode();
	encode256();
	sib_disp32();
	disp8_negative();
	rip_relative();
	addr32();
	fs_tls();
	gs_base();
	wide_r12();
	wide_index_only();
	flags();
	init_state();
	return 0;
}

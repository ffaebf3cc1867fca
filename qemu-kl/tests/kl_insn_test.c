/*
 * kl_insn_test: instruction-level checks of a CPU (or VMM) that runs Key Locker, from user space,
 * beyond what klprobe observes.  Needs CR4.KL set and an IWKey loaded (klhelper).  Static binary,
 * built on the host; every instruction is written as .byte so no assembler knowledge is assumed.
 *
 * Output: one "name: ok" or "name: FAIL detail" line per check, then "summary: P passed, F failed";
 * exit status 0 only when nothing failed.  tests/test_qemu_kl.py runs it in a guest.
 *
 * Checks (SDM order of faults: #UD, #GP, memory faults before any change, then ZF):
 *   lock.*        a LOCK prefix is #UD (SIGILL)
 *   vex.*         a VEX-encoded F3 0F38 DC is #UD
 *   mod.*         ENCODEKEY with memory, AES*KL (DD-DF) with a register, WIDE with a register or /4-/7: #UD
 *   flags.*       all arithmetic flags set before: after success only ZF decides (0), after a
 *                 refused handle ZF=1, O/S/A/P/C cleared either way; the data register untouched on ZF=1
 *   dest.*        ENCODEKEY writes DEST as a 32-bit register (upper half of RDX zeroed); SRC uses ECX only
 *   xmm.*         ENCODEKEY128 keeps XMM3 and XMM7-15, zeroes XMM4-6; WIDE leaves XMM8-15 alone
 *   rex.*         REX forms: AESENC128KL xmm9, [r8]; ENCODEKEY128 r9d, r10d
 *   seg.*         a GS-override handle operand (the GS base is the handle)
 *   page.*        a handle that crosses into an unmapped page: SIGSEGV at the unmapped address,
 *                 nothing changed (data register, flags)
 *   unaligned.*   a handle at an odd address works
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ARITH (0x1u | 0x4u | 0x10u | 0x40u | 0x80u | 0x800u) /* CF PF AF ZF SF OF */
#define ZF 0x40u

static const uint8_t key128[16] = {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
				   0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f};
static const uint8_t fips_pt[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
				    0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
static const uint8_t fips_ct[16] = {0x69, 0xc4, 0xe0, 0xd8, 0x6a, 0x7b, 0x04, 0x30,
				    0xd8, 0xcd, 0xb7, 0x80, 0x70, 0xb4, 0xc5, 0x5a};

static int passed, failed;

static void result(const char *name, int ok, const char *fmt, ...)
{
	va_list ap;

	printf("%s: %s", name, ok ? "ok" : "FAIL ");
	if (!ok) {
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
	}
	printf("\n");
	ok ? passed++ : failed++;
}

/* ---- signal guard ------------------------------------------------------------------------ */

static sigjmp_buf jump;
static volatile int got_signal;
static void *volatile fault_addr;

static void on_signal(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	got_signal = sig;
	fault_addr = si->si_addr;
	siglongjmp(jump, 1);
}

static void guard(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_signal;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigaction(SIGILL, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
}

/* Run fn(arg); the signal it raised (0 for none). */
static int signal_of(void (*fn)(void *), void *arg)
{
	got_signal = 0;
	fault_addr = NULL;
	if (sigsetjmp(jump, 1) == 0)
		fn(arg);
	return got_signal;
}

/* ---- the instructions, each as bytes -------------------------------------------------------- */

struct xmm8 {
	uint8_t b[8][16];
};

/* ENCODEKEY128 edx, ecx with XMM0 = key; XMM0-7 in and out of *x; returns DEST. */
static uint32_t encodekey128(struct xmm8 *x, uint32_t src)
{
	uint32_t dest;

	__asm__ volatile("movdqu 0x00(%[x]), %%xmm0\n\tmovdqu 0x10(%[x]), %%xmm1\n\t"
			 "movdqu 0x20(%[x]), %%xmm2\n\tmovdqu 0x30(%[x]), %%xmm3\n\t"
			 "movdqu 0x40(%[x]), %%xmm4\n\tmovdqu 0x50(%[x]), %%xmm5\n\t"
			 "movdqu 0x60(%[x]), %%xmm6\n\tmovdqu 0x70(%[x]), %%xmm7\n\t"
			 ".byte 0xf3,0x0f,0x38,0xfa,0xd1\n\t"
			 "movdqu %%xmm0, 0x00(%[x])\n\tmovdqu %%xmm1, 0x10(%[x])\n\t"
			 "movdqu %%xmm2, 0x20(%[x])\n\tmovdqu %%xmm3, 0x30(%[x])\n\t"
			 "movdqu %%xmm4, 0x40(%[x])\n\tmovdqu %%xmm5, 0x50(%[x])\n\t"
			 "movdqu %%xmm6, 0x60(%[x])\n\tmovdqu %%xmm7, 0x70(%[x])"
			 : "=d"(dest)
			 : [x] "r"(x), "c"(src)
			 : "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7");
	return dest;
}

static void make_handle(uint8_t handle[48])
{
	struct xmm8 x;

	memset(&x, 0, sizeof(x));
	memcpy(x.b[0], key128, 16);
	encodekey128(&x, 0);
	memcpy(handle, x.b, 48);
}

/* AESENC128KL xmm0, [rdi] with every arithmetic flag set first; *data in/out, returns RFLAGS after. */
static uint64_t aesenc128kl_flags(uint8_t data[16], const void *handle)
{
	uint64_t flags;

	__asm__ volatile("movdqu (%[d]), %%xmm0\n\t"
			 "pushfq\n\torq %[all], (%%rsp)\n\tpopfq\n\t"
			 ".byte 0xf3,0x0f,0x38,0xdc,0x07\n\t"
			 "pushfq\n\tpopq %[f]\n\t"
			 "movdqu %%xmm0, (%[d])"
			 : [f] "=r"(flags)
			 : [d] "r"(data), "D"(handle), [all] "i"(ARITH)
			 : "memory", "cc", "xmm0");
	return flags;
}

/* ---- checks -------------------------------------------------------------------------------- */

static uint8_t handle[48];

#define INSN(name, bytes)                                                                  \
	static void name(void *arg)                                                        \
	{                                                                                  \
		__asm__ volatile(bytes ::"D"(arg) : "memory", "cc", "xmm0", "edx", "ecx"); \
	}

INSN(lock_encodekey, ".byte 0xf0,0xf3,0x0f,0x38,0xfa,0xd1")
INSN(lock_aesenc, ".byte 0xf0,0xf3,0x0f,0x38,0xdc,0x07")
INSN(vex_aesenc, ".byte 0xc4,0xe2,0x7a,0xdc,0x07") /* VEX.128.F3.0F38.W0 DC /r, [rdi] */
INSN(mem_encodekey, ".byte 0xf3,0x0f,0x38,0xfa,0x17") /* encodekey128 edx, [rdi] */
INSN(reg_aesdec, ".byte 0xf3,0x0f,0x38,0xdd,0xc1")    /* aesdec128kl xmm0, xmm1 */
INSN(reg_aesenc256, ".byte 0xf3,0x0f,0x38,0xde,0xc1")
INSN(reg_aesdec256, ".byte 0xf3,0x0f,0x38,0xdf,0xc1")
INSN(reg_wide, ".byte 0xf3,0x0f,0x38,0xd8,0xc0") /* aesencwide128kl with mod=11 */
INSN(wide_slash4, ".byte 0xf3,0x0f,0x38,0xd8,0x27") /* D8 /4 [rdi] */
INSN(aesenc_ok, ".byte 0xf3,0x0f,0x38,0xdc,0x07")

static void expect_sigill(const char *name, void (*fn)(void *))
{
	int sig = signal_of(fn, handle);

	result(name, sig == SIGILL, "signal %d, expected SIGILL (#UD)", sig);
}

static void check_ud(void)
{
	expect_sigill("lock.encodekey128", lock_encodekey);
	expect_sigill("lock.aesenc128kl", lock_aesenc);
	expect_sigill("vex.aesenc128kl", vex_aesenc);
	expect_sigill("mod.encodekey128_memory", mem_encodekey);
	expect_sigill("mod.aesdec128kl_register", reg_aesdec);
	expect_sigill("mod.aesenc256kl_register", reg_aesenc256);
	expect_sigill("mod.aesdec256kl_register", reg_aesdec256);
	expect_sigill("mod.aesencwide128kl_register", reg_wide);
	expect_sigill("mod.wide_slash4", wide_slash4);
	result("mod.control_same_bytes_memory_form_runs", signal_of(aesenc_ok, handle) == 0,
	       "aesenc128kl xmm0, [rdi] with a valid handle faulted");
}

static void check_flags(void)
{
	uint8_t data[16], bad[48];
	uint64_t f;

	memcpy(data, fips_pt, 16);
	f = aesenc128kl_flags(data, handle);
	result("flags.success_clears_all", (f & ARITH) == 0, "RFLAGS %#lx after success", (unsigned long)f);
	result("flags.success_encrypts", memcmp(data, fips_ct, 16) == 0, "wrong ciphertext");
	memcpy(bad, handle, 48);
	bad[40] ^= 1; /* tampered ciphertext */
	memcpy(data, fips_pt, 16);
	f = aesenc128kl_flags(data, bad);
	result("flags.refused_zf_only", (f & ARITH) == ZF, "RFLAGS %#lx after a refused handle", (unsigned long)f);
	result("flags.refused_data_untouched", memcmp(data, fips_pt, 16) == 0, "data changed on ZF=1");
}

static void check_dest_and_xmm(void)
{
	struct xmm8 x;
	uint64_t rdx = ~0ull, rcx = 0xffffffff00000000ull; /* SRC = ECX = 0: the upper half must not count */
	uint8_t before[8][16];
	uint8_t hi[8][16]; /* XMM8-15 */

	memset(&x, 0x5a, sizeof(x));
	memcpy(x.b[0], key128, 16);
	memcpy(before, x.b, sizeof(before));
	__asm__ volatile("movdqu 0x00(%[x]), %%xmm0\n\tmovdqu 0x30(%[x]), %%xmm3\n\t"
			 "movdqu 0x40(%[x]), %%xmm4\n\tmovdqu 0x50(%[x]), %%xmm5\n\t"
			 "movdqu 0x60(%[x]), %%xmm6\n\tmovdqu 0x70(%[x]), %%xmm7\n\t"
			 "movdqu 0x70(%[x]), %%xmm8\n\tmovdqu 0x70(%[x]), %%xmm15\n\t"
			 ".byte 0xf3,0x0f,0x38,0xfa,0xd1\n\t"
			 "movdqu %%xmm0, 0x00(%[x])\n\tmovdqu %%xmm1, 0x10(%[x])\n\t"
			 "movdqu %%xmm2, 0x20(%[x])\n\tmovdqu %%xmm3, 0x30(%[x])\n\t"
			 "movdqu %%xmm4, 0x40(%[x])\n\tmovdqu %%xmm5, 0x50(%[x])\n\t"
			 "movdqu %%xmm6, 0x60(%[x])\n\tmovdqu %%xmm7, 0x70(%[x])\n\t"
			 "movdqu %%xmm8, 0x00(%[h])\n\tmovdqu %%xmm15, 0x10(%[h])"
			 : "+d"(rdx), "+c"(rcx)
			 : [x] "r"(&x), [h] "r"(hi)
			 : "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
			   "xmm15");
	result("dest.upper_half_zeroed", rdx >> 32 == 0, "RDX %#lx after encodekey128 edx, ecx", (unsigned long)rdx);
	result("dest.nobackup_keysource_zero", (uint32_t)rdx == 0, "DEST %#x for a KeySource 0 key", (unsigned)rdx);
	result("xmm.handle_equals_reference", memcmp(x.b, handle, 48) == 0, "handle differs from a plain encode");
	result("xmm.xmm3_kept", memcmp(x.b[3], before[3], 16) == 0, "XMM3 changed");
	int zero = 1;
	for (int i = 4; i <= 6; i++)
		for (int j = 0; j < 16; j++)
			zero &= x.b[i][j] == 0;
	result("xmm.xmm4_6_zeroed", zero, "XMM4-6 not zero");
	result("xmm.xmm7_kept", memcmp(x.b[7], before[7], 16) == 0, "XMM7 changed");
	result("xmm.xmm8_15_kept", memcmp(hi[0], before[7], 16) == 0 && memcmp(hi[1], before[7], 16) == 0,
	       "XMM8 or XMM15 changed");
}

static void check_wide_keeps_high(void)
{
	uint8_t lanes[8][16], hi[16];

	for (int i = 0; i < 8; i++) {
		memcpy(lanes[i], fips_pt, 16);
		lanes[i][0] ^= (uint8_t)i;
	}
	memset(hi, 0xa5, sizeof(hi));
	__asm__ volatile("movdqu 0x00(%[l]), %%xmm0\n\tmovdqu 0x10(%[l]), %%xmm1\n\t"
			 "movdqu 0x20(%[l]), %%xmm2\n\tmovdqu 0x30(%[l]), %%xmm3\n\t"
			 "movdqu 0x40(%[l]), %%xmm4\n\tmovdqu 0x50(%[l]), %%xmm5\n\t"
			 "movdqu 0x60(%[l]), %%xmm6\n\tmovdqu 0x70(%[l]), %%xmm7\n\t"
			 "movdqu (%[h]), %%xmm9\n\t"
			 ".byte 0xf3,0x0f,0x38,0xd8,0x07\n\t" /* aesencwide128kl [rdi] */
			 "movdqu %%xmm0, 0x00(%[l])\n\tmovdqu %%xmm7, 0x70(%[l])\n\t"
			 "movdqu %%xmm9, (%[h])"
			 :
			 : [l] "r"(lanes), [h] "r"(hi), "D"(handle)
			 : "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm9");
	uint8_t want_hi[16];
	memset(want_hi, 0xa5, sizeof(want_hi));
	result("xmm.wide_lane0_encrypted", memcmp(lanes[0], fips_ct, 16) == 0, "XMM0 lane wrong");
	result("xmm.wide_keeps_xmm9", memcmp(hi, want_hi, 16) == 0, "XMM9 changed by a WIDE instruction");
}

static void check_rex_forms(void)
{
	uint8_t data[16];
	uint64_t r9 = ~0ull;
	uint32_t r10 = 0;

	memcpy(data, fips_pt, 16);
	__asm__ volatile("movdqu (%[d]), %%xmm9\n\t"
			 "mov %[h], %%r8\n\t"
			 ".byte 0xf3,0x45,0x0f,0x38,0xdc,0x08\n\t" /* aesenc128kl xmm9, [r8] */
			 "movdqu %%xmm9, (%[d])"
			 :
			 : [d] "r"(data), [h] "r"(handle)
			 : "memory", "cc", "r8", "xmm9");
	result("rex.aesenc128kl_xmm9_r8", memcmp(data, fips_ct, 16) == 0, "wrong ciphertext in XMM9");

	struct xmm8 x;
	memset(&x, 0, sizeof(x));
	memcpy(x.b[0], key128, 16);
	__asm__ volatile("movdqu (%[k]), %%xmm0\n\t"
			 "mov %[src], %%r10d\n\t"
			 "mov $-1, %%r9\n\t"
			 ".byte 0xf3,0x45,0x0f,0x38,0xfa,0xca\n\t" /* encodekey128 r9d, r10d */
			 "mov %%r9, %[r9]\n\t"
			 "movdqu %%xmm0, 0x00(%[x])\n\tmovdqu %%xmm1, 0x10(%[x])\n\tmovdqu %%xmm2, 0x20(%[x])"
			 : [r9] "=r"(r9)
			 : [k] "r"(key128), [src] "r"(r10), [x] "r"(&x)
			 : "memory", "cc", "r9", "r10", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6");
	result("rex.encodekey128_r9d_r10d", r9 == 0 && memcmp(x.b, handle, 48) == 0,
	       "R9 %#lx or a different handle", (unsigned long)r9);
}

static void check_gs_override(void)
{
	uint8_t data[16];
	unsigned long old_gs = 0;

	syscall(SYS_arch_prctl, ARCH_GET_GS, &old_gs);
	if (syscall(SYS_arch_prctl, ARCH_SET_GS, (unsigned long)handle) != 0) {
		result("seg.gs_override", 0, "arch_prctl(ARCH_SET_GS) failed");
		return;
	}
	memcpy(data, fips_pt, 16);
	__asm__ volatile("movdqu (%[d]), %%xmm0\n\t"
			 ".byte 0x65,0xf3,0x0f,0x38,0xdc,0x04,0x25,0,0,0,0\n\t" /* aesenc128kl xmm0, gs:[0] */
			 "movdqu %%xmm0, (%[d])"
			 :
			 : [d] "r"(data)
			 : "memory", "cc", "xmm0");
	syscall(SYS_arch_prctl, ARCH_SET_GS, old_gs);
	result("seg.gs_override", memcmp(data, fips_ct, 16) == 0, "wrong ciphertext through gs:[0]");
}

struct page_case {
	uint8_t *h;
	uint8_t data[16];
	uint64_t flags;
};

static void page_run(void *arg)
{
	struct page_case *c = arg;

	c->flags = aesenc128kl_flags(c->data, c->h);
}

static void check_page_crossing(void)
{
	long page = sysconf(_SC_PAGESIZE);
	uint8_t *map = mmap(NULL, 2 * (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct page_case c;

	if (map == MAP_FAILED) {
		result("page.crossing_faults", 0, "mmap failed");
		return;
	}
	c.h = map + page - 24; /* half of the handle in the second page */
	memcpy(c.h, handle, 24);
	munmap(map + page, (size_t)page);
	memcpy(c.data, fips_pt, 16);
	c.flags = 0x12345;
	int sig = signal_of(page_run, &c);
	result("page.crossing_faults", sig == SIGSEGV && fault_addr == map + page,
	       "signal %d at %p, expected SIGSEGV at %p", sig, fault_addr, (void *)(map + page));
	result("page.nothing_changed", memcmp(c.data, fips_pt, 16) == 0 && c.flags == 0x12345,
	       "data or flags changed by a faulting instruction");
	munmap(map, (size_t)page);
}

static void check_unaligned(void)
{
	uint8_t buf[64], data[16];

	memcpy(buf + 3, handle, 48);
	memcpy(data, fips_pt, 16);
	uint64_t f = aesenc128kl_flags(data, buf + 3);
	result("unaligned.handle_works", (f & ZF) == 0 && memcmp(data, fips_ct, 16) == 0, "ZF or ciphertext wrong");
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	guard();
	make_handle(handle);
	check_ud();
	check_flags();
	check_dest_and_xmm();
	check_wide_keeps_high();
	check_rex_forms();
	check_gs_override();
	check_page_crossing();
	check_unaligned();
	printf("summary: %d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}

/*
 * What a program sees of the trap layer's signals (tests/test_trap.py runs
 * it under LD_PRELOAD=libklemu-preload.so):
 *
 *   trap_signals own-handler    its own SIGILL handler (sigaction): KL still
 *                               emulated, a UD2 still reaches the handler
 *   trap_signals signal-api     the same through signal()
 *   trap_signals ud2            a real illegal instruction, no handler
 *   trap_signals loadiwkey      LOADIWKEY at CPL 3, no handler (#GP)
 *   trap_signals loadiwkey-handled   ... with a SIGSEGV handler: si_code,
 *                               si_addr and RIP as the hardware gives them
 *   trap_signals bad-handle     AESENC128KL on an unmapped handle, handled
 *   trap_signals reserved-src   ENCODEKEY128 with SRC bit 3, no handler
 *   trap_signals encode         one ENCODEKEY128; prints the handle
 *   trap_signals cpuid          what CPUID says: leaf 0 EAX, leaf 7.0 ECX[23],
 *                               leaf 0x19 (emulated only under CPUID faulting)
 *   trap_signals plain          no Key Locker at all
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cpuid.h>
#include <ucontext.h>
#include <unistd.h>

static volatile sig_atomic_t ill_calls;
static volatile uint64_t ill_rip, ill_addr;

/* Labels inside the asm below (each function is kept out of line once). */
extern const char ud2_here[], loadiwkey_here[], aesenc_here[];

static void on_ill(int sig, siginfo_t *si, void *ucv)
{
	ucontext_t *uc = ucv;

	(void)sig;
	ill_calls++;
	ill_rip = (uint64_t)uc->uc_mcontext.gregs[REG_RIP];
	ill_addr = (uint64_t)(uintptr_t)si->si_addr;
	uc->uc_mcontext.gregs[REG_RIP] += 2; /* skip UD2 */
}

static void on_ill_plain(int sig)
{
	(void)sig;
	ill_calls++;
	/* Cannot skip without a ucontext: leave through exit. */
	printf("signal-api handler called\n");
	fflush(stdout);
	_exit(3);
}

static void on_segv(int sig, siginfo_t *si, void *ucv)
{
	ucontext_t *uc = ucv;
	uint64_t rip = (uint64_t)uc->uc_mcontext.gregs[REG_RIP];
	const char *where = rip == (uint64_t)(uintptr_t)loadiwkey_here ? "loadiwkey"
			    : rip == (uint64_t)(uintptr_t)aesenc_here ? "aesenc"
								      : "elsewhere";

	(void)sig;
	printf("SIGSEGV code=%d addr=%#llx at=%s\n", si->si_code, (unsigned long long)(uintptr_t)si->si_addr,
	       where);
	fflush(stdout);
	_exit(0);
}

static unsigned encode(uint8_t handle[48], uint32_t src)
{
	static const uint8_t key[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
	uint32_t eax = 0;

	__asm__ volatile("movdqu (%[k]), %%xmm0\n\t"
			 ".byte 0xf3, 0x0f, 0x38, 0xfa, 0xc1\n\t" /* encodekey128 %ecx, %eax */
			 "movdqu %%xmm0, 0(%[h])\n\tmovdqu %%xmm1, 16(%[h])\n\tmovdqu %%xmm2, 32(%[h])\n\t"
			 : "+a"(eax)
			 : "c"(src), [k] "r"(key), [h] "r"(handle)
			 : "xmm0", "xmm1", "xmm2", "xmm4", "xmm5", "xmm6", "memory", "cc");
	return eax;
}

static __attribute__((noinline, noclone)) void ud2(void)
{
	__asm__ volatile(".globl ud2_here\nud2_here: ud2\n\t" ::: "memory");
}

static __attribute__((noinline, noclone)) void loadiwkey(void)
{
	__asm__ volatile("xor %%eax, %%eax\n\t.globl loadiwkey_here\nloadiwkey_here:\n\t"
			 ".byte 0xf3, 0x0f, 0x38, 0xdc, 0xd1\n\t" /* loadiwkey %xmm1, %xmm2 */
			 ::: "rax", "memory", "cc");
}

static __attribute__((noinline, noclone)) void aesenc_at(const void *handle)
{
	__asm__ volatile(".globl aesenc_here\naesenc_here:\n\t"
			 ".byte 0xf3, 0x0f, 0x38, 0xdc, 0x47, 0x08\n\t" /* aesenc128kl 8(%rdi), %xmm0 */
			 : : "D"(handle)
			 : "xmm0", "memory", "cc");
}

static void install(int sig, void (*fn)(int, siginfo_t *, void *))
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = fn;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	if (sigaction(sig, &sa, NULL)) {
		perror("sigaction");
		exit(2);
	}
}

static void print_handle(const uint8_t h[48])
{
	for (int i = 0; i < 48; i++)
		printf("%02x", h[i]);
	printf("\n");
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	uint8_t h[48];

	setvbuf(stdout, NULL, _IONBF, 0);
	if (!strcmp(mode, "own-handler")) {
		struct sigaction old;

		install(SIGILL, on_ill);
		sigaction(SIGILL, NULL, &old);
		printf("reads back own handler: %d\n", old.sa_sigaction == on_ill);
		encode(h, 0);
		printf("after encodekey: handler calls %d\n", (int)ill_calls);
		ud2();
		printf("after ud2: handler calls %d, rip at ud2 %d, si_addr at ud2 %d\n", (int)ill_calls,
		       ill_rip == (uint64_t)(uintptr_t)ud2_here, ill_addr == (uint64_t)(uintptr_t)ud2_here);
		encode(h, 0);
		printf("after second encodekey: handler calls %d\n", (int)ill_calls);
		return 0;
	}
	if (!strcmp(mode, "signal-api")) {
		signal(SIGILL, on_ill_plain);
		encode(h, 0);
		printf("encodekey ran\n");
		ud2();
		return 1;
	}
	if (!strcmp(mode, "ud2")) {
		printf("before ud2\n");
		ud2();
		printf("survived ud2\n");
		return 0;
	}
	if (!strcmp(mode, "loadiwkey") || !strcmp(mode, "loadiwkey-handled")) {
		if (!strcmp(mode, "loadiwkey-handled"))
			install(SIGSEGV, on_segv);
		printf("before loadiwkey\n");
		loadiwkey();
		printf("survived loadiwkey\n");
		return 0;
	}
	if (!strcmp(mode, "bad-handle")) {
		install(SIGSEGV, on_segv);
		aesenc_at((const void *)0x1000);
		printf("survived bad handle\n");
		return 0;
	}
	if (!strcmp(mode, "reserved-src")) {
		printf("before encodekey\n");
		encode(h, 8);
		printf("survived encodekey with SRC bit 3\n");
		return 0;
	}
	if (!strcmp(mode, "encode")) {
		printf("dest %u handle ", encode(h, 0));
		print_handle(h);
		return 0;
	}
	if (!strcmp(mode, "cpuid")) {
		unsigned a, b, c, d, max;

		__cpuid(0, max, b, c, d);
		__cpuid_count(7, 0, a, b, c, d);
		printf("max_leaf %#x kl %u", max, (c >> 23) & 1);
		__cpuid_count(0x19, 0, a, b, c, d);
		printf(" leaf19 %#x %#x %#x %#x\n", a, b, c, d);
		return 0;
	}
	if (!strcmp(mode, "plain")) {
		printf("plain program, pid-independent output\n");
		return 0;
	}
	fprintf(stderr, "unknown mode '%s'\n", mode);
	return 2;
}

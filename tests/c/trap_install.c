/*
 * A program that installs the trap itself (linked against libklemu.so, no
 * LD_PRELOAD): klemu_trap_install(), its own SIGILL handler through
 * klemu_trap_sigaction() so it sits behind the trap, then
 * klemu_trap_uninstall() — after which a Key Locker instruction is a plain
 * SIGILL again and reaches the program's handler.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "klemu_trap.h"

static sigjmp_buf env;
static volatile sig_atomic_t ill_calls;

static void on_ill(int sig)
{
	(void)sig;
	ill_calls++;
	siglongjmp(env, 1);
}

static int encode(uint8_t h[48])
{
	static const uint8_t key[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

	if (sigsetjmp(env, 1))
		return -1;
	__asm__ volatile("movdqu (%[k]), %%xmm0\n\t"
			 ".byte 0xf3, 0x0f, 0x38, 0xfa, 0xc0\n\t" /* encodekey128 %eax, %eax */
			 "movdqu %%xmm0, 0(%[h])\n\tmovdqu %%xmm1, 16(%[h])\n\tmovdqu %%xmm2, 32(%[h])\n\t"
			 : : "a"(0), [k] "r"(key), [h] "r"(h)
			 : "xmm0", "xmm1", "xmm2", "xmm4", "xmm5", "xmm6", "memory", "cc");
	return 0;
}

int main(void)
{
	struct sigaction sa;
	struct klemu_trap_stats st;
	uint8_t h[48];
	int rc;

	setvbuf(stdout, NULL, _IONBF, 0);
	if (klemu_trap_install()) {
		printf("install failed: %s\n", klemu_trap_last_error());
		return 1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_ill;
	sigemptyset(&sa.sa_mask);
	klemu_trap_sigaction(SIGILL, &sa, NULL);
	printf("active %d source %s\n", klemu_trap_active(), klemu_trap_source());
	rc = encode(h);
	printf("encode %d handler calls %d handle ", rc, (int)ill_calls);
	for (int i = 0; i < 48; i++)
		printf("%02x", h[i]);
	printf("\n");
	klemu_trap_uninstall();
	rc = encode(h);
	printf("after uninstall: encode %d handler calls %d active %d\n", rc, (int)ill_calls, klemu_trap_active());
	klemu_trap_get_stats(&st);
	printf("stats emulated %llu\n", (unsigned long long)st.emulated);
	return 0;
}

/*
 * Timing loops for benchmarks/bench_trap.py: what one trapped Key Locker
 * instruction costs next to calling the emulator directly, in one process.
 *
 *   direct_aeskl   klemu_aeskl on a buffer (the probe's emulated backend)
 *   direct_exec    klemu_exec on a register file (the trap's own call)
 *   trapped_aeskl  AESENC128KL executed for real (`.byte`), #UD -> SIGILL
 *                  -> decode -> klemu_exec -> sigreturn
 *   trapped_encode ENCODEKEY128 the same way
 *   bare_sigill    UD2 with a handler that only advances RIP: the kernel's
 *                  signal round trip alone, the floor under any trap layer
 *
 * Every figure is the median of REPS timed repetitions after a warm-up,
 * the loops taking turns within each repetition.  Output: one JSON object,
 * nanoseconds and TSC ticks per operation.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ucontext.h>
#include <x86intrin.h>

#include "klemu.h"
#include "klemu_trap.h"
#include "bench_util.h"

#define REPS 15
#define DIRECT_OPS 200000
#define TRAP_OPS 20000

struct timing {
	double ns, ticks;
};

enum loop { DIRECT_AESKL, DIRECT_EXEC, TRAPPED_AESKL, TRAPPED_ENCODE, BARE_SIGILL, LOOP_COUNT };

static const char *const NAMES[LOOP_COUNT] = {"direct_aeskl", "direct_exec", "trapped_aeskl",
					      "trapped_encode", "bare_sigill"};

static struct klemu_ctx ctx;
static uint8_t handle[KLEMU_HANDLE128_SIZE];
static int errors;

static void on_bare_sigill(int sig, siginfo_t *si, void *ucv)
{
	ucontext_t *uc = ucv;

	(void)sig;
	(void)si;
	uc->uc_mcontext.gregs[REG_RIP] += 2; /* skip UD2 */
}

/* The real instruction bytes, as compiled code has them. */
static int trapped_aesenc(uint8_t block[16])
{
	uint8_t zf;

	__asm__ volatile("movdqu (%[b]), %%xmm0\n\t"
			 ".byte 0xf3, 0x0f, 0x38, 0xdc, 0x07\n\t" /* aesenc128kl (%rdi), %xmm0 */
			 "setz %[zf]\n\t"
			 "movdqu %%xmm0, (%[b])\n\t"
			 : [zf] "=r"(zf)
			 : [b] "r"(block), "D"(handle)
			 : "xmm0", "memory", "cc");
	return zf;
}

static void trapped_encode(void)
{
	__asm__ volatile("pxor %%xmm0, %%xmm0\n\t"
			 ".byte 0xf3, 0x0f, 0x38, 0xfa, 0xc0\n\t" /* encodekey128 %eax, %eax */
			 : : "a"(0)
			 : "xmm0", "xmm1", "xmm2", "xmm4", "xmm5", "xmm6", "cc");
}

static long run_loop(enum loop which)
{
	uint8_t x[16] = {0};
	struct klemu_regs regs;
	int zf = 0;

	switch (which) {
	case DIRECT_AESKL:
		for (int i = 0; i < DIRECT_OPS; i++) {
			klemu_aeskl(&ctx, KLEMU_AESENC128KL, handle, x, &zf);
			errors += zf;
		}
		return DIRECT_OPS;
	case DIRECT_EXEC:
		memset(&regs, 0, sizeof(regs));
		for (int i = 0; i < DIRECT_OPS; i++) {
			klemu_exec(&ctx, KLEMU_AESENC128KL, &regs, 0, 0, 0, NULL, handle);
			errors += (regs.rflags & KLEMU_FLAG_ZF) != 0;
		}
		return DIRECT_OPS;
	case TRAPPED_AESKL:
		for (int i = 0; i < TRAP_OPS; i++)
			errors += trapped_aesenc(x);
		return TRAP_OPS;
	case TRAPPED_ENCODE:
		for (int i = 0; i < TRAP_OPS; i++)
			trapped_encode();
		return TRAP_OPS;
	case BARE_SIGILL: {
		struct sigaction sa, old;

		/* The trap's SIGILL handler steps aside for this loop only. */
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = on_bare_sigill;
		sa.sa_flags = SA_SIGINFO;
		sigemptyset(&sa.sa_mask);
		klemu_trap_uninstall();
		sigaction(SIGILL, &sa, &old);
		for (int i = 0; i < TRAP_OPS; i++)
			__asm__ volatile("ud2" ::: "memory");
		sigaction(SIGILL, &old, NULL);
		klemu_trap_install_ctx(&ctx, "benchmark");
		return TRAP_OPS;
	}
	case LOOP_COUNT:
		break;
	}
	return 1;
}

int main(void)
{
	static const uint8_t key[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
	struct klemu_cpu cpu;
	struct klemu_iwkey iw;
	struct klemu_trap_stats stats;
	double ns[LOOP_COUNT][REPS], ticks[LOOP_COUNT][REPS];
	uint32_t dest;

	klemu_cpu_tigerlake(&cpu);
	klemu_init(&ctx, &cpu);
	memset(&iw, 0x11, sizeof(iw));
	iw.nobackup = iw.keysource = 0;
	klemu_set_iwkey(&ctx, &iw);
	if (klemu_encodekey128(&ctx, 0, key, handle, &dest) != KLEMU_OK ||
	    klemu_trap_install_ctx(&ctx, "benchmark")) {
		fprintf(stderr, "trap_bench: setup failed: %s\n", klemu_trap_last_error());
		return 1;
	}
	for (int w = 0; w < LOOP_COUNT; w++)
		run_loop((enum loop)w); /* warm-up */
	for (int r = 0; r < REPS; r++) {
		for (int w = 0; w < LOOP_COUNT; w++) {
			double t0 = now_ns();
			uint64_t c0 = __rdtsc();
			long ops = run_loop((enum loop)w);
			uint64_t c1 = __rdtsc();
			double t1 = now_ns();

			ns[w][r] = (t1 - t0) / (double)ops;
			ticks[w][r] = (double)(c1 - c0) / (double)ops;
		}
	}
	klemu_trap_get_stats(&stats);
	printf("{\"impl\": \"%s\", \"errors\": %d, \"trapped_instructions\": %llu", klemu_impl_name(), errors,
	       (unsigned long long)stats.emulated);
	for (int w = 0; w < LOOP_COUNT; w++)
		printf(", \"%s\": {\"ns\": %.2f, \"ticks\": %.1f}", NAMES[w], median(ns[w], REPS),
		       median(ticks[w], REPS));
	printf("}\n");
	return 0;
}

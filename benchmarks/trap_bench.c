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
 * Each ratio is a paired, interleaved ratio measured by bench_util.h (see
 * there why).  Every loop is a side of some pair, so every figure comes from
 * the same interleaved rounds; a loop's own figure is the median of its side
 * in the first pair below that has it:
 *
 *   trapped_over_direct  trapped_aeskl / direct_aeskl
 *   sigill_share         bare_sigill / trapped_aeskl: the signal round trip's share
 *   exec_over_aeskl      direct_exec / direct_aeskl: the register-file interface
 *   encode_over_aesenc   trapped_encode / trapped_aeskl
 *
 * Output: one JSON object, nanoseconds and TSC ticks per operation, and the
 * ratios.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <ucontext.h>

#include "klemu.h"
#include "klemu_trap.h"
#include "bench_util.h"

/* Sizes of one try.  A trapped loop leaves the CPU slow for a while after it
 * (measured here: a 10000-call direct try right after one ran 40% slower per
 * call), so a direct try is long, about 2 ms, to make that a percent or so.
 * A trapped try is about 1 ms, so bare_sigill's handler swap (a few syscalls
 * a try) is about 1% of it. */
#define DIRECT_OPS 100000
#define TRAP_OPS 100

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
static int aesenc128kl(uint8_t block[16])
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

static void encodekey128(void)
{
	__asm__ volatile("pxor %%xmm0, %%xmm0\n\t"
			 ".byte 0xf3, 0x0f, 0x38, 0xfa, 0xc0\n\t" /* encodekey128 %eax, %eax */
			 : : "a"(0)
			 : "xmm0", "xmm1", "xmm2", "xmm4", "xmm5", "xmm6", "cc");
}

static long direct_aeskl(void *arg)
{
	uint8_t x[16] = {0};
	int zf = 0;

	for (int i = 0; i < DIRECT_OPS; i++) {
		klemu_aeskl(&ctx, KLEMU_AESENC128KL, handle, x, &zf);
		errors += zf;
	}
	return DIRECT_OPS;
}

static long direct_exec(void *arg)
{
	struct klemu_regs regs;

	memset(&regs, 0, sizeof(regs));
	for (int i = 0; i < DIRECT_OPS; i++) {
		klemu_exec(&ctx, KLEMU_AESENC128KL, &regs, 0, 0, 0, NULL, handle);
		errors += (regs.rflags & KLEMU_FLAG_ZF) != 0;
	}
	return DIRECT_OPS;
}

static long trapped_aeskl(void *arg)
{
	uint8_t x[16] = {0};

	for (int i = 0; i < TRAP_OPS; i++)
		errors += aesenc128kl(x);
	return TRAP_OPS;
}

static long trapped_encode(void *arg)
{
	for (int i = 0; i < TRAP_OPS; i++)
		encodekey128();
	return TRAP_OPS;
}

static long bare_sigill(void *arg)
{
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

/* The loops work on the file's globals, so no side takes an argument. */
static struct pair trapped_over_direct = {.a = {trapped_aeskl, NULL}, .b = {direct_aeskl, NULL}};
static struct pair sigill_share = {.a = {bare_sigill, NULL}, .b = {trapped_aeskl, NULL}};
static struct pair exec_over_aeskl = {.a = {direct_exec, NULL}, .b = {direct_aeskl, NULL}};
static struct pair encode_over_aesenc = {.a = {trapped_encode, NULL}, .b = {trapped_aeskl, NULL}};

int main(void)
{
	static const uint8_t key[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
	struct klemu_cpu cpu;
	struct klemu_iwkey iw;
	struct klemu_trap_stats stats;
	uint32_t dest;
	int pinned = pin_cpu();

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
	pairs_measure((struct pair *const[]){&trapped_over_direct, &sigill_share, &exec_over_aeskl,
					     &encode_over_aesenc}, 4);
	klemu_trap_get_stats(&stats);
	printf("{\"impl\": \"%s\", \"errors\": %d, \"rounds\": %d, \"cpu\": %d, \"trapped_instructions\": %llu,\n",
	       klemu_impl_name(), errors, PAIR_ROUNDS, pinned, (unsigned long long)stats.emulated);
	put_timing("direct_aeskl", side_median(&trapped_over_direct.b), 0);
	put_timing("direct_exec", side_median(&exec_over_aeskl.a), 0);
	put_timing("trapped_aeskl", side_median(&trapped_over_direct.a), 0);
	put_timing("trapped_encode", side_median(&encode_over_aesenc.a), 0);
	put_timing("bare_sigill", side_median(&sigill_share.a), 0);
	printf("\"ratios\": {\n");
	put_ratio("trapped_over_direct", &trapped_over_direct, 0);
	put_ratio("sigill_share", &sigill_share, 0);
	put_ratio("exec_over_aeskl", &exec_over_aeskl, 0);
	put_ratio("encode_over_aesenc", &encode_over_aesenc, 1);
	printf("}}\n");
	return 0;
}

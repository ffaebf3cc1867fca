/*
 * Trap-and-emulate: real Key Locker instructions run on a CPU without Key
 * Locker.  The CPU raises #UD (SIGILL) on each KL instruction; the handler
 * installed here decodes it (klemu_decode.h), runs it through klemu_exec on
 * the XMM registers, RFLAGS and general registers of the signal frame, and
 * advances RIP, so the program continues as if the CPU had executed it.
 *
 * Two ways in (docs/trap-mode.md):
 *   - LD_PRELOAD=libklemu-preload.so ./program   (klemu_preload.c: installs
 *     from a constructor and interposes sigaction()/signal() so a program's
 *     own SIGILL handler is chained behind the trap instead of replacing it);
 *   - a program calls klemu_trap_install() (or _ctx) itself, and installs
 *     any SIGILL handler of its own through klemu_trap_sigaction().
 *
 * What the program sees, per fault of the emulated instruction:
 *   #UD (e.g. KL hidden by the config, WIDE absent, not a KL instruction)
 *        -> passed on: the previous SIGILL handler gets the original
 *           siginfo and ucontext, or with the default action the
 *           instruction re-executes and the program dies of a real SIGILL;
 *   #GP (LOADIWKEY at CPL 3, ENCODEKEY reserved bits) -> SIGSEGV,
 *           si_code SI_KERNEL, si_addr 0, RIP at the instruction;
 *   an unreadable handle -> SIGSEGV, SEGV_MAPERR, si_addr = its address.
 *
 * Process-wide state: one emulator context and the chained handlers live in
 * klemu_trap.c (a signal handler has nowhere else to find them).  Trapping
 * threads are serialized on one spinlock around klemu_exec.
 */
#ifndef KLEMU_TRAP_H
#define KLEMU_TRAP_H

#include <signal.h>
#include <stdint.h>

#include "klemu.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KLEMU_TRAP_VERBOSE_ENV "KLEMU_TRAP_VERBOSE"

/* Install with the configuration klemu_conf_locate(NULL) finds
 * ($KLEMU_CONFIG, then fw_cfg), or, with none, a default Tiger Lake CPU
 * with a random per-process IWKey.  Returns 0 (also when already
 * installed), or -1 with klemu_trap_last_error() set (a configuration that
 * exists but does not parse is an error, never silently the default). */
int klemu_trap_install(void);

/* Install over a caller-owned, ready context (it must outlive the trap).
 * source names it in klemu_trap_source() and the verbose note. */
int klemu_trap_install_ctx(struct klemu_ctx *ctx, const char *source);

/* Restore the handlers the trap replaced (or the ones the program set
 * through klemu_trap_sigaction since) and re-enable CPUID. */
void klemu_trap_uninstall(void);

int klemu_trap_active(void);
const char *klemu_trap_last_error(void);
/* Where the emulated CPU and IWKey come from, e.g. "/tmp/klemu.conf" or
 * "default: Tiger Lake, random per-process IWKey". */
const char *klemu_trap_source(void);

/* sigaction() that keeps the trap first: while the trap is installed, a
 * handler for SIGILL (and SIGSEGV while CPUID faulting is on) is recorded as
 * the one the trap passes unrecognised signals on to, and *old reports the
 * program's previous one, never the trap's.  Otherwise plain sigaction(). */
int klemu_trap_sigaction(int sig, const struct sigaction *act, struct sigaction *old);

/* CPUID faulting (arch_prctl ARCH_SET_CPUID): on only where the CPU and
 * kernel offer it.  *errno_out gets the reason when it is off (ENODEV: the
 * CPU has no CPUID faulting). */
int klemu_trap_cpuid_faulting(int *errno_out);

/* The answer the trap gives to CPUID(leaf, subleaf) given what the real
 * CPU answers (real[0..3] = EAX EBX ECX EDX): leaf 0 EAX raised to 0x19
 * when KL is present, leaf 7.0 ECX[23] and leaf 0x19 from the emulated
 * CPU, everything else unchanged.  Pure; unit-tested. */
void klemu_trap_cpuid_answer(const struct klemu_ctx *ctx, uint32_t leaf,
			     uint32_t subleaf, const uint32_t real[4],
			     uint32_t out[4]);

struct klemu_trap_stats {
	uint64_t emulated;  /* KL instructions completed (incl. ZF=1 results) */
	uint64_t sigsegv;   /* #GP or unreadable handle delivered as SIGSEGV */
	uint64_t passed_on; /* SIGILLs handed to the previous disposition */
	uint64_t cpuid;     /* CPUID instructions answered */
};
void klemu_trap_get_stats(struct klemu_trap_stats *out);

/* For klemu_preload.c: the real sigaction() when the library interposes it
 * (NULL restores the default, libc's sigaction). */
typedef int (*klemu_sigaction_fn)(int, const struct sigaction *, struct sigaction *);
void klemu_trap_set_real_sigaction(klemu_sigaction_fn fn);

#ifdef __cplusplus
}
#endif

#endif /* KLEMU_TRAP_H */

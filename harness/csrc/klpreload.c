/*
 * The LD_PRELOAD face of the trap layer (built only into
 * libklemu-preload.so, never into the static probe or libklemu.so):
 *
 *   LD_PRELOAD=/path/libklemu-preload.so ./program
 *
 * A constructor installs the trap before main(), and sigaction()/signal()
 * are interposed so that a program installing its own SIGILL handler (or
 * SIGSEGV handler while CPUID faulting is on) gets it chained behind the
 * trap instead of replacing it: Key Locker instructions keep working and
 * every other SIGILL still reaches the program's handler.  Calls for other
 * signals go straight to libc.  Not interposed (documented in
 * docs/trap-mode.md): sigset(), sysv_signal(), bsd_signal() and raw
 * rt_sigaction system calls.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "klemu_trap.h"

typedef sighandler_t (*signal_fn)(int, sighandler_t);

static klemu_sigaction_fn next_sigaction(void)
{
	static klemu_sigaction_fn next;
	klemu_sigaction_fn fn = __atomic_load_n(&next, __ATOMIC_ACQUIRE);

	if (!fn) {
		fn = (klemu_sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
		klemu_trap_set_real_sigaction(fn);
		__atomic_store_n(&next, fn, __ATOMIC_RELEASE);
	}
	return fn;
}

int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	next_sigaction();
	return klemu_trap_sigaction(sig, act, old);
}

sighandler_t signal(int sig, sighandler_t handler)
{
	struct sigaction sa, old;

	if (sig != SIGILL && sig != SIGSEGV) {
		signal_fn next = (signal_fn)dlsym(RTLD_NEXT, "signal");

		return next(sig, handler);
	}
	/* glibc's signal(): BSD semantics, the signal blocked in its handler. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, sig);
	if (sigaction(sig, &sa, &old) < 0)
		return SIG_ERR;
	return old.sa_handler;
}

__attribute__((constructor)) static void klemu_preload_init(void)
{
	next_sigaction();
	if (klemu_trap_install())
		fprintf(stderr, "klemu-trap: not installed: %s\n", klemu_trap_last_error());
}

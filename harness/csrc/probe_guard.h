/*
 * Signal guards: run a possibly-faulting instruction and turn SIGILL,
 * SIGSEGV, SIGBUS or SIGFPE into an observation instead of a crash.
 *
 * Usage:
 *   struct probe_guard g;
 *   if (probe_guard_enter(&g) != 0) { ... g.signal fired ...; }
 *   else { risky(); probe_guard_leave(&g); }
 * probe_guard_enter installs handlers and remembers the previous ones; both
 * the normal path (probe_guard_leave) and the fault path restore them, so a
 * guard never changes the process's signal disposition for later code.
 * Guards do not nest (the probe is single-threaded by design).
 */
#ifndef PROBE_GUARD_H
#define PROBE_GUARD_H

#include <setjmp.h>
#include <signal.h>

#define PROBE_GUARD_NSIG 4

struct probe_guard {
	sigjmp_buf env;
	struct sigaction saved[PROBE_GUARD_NSIG];
	volatile int signal;
};

/* Returns 0 on entry; returns again with non-zero after a guarded signal
 * (handlers already restored, g->signal set).  Must be a macro so that
 * sigsetjmp runs in the caller's frame. */
#define probe_guard_enter(g) (probe_guard_arm(g), sigsetjmp((g)->env, 1) ? probe_guard_fired(g) : 0)

void probe_guard_arm(struct probe_guard *g);
int probe_guard_fired(struct probe_guard *g);
void probe_guard_leave(struct probe_guard *g);

/* "SIGILL" etc., or "none" for 0. */
const char *probe_signal_name(int sig);

#endif

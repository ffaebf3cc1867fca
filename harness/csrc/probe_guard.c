#include "probe_guard.h"

#include <string.h>

#include "klemu_trap.h"

static const int guarded[PROBE_GUARD_NSIG] = {SIGILL, SIGSEGV, SIGBUS, SIGFPE};

/* The one piece of process-wide state: which guard is armed, so the handler
 * knows where to jump.  Set only between arm and leave/fired. */
static struct probe_guard *volatile active;

static void on_signal(int sig)
{
	struct probe_guard *g = active;
	if (!g) {
		signal(sig, SIG_DFL);
		raise(sig);
		return;
	}
	g->signal = sig;
	siglongjmp(g->env, 1);
}

void probe_guard_arm(struct probe_guard *g)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	g->signal = 0;
	active = g;
	for (int i = 0; i < PROBE_GUARD_NSIG; i++)
		klemu_trap_sigaction(guarded[i], &sa, &g->saved[i]); /* behind the trap, if installed */
}

static void restore(struct probe_guard *g)
{
	for (int i = 0; i < PROBE_GUARD_NSIG; i++)
		klemu_trap_sigaction(guarded[i], &g->saved[i], NULL);
	active = NULL;
}

int probe_guard_fired(struct probe_guard *g)
{
	restore(g);
	return g->signal ? g->signal : -1;
}

void probe_guard_leave(struct probe_guard *g) { restore(g); }

const char *probe_signal_name(int sig)
{
	switch (sig) {
	case 0: return "none";
	case SIGILL: return "SIGILL";
	case SIGSEGV: return "SIGSEGV";
	case SIGBUS: return "SIGBUS";
	case SIGFPE: return "SIGFPE";
	default: return "SIGOTHER";
	}
}

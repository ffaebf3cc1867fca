/*
 * The trap layer of klemu_trap.h: a SIGILL handler that completes Key
 * Locker instructions in software, and, where the CPU offers CPUID
 * faulting, a SIGSEGV handler that answers CPUID leaves 7 and 0x19.
 *
 * Async-signal safety: the handlers call only syscalls (process_vm_readv,
 * arch_prctl, sigaction, sigprocmask, raise, read/write on a private pipe)
 * and the emulator core, which neither allocates nor locks.  The core's
 * run-time AES-NI choice reads getenv and CPUID once; install makes that
 * choice before any handler can run.  Handlers run with every signal
 * blocked, so a thread holding the spinlock is never interrupted by a
 * handler that wants it.
 *
 * Process-wide state: everything lives in `T` below.  It is the one place a
 * signal handler can find the emulator context and the handlers it chains
 * to; it is written only by install/uninstall and klemu_trap_sigaction,
 * under the spinlock with signals blocked.
 */
#define _GNU_SOURCE
#include "klemu_trap.h"

#include <asm/prctl.h>
#include <cpuid.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <ucontext.h>
#include <unistd.h>

#include "klemu_conf.h"
#include "klemu_decode.h"
#include "klemu_internal.h" /* klemu_wipe */

#define IDX_ILL 0
#define IDX_SEGV 1
#define PAGE 4096u

/* struct _fpx_sw_bytes (kernel uapi sigcontext.h) sits at byte 464 of the
 * fxsave area of a signal frame when the frame is in XSAVE format; the
 * XSAVE header (XSTATE_BV first) follows the 512-byte legacy area. */
#define FPX_SW_OFFSET 464
#ifndef FP_XSTATE_MAGIC1
#define FP_XSTATE_MAGIC1 0x46505853u
#endif
#define XSAVE_HEADER_OFFSET 512
#define XFEATURE_MASK_SSE 0x2u

struct trap_state {
	int installed;
	int ill_ours, segv_ours; /* our handler is the real disposition */
	struct klemu_ctx *ctx;
	struct sigaction chained[2]; /* the program's SIGILL / SIGSEGV handlers */
	int cpuid_fault_on, cpuid_errno;
	int use_pipe, pipefd[2]; /* readability fallback without process_vm_readv */
	unsigned char lock;
	struct klemu_trap_stats stats;
	klemu_sigaction_fn real_sigaction;
	char source[320];
	char error[600];
};

static struct trap_state T = {.pipefd = {-1, -1}};
static struct klemu_ctx own_ctx; /* klemu_trap_install's context */

/* x86 register number -> gregs index. */
static const int GREG_OF[16] = {
	REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP, REG_RSI, REG_RDI,
	REG_R8,  REG_R9,  REG_R10, REG_R11, REG_R12, REG_R13, REG_R14, REG_R15,
};

/* ---- small helpers ------------------------------------------------------ */

/* Test-and-test-and-set; after a short spin, yield the CPU: with more
 * trapping threads than CPUs the holder may be preempted, and spinning
 * through its time slice would cost far more than the critical section. */
static void lock(void)
{
	unsigned spins = 0;

	while (__atomic_test_and_set(&T.lock, __ATOMIC_ACQUIRE)) {
		while (__atomic_load_n(&T.lock, __ATOMIC_RELAXED)) {
			if (++spins < 128) {
				__builtin_ia32_pause();
			} else {
				sched_yield(); /* a plain syscall: async-signal-safe */
				spins = 0;
			}
		}
	}
}

static void unlock(void) { __atomic_clear(&T.lock, __ATOMIC_RELEASE); }

/* The lock from ordinary code: block every signal first, so a SIGILL in
 * this thread cannot arrive while we hold it. */
static void lock_blocked(sigset_t *saved)
{
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, saved);
	lock();
}

static void unlock_blocked(const sigset_t *saved)
{
	unlock();
	pthread_sigmask(SIG_SETMASK, saved, NULL);
}

static void count(uint64_t *counter) { __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED); }

static int do_sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	klemu_sigaction_fn fn = T.real_sigaction ? T.real_sigaction : sigaction;

	return fn(sig, act, old);
}

void klemu_trap_set_real_sigaction(klemu_sigaction_fn fn) { T.real_sigaction = fn; }

static long arch_prctl(int code, unsigned long arg) { return syscall(SYS_arch_prctl, code, arg); }

/* Copy n bytes from addr, all or nothing: 0 when any byte is unreadable. */
static int copy_in(void *dst, uint64_t addr, size_t n)
{
	ssize_t got;

	if (!T.use_pipe) {
		struct iovec local = {dst, n}, remote = {(void *)addr, n};

		got = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
		return got == (ssize_t)n;
	}
	/* Through a pipe: write() fails with EFAULT on unreadable memory.
	 * Callers hold the lock, so the pipe carries one copy at a time. */
	got = write(T.pipefd[1], (const void *)addr, n);
	if (got > 0 && read(T.pipefd[0], dst, (size_t)got) != got)
		return 0;
	return got == (ssize_t)n;
}

static int copy_in_locked(void *dst, uint64_t addr, size_t n)
{
	int ok;

	if (!T.use_pipe)
		return copy_in(dst, addr, n);
	lock();
	ok = copy_in(dst, addr, n);
	unlock();
	return ok;
}

/* Up to 15 instruction bytes at rip; fewer when the next page is not
 * readable (the instruction must then end before it). */
static size_t read_code(uint8_t *code, uint64_t rip)
{
	size_t first = PAGE - (rip % PAGE);

	if (first >= KLEMU_INSN_MAX_LEN)
		return copy_in_locked(code, rip, KLEMU_INSN_MAX_LEN) ? KLEMU_INSN_MAX_LEN : 0;
	if (!copy_in_locked(code, rip, first))
		return 0;
	return copy_in_locked(code + first, rip + first, KLEMU_INSN_MAX_LEN - first)
		       ? KLEMU_INSN_MAX_LEN
		       : first;
}

static int is_function(const struct sigaction *sa)
{
	return sa->sa_handler != SIG_DFL && sa->sa_handler != SIG_IGN;
}

static int ours(int idx) { return idx == IDX_ILL ? T.ill_ours : T.segv_ours; }

/* The program's current disposition for sig: the chained one when our
 * handler is installed, the real one otherwise. */
static void program_disposition(int sig, int idx, struct sigaction *out)
{
	lock();
	if (ours(idx)) {
		*out = T.chained[idx];
		unlock();
		return;
	}
	unlock();
	do_sigaction(sig, NULL, out);
}

/* Run the program's handler as the kernel would have: its sa_mask (and sig
 * unless SA_NODEFER) added to the mask of the interrupted code, SA_RESETHAND
 * honoured, the same siginfo and ucontext (so a handler that edits RIP or
 * registers edits what sigreturn restores). */
static void call_handler(const struct sigaction *h, int sig, int idx, siginfo_t *si, ucontext_t *uc)
{
	sigset_t run = uc->uc_sigmask, saved;

	sigorset(&run, &run, &h->sa_mask);
	if (!(h->sa_flags & SA_NODEFER))
		sigaddset(&run, sig);
	if (h->sa_flags & SA_RESETHAND) {
		struct sigaction dfl;

		memset(&dfl, 0, sizeof(dfl));
		dfl.sa_handler = SIG_DFL;
		lock();
		if (ours(idx)) {
			T.chained[idx] = dfl;
			unlock();
		} else {
			unlock();
			do_sigaction(sig, &dfl, NULL);
		}
	}
	pthread_sigmask(SIG_SETMASK, &run, &saved);
	if (h->sa_flags & SA_SIGINFO)
		h->sa_sigaction(sig, si, uc);
	else
		h->sa_handler(sig);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
}

/* Give up the signal: the default action for it, as it would have been
 * without the trap. */
static void restore_default(int sig, int idx)
{
	struct sigaction dfl;

	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	lock();
	if (idx == IDX_ILL)
		T.ill_ours = 0;
	else if (idx == IDX_SEGV)
		T.segv_ours = 0;
	unlock();
	do_sigaction(sig, &dfl, NULL);
}

/* A signal that is not ours to complete, passed on unchanged: to the
 * program's handler, or to the default action.  A fault re-executes the
 * instruction after the default action is restored, so the program dies
 * of the real signal at the real RIP (core dumps point at it). */
static void pass_on(int sig, int idx, siginfo_t *si, ucontext_t *uc)
{
	struct sigaction prev;

	count(&T.stats.passed_on);
	program_disposition(sig, idx, &prev);
	if (is_function(&prev)) {
		call_handler(&prev, sig, idx, si, uc);
		return;
	}
	if (si->si_code <= 0) { /* sent by kill()/tgkill(), not a fault */
		if (prev.sa_handler == SIG_IGN)
			return;
		restore_default(sig, idx);
		raise(sig); /* pending until this handler returns */
		return;
	}
	restore_default(sig, idx); /* a fault cannot be ignored */
}

/* Deliver a SIGSEGV the instruction raised (#GP, unreadable operand) at
 * the instruction's RIP. */
static void deliver_sigsegv(int code, void *addr, ucontext_t *uc)
{
	struct sigaction prev;
	siginfo_t info;
	sigset_t segv;

	memset(&info, 0, sizeof(info));
	info.si_signo = SIGSEGV;
	info.si_code = code;
	info.si_addr = addr;
	count(&T.stats.sigsegv);
	program_disposition(SIGSEGV, IDX_SEGV, &prev);
	if (is_function(&prev)) {
		call_handler(&prev, SIGSEGV, IDX_SEGV, &info, uc);
		return;
	}
	/* Default or ignored: a synchronous fault kills, as the kernel would. */
	restore_default(SIGSEGV, IDX_SEGV);
	sigemptyset(&segv);
	sigaddset(&segv, SIGSEGV);
	pthread_sigmask(SIG_UNBLOCK, &segv, NULL);
	raise(SIGSEGV);
	_exit(128 + SIGSEGV);
}

/* ---- the signal frame ---------------------------------------------------- */

static void read_xmm(const ucontext_t *uc, struct klemu_regs *regs)
{
	const struct _libc_fpstate *fp = uc->uc_mcontext.fpregs;

	for (int i = 0; i < 16; i++)
		memcpy(regs->xmm[i], fp->_xmm[i].element, 16);
}

static void write_xmm(ucontext_t *uc, const struct klemu_regs *regs)
{
	struct _libc_fpstate *fp = uc->uc_mcontext.fpregs;
	uint8_t *raw = (uint8_t *)fp;
	uint32_t magic;
	uint64_t bv;

	for (int i = 0; i < 16; i++)
		memcpy(fp->_xmm[i].element, regs->xmm[i], 16);
	/* With XSAVE frames, XRSTOR takes XMM from the legacy area only when
	 * XSTATE_BV says SSE state is in use; if the registers were all zero
	 * at the fault (init state), our results would be dropped. */
	memcpy(&magic, raw + FPX_SW_OFFSET, 4);
	if (magic != FP_XSTATE_MAGIC1)
		return; /* an FXSAVE-only frame: no header */
	memcpy(&bv, raw + XSAVE_HEADER_OFFSET, 8);
	bv |= XFEATURE_MASK_SSE;
	memcpy(raw + XSAVE_HEADER_OFFSET, &bv, 8);
}

static uint64_t segment_base(enum klemu_seg seg)
{
	unsigned long base = 0;

	if (seg == KLEMU_SEG_FS)
		arch_prctl(ARCH_GET_FS, (unsigned long)&base);
	else if (seg == KLEMU_SEG_GS)
		arch_prctl(ARCH_GET_GS, (unsigned long)&base);
	return base;
}

/* ---- SIGILL: the Key Locker instructions --------------------------------- */

static void emulate(const struct klemu_insn *insn, siginfo_t *si, ucontext_t *uc)
{
	greg_t *g = uc->uc_mcontext.gregs;
	uint64_t rip = (uint64_t)g[REG_RIP], gpr[16], ea = 0;
	uint8_t handle[KLEMU_HANDLE256_SIZE];
	const void *hp = NULL;
	struct klemu_regs regs;
	enum klemu_fault fault;
	uint32_t dest = 0;
	int readable = 1;

	for (int i = 0; i < 16; i++)
		gpr[i] = (uint64_t)g[GREG_OF[i]];
	if (insn->mem) {
		ea = klemu_decode_ea(insn, gpr, rip, segment_base(insn->seg));
		readable = copy_in_locked(handle, ea, insn->mem_size);
		hp = readable ? handle : NULL; /* NULL: klemu_exec's memory fault */
	}
	read_xmm(uc, &regs);
	regs.eax = (uint32_t)gpr[0];
	regs.rflags = (uint64_t)g[REG_EFL];
	lock();
	fault = klemu_exec(T.ctx, insn->op, &regs, insn->reg, insn->rm, (uint32_t)gpr[insn->rm], &dest, hp);
	unlock();
	klemu_wipe(handle, sizeof(handle));
	switch (fault) {
	case KLEMU_OK:
		write_xmm(uc, &regs);
		g[REG_EFL] = (greg_t)regs.rflags;
		if (insn->op == KLEMU_ENCODEKEY128 || insn->op == KLEMU_ENCODEKEY256)
			g[GREG_OF[insn->reg]] = (greg_t)(uint64_t)dest; /* r32 writes zero-extend */
		g[REG_RIP] = (greg_t)(rip + insn->len);
		count(&T.stats.emulated);
		break;
	case KLEMU_GP:
		if (!readable)
			deliver_sigsegv(SEGV_MAPERR, (void *)ea, uc);
		else
			deliver_sigsegv(SI_KERNEL, NULL, uc);
		break;
	default: /* #UD: exactly what the CPU did; #NM is never modelled */
		pass_on(SIGILL, IDX_ILL, si, uc);
		break;
	}
	klemu_wipe(&regs, sizeof(regs));
}

static void on_sigill(int sig, siginfo_t *si, void *ucv)
{
	ucontext_t *uc = ucv;
	int saved_errno = errno;
	uint8_t code[KLEMU_INSN_MAX_LEN];
	struct klemu_insn insn;
	size_t n;

	if (si->si_code <= 0 || !uc->uc_mcontext.fpregs) {
		pass_on(sig, IDX_ILL, si, uc);
	} else {
		n = read_code(code, (uint64_t)uc->uc_mcontext.gregs[REG_RIP]);
		if (klemu_decode(code, n, &insn) == KLEMU_DECODE_OK)
			emulate(&insn, si, uc);
		else
			pass_on(sig, IDX_ILL, si, uc);
	}
	errno = saved_errno;
}

/* ---- SIGSEGV: CPUID under CPUID faulting --------------------------------- */

void klemu_trap_cpuid_answer(const struct klemu_ctx *ctx, uint32_t leaf,
			     uint32_t subleaf, const uint32_t real[4],
			     uint32_t out[4])
{
	memcpy(out, real, 4 * sizeof(out[0]));
	if (leaf == 0 && ctx->cpu.kl_present && out[0] < 0x19)
		out[0] = 0x19; /* so software that checks the max leaf reads 0x19 */
	else if (leaf == 7 && subleaf == 0)
		out[2] = (real[2] & ~KLEMU_CPUID7_ECX_KL) | klemu_cpuid7_ecx_kl(ctx);
	else if (leaf == 0x19)
		klemu_cpuid19(ctx, out);
}

static void on_sigsegv(int sig, siginfo_t *si, void *ucv)
{
	ucontext_t *uc = ucv;
	greg_t *g = uc->uc_mcontext.gregs;
	int saved_errno = errno;
	uint8_t code[2];

	if (T.cpuid_fault_on && si->si_code == SI_KERNEL &&
	    copy_in_locked(code, (uint64_t)g[REG_RIP], 2) && code[0] == 0x0F && code[1] == 0xA2) {
		uint32_t leaf = (uint32_t)g[REG_RAX], sub = (uint32_t)g[REG_RCX], real[4], out[4];

		/* CPUID faulting is per thread: lift it for one real CPUID. */
		arch_prctl(ARCH_SET_CPUID, 1);
		__cpuid_count(leaf, sub, real[0], real[1], real[2], real[3]);
		arch_prctl(ARCH_SET_CPUID, 0);
		klemu_trap_cpuid_answer(T.ctx, leaf, sub, real, out);
		g[REG_RAX] = out[0];
		g[REG_RBX] = out[1];
		g[REG_RCX] = out[2];
		g[REG_RDX] = out[3];
		g[REG_RIP] += 2;
		count(&T.stats.cpuid);
	} else {
		pass_on(sig, IDX_SEGV, si, uc);
	}
	errno = saved_errno;
}

/* ---- install ------------------------------------------------------------- */

static int fail(const char *what)
{
	snprintf(T.error, sizeof(T.error), "%s", what);
	return -1;
}

/* process_vm_readv on ourselves is allowed unless a seccomp policy (e.g.
 * Docker's default without CAP_SYS_PTRACE) forbids it; then a pipe. */
static int choose_copy_method(void)
{
	uint8_t probe = 0x5A, got = 0;
	struct iovec local = {&got, 1}, remote = {&probe, 1};

	if (T.use_pipe)
		return 0; /* installed before: the pipe is still open */
	if (process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == 1 && got == probe)
		return 0;
	if (pipe2(T.pipefd, O_CLOEXEC | O_NONBLOCK))
		return fail("cannot read memory safely: process_vm_readv refused and pipe2 failed");
	T.use_pipe = 1;
	return 0;
}

static void verbose_note(void)
{
	const char *v = getenv(KLEMU_TRAP_VERBOSE_ENV);

	if (!v || strcmp(v, "1"))
		return;
	if (T.cpuid_fault_on)
		fprintf(stderr, "klemu-trap: emulating Key Locker (%s, %s); CPUID faulting on: "
			"leaves 7 and 0x19 answered from the emulated CPU\n", T.source, klemu_impl_name());
	else
		fprintf(stderr, "klemu-trap: emulating Key Locker (%s, %s); no CPUID faulting (%s): "
			"programs see the real CPUID, without Key Locker\n", T.source, klemu_impl_name(),
			strerror(T.cpuid_errno));
}

int klemu_trap_install_ctx(struct klemu_ctx *ctx, const char *source)
{
	struct sigaction sa, old;
	sigset_t saved;

	if (T.installed)
		return 0;
	klemu_impl_name(); /* the core's one-time getenv + CPUID, outside any handler */
	if (choose_copy_method())
		return -1;
	snprintf(T.source, sizeof(T.source), "%s", source ? source : "caller's context");
	memset(&sa, 0, sizeof(sa));
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
	sigfillset(&sa.sa_mask);

	lock_blocked(&saved);
	T.ctx = ctx;
	if (do_sigaction(SIGILL, NULL, &old)) {
		unlock_blocked(&saved);
		return fail("sigaction(SIGILL) failed");
	}
	T.chained[IDX_ILL] = old;
	sa.sa_sigaction = on_sigill;
	do_sigaction(SIGILL, &sa, NULL);
	T.ill_ours = 1;
	/* CPUID faulting: the SIGSEGV handler first, then the switch. */
	T.cpuid_fault_on = 0;
	T.cpuid_errno = 0;
	do_sigaction(SIGSEGV, NULL, &old);
	T.chained[IDX_SEGV] = old;
	sa.sa_sigaction = on_sigsegv;
	do_sigaction(SIGSEGV, &sa, NULL);
	T.segv_ours = 1;
	if (arch_prctl(ARCH_SET_CPUID, 0) == 0) {
		T.cpuid_fault_on = 1;
	} else {
		T.cpuid_errno = errno;
		do_sigaction(SIGSEGV, &T.chained[IDX_SEGV], NULL);
		T.segv_ours = 0;
	}
	T.installed = 1;
	unlock_blocked(&saved);
	verbose_note();
	return 0;
}

int klemu_trap_install(void)
{
	struct klemu_conf conf;
	char err[512];
	const char *path;

	if (T.installed)
		return 0;
	path = klemu_conf_locate(NULL);
	if (path) {
		if (klemu_conf_load(path, &conf, err, sizeof(err)) ||
		    klemu_conf_apply(&conf, &own_ctx, err, sizeof(err))) {
			snprintf(T.error, sizeof(T.error), "emulator configuration: %s", err);
			klemu_wipe(&conf, sizeof(conf));
			return -1;
		}
		klemu_wipe(&conf, sizeof(conf));
		return klemu_trap_install_ctx(&own_ctx, path);
	} else {
		struct klemu_cpu cpu;
		struct klemu_iwkey key;

		klemu_cpu_tigerlake(&cpu);
		klemu_init(&own_ctx, &cpu);
		memset(&key, 0, sizeof(key));
		if (getrandom(key.integrity, sizeof(key.integrity), 0) != (ssize_t)sizeof(key.integrity) ||
		    getrandom(key.enc, sizeof(key.enc), 0) != (ssize_t)sizeof(key.enc))
			return fail("getrandom failed: no IWKey for the default CPU");
		klemu_set_iwkey(&own_ctx, &key);
		klemu_wipe(&key, sizeof(key));
		return klemu_trap_install_ctx(&own_ctx, "default: Tiger Lake, random per-process IWKey");
	}
}

void klemu_trap_uninstall(void)
{
	sigset_t saved;

	lock_blocked(&saved);
	if (T.installed) {
		if (T.cpuid_fault_on)
			arch_prctl(ARCH_SET_CPUID, 1);
		T.cpuid_fault_on = 0;
		if (T.segv_ours)
			do_sigaction(SIGSEGV, &T.chained[IDX_SEGV], NULL);
		if (T.ill_ours)
			do_sigaction(SIGILL, &T.chained[IDX_ILL], NULL);
		T.segv_ours = T.ill_ours = 0;
		T.installed = 0;
	}
	unlock_blocked(&saved);
}

int klemu_trap_sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	int idx = sig == SIGILL ? IDX_ILL : sig == SIGSEGV ? IDX_SEGV : -1;
	sigset_t saved;

	if (idx >= 0) {
		lock_blocked(&saved);
		if (ours(idx)) {
			if (old)
				*old = T.chained[idx];
			if (act)
				T.chained[idx] = *act;
			unlock_blocked(&saved);
			return 0;
		}
		unlock_blocked(&saved);
	}
	return do_sigaction(sig, act, old);
}

int klemu_trap_active(void) { return T.installed; }

const char *klemu_trap_last_error(void) { return T.error; }

const char *klemu_trap_source(void) { return T.source; }

int klemu_trap_cpuid_faulting(int *errno_out)
{
	if (errno_out)
		*errno_out = T.cpuid_errno;
	return T.cpuid_fault_on;
}

void klemu_trap_get_stats(struct klemu_trap_stats *out)
{
	out->emulated = __atomic_load_n(&T.stats.emulated, __ATOMIC_RELAXED);
	out->sigsegv = __atomic_load_n(&T.stats.sigsegv, __ATOMIC_RELAXED);
	out->passed_on = __atomic_load_n(&T.stats.passed_on, __ATOMIC_RELAXED);
	out->cpuid = __atomic_load_n(&T.stats.cpuid, __ATOMIC_RELAXED);
}

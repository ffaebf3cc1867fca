/*
 * The run-time choice between AES-NI/PCLMULQDQ and the portable code.
 *
 * Why at run time: the emulator is built once (static, no -maes) and must
 * run in any guest, including one whose virtual CPU hides AES-NI.  The
 * choice is the only global mutable state of the emulator; it is a pure
 * function of CPUID and of KLEMU_FORCE_PORTABLE, so racing first callers
 * store the same value and a relaxed atomic is enough.
 */
#include <stdlib.h>
#include <string.h>

#include "klemu_internal.h"

enum { IMPL_UNKNOWN = 0, IMPL_PORTABLE = 1, IMPL_ACCEL = 2 };

static int impl_choice = IMPL_UNKNOWN;

static int choose_impl(void)
{
	const char *force = getenv("KLEMU_FORCE_PORTABLE");

	if (force && strcmp(force, "1") == 0)
		return IMPL_PORTABLE;
	__builtin_cpu_init();
	/* sse4.1 is in the target attribute of the fast code, so ask for it. */
	if (__builtin_cpu_supports("aes") && __builtin_cpu_supports("pclmul") &&
	    __builtin_cpu_supports("sse4.1"))
		return IMPL_ACCEL;
	return IMPL_PORTABLE;
}

int klemu_accel(void)
{
	int impl = __atomic_load_n(&impl_choice, __ATOMIC_RELAXED);

	if (impl == IMPL_UNKNOWN) {
		impl = choose_impl();
		__atomic_store_n(&impl_choice, impl, __ATOMIC_RELAXED);
	}
	return impl == IMPL_ACCEL;
}

const char *klemu_impl_name(void)
{
	return klemu_accel() ? "aesni+pclmul" : "portable";
}

void klemu_wipe(void *p, size_t n)
{
	memset(p, 0, n);
	/* An empty asm that "reads" p keeps the memset from being elided. */
	__asm__ __volatile__("" : : "r"(p) : "memory");
}

#define _GNU_SOURCE
#include "probe_timing.h"

#include <cpuid.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <wmmintrin.h>
#include <x86intrin.h>

#include "probe_checks.h"

#define TRUST_SPREAD 0.25 /* (p90 - p10) / median above this: do not publish */

struct figure {
	double median, p10, p90, min;
	int reps, iters;
};

typedef void (*timed_fn)(void *arg, int iters);

static inline uint64_t tsc_begin(void)
{
	_mm_lfence();
	return __rdtsc();
}

static inline uint64_t tsc_end(void)
{
	unsigned aux;
	uint64_t t = __rdtscp(&aux);
	_mm_lfence();
	return t;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static struct figure measure(timed_fn fn, void *arg, int reps, int iters)
{
	struct figure f = {0};
	double *v = calloc((size_t)reps, sizeof(double));
	fn(arg, iters); /* warm-up: caches, the emulator's unwrap cache, frequency */
	for (int r = 0; r < reps; r++) {
		uint64_t t0 = tsc_begin();
		fn(arg, iters);
		uint64_t t1 = tsc_end();
		v[r] = (double)(t1 - t0) / iters;
	}
	qsort(v, (size_t)reps, sizeof(double), cmp_double);
	f.median = v[reps / 2];
	f.p10 = v[reps / 10];
	f.p90 = v[reps - 1 - reps / 10];
	f.min = v[0];
	f.reps = reps;
	f.iters = iters;
	free(v);
	return f;
}

static double tsc_hz(void)
{
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	uint64_t t0 = tsc_begin();
	do
		clock_gettime(CLOCK_MONOTONIC, &b);
	while ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec) < 20e6);
	uint64_t t1 = tsc_end();
	double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
	return (double)(t1 - t0) / ns * 1e9;
}

/* ---- AES-NI reference loops -------------------------------------------- */

struct aesni_arg {
	__m128i rk[11];
	__m128i x[8];
};

#define EXPAND_STEP(k, rcon)                                                   \
	do {                                                                   \
		__m128i t = _mm_aeskeygenassist_si128(k, rcon);                \
		t = _mm_shuffle_epi32(t, 0xff);                                \
		k = _mm_xor_si128(k, _mm_slli_si128(k, 4));                    \
		k = _mm_xor_si128(k, _mm_slli_si128(k, 4));                    \
		k = _mm_xor_si128(k, _mm_slli_si128(k, 4));                    \
		k = _mm_xor_si128(k, t);                                       \
	} while (0)

__attribute__((target("aes,sse4.1"))) static void aesni_expand128(const uint8_t key[16], __m128i rk[11])
{
	__m128i k = _mm_loadu_si128((const __m128i *)key);
	rk[0] = k;
	EXPAND_STEP(k, 0x01); rk[1] = k;
	EXPAND_STEP(k, 0x02); rk[2] = k;
	EXPAND_STEP(k, 0x04); rk[3] = k;
	EXPAND_STEP(k, 0x08); rk[4] = k;
	EXPAND_STEP(k, 0x10); rk[5] = k;
	EXPAND_STEP(k, 0x20); rk[6] = k;
	EXPAND_STEP(k, 0x40); rk[7] = k;
	EXPAND_STEP(k, 0x80); rk[8] = k;
	EXPAND_STEP(k, 0x1b); rk[9] = k;
	EXPAND_STEP(k, 0x36); rk[10] = k;
}

__attribute__((target("aes,sse4.1"))) static void aesni_chain(void *p, int iters)
{
	struct aesni_arg *a = p;
	__m128i x = a->x[0];
	for (int i = 0; i < iters; i++) {
		x = _mm_xor_si128(x, a->rk[0]);
		for (int r = 1; r < 10; r++)
			x = _mm_aesenc_si128(x, a->rk[r]);
		x = _mm_aesenclast_si128(x, a->rk[10]);
	}
	a->x[0] = x;
}

__attribute__((target("aes,sse4.1"))) static void aesni_x8(void *p, int iters)
{
	struct aesni_arg *a = p;
	for (int i = 0; i < iters; i++) {
		__m128i b[8];
		for (int j = 0; j < 8; j++)
			b[j] = _mm_xor_si128(a->x[j], a->rk[0]);
		for (int r = 1; r < 10; r++)
			for (int j = 0; j < 8; j++)
				b[j] = _mm_aesenc_si128(b[j], a->rk[r]);
		for (int j = 0; j < 8; j++)
			a->x[j] = _mm_aesenclast_si128(b[j], a->rk[10]);
	}
}

/* ---- native KL loops (only run when KL is usable) ---------------------- */

struct kl_arg {
	uint8_t handle[64] __attribute__((aligned(16)));
	uint8_t data[8][16] __attribute__((aligned(16)));
	struct klemu_ctx *emu;
};

static void native_chain(void *p, int iters)
{
	struct kl_arg *a = p;
	__asm__ volatile("movdqu (%[d]), %%xmm0\n\t"
			 "1: .byte 0xf3, 0x0f, 0x38, 0xdc, 0x07\n\t" /* aesenc128kl (%rdi), %xmm0 */
			 "dec %%ecx\n\tjnz 1b\n\t"
			 "movdqu %%xmm0, (%[d])\n\t"
			 : "+c"(iters)
			 : "D"(a->handle), [d] "r"(a->data)
			 : "xmm0", "memory", "cc");
}

/* Throughput: 8 independent AESENC128KL per iteration (XMM0-7 against one
 * handle), the same shape as aesni_x8. ModRM xmmN,[rdi] = 0x07 | N << 3. */
static void native_x8(void *p, int iters)
{
	struct kl_arg *a = p;
	__asm__ volatile("1:\n\t"
			 ".byte 0xf3, 0x0f, 0x38, 0xdc, 0x07\n\t"
			 ".byte 0xf3, 0x0f, 0x38, 0xdc, 0x0f\n\t"
			 ".byte 0xf3, 0x0f, 0x38, 0xdc, 0x17\n\t"
			 ".byte 0xf3, 0x0f, 0x38, 0xdc, 0x1f\n\t"
			 ".byte 0xf3, 0x0f, 0x38, 0xdc, 0x27\n\t"
			 ".byte 0xf3, 0x0f, 0x38, 0xdc, 0x2f\n\t"
			 ".byte 0xf3, 0x0f, 0x38, 0xdc, 0x37\n\t"
			 ".byte 0xf3, 0x0f, 0x38, 0xdc, 0x3f\n\t"
			 "dec %%ecx\n\tjnz 1b\n\t"
			 : "+c"(iters)
			 : "D"(a->handle)
			 : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "memory", "cc");
}

static void native_wide(void *p, int iters)
{
	struct kl_arg *a = p;
	__asm__ volatile("1: .byte 0xf3, 0x0f, 0x38, 0xd8, 0x07\n\t" /* aesencwide128kl (%rdi) */
			 "dec %%ecx\n\tjnz 1b\n\t"
			 : "+c"(iters)
			 : "D"(a->handle)
			 : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "memory", "cc");
}

static void native_encodekey(void *p, int iters)
{
	uint32_t out;
	__asm__ volatile("pxor %%xmm0, %%xmm0\n\t"
			 "1: .byte 0xf3, 0x0f, 0x38, 0xfa, 0xc2\n\t" /* encodekey128 %edx, %eax */
			 "dec %%ecx\n\tjnz 1b\n\t"
			 : "+c"(iters), "=a"(out)
			 : "d"(0)
			 : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "memory", "cc");
	(void)p;
}

/* ---- emulated loops: what a program calling the emulator pays ----------- */

static void emu_chain(void *p, int iters)
{
	struct kl_arg *a = p;
	int zf;
	for (int i = 0; i < iters; i++)
		klemu_aeskl(a->emu, KLEMU_AESENC128KL, a->handle, a->data[0], &zf);
}

static void emu_x8(void *p, int iters)
{
	struct kl_arg *a = p;
	int zf;
	for (int i = 0; i < iters; i++)
		for (int j = 0; j < 8; j++)
			klemu_aeskl(a->emu, KLEMU_AESENC128KL, a->handle, a->data[j], &zf);
}

static void emu_wide(void *p, int iters)
{
	struct kl_arg *a = p;
	int zf;
	for (int i = 0; i < iters; i++)
		klemu_aeswidekl(a->emu, KLEMU_AESENCWIDE128KL, a->handle, a->data, &zf);
}

static void emu_encodekey(void *p, int iters)
{
	struct kl_arg *a = p;
	uint8_t h[48];
	uint32_t dest;
	for (int i = 0; i < iters; i++)
		klemu_encodekey128(a->emu, 0, a->data[0], h, &dest);
}

static void figure_json(struct json_writer *w, const char *name, const char *prov, struct figure f, const char *unit)
{
	json_key(w, name);
	json_begin_object(w);
	json_kstr(w, "provenance", prov);
	json_kstr(w, "unit", unit);
	json_kdouble(w, "median", f.median);
	json_kdouble(w, "p10", f.p10);
	json_kdouble(w, "p90", f.p90);
	json_kdouble(w, "min", f.min);
	double spread = f.median > 0 ? (f.p90 - f.p10) / f.median : 0;
	json_kdouble(w, "spread", spread);
	json_kint(w, "reps", f.reps);
	json_kint(w, "iters", f.iters);
	json_end_object(w);
}

static int pin_here(int *cpu_out)
{
	int cpu = sched_getcpu();
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	*cpu_out = cpu;
	return sched_setaffinity(0, sizeof(set), &set);
}

void probe_timing_json(struct json_writer *w, const struct probe_timing_opts *o)
{
	cpu_set_t orig;
	int cpu = -1;
	unsigned a, b, c, d;
	int have_aesni = __get_cpuid(1, &a, &b, &c, &d) && (c >> 25 & 1);
	double worst = 0;
	struct figure f_chain = {0}, f_x8 = {0}, k_chain = {0}, k_wide = {0}, k_x8 = {0};
	int have_kl = o->native_kl || o->emu;

	sched_getaffinity(0, sizeof(orig), &orig);
	json_begin_object(w);
	json_kbool(w, "pinned", pin_here(&cpu) == 0);
	json_kint(w, "cpu", cpu);
	json_kdouble(w, "tsc_hz", tsc_hz());
	json_kstr(w, "unit_note", "TSC ticks per operation (TSC ticks, not core cycles, on CPUs with turbo)");
	json_key(w, "figures");
	json_begin_object(w);
	if (have_aesni) {
		struct aesni_arg arg;
		aesni_expand128(probe_fips_c1_key, arg.rk);
		for (int j = 0; j < 8; j++)
			arg.x[j] = _mm_set1_epi32(j);
		f_chain = measure(aesni_chain, &arg, o->reps, o->iters);
		f_x8 = measure(aesni_x8, &arg, o->reps, o->iters);
		figure_json(w, "aesni_aes128_chain", "native", f_chain, "tsc/block");
		figure_json(w, "aesni_aes128_x8", "native", f_x8, "tsc/8 blocks");
	}
	if (have_kl) {
		struct kl_arg arg;
		uint32_t dest;
		memset(&arg, 0, sizeof(arg));
		arg.emu = o->emu;
		if (o->native_kl) {
			struct kl_backend be;
			kl_backend_native(&be);
			probe_encode128(&be, probe_fips_c1_key, 0, arg.handle, &dest);
			k_chain = measure(native_chain, &arg, o->reps, o->iters);
			k_wide = measure(native_wide, &arg, o->reps, o->iters);
			k_x8 = measure(native_x8, &arg, o->reps, o->iters);
			figure_json(w, "aesenc128kl_chain", o->provenance, k_chain, "tsc/block");
			figure_json(w, "aesenc128kl_x8", o->provenance, k_x8, "tsc/8 blocks");
			figure_json(w, "aesencwide128kl_x8", o->provenance, k_wide, "tsc/8 blocks");
			figure_json(w, "encodekey128", o->provenance, measure(native_encodekey, &arg, o->reps, o->iters),
				    "tsc/op");
		} else {
			klemu_encodekey128(o->emu, 0, probe_fips_c1_key, arg.handle, &dest);
			k_chain = measure(emu_chain, &arg, o->reps, o->iters);
			k_wide = measure(emu_wide, &arg, o->reps, o->iters);
			k_x8 = measure(emu_x8, &arg, o->reps, o->iters);
			figure_json(w, "aesenc128kl_chain", o->provenance, k_chain, "tsc/block");
			figure_json(w, "aesenc128kl_x8", o->provenance, k_x8, "tsc/8 blocks");
			figure_json(w, "aesencwide128kl_x8", o->provenance, k_wide, "tsc/8 blocks");
			figure_json(w, "encodekey128", o->provenance, measure(emu_encodekey, &arg, o->reps, o->iters),
				    "tsc/op");
		}
	}
	json_end_object(w);
	json_key(w, "ratios");
	json_begin_object(w);
	if (have_aesni && have_kl) {
		json_kdouble(w, "kl_chain_over_aesni_chain", k_chain.median / f_chain.median);
		json_kdouble(w, "kl_wide_over_aesni_x8", k_wide.median / f_x8.median);
		json_kdouble(w, "kl_x8_over_aesni_x8", k_x8.median / f_x8.median);
	}
	json_end_object(w);
	struct figure all[5] = {f_chain, f_x8, k_chain, k_wide, k_x8};
	for (int i = 0; i < 5; i++)
		if (all[i].median > 0 && (all[i].p90 - all[i].p10) / all[i].median > worst)
			worst = (all[i].p90 - all[i].p10) / all[i].median;
	json_kdouble(w, "worst_spread", worst);
	json_kbool(w, "trustworthy", worst <= TRUST_SPREAD);
	json_end_object(w);
	sched_setaffinity(0, sizeof(orig), &orig);
}

// SPDX-License-Identifier: GPL-2.0-only
/*
 * The two ring-0 instructions klhelper needs, each under an exception-table
 * fixup so a CPU or hypervisor that refuses them gives an error, not an oops.
 *
 * Why a file of its own: objtool's x86 decoder in older kernels (6.1) has no
 * Key Locker opcodes ("can't decode instruction"), and a decode failure makes
 * it give up on the whole object (no ORC unwind data, no return/call-site
 * tables).  The Makefile marks only this object OBJECT_FILES_NON_STANDARD.
 */
#include <linux/errno.h>
#include <linux/kernel.h>
#include <linux/sched.h>

#include <asm/asm.h>
#include <asm/fpu/api.h>
#include <asm/msr.h>
#include <asm/tsc.h>

#include "klhelper.h"

/* LOADIWKEY xmm1, xmm2: F3 0F 38 DC /r with ModRM 0xd1 (reg = XMM2, r/m = XMM1), as Linux writes it. */
#define KLH_LOADIWKEY ".byte 0xf3,0x0f,0x38,0xdc,0xd1"

int klh_write_cr4_safe(unsigned long val)
{
	int err = -EIO;

	asm volatile("1: mov %[val], %%cr4\n\t"
		     "xor %[err], %[err]\n"
		     "2:\n\t"
		     _ASM_EXTABLE(1b, 2b)
		     : [err] "+r" (err)
		     : [val] "r" (val)
		     : "memory");
	return err;
}

/* One LOADIWKEY; the caller owns the FPU (kernel_fpu_begin). 1: fault, else ZF in *zf. */
static __always_inline int klh_loadiwkey_raw(const struct klh_key *k, u32 eax, u8 *zf)
{
	u8 z = 0;
	int fault = 1;

	asm volatile("movdqu %[ik], %%xmm0\n\t"
		     "movdqu %[lo], %%xmm1\n\t"
		     "movdqu %[hi], %%xmm2\n\t"
		     "1: " KLH_LOADIWKEY "\n\t"
		     "setz %[zf]\n\t"
		     "xor %[fault], %[fault]\n"
		     "2:\n\t"
		     _ASM_EXTABLE(1b, 2b)
		     : [zf] "+q" (z), [fault] "+r" (fault)
		     : [ik] "m" (k->integrity), [lo] "m" (k->enc_lo), [hi] "m" (k->enc_hi), "a" (eax)
		     : "memory", "cc");
	*zf = z;
	return fault;
}

/* Key material must not linger in XMM0-2 (kernel_fpu_end restores user state later, lazily). */
static __always_inline void klh_clear_xmm(void)
{
	asm volatile("pxor %%xmm0, %%xmm0\n\t"
		     "pxor %%xmm1, %%xmm1\n\t"
		     "pxor %%xmm2, %%xmm2" ::: "memory");
}

int klh_loadiwkey(const struct klh_key *key, u32 eax)
{
	u8 zf;
	int fault;

	kernel_fpu_begin();
	fault = klh_loadiwkey_raw(key, eax, &zf);
	klh_clear_xmm();
	kernel_fpu_end();
	if (fault)
		return -EIO;
	return zf ? -EAGAIN : 0;
}

u64 klh_loadiwkey_loop(const struct klh_key *key, u32 eax, unsigned long iters, unsigned long batch,
		       unsigned long *failures)
{
	unsigned long done = 0;
	u64 cycles = 0;

	while (done < iters) {
		unsigned long n = min(batch, iters - done), i;
		u64 t0;

		kernel_fpu_begin();
		t0 = rdtsc_ordered();
		for (i = 0; i < n; i++) {
			u8 zf;

			if (klh_loadiwkey_raw(key, eax, &zf) || zf)
				(*failures)++;
		}
		cycles += rdtsc_ordered() - t0;
		klh_clear_xmm();
		kernel_fpu_end();
		done += n;
		cond_resched();
	}
	return cycles;
}

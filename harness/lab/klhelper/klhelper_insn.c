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
#define KLH_LOADIWKEY_BYTES ".byte 0xf3,0x0f,0x38,0xdc,0xd1"

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
		     "1: " KLH_LOADIWKEY_BYTES "\n\t"
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

/*
 * One instruction on XMM0-7 from @st, under a fixup of type EX_TYPE_FAULT:
 * on a fault the kernel puts the trap number in RAX and resumes at 2:, so
 * "eax == -1" means the instruction completed.  EAX also carries LOADIWKEY's
 * control word in, which is why it is set to -1 only after the instruction.
 */
#define KLH_TRY(bytes)									\
	asm volatile("movdqu 0x00(%[x]), %%xmm0\n\t"					\
		     "movdqu 0x10(%[x]), %%xmm1\n\t"					\
		     "movdqu 0x20(%[x]), %%xmm2\n\t"					\
		     "movdqu 0x30(%[x]), %%xmm3\n\t"					\
		     "movdqu 0x40(%[x]), %%xmm4\n\t"					\
		     "movdqu 0x50(%[x]), %%xmm5\n\t"					\
		     "movdqu 0x60(%[x]), %%xmm6\n\t"					\
		     "movdqu 0x70(%[x]), %%xmm7\n\t"					\
		     "1: " bytes "\n\t"							\
		     "setz %[zf]\n\t"							\
		     "movl $-1, %%eax\n\t"						\
		     "movdqu %%xmm0, 0x00(%[x])\n\t"					\
		     "movdqu %%xmm1, 0x10(%[x])\n\t"					\
		     "movdqu %%xmm2, 0x20(%[x])\n\t"					\
		     "movdqu %%xmm3, 0x30(%[x])\n\t"					\
		     "movdqu %%xmm4, 0x40(%[x])\n\t"					\
		     "movdqu %%xmm5, 0x50(%[x])\n\t"					\
		     "movdqu %%xmm6, 0x60(%[x])\n\t"					\
		     "movdqu %%xmm7, 0x70(%[x])\n"					\
		     "2:\n\t"								\
		     _ASM_EXTABLE_TYPE(1b, 2b, EX_TYPE_FAULT)				\
		     : "+a" (ax), [zf] "+q" (zf), "=d" (dest)				\
		     : [x] "r" (st->xmm), "c" (st->src), "D" (st->handle)		\
		     : "memory", "cc")

int klh_try_insn(enum klh_insn op, struct klh_insn_state *st)
{
	unsigned long ax = st->eax;
	u32 dest = 0;
	u8 zf = 0;

	switch (op) {
	case KLH_LOADIWKEY:		KLH_TRY(KLH_LOADIWKEY_BYTES); break;
	case KLH_ENCODEKEY128:		KLH_TRY(".byte 0xf3,0x0f,0x38,0xfa,0xd1"); break;
	case KLH_ENCODEKEY256:		KLH_TRY(".byte 0xf3,0x0f,0x38,0xfb,0xd1"); break;
	case KLH_AESENC128KL:		KLH_TRY(".byte 0xf3,0x0f,0x38,0xdc,0x07"); break;
	case KLH_AESDEC128KL:		KLH_TRY(".byte 0xf3,0x0f,0x38,0xdd,0x07"); break;
	case KLH_AESENC256KL:		KLH_TRY(".byte 0xf3,0x0f,0x38,0xde,0x07"); break;
	case KLH_AESDEC256KL:		KLH_TRY(".byte 0xf3,0x0f,0x38,0xdf,0x07"); break;
	case KLH_AESENCWIDE128KL:	KLH_TRY(".byte 0xf3,0x0f,0x38,0xd8,0x07"); break;
	case KLH_AESDECWIDE128KL:	KLH_TRY(".byte 0xf3,0x0f,0x38,0xd8,0x0f"); break;
	case KLH_AESENCWIDE256KL:	KLH_TRY(".byte 0xf3,0x0f,0x38,0xd8,0x17"); break;
	case KLH_AESDECWIDE256KL:	KLH_TRY(".byte 0xf3,0x0f,0x38,0xd8,0x1f"); break;
	default:
		return -EINVAL;
	}
	if ((int)ax != -1)
		return (int)ax;
	st->dest = dest;
	st->zf = zf;
	return -1;
}

/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * klhelper: the instructions objtool cannot decode live in klhelper_insn.c
 * (built with OBJECT_FILES_NON_STANDARD), everything else in klhelper.c.
 */
#ifndef KLHELPER_H
#define KLHELPER_H

#include <linux/types.h>

struct klh_xmm {
	u8 b[16];
} __aligned(16);

/* An IWKey as LOADIWKEY takes it: XMM0, XMM1, XMM2. */
struct klh_key {
	struct klh_xmm integrity;
	struct klh_xmm enc_lo; /* EncKey[127:0] */
	struct klh_xmm enc_hi; /* EncKey[255:128] */
};

/* mov to CR4; a #GP becomes -EIO instead of an oops. */
int klh_write_cr4_safe(unsigned long val);

/*
 * LOADIWKEY with EAX = KeySource << 1 | NoBackup, inside kernel_fpu_begin/end.
 * 0: loaded; -EAGAIN: ZF=1 (no entropy for KeySource=1); -EIO: #GP or #UD.
 */
int klh_loadiwkey(const struct klh_key *key, u32 eax);

/*
 * @iters LOADIWKEYs of @key on this CPU, in batches of @batch per FPU section;
 * returns the TSC cycles spent in the loops and counts faults or ZF=1 in *@failures.
 */
u64 klh_loadiwkey_loop(const struct klh_key *key, u32 eax, unsigned long iters, unsigned long batch,
		       unsigned long *failures);

#endif /* KLHELPER_H */

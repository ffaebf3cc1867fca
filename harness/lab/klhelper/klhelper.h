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

/* The eleven Key Locker instructions, in KEYLOCKER.md's order. */
enum klh_insn {
	KLH_LOADIWKEY,
	KLH_ENCODEKEY128,
	KLH_ENCODEKEY256,
	KLH_AESENC128KL,
	KLH_AESDEC128KL,
	KLH_AESENC256KL,
	KLH_AESDEC256KL,
	KLH_AESENCWIDE128KL,
	KLH_AESDECWIDE128KL,
	KLH_AESENCWIDE256KL,
	KLH_AESDECWIDE256KL,
	KLH_INSN_COUNT
};

/* What one instruction runs on and leaves behind, for the ring-0 checks (klhelper_ring0.c). */
struct klh_insn_state {
	struct klh_xmm xmm[8];	/* in/out: XMM0-7 (LOADIWKEY: XMM0 integrity, XMM1 EncKey lo, XMM2 hi) */
	const void *handle;	/* the memory operand of the AES*KL forms */
	u32 eax;		/* LOADIWKEY's control word */
	u32 src;		/* ENCODEKEY's SRC */
	u32 dest;		/* out: ENCODEKEY's DEST */
	u8 zf;			/* out: ZF after the instruction */
};

/*
 * Run @op once at ring 0, the caller owning the FPU (kernel_fpu_begin).
 * Returns -1 when it completed, else the trap number (6 #UD, 7 #NM, 13 #GP),
 * caught by an exception-table fixup instead of an oops.
 */
int klh_try_insn(enum klh_insn op, struct klh_insn_state *st);

struct dentry;
struct mutex;
/* The ring0 debugfs file (klhelper_ring0.c); it reads the current key under @lock. */
void klh_ring0_create(struct dentry *dir, struct mutex *lock, const struct klh_key *key, const bool *key_known);

#endif /* KLHELPER_H */

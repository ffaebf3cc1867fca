/*
 * One interface for "execute a Key Locker instruction and tell me what
 * happened", with two implementations:
 *   - native   (klnative.c): the real instruction in inline asm, under a
 *                            signal guard, XMM0-7 loaded from and stored to
 *                            the register file around it;
 *   - emulated (klemu_backend.c): klemu_exec on an explicit klemu_ctx.
 * The probe's checks and the vectors tool are written once against this, so
 * a check can never differ between the two paths except in what the CPU (or
 * the model) did.
 *
 * Fixed operand registers (what the native asm encodes, and what the
 * emulated backend passes to klemu_exec):
 *   ENCODEKEY128/256 : DEST = EAX (reg 0), SRC = ECX (rm 1);
 *                      key in XMM0 (and XMM1 for 256); handle out in XMM0-2/3
 *   AES{ENC,DEC}*KL  : data in XMM0, handle at [mem]
 *   AES*WIDE*KL      : data in XMM0-7, handle at [mem]
 *   LOADIWKEY        : XMM0 integrity, XMM1 EncKey[127:0] (rm), XMM2
 *                      EncKey[255:128] (reg), EAX control word
 */
#ifndef KLBACKEND_H
#define KLBACKEND_H

#include <stdint.h>

#include "klemu.h"

#define KL_ENCODE_DEST_REG 0u
#define KL_ENCODE_SRC_REG 1u
#define KL_DATA_XMM 0u
#define KL_LOADIWKEY_LO_XMM 1u
#define KL_LOADIWKEY_HI_XMM 2u

struct kl_outcome {
	int signal;      /* 0 = completed; else SIGILL, SIGSEGV, SIGBUS, ... */
	int zf;          /* ZF after the instruction (when signal == 0) */
	uint64_t rflags; /* RFLAGS arithmetic bits after (when signal == 0) */
};

struct kl_backend {
	const char *name; /* "native" or "emulated": the provenance label */
	void *self;
	/* Execute op.  regs->xmm[0..7] and regs->eax are inputs and, when no
	 * signal fired, outputs; regs->rflags is set to the flags after.
	 * src32 is the ENCODEKEY SRC value; *dest32 receives DEST.  handle is the
	 * memory operand of the AES*KL forms. */
	struct kl_outcome (*exec)(void *self, enum klemu_op op,
				  struct klemu_regs *regs, uint32_t src32,
				  uint32_t *dest32, const void *handle);
};

/* The emulated backend over an existing context (klemu_backend.c). */
void kl_backend_emulated(struct kl_backend *be, struct klemu_ctx *ctx);

/* The native backend (klnative.c). */
void kl_backend_native(struct kl_backend *be);

#endif /* KLBACKEND_H */

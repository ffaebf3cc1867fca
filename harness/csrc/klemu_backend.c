/*
 * The emulated backend of klbackend.h: klemu_exec on an explicit context,
 * with the operand registers the native backend's asm hard-codes, and
 * faults reported as the signal Linux would deliver for them.  With both
 * backends behind one interface a probe check cannot tell them apart except
 * by what the CPU (or the model) did.
 */
#include <signal.h>

#include "klbackend.h"

static int fault_signal(enum klemu_fault fault)
{
	switch (fault) {
	case KLEMU_OK:
		return 0;
	case KLEMU_UD:
		return SIGILL;
	case KLEMU_GP:
		return SIGSEGV;
	case KLEMU_NM:
		/* Never raised by the model (it has no CR0.TS); Linux handles
		 * #NM itself and user space never sees it. */
		return SIGFPE;
	}
	return SIGILL;
}

static struct kl_outcome emulated_exec(void *self, enum klemu_op op,
				       struct klemu_regs *regs, uint32_t src32,
				       uint32_t *dest32, const void *handle)
{
	struct klemu_ctx *ctx = self;
	struct kl_outcome out = {0, 0, 0};
	unsigned reg = KL_DATA_XMM, rm = 0;
	enum klemu_fault fault;
	uint32_t dest = 0;

	switch (op) {
	case KLEMU_LOADIWKEY:
		reg = KL_LOADIWKEY_HI_XMM;
		rm = KL_LOADIWKEY_LO_XMM;
		break;
	case KLEMU_ENCODEKEY128:
	case KLEMU_ENCODEKEY256:
		reg = KL_ENCODE_DEST_REG;
		rm = KL_ENCODE_SRC_REG;
		break;
	default:
		break;
	}
	fault = klemu_exec(ctx, op, regs, reg, rm, src32, &dest, handle);
	out.signal = fault_signal(fault);
	if (out.signal)
		return out;
	if (op == KLEMU_ENCODEKEY128 || op == KLEMU_ENCODEKEY256) {
		/* DEST is EAX in the native encoding, so it lands there too. */
		regs->eax = dest;
		if (dest32)
			*dest32 = dest;
	}
	out.zf = (regs->rflags & KLEMU_FLAG_ZF) != 0;
	out.rflags = regs->rflags & KLEMU_ARITH_FLAGS;
	return out;
}

void kl_backend_emulated(struct kl_backend *be, struct klemu_ctx *ctx)
{
	be->name = "emulated";
	be->self = ctx;
	be->exec = emulated_exec;
}

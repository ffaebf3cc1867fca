/*
 * The native backend: the real Key Locker instructions, written as .byte
 * sequences (binutils < 2.36 cannot assemble the mnemonics, and Clang's KL
 * intrinsics store wrong data), each run under a signal guard.
 *
 * Each asm block loads XMM0-7 from the register file, executes exactly one
 * KL instruction, captures the flags with LAHF/SETO (no stack use, so no
 * red-zone hazard), and stores XMM0-7 back.  If the CPU faults, the guard's
 * handler siglongjmps out and the outcome names the signal instead.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>

#include "klbackend.h"
#include "probe_guard.h"

/* Encodings (KEYLOCKER.md §3). ModRM bytes: encodekey r=eax(0), rm=ecx(1):
 * 0xc1; aes*kl xmm0,[rdi]: 0x07; wide /n [rdi]: 0x07 | n<<3; loadiwkey
 * xmm2(reg), xmm1(rm): 0xd1. */
#define LOAD_XMM0_7                                                            \
	"movdqu 0(%[x]), %%xmm0\n\tmovdqu 16(%[x]), %%xmm1\n\t"               \
	"movdqu 32(%[x]), %%xmm2\n\tmovdqu 48(%[x]), %%xmm3\n\t"              \
	"movdqu 64(%[x]), %%xmm4\n\tmovdqu 80(%[x]), %%xmm5\n\t"              \
	"movdqu 96(%[x]), %%xmm6\n\tmovdqu 112(%[x]), %%xmm7\n\t"
#define STORE_XMM0_7                                                           \
	"movdqu %%xmm0, 0(%[x])\n\tmovdqu %%xmm1, 16(%[x])\n\t"               \
	"movdqu %%xmm2, 32(%[x])\n\tmovdqu %%xmm3, 48(%[x])\n\t"              \
	"movdqu %%xmm4, 64(%[x])\n\tmovdqu %%xmm5, 80(%[x])\n\t"              \
	"movdqu %%xmm6, 96(%[x])\n\tmovdqu %%xmm7, 112(%[x])\n\t"
#define CAPTURE_FLAGS "lahf\n\tseto %%al\n\t" /* AH = SF ZF - AF - PF - CF */
#define XMM_CLOBBERS                                                           \
	"xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "memory", "cc"

/* Rebuild the arithmetic RFLAGS bits from LAHF's AH and SETO's AL. */
static uint64_t flags_from_ax(uint32_t ax)
{
	uint64_t ah = (ax >> 8) & 0xff;
	uint64_t f = ah & (KLEMU_FLAG_CF | KLEMU_FLAG_PF | KLEMU_FLAG_AF |
			   KLEMU_FLAG_ZF | KLEMU_FLAG_SF);
	if (ax & 0xff)
		f |= KLEMU_FLAG_OF;
	return f;
}

static uint32_t do_encodekey(int wide_key, uint8_t *x, uint32_t src, uint32_t *dest)
{
	uint32_t eax_out = 0, ax = 0;
	if (!wide_key)
		__asm__ volatile(LOAD_XMM0_7
				 ".byte 0xf3, 0x0f, 0x38, 0xfa, 0xc1\n\t" /* encodekey128 %ecx, %eax */
				 "movl %%eax, %[dst]\n\t" CAPTURE_FLAGS STORE_XMM0_7
				 : [dst] "=m"(eax_out), "=&a"(ax)
				 : [x] "r"(x), "c"(src)
				 : XMM_CLOBBERS);
	else
		__asm__ volatile(LOAD_XMM0_7
				 ".byte 0xf3, 0x0f, 0x38, 0xfb, 0xc1\n\t" /* encodekey256 %ecx, %eax */
				 "movl %%eax, %[dst]\n\t" CAPTURE_FLAGS STORE_XMM0_7
				 : [dst] "=m"(eax_out), "=&a"(ax)
				 : [x] "r"(x), "c"(src)
				 : XMM_CLOBBERS);
	*dest = eax_out;
	return ax;
}

/* One macro per memory form so every encoding is spelled out once. */
#define AESKL_FN(fname, opbyte, modrm)                                         \
	static uint32_t fname(uint8_t *x, const void *handle)                  \
	{                                                                      \
		uint32_t ax;                                                   \
		__asm__ volatile(LOAD_XMM0_7 ".byte 0xf3, 0x0f, 0x38, " #opbyte \
					     ", " #modrm "\n\t" CAPTURE_FLAGS  \
					     STORE_XMM0_7                      \
				 : "=&a"(ax)                                   \
				 : [x] "r"(x), "D"(handle)                     \
				 : XMM_CLOBBERS);                              \
		return ax;                                                     \
	}

AESKL_FN(do_aesenc128kl, 0xdc, 0x07)
AESKL_FN(do_aesdec128kl, 0xdd, 0x07)
AESKL_FN(do_aesenc256kl, 0xde, 0x07)
AESKL_FN(do_aesdec256kl, 0xdf, 0x07)
AESKL_FN(do_aesencwide128kl, 0xd8, 0x07)
AESKL_FN(do_aesdecwide128kl, 0xd8, 0x0f)
AESKL_FN(do_aesencwide256kl, 0xd8, 0x17)
AESKL_FN(do_aesdecwide256kl, 0xd8, 0x1f)

static uint32_t do_loadiwkey(uint8_t *x, uint32_t ctl)
{
	uint32_t ax;
	__asm__ volatile(LOAD_XMM0_7 ".byte 0xf3, 0x0f, 0x38, 0xdc, 0xd1\n\t" /* loadiwkey %xmm1, %xmm2 */
			 CAPTURE_FLAGS STORE_XMM0_7
			 : "=&a"(ax)
			 : [x] "r"(x), "0"(ctl)
			 : XMM_CLOBBERS);
	return ax;
}

static struct kl_outcome native_exec(void *self, enum klemu_op op,
				     struct klemu_regs *regs, uint32_t src32,
				     uint32_t *dest32, const void *handle)
{
	struct kl_outcome res = {0, 0, 0};
	/* Work on a copy so a fault leaves the caller's registers untouched. */
	uint8_t x[8 * 16] __attribute__((aligned(16)));
	uint32_t dest = 0;
	volatile uint32_t ax = 0;
	struct probe_guard guard;

	memcpy(x, regs->xmm, sizeof(x));
	if (probe_guard_enter(&guard) != 0) {
		res.signal = guard.signal;
		return res;
	}
	switch (op) {
	case KLEMU_ENCODEKEY128: ax = do_encodekey(0, x, src32, &dest); break;
	case KLEMU_ENCODEKEY256: ax = do_encodekey(1, x, src32, &dest); break;
	case KLEMU_AESENC128KL: ax = do_aesenc128kl(x, handle); break;
	case KLEMU_AESDEC128KL: ax = do_aesdec128kl(x, handle); break;
	case KLEMU_AESENC256KL: ax = do_aesenc256kl(x, handle); break;
	case KLEMU_AESDEC256KL: ax = do_aesdec256kl(x, handle); break;
	case KLEMU_AESENCWIDE128KL: ax = do_aesencwide128kl(x, handle); break;
	case KLEMU_AESDECWIDE128KL: ax = do_aesdecwide128kl(x, handle); break;
	case KLEMU_AESENCWIDE256KL: ax = do_aesencwide256kl(x, handle); break;
	case KLEMU_AESDECWIDE256KL: ax = do_aesdecwide256kl(x, handle); break;
	case KLEMU_LOADIWKEY: ax = do_loadiwkey(x, regs->eax); break;
	default: break;
	}
	probe_guard_leave(&guard);
	memcpy(regs->xmm, x, sizeof(x));
	regs->rflags = flags_from_ax(ax);
	res.rflags = regs->rflags;
	res.zf = (regs->rflags & KLEMU_FLAG_ZF) != 0;
	if (dest32 && (op == KLEMU_ENCODEKEY128 || op == KLEMU_ENCODEKEY256))
		*dest32 = dest;
	return res;
}

void kl_backend_native(struct kl_backend *be)
{
	be->name = "native";
	be->self = NULL;
	be->exec = native_exec;
}

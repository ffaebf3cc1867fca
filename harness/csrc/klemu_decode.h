/*
 * Decode the Key Locker instructions from their bytes, as the trap layer
 * (klemu_trap.c) finds them at the RIP of a SIGILL.
 *
 * Why a decoder of its own: the trap layer must know the instruction's
 * length (to advance RIP), its register operands (XMM0-15, r32 with
 * REX.R/B) and where its memory operand is (ModRM, SIB, disp8/disp32,
 * RIP-relative, 67h address size, FS/GS overrides) exactly as the CPU
 * would, and it must refuse everything else so a real illegal instruction
 * is passed on untouched.  The decoder is a pure function of the bytes; the
 * address computation is a pure function of the decoded operand and the
 * register values, so both are unit-tested without signals.
 *
 * Accepted encodings (KEYLOCKER.md §3), 64-bit mode only:
 *   [legacy prefixes] F3 [REX] 0F 38 op ModRM [SIB] [disp8|disp32]
 *   op FA/FB mod=11  ENCODEKEY128/256 r32 (reg = DEST, rm = SRC)
 *   op DC    mod=11  LOADIWKEY xmm(reg), xmm(rm)
 *   op DC-DF mod!=11 AES{ENC,DEC}{128,256}KL xmm(reg), m384/m512
 *   op D8    mod!=11 /0-/3 the four WIDE forms, m384/m512
 * Refused (KLEMU_DECODE_NOT_KL): no F3, a 66 or F2 prefix as well (the
 * mandatory-prefix combination is not a documented KL form), LOCK (which
 * is #UD on the hardware too), VEX/EVEX, D8 /4-/7, any other opcode or
 * mod combination, more than 15 bytes.
 */
#ifndef KLEMU_DECODE_H
#define KLEMU_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "klemu.h"

#define KLEMU_INSN_MAX_LEN 15

enum klemu_decode_status {
	KLEMU_DECODE_OK = 0,
	KLEMU_DECODE_NOT_KL = -1,    /* not a Key Locker instruction */
	KLEMU_DECODE_TRUNCATED = -2, /* the bytes end before the instruction does */
};

#define KLEMU_NO_REG (-1)
#define KLEMU_BASE_RIP 16 /* base "register" of a RIP-relative operand */

/* The segment override in effect (the last one wins, as on the CPU).  In
 * 64-bit mode ES/CS/SS/DS have base 0; only FS and GS add a base. */
enum klemu_seg {
	KLEMU_SEG_NONE = 0,
	KLEMU_SEG_ES,
	KLEMU_SEG_CS,
	KLEMU_SEG_SS,
	KLEMU_SEG_DS,
	KLEMU_SEG_FS,
	KLEMU_SEG_GS,
};

struct klemu_insn {
	enum klemu_op op;
	unsigned len; /* bytes, prefixes included */
	/* Register operands, x86 numbering (0 = RAX/XMM0 ... 15 = R15/XMM15):
	 * reg = ModRM.reg + REX.R (for WIDE, the /digit without REX.R),
	 * rm  = ModRM.rm + REX.B for the register forms (0 for memory forms). */
	unsigned reg, rm;
	/* The memory operand of the AES*KL forms (mem = 1). */
	int mem;
	int base;        /* 0-15, KLEMU_BASE_RIP, or KLEMU_NO_REG */
	int index;       /* 0-15 or KLEMU_NO_REG */
	unsigned scale;  /* 1, 2, 4, 8 */
	int32_t disp;    /* sign-extended disp8/disp32, 0 if none */
	int addr32;      /* 67h: 32-bit address computation */
	enum klemu_seg seg;
	unsigned mem_size; /* 48 or 64: the handle the instruction reads */
};

/* Decode the instruction at code[0..n).  n may exceed the instruction. */
enum klemu_decode_status klemu_decode(const uint8_t *code, size_t n,
				      struct klemu_insn *out);

/* The linear address of the memory operand.
 *   gpr:      RAX..R15 in x86 numbering;
 *   rip:      address of the instruction itself (RIP-relative operands are
 *             relative to the next instruction, rip + len);
 *   seg_base: FS or GS base when insn->seg says so, else ignored. */
uint64_t klemu_decode_ea(const struct klemu_insn *insn, const uint64_t gpr[16],
			 uint64_t rip, uint64_t seg_base);

/* "fs", "gs", ... or "" for none. */
const char *klemu_seg_name(enum klemu_seg seg);

#endif /* KLEMU_DECODE_H */

/*
 * The Key Locker decoder of klemu_decode.h.  Prefix handling follows the
 * hardware: legacy prefixes in any order, a REX byte counts only when it
 * immediately precedes the 0F escape (a legacy prefix after REX cancels
 * it), the last segment override wins.
 */
#include "klemu_decode.h"

#include <string.h>

#define REX_B 0x1u
#define REX_X 0x2u
#define REX_R 0x4u

struct prefixes {
	int f3, f2, opsize, lock, addr32;
	enum klemu_seg seg;
	unsigned rex;
};

static int legacy_prefix(uint8_t b, struct prefixes *p)
{
	switch (b) {
	case 0xF3: p->f3 = 1; return 1;
	case 0xF2: p->f2 = 1; return 1;
	case 0x66: p->opsize = 1; return 1;
	case 0xF0: p->lock = 1; return 1;
	case 0x67: p->addr32 = 1; return 1;
	case 0x26: p->seg = KLEMU_SEG_ES; return 1;
	case 0x2E: p->seg = KLEMU_SEG_CS; return 1;
	case 0x36: p->seg = KLEMU_SEG_SS; return 1;
	case 0x3E: p->seg = KLEMU_SEG_DS; return 1;
	case 0x64: p->seg = KLEMU_SEG_FS; return 1;
	case 0x65: p->seg = KLEMU_SEG_GS; return 1;
	default: return 0;
	}
}

/* The op for an opcode byte and ModRM, or -1 when it is not a KL form. */
static int kl_op(uint8_t opcode, unsigned mod, unsigned reg3)
{
	int memform = mod != 3;

	switch (opcode) {
	case 0xD8:
		if (!memform || reg3 > 3)
			return -1;
		return KLEMU_AESENCWIDE128KL + (int)reg3; /* /0 /1 /2 /3 in enum order */
	case 0xDC: return memform ? KLEMU_AESENC128KL : KLEMU_LOADIWKEY;
	case 0xDD: return memform ? KLEMU_AESDEC128KL : -1;
	case 0xDE: return memform ? KLEMU_AESENC256KL : -1;
	case 0xDF: return memform ? KLEMU_AESDEC256KL : -1;
	case 0xFA: return memform ? -1 : KLEMU_ENCODEKEY128;
	case 0xFB: return memform ? -1 : KLEMU_ENCODEKEY256;
	default: return -1;
	}
}

/* ModRM (and SIB, displacement) of a memory form starting at code[i]. */
static enum klemu_decode_status decode_mem(const uint8_t *code, size_t n, size_t *i,
					   unsigned rex, struct klemu_insn *out)
{
	uint8_t modrm = code[(*i)++];
	unsigned mod = modrm >> 6, rm3 = modrm & 7;
	size_t disp_len = mod == 1 ? 1 : mod == 2 ? 4 : 0;

	out->mem = 1;
	out->index = KLEMU_NO_REG;
	out->scale = 1;
	if (rm3 == 4) {
		uint8_t sib;
		unsigned idx, base3;

		if (*i >= n)
			return KLEMU_DECODE_TRUNCATED;
		sib = code[(*i)++];
		idx = ((sib >> 3) & 7) | ((rex & REX_X) ? 8 : 0);
		base3 = sib & 7;
		out->scale = 1u << (sib >> 6);
		out->index = idx == 4 ? KLEMU_NO_REG : (int)idx; /* 100b without REX.X: none */
		if (base3 == 5 && mod == 0) {
			out->base = KLEMU_NO_REG; /* [index*scale + disp32] */
			disp_len = 4;
		} else {
			out->base = (int)(base3 | ((rex & REX_B) ? 8 : 0));
		}
	} else if (rm3 == 5 && mod == 0) {
		out->base = KLEMU_BASE_RIP; /* REX.B does not matter here */
		disp_len = 4;
	} else {
		out->base = (int)(rm3 | ((rex & REX_B) ? 8 : 0));
	}
	if (*i + disp_len > n)
		return KLEMU_DECODE_TRUNCATED;
	if (disp_len == 1) {
		out->disp = (int8_t)code[*i];
	} else if (disp_len == 4) {
		uint32_t d;

		memcpy(&d, code + *i, 4); /* little-endian */
		out->disp = (int32_t)d;
	}
	*i += disp_len;
	return KLEMU_DECODE_OK;
}

enum klemu_decode_status klemu_decode(const uint8_t *code, size_t n,
				      struct klemu_insn *out)
{
	struct prefixes p;
	size_t i = 0;
	uint8_t opcode, modrm;
	unsigned mod, reg3;
	int op;

	memset(&p, 0, sizeof(p));
	memset(out, 0, sizeof(*out));
	if (n > KLEMU_INSN_MAX_LEN)
		n = KLEMU_INSN_MAX_LEN; /* longer than 15 bytes is not an instruction */
	for (;; i++) {
		if (i >= n)
			return n == KLEMU_INSN_MAX_LEN ? KLEMU_DECODE_NOT_KL : KLEMU_DECODE_TRUNCATED;
		if (legacy_prefix(code[i], &p))
			p.rex = 0; /* REX counts only right before the opcode */
		else if ((code[i] & 0xF0) == 0x40)
			p.rex = code[i];
		else
			break;
	}
	if (i + 4 > n) /* 0F 38 op ModRM */
		return n == KLEMU_INSN_MAX_LEN ? KLEMU_DECODE_NOT_KL : KLEMU_DECODE_TRUNCATED;
	if (code[i] != 0x0F || code[i + 1] != 0x38)
		return KLEMU_DECODE_NOT_KL;
	if (!p.f3 || p.f2 || p.opsize || p.lock)
		return KLEMU_DECODE_NOT_KL;
	opcode = code[i + 2];
	modrm = code[i + 3];
	mod = modrm >> 6;
	reg3 = (modrm >> 3) & 7;
	op = kl_op(opcode, mod, reg3);
	if (op < 0)
		return KLEMU_DECODE_NOT_KL;
	out->op = (enum klemu_op)op;
	out->addr32 = p.addr32;
	out->seg = p.seg;
	i += 3; /* now at ModRM */
	if (mod == 3) {
		out->reg = reg3 | ((p.rex & REX_R) ? 8 : 0);
		out->rm = (modrm & 7) | ((p.rex & REX_B) ? 8 : 0);
		out->base = out->index = KLEMU_NO_REG;
		i++;
	} else {
		enum klemu_decode_status st = decode_mem(code, n, &i, p.rex, out);

		if (st != KLEMU_DECODE_OK)
			return n == KLEMU_INSN_MAX_LEN ? KLEMU_DECODE_NOT_KL : st;
		/* The WIDE /digit is an opcode extension: REX.R does not apply. */
		out->reg = op >= KLEMU_AESENCWIDE128KL ? reg3 : reg3 | ((p.rex & REX_R) ? 8 : 0);
		out->mem_size = (op == KLEMU_AESENC256KL || op == KLEMU_AESDEC256KL ||
				 op == KLEMU_AESENCWIDE256KL || op == KLEMU_AESDECWIDE256KL)
					? KLEMU_HANDLE256_SIZE
					: KLEMU_HANDLE128_SIZE;
	}
	out->len = (unsigned)i;
	return KLEMU_DECODE_OK;
}

uint64_t klemu_decode_ea(const struct klemu_insn *insn, const uint64_t gpr[16],
			 uint64_t rip, uint64_t seg_base)
{
	uint64_t ea = (uint64_t)(int64_t)insn->disp;
	uint64_t mask = insn->addr32 ? 0xFFFFFFFFull : ~0ull;

	if (insn->base == KLEMU_BASE_RIP)
		ea += rip + insn->len;
	else if (insn->base != KLEMU_NO_REG)
		ea += gpr[insn->base] & mask;
	if (insn->index != KLEMU_NO_REG)
		ea += (gpr[insn->index] & mask) * insn->scale;
	ea &= mask; /* 67h: the effective address wraps at 4 GiB */
	if (insn->seg == KLEMU_SEG_FS || insn->seg == KLEMU_SEG_GS)
		ea += seg_base;
	return ea;
}

const char *klemu_seg_name(enum klemu_seg seg)
{
	static const char *const names[] = {"", "es", "cs", "ss", "ds", "fs", "gs"};

	return (unsigned)seg < sizeof(names) / sizeof(names[0]) ? names[seg] : "";
}

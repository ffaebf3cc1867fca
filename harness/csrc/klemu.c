/*
 * The Key Locker instructions, their checks and the virtual CPU
 * (KEYLOCKER.md sections 2-3).  The cryptography lives in klemu_wrap.c,
 * klemu_aes.c and klemu_polyval.c; this file decides *whether* an
 * instruction faults, sets ZF or computes, and which registers it touches.
 *
 * Order of checks, as in the SDM: every #UD condition (decode time) before
 * any #GP condition, #GP conditions in the SDM's order, and only then the
 * ZF=1 handle checks of the AES*KL forms.  A fault leaves registers, flags
 * and IWKey untouched; ZF=1 leaves the data registers untouched.
 */
#include <string.h>
#include <sys/random.h>

#include "klemu_internal.h"

#define RESTRICT_ALL                                                           \
	(KLEMU_RESTRICT_CPL0 | KLEMU_RESTRICT_NOENCRYPT |                      \
	 KLEMU_RESTRICT_NODECRYPT)
#define KEYTYPE_MASK (0xFu << KLEMU_KEYTYPE_SHIFT)
#define LOADIWKEY_NOBACKUP 1u      /* EAX[0] */
#define LOADIWKEY_KEYSOURCE_SHIFT 1 /* EAX[4:1] */
#define LOADIWKEY_RESERVED (~0x1Fu) /* EAX[31:5] */

struct op_info {
	const char *name;
	int key_bits; /* 0 for LOADIWKEY */
	int decrypt;
	int wide;
};

static const struct op_info OPS[KLEMU_OP_COUNT] = {
	[KLEMU_LOADIWKEY] = {"loadiwkey", 0, 0, 0},
	[KLEMU_ENCODEKEY128] = {"encodekey128", 128, 0, 0},
	[KLEMU_ENCODEKEY256] = {"encodekey256", 256, 0, 0},
	[KLEMU_AESENC128KL] = {"aesenc128kl", 128, 0, 0},
	[KLEMU_AESDEC128KL] = {"aesdec128kl", 128, 1, 0},
	[KLEMU_AESENC256KL] = {"aesenc256kl", 256, 0, 0},
	[KLEMU_AESDEC256KL] = {"aesdec256kl", 256, 1, 0},
	[KLEMU_AESENCWIDE128KL] = {"aesencwide128kl", 128, 0, 1},
	[KLEMU_AESDECWIDE128KL] = {"aesdecwide128kl", 128, 1, 1},
	[KLEMU_AESENCWIDE256KL] = {"aesencwide256kl", 256, 0, 1},
	[KLEMU_AESDECWIDE256KL] = {"aesdecwide256kl", 256, 1, 1},
};

const char *klemu_op_name(enum klemu_op op)
{
	if ((unsigned)op >= KLEMU_OP_COUNT)
		return NULL;
	return OPS[op].name;
}

int klemu_op_from_name(const char *name)
{
	for (int op = 0; op < KLEMU_OP_COUNT; op++)
		if (name && strcmp(name, OPS[op].name) == 0)
			return op;
	return -1;
}

/* ---- the virtual CPU --------------------------------------------------- */

void klemu_cpu_tigerlake(struct klemu_cpu *cpu)
{
	memset(cpu, 0, sizeof(*cpu));
	cpu->kl_present = 1;
	cpu->aeskle_enabled = 1;
	cpu->cr4_kl = 1;
	cpu->cpl = 3;
	cpu->leaf19_eax = 0x7;  /* all three restrictions */
	cpu->leaf19_ebx = 0x14; /* wide + backup MSRs (AESKLE computed) */
	cpu->leaf19_ecx = 0x3;  /* NoBackup + random KeySource */
}

static int aeskle(const struct klemu_cpu *cpu)
{
	return cpu->kl_present && cpu->cr4_kl && cpu->aeskle_enabled;
}

uint32_t klemu_cpuid7_ecx_kl(const struct klemu_ctx *ctx)
{
	return ctx->cpu.kl_present ? KLEMU_CPUID7_ECX_KL : 0;
}

void klemu_cpuid19(const struct klemu_ctx *ctx, uint32_t out[4])
{
	/* A VMM that hides KL hides the whole leaf (ACRN, KVM). */
	if (!ctx->cpu.kl_present) {
		memset(out, 0, 4 * sizeof(out[0]));
		return;
	}
	out[0] = ctx->cpu.leaf19_eax;
	out[1] = (ctx->cpu.leaf19_ebx & ~KLEMU_L19_EBX_AESKLE) |
		 (aeskle(&ctx->cpu) ? KLEMU_L19_EBX_AESKLE : 0);
	out[2] = ctx->cpu.leaf19_ecx;
	out[3] = 0;
}

/* ---- IWKey ------------------------------------------------------------- */

static void install_iwkey(struct klemu_ctx *ctx, const struct klemu_iwkey *key)
{
	ctx->iwkey = *key;
	ctx->iwkey_loaded = 1;
	ctx->iwkey_generation++; /* invalidates every cache entry */
	klemu_wrap_prepare(ctx->wrap_state, &ctx->iwkey);
}

void klemu_init(struct klemu_ctx *ctx, const struct klemu_cpu *cpu)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->cpu = *cpu;
	/* Before LOADIWKEY the IWKey is all zero; handles still wrap under it. */
	klemu_wrap_prepare(ctx->wrap_state, &ctx->iwkey);
}

void klemu_set_iwkey(struct klemu_ctx *ctx, const struct klemu_iwkey *key)
{
	install_iwkey(ctx, key);
}

/* OF/SF/AF/PF/CF cleared, ZF as given: what every KL instruction does. */
static void set_flags(struct klemu_regs *regs, int zf)
{
	regs->rflags = (regs->rflags & ~(uint64_t)KLEMU_ARITH_FLAGS) |
		       (zf ? KLEMU_FLAG_ZF : 0);
}

static enum klemu_fault exec_loadiwkey(struct klemu_ctx *ctx,
				       struct klemu_regs *regs, unsigned reg,
				       unsigned rm)
{
	const struct klemu_cpu *cpu = &ctx->cpu;
	uint32_t eax = regs->eax;
	uint32_t keysource = (eax >> LOADIWKEY_KEYSOURCE_SHIFT) & 0xF;
	int nobackup = (eax & LOADIWKEY_NOBACKUP) != 0;
	struct klemu_iwkey key;
	int zf = 0;

	/* LOADIWKEY needs KL and CR4.KL but not AESKLE. */
	if (!cpu->kl_present || !cpu->cr4_kl)
		return KLEMU_UD;
	if (cpu->cpl > 0)
		return KLEMU_GP;
	if (keysource > 1)
		return KLEMU_GP;
	if (eax & LOADIWKEY_RESERVED)
		return KLEMU_GP;
	if (nobackup && !(cpu->leaf19_ecx & KLEMU_L19_ECX_NOBACKUP))
		return KLEMU_GP;
	if (keysource == 1 && !(cpu->leaf19_ecx & KLEMU_L19_ECX_RANDOM))
		return KLEMU_GP;

	memset(&key, 0, sizeof(key));
	memcpy(key.integrity, regs->xmm[0], 16);
	memcpy(key.enc, regs->xmm[rm], 16);       /* EncKey[127:0] */
	memcpy(key.enc + 16, regs->xmm[reg], 16); /* EncKey[255:128] */
	key.nobackup = nobackup;
	key.keysource = (int)keysource;
	if (keysource == 1) {
		/* The model's "on-chip entropy": short entropy -> ZF=1 and the
		 * IWKey is unchanged, as the SDM says. */
		uint8_t rnd[48];

		if (getrandom(rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd)) {
			zf = 1;
		} else {
			for (int i = 0; i < 16; i++)
				key.integrity[i] ^= rnd[i];
			for (int i = 0; i < 32; i++)
				key.enc[i] ^= rnd[16 + i];
		}
		klemu_wipe(rnd, sizeof(rnd));
	}
	if (!zf)
		install_iwkey(ctx, &key);
	klemu_wipe(&key, sizeof(key));
	set_flags(regs, zf);
	return KLEMU_OK;
}

static enum klemu_fault exec_encodekey(struct klemu_ctx *ctx,
				       const struct op_info *op,
				       struct klemu_regs *regs, uint32_t src32,
				       uint32_t *dest32)
{
	uint8_t aad[16] = {0};
	uint8_t handle[KLEMU_HANDLE256_SIZE];
	uint8_t key[32] = {0};
	uint32_t meta;
	int key_blocks = op->key_bits / 128;

	if (!aeskle(&ctx->cpu))
		return KLEMU_UD;
	if (src32 & ~RESTRICT_ALL)
		return KLEMU_GP;
	if (src32 & ~ctx->cpu.leaf19_eax)
		return KLEMU_GP; /* a restriction this CPU does not support */

	meta = src32 | ((uint32_t)(op->key_bits == 256) << KLEMU_KEYTYPE_SHIFT);
	memcpy(aad, &meta, 4); /* little-endian */
	for (int i = 0; i < key_blocks; i++) /* XMM0, or XMM1:XMM0 */
		memcpy(key + 16 * i, regs->xmm[i], 16);
	klemu_wrap(ctx->wrap_state, aad, key, op->key_bits, handle);

	for (int i = 0; i < 2 + key_blocks; i++) /* XMM3 kept by the 128 form */
		memcpy(regs->xmm[i], handle + 16 * i, 16);
	for (int i = 4; i <= 6; i++)
		memset(regs->xmm[i], 0, 16);
	if (dest32)
		*dest32 = (uint32_t)(ctx->iwkey.nobackup & 1) |
			  ((uint32_t)(ctx->iwkey.keysource & 0xF) << 1);
	set_flags(regs, 0);
	klemu_wipe(key, sizeof(key));
	klemu_wipe(handle, sizeof(handle));
	return KLEMU_OK;
}

/* Step 2 of the AES*KL flow: may this instruction use this handle at all? */
static int handle_usable(const struct klemu_ctx *ctx, const struct op_info *op,
			 const uint8_t *handle)
{
	uint32_t aad[4];
	uint32_t meta;

	memcpy(aad, handle, 16);
	meta = aad[0];
	if ((aad[1] | aad[2] | aad[3]) != 0 ||
	    (meta & ~(RESTRICT_ALL | KEYTYPE_MASK)) != 0)
		return 0; /* a reserved bit is set */
	if ((meta & KLEMU_RESTRICT_CPL0) && ctx->cpu.cpl > 0)
		return 0;
	if (op->decrypt ? (meta & KLEMU_RESTRICT_NODECRYPT)
			: (meta & KLEMU_RESTRICT_NOENCRYPT))
		return 0;
	return ((meta >> KLEMU_KEYTYPE_SHIFT) & 0xF) == (op->key_bits == 256 ? 1u : 0u);
}

/* The AES*KL forms on n = 1 or 8 blocks in place; the shared core of
 * klemu_exec, klemu_aeskl and klemu_aeswidekl.  *zf is set unless a fault
 * is returned. */
static enum klemu_fault aeskl_blocks(struct klemu_ctx *ctx,
				     const struct op_info *op,
				     const uint8_t *handle,
				     uint8_t (*blocks)[16], int *zf)
{
	const struct klemu_cache_entry *e;
	int rounds = op->key_bits == 256 ? 14 : 10;
	size_t n = op->wide ? 8 : 1;

	if (!aeskle(&ctx->cpu))
		return KLEMU_UD;
	if (op->wide && !(ctx->cpu.leaf19_ebx & KLEMU_L19_EBX_WIDE))
		return KLEMU_UD;
	if (!handle)
		return KLEMU_GP; /* stands for the memory fault on the operand */

	*zf = 1;
	if (!handle_usable(ctx, op, handle))
		return KLEMU_OK;
	e = klemu_cache_get(ctx, handle,
			    op->key_bits == 256 ? KLEMU_HANDLE256_SIZE
						: KLEMU_HANDLE128_SIZE,
			    op->key_bits);
	if (!e)
		return KLEMU_OK; /* authentication failed */
	if (op->decrypt)
		klemu_aes_dec_blocks(e->dec_rk, rounds, blocks, n);
	else
		klemu_aes_enc_blocks(e->enc_rk, rounds, blocks, n);
	*zf = 0;
	return KLEMU_OK;
}

enum klemu_fault klemu_exec(struct klemu_ctx *ctx, enum klemu_op op,
			    struct klemu_regs *regs, unsigned reg, unsigned rm,
			    uint32_t src32, uint32_t *dest32, const void *handle)
{
	const struct op_info *info;
	enum klemu_fault fault;
	int zf;

	/* Not an encoding of a KL instruction (or not one we model). */
	if ((unsigned)op >= KLEMU_OP_COUNT || reg > 15 || rm > 15)
		return KLEMU_UD;
	info = &OPS[op];
	switch (op) {
	case KLEMU_LOADIWKEY:
		return exec_loadiwkey(ctx, regs, reg, rm);
	case KLEMU_ENCODEKEY128:
	case KLEMU_ENCODEKEY256:
		return exec_encodekey(ctx, info, regs, src32, dest32);
	default:
		/* The data register, or XMM0-7 for WIDE, in place: on ZF=1
		 * the blocks are simply not written. */
		fault = aeskl_blocks(ctx, info, handle,
				     info->wide ? regs->xmm : &regs->xmm[reg], &zf);
		if (fault == KLEMU_OK)
			set_flags(regs, zf);
		return fault;
	}
}

/* ---- convenience wrappers ---------------------------------------------- */

static enum klemu_fault encodekey(struct klemu_ctx *ctx, enum klemu_op op,
				  uint32_t src, const uint8_t *key,
				  uint8_t *handle, uint32_t *dest)
{
	struct klemu_regs regs;
	int key_blocks = op == KLEMU_ENCODEKEY256 ? 2 : 1;
	enum klemu_fault fault;

	memset(&regs, 0, sizeof(regs));
	for (int i = 0; i < key_blocks; i++)
		memcpy(regs.xmm[i], key + 16 * i, 16);
	fault = klemu_exec(ctx, op, &regs, 0, 1, src, dest, NULL);
	for (int i = 0; fault == KLEMU_OK && i < 2 + key_blocks; i++)
		memcpy(handle + 16 * i, regs.xmm[i], 16);
	klemu_wipe(&regs, sizeof(regs));
	return fault;
}

enum klemu_fault klemu_encodekey128(struct klemu_ctx *ctx, uint32_t src,
				    const uint8_t key[16],
				    uint8_t handle[KLEMU_HANDLE128_SIZE],
				    uint32_t *dest)
{
	return encodekey(ctx, KLEMU_ENCODEKEY128, src, key, handle, dest);
}

enum klemu_fault klemu_encodekey256(struct klemu_ctx *ctx, uint32_t src,
				    const uint8_t key[32],
				    uint8_t handle[KLEMU_HANDLE256_SIZE],
				    uint32_t *dest)
{
	return encodekey(ctx, KLEMU_ENCODEKEY256, src, key, handle, dest);
}

/* These skip the register file on purpose: they are the hot path of the
 * probe's loops and the benchmark, and run the very same core as
 * klemu_exec on the caller's buffer. */
enum klemu_fault klemu_aeskl(struct klemu_ctx *ctx, enum klemu_op op,
			     const void *handle, uint8_t data[16], int *zf)
{
	int z = 1;
	enum klemu_fault fault;

	if (op < KLEMU_AESENC128KL || op > KLEMU_AESDEC256KL)
		return KLEMU_UD;
	fault = aeskl_blocks(ctx, &OPS[op], handle, (uint8_t(*)[16])data, &z);
	if (fault == KLEMU_OK && zf)
		*zf = z;
	return fault;
}

enum klemu_fault klemu_aeswidekl(struct klemu_ctx *ctx, enum klemu_op op,
				 const void *handle, uint8_t blocks[8][16],
				 int *zf)
{
	int z = 1;
	enum klemu_fault fault;

	if (op < KLEMU_AESENCWIDE128KL || op > KLEMU_AESDECWIDE256KL)
		return KLEMU_UD;
	fault = aeskl_blocks(ctx, &OPS[op], handle, blocks, &z);
	if (fault == KLEMU_OK && zf)
		*zf = z;
	return fault;
}

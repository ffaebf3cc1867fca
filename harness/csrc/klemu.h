/*
 * klemu: a software model of Intel Key Locker, instruction by instruction.
 *
 * Why it exists: almost no machine can run Key Locker (KL) today, and none
 * can in a stock VM.  klemu executes the KL instructions the way the SDM
 * pseudo-code says (docs: ../shared/design/KEYLOCKER.md sections 3-4), on a
 * small register file, so the probe, the vectors tool and (later) a SIGILL
 * trap layer all share one definition of the semantics.
 *
 * The model works on architectural state, like a CPU would:
 *   - struct klemu_cpu   : the virtual CPUID the "VMM" decided, CR4.KL, CPL;
 *   - struct klemu_iwkey : the loaded IWKey (never readable by software);
 *   - struct klemu_regs  : XMM0-15, EAX and RFLAGS as the instruction sees them;
 *   - memory operands are plain pointers (the handle).
 * Each instruction returns a fault (#UD, #GP, #NM) or KLEMU_OK and updates
 * registers and flags exactly as the hardware would.
 *
 * All explicit state lives in struct klemu_ctx; there is no global mutable
 * state except the run-time choice of AES-NI/PCLMULQDQ vs portable code,
 * which is made once and is a pure function of the CPU.
 */
#ifndef KLEMU_H
#define KLEMU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KLEMU_VERSION "0.1.0"

/* Handle sizes in bytes. */
#define KLEMU_HANDLE128_SIZE 48
#define KLEMU_HANDLE256_SIZE 64

/* RFLAGS bits that KL instructions touch. */
#define KLEMU_FLAG_CF (1u << 0)
#define KLEMU_FLAG_PF (1u << 2)
#define KLEMU_FLAG_AF (1u << 4)
#define KLEMU_FLAG_ZF (1u << 6)
#define KLEMU_FLAG_SF (1u << 7)
#define KLEMU_FLAG_OF (1u << 11)
#define KLEMU_ARITH_FLAGS                                                      \
	(KLEMU_FLAG_CF | KLEMU_FLAG_PF | KLEMU_FLAG_AF | KLEMU_FLAG_ZF |       \
	 KLEMU_FLAG_SF | KLEMU_FLAG_OF)

/* Handle AAD (bytes 0-15) bits; see KEYLOCKER.md "Handle layout". */
#define KLEMU_RESTRICT_CPL0 (1u << 0)
#define KLEMU_RESTRICT_NOENCRYPT (1u << 1)
#define KLEMU_RESTRICT_NODECRYPT (1u << 2)
#define KLEMU_KEYTYPE_SHIFT 24 /* bits 27:24: 0 = AES-128, 1 = AES-256 */

/* CPUID bits. */
#define KLEMU_CPUID7_ECX_KL (1u << 23)
#define KLEMU_L19_EBX_AESKLE (1u << 0)
#define KLEMU_L19_EBX_WIDE (1u << 2)
#define KLEMU_L19_EBX_BACKUP (1u << 4)
#define KLEMU_L19_ECX_NOBACKUP (1u << 0)
#define KLEMU_L19_ECX_RANDOM (1u << 1)

enum klemu_fault {
	KLEMU_OK = 0,
	KLEMU_UD = 6,  /* #UD -> SIGILL  */
	KLEMU_NM = 7,  /* #NM: CR0.TS=1; never reaches user space on Linux */
	KLEMU_GP = 13, /* #GP(0) -> SIGSEGV */
};

enum klemu_op {
	KLEMU_LOADIWKEY,
	KLEMU_ENCODEKEY128,
	KLEMU_ENCODEKEY256,
	KLEMU_AESENC128KL,
	KLEMU_AESDEC128KL,
	KLEMU_AESENC256KL,
	KLEMU_AESDEC256KL,
	KLEMU_AESENCWIDE128KL,
	KLEMU_AESDECWIDE128KL,
	KLEMU_AESENCWIDE256KL,
	KLEMU_AESDECWIDE256KL,
	KLEMU_OP_COUNT
};

/* Stable lower-case mnemonic for an op ("aesenc128kl"), NULL if out of range. */
const char *klemu_op_name(enum klemu_op op);
/* Inverse of klemu_op_name; returns -1 for an unknown name. */
int klemu_op_from_name(const char *name);

/* The virtual CPU the VMM exposes.  leaf19_ebx is the value *before* the
 * AESKLE bit is applied: AESKLE reads 1 only when kl_present, cr4_kl and
 * aeskle_enabled (firmware did not disable KL) are all set. */
struct klemu_cpu {
	int kl_present;      /* CPUID.(7,0):ECX[23] */
	int aeskle_enabled;  /* firmware/VMM allows AESKLE */
	int cr4_kl;          /* CR4.KL as set by the (virtual) kernel */
	int cpl;             /* current privilege level: 3 for user space */
	uint32_t leaf19_eax; /* restriction support bits */
	uint32_t leaf19_ebx; /* wide, backup (AESKLE computed) */
	uint32_t leaf19_ecx; /* NoBackup, random KeySource */
};

struct klemu_iwkey {
	uint8_t integrity[16]; /* XMM0 at LOADIWKEY */
	uint8_t enc[32];       /* enc[0..15] = EncKey[127:0], enc[16..31] = EncKey[255:128] */
	int nobackup;
	int keysource; /* 0 software, 1 hardware random */
};

struct klemu_regs {
	uint8_t xmm[16][16]; /* little-endian bytes of XMM0-15 */
	uint32_t eax;        /* LOADIWKEY control word */
	uint64_t rflags;
};

/* A cache of one unwrapped handle: AES round keys for the key inside the
 * most recently used handle, valid while iwkey_generation is unchanged.
 * Keyed by the full handle bytes, so tampering can never hit the cache. */
struct klemu_cache_entry {
	uint8_t handle[KLEMU_HANDLE256_SIZE];
	size_t handle_size; /* 0 = empty */
	uint64_t generation;
	int key_bits; /* 128 or 256 */
	/* Expanded encryption and decryption (equivalent inverse cipher) keys,
	 * 15 round keys each; aligned for AES-NI. */
	uint8_t enc_rk[15 * 16] __attribute__((aligned(16)));
	uint8_t dec_rk[15 * 16] __attribute__((aligned(16)));
};

#define KLEMU_CACHE_WAYS 4

struct klemu_ctx {
	struct klemu_cpu cpu;
	struct klemu_iwkey iwkey;
	int iwkey_loaded;        /* 0 until LOADIWKEY or klemu_set_iwkey */
	uint64_t iwkey_generation; /* bumped on every IWKey change */
	/* Precomputed wrap state derived from the IWKey (AES-256 round keys and
	 * POLYVAL key powers); opaque to callers. */
	uint8_t wrap_state[1024] __attribute__((aligned(16)));
	struct klemu_cache_entry cache[KLEMU_CACHE_WAYS];
	unsigned cache_next;
	uint64_t stats_unwraps;   /* full unwrap+authenticate operations */
	uint64_t stats_cache_hits;
};

/* Initialise ctx with a CPU model and no IWKey loaded.  An all-zero IWKey
 * is what a CPU has before LOADIWKEY; we keep it explicit with iwkey_loaded. */
void klemu_init(struct klemu_ctx *ctx, const struct klemu_cpu *cpu);

/* A Tiger Lake-like virtual CPU (leaf 0x19 = 7 / 0x14 / 0x3 / 0) with
 * CR4.KL set and CPL 3. */
void klemu_cpu_tigerlake(struct klemu_cpu *cpu);

/* The CPUID words the virtual CPU answers for leaf 7 subleaf 0 ECX bit 23
 * and the whole leaf 0x19 (AESKLE applied). out[0..3] = EAX, EBX, ECX, EDX. */
uint32_t klemu_cpuid7_ecx_kl(const struct klemu_ctx *ctx);
void klemu_cpuid19(const struct klemu_ctx *ctx, uint32_t out[4]);

/* Load an IWKey the way a VMM would on the guest's behalf (no CPL check,
 * no KeySource randomisation): used for the per-VM derived key. */
void klemu_set_iwkey(struct klemu_ctx *ctx, const struct klemu_iwkey *key);

/* Execute one instruction.
 *  regs:    register file in/out (XMM, EAX, RFLAGS).
 *  reg:     ModRM.reg register number: the data register for AES*KL, the
 *           DEST r32 index for ENCODEKEY (its result is written to *dest32),
 *           the EncKey[255:128] register for LOADIWKEY.
 *  rm:      ModRM.rm register number: the SRC r32 index for ENCODEKEY (its
 *           value is passed in src32), the EncKey[127:0] register for
 *           LOADIWKEY; unused for memory forms.
 *  src32:   value of the SRC r32 for ENCODEKEY.
 *  dest32:  out: DEST r32 for ENCODEKEY (written only on success).
 *  handle:  the m384/m512 memory operand for AES*KL forms (NULL otherwise).
 * Returns KLEMU_OK or the fault; on a fault nothing is modified. */
enum klemu_fault klemu_exec(struct klemu_ctx *ctx, enum klemu_op op,
			    struct klemu_regs *regs, unsigned reg, unsigned rm,
			    uint32_t src32, uint32_t *dest32, const void *handle);

/* Convenience wrappers used by the probe and the vectors tool.  They build a
 * register file, call klemu_exec, and copy results out.  *zf gets ZF. */
enum klemu_fault klemu_encodekey128(struct klemu_ctx *ctx, uint32_t src,
				    const uint8_t key[16],
				    uint8_t handle[KLEMU_HANDLE128_SIZE],
				    uint32_t *dest);
enum klemu_fault klemu_encodekey256(struct klemu_ctx *ctx, uint32_t src,
				    const uint8_t key[32],
				    uint8_t handle[KLEMU_HANDLE256_SIZE],
				    uint32_t *dest);
/* op is one of the four AES{ENC,DEC}{128,256}KL; data is in/out (16 B). */
enum klemu_fault klemu_aeskl(struct klemu_ctx *ctx, enum klemu_op op,
			     const void *handle, uint8_t data[16], int *zf);
/* op is one of the four WIDE forms; blocks is in/out (8 x 16 B). */
enum klemu_fault klemu_aeswidekl(struct klemu_ctx *ctx, enum klemu_op op,
				 const void *handle, uint8_t blocks[8][16],
				 int *zf);

/* Derive the per-VM IWKey from a 32-byte VMM secret and the guest boot id
 * (16 raw bytes of /proc/sys/kernel/random/boot_id).  Construction
 * (documented in docs/emulation.md, mirrored in harness/kl/refmodel.py):
 *   block_i = AES-256-Encrypt(key = secret, boot_id XOR (0xA0 + i) in byte 15)
 *   integrity = block_0, enc[0..15] = block_1, enc[16..31] = block_2.
 * NoBackup = 0, KeySource = 0. */
void klemu_derive_iwkey(const uint8_t secret[32], const uint8_t boot_id[16],
			struct klemu_iwkey *out);

/* Plain AES on raw keys (AES-NI when available): the probe and the tests
 * use it as the reference for FIPS vectors and wide-lane comparisons. */
void klemu_aes_encrypt_block(const uint8_t *key, int key_bits,
			     const uint8_t in[16], uint8_t out[16]);
void klemu_aes_decrypt_block(const uint8_t *key, int key_bits,
			     const uint8_t in[16], uint8_t out[16]);

/* Which AES/POLYVAL implementation the run-time dispatch chose:
 * "aesni+pclmul" or "portable".  KLEMU_FORCE_PORTABLE=1 in the environment
 * forces the portable path (read once). */
const char *klemu_impl_name(void);

#ifdef __cplusplus
}
#endif

#endif /* KLEMU_H */

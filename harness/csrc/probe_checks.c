#define _GNU_SOURCE
#include "probe_checks.h"

#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "probe_guard.h"

/* FIPS-197 known answers (KEYLOCKER.md §8). */
const uint8_t probe_fips_c1_key[16] = {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
				       0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f};
const uint8_t probe_fips_c1_pt[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
				      0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
const uint8_t probe_fips_c1_ct[16] = {0x69, 0xc4, 0xe0, 0xd8, 0x6a, 0x7b, 0x04, 0x30,
				      0xd8, 0xcd, 0xb7, 0x80, 0x70, 0xb4, 0xc5, 0x5a};
static const uint8_t fips_b_key[16] = {0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6,
				       0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f, 0x3c};
static const uint8_t fips_b_pt[16] = {0x32, 0x43, 0xf6, 0xa8, 0x88, 0x5a, 0x30, 0x8d,
				      0x31, 0x31, 0x98, 0xa2, 0xe0, 0x37, 0x07, 0x34};
static const uint8_t fips_b_ct[16] = {0x39, 0x25, 0x84, 0x1d, 0x02, 0xdc, 0x09, 0xfb,
				      0xdc, 0x11, 0x85, 0x97, 0x19, 0x6a, 0x0b, 0x32};
static const uint8_t fips_c3_ct[16] = {0x8e, 0xa2, 0xb7, 0xca, 0x51, 0x67, 0x45, 0xbf,
				       0xea, 0xfc, 0x49, 0x90, 0x4b, 0x49, 0x60, 0x89};

/* ---- running instructions through the backend -------------------------- */

/* A recognisable pattern in the registers an instruction should not touch
 * (or must zero), so "preserved" and "zeroed" are observable. */
static void fill_pattern(struct klemu_regs *r, unsigned from)
{
	for (unsigned i = from; i < 8; i++)
		memset(r->xmm[i], 0xa0 + (int)i, 16);
}

static struct kl_outcome encode(const struct kl_backend *be, int bits, uint32_t src, const uint8_t *key,
				uint8_t *handle, uint32_t *dest, struct klemu_regs *after)
{
	struct klemu_regs r;
	memset(&r, 0, sizeof(r));
	fill_pattern(&r, bits == 128 ? 1 : 2);
	memcpy(r.xmm[0], key, 16);
	if (bits == 256)
		memcpy(r.xmm[1], key + 16, 16);
	struct kl_outcome o = be->exec(be->self, bits == 128 ? KLEMU_ENCODEKEY128 : KLEMU_ENCODEKEY256,
				       &r, src, dest, NULL);
	if (!o.signal && handle)
		memcpy(handle, r.xmm[0], bits == 128 ? 48 : 64);
	if (after)
		*after = r;
	return o;
}

struct kl_outcome probe_encode128(const struct kl_backend *be, const uint8_t key[16], uint32_t src,
				  uint8_t handle[48], uint32_t *dest)
{
	return encode(be, 128, src, key, handle, dest, NULL);
}

struct kl_outcome probe_aeskl(const struct kl_backend *be, enum klemu_op op, const void *handle, uint8_t data[16])
{
	struct klemu_regs r;
	memset(&r, 0, sizeof(r));
	fill_pattern(&r, 1);
	memcpy(r.xmm[0], data, 16);
	struct kl_outcome o = be->exec(be->self, op, &r, 0, NULL, handle);
	if (!o.signal)
		memcpy(data, r.xmm[0], 16);
	return o;
}

static struct kl_outcome widekl(const struct kl_backend *be, enum klemu_op op, const void *handle,
				uint8_t blocks[8][16])
{
	struct klemu_regs r;
	memset(&r, 0, sizeof(r));
	memcpy(r.xmm, blocks, 8 * 16);
	struct kl_outcome o = be->exec(be->self, op, &r, 0, NULL, handle);
	if (!o.signal)
		memcpy(blocks, r.xmm, 8 * 16);
	return o;
}

/* ---- observation writing ----------------------------------------------- */

void probe_obs_begin(struct probe_ctx *p, const char *id, const char *op)
{
	json_begin_object(p->w);
	json_kstr(p->w, "id", id);
	json_kstr(p->w, "provenance", p->provenance);
	json_kstr(p->w, "op", op);
	p->count++;
}

/* signal / zf / rflags / flags_cleared, the facts every instruction has. */
void probe_obs_outcome(struct probe_ctx *p, const struct kl_outcome *o)
{
	struct json_writer *w = p->w;
	json_key(w, "signal");
	if (o->signal)
		json_str(w, probe_signal_name(o->signal));
	else
		json_null(w);
	json_key(w, "zf");
	if (o->signal)
		json_null(w);
	else
		json_int(w, o->zf);
	json_key(w, "rflags");
	if (o->signal)
		json_null(w);
	else
		json_uint(w, o->rflags);
}

static void obs_end(struct probe_ctx *p) { json_end_object(p->w); }

static void begin_facts(struct probe_ctx *p) { json_key(p->w, "facts"); json_begin_object(p->w); }
static void begin_inputs(struct probe_ctx *p) { json_key(p->w, "inputs"); json_begin_object(p->w); }
static void begin_outputs(struct probe_ctx *p) { json_key(p->w, "outputs"); json_begin_object(p->w); }
static void end_(struct probe_ctx *p) { json_end_object(p->w); }

static int flags_other_than_zf_clear(const struct kl_outcome *o)
{
	return (o->rflags & (KLEMU_ARITH_FLAGS & ~KLEMU_FLAG_ZF)) == 0;
}

static void random_bytes(void *buf, size_t n)
{
	unsigned char *b = buf;
	while (n) {
		ssize_t got = getrandom(b, n, 0);
		if (got <= 0)
			continue;
		b += got;
		n -= (size_t)got;
	}
}

static uint32_t supported_restrictions(const struct probe_ctx *p) { return p->cpu.leaf19.eax & 7u; }
static int wide_supported(const struct probe_ctx *p) { return (p->cpu.leaf19.ebx >> 2) & 1; }

/* ---- ENCODEKEY --------------------------------------------------------- */

static void check_encodekey_restrictions(struct probe_ctx *p, int bits)
{
	uint8_t key[32];
	char id[64];
	const char *op = bits == 128 ? "encodekey128" : "encodekey256";
	memcpy(key, probe_fips_c1_key, 16);
	for (int i = 0; i < 16; i++)
		key[16 + i] = (uint8_t)(0x10 + i);
	for (uint32_t r = 0; r < 8; r++) {
		if (r & ~supported_restrictions(p))
			continue; /* covered by the unsupported-restriction check */
		uint8_t handle[64] = {0};
		uint32_t dest = 0xdeadbeef;
		struct klemu_regs after;
		struct kl_outcome o = encode(&p->be, bits, r, key, handle, &dest, &after);
		snprintf(id, sizeof(id), "%s.restrictions.r%u", op, r);
		probe_obs_begin(p, id, op);
		probe_obs_outcome(p, &o);
		begin_inputs(p);
		json_kuint(p->w, "src", r);
		json_khex(p->w, "key", key, (size_t)bits / 8);
		end_(p);
		begin_outputs(p);
		if (!o.signal) {
			json_khex(p->w, "handle", handle, bits == 128 ? 48 : 64);
			json_kuint(p->w, "dest", dest);
		}
		end_(p);
		begin_facts(p);
		if (!o.signal) {
			uint8_t want_aad[16] = {0};
			uint32_t meta = r | (bits == 256 ? 1u << KLEMU_KEYTYPE_SHIFT : 0);
			memcpy(want_aad, &meta, 4);
			uint8_t zero[16] = {0}, pat3[16];
			memset(pat3, 0xa3, 16);
			json_kbool(p->w, "aad_ok", memcmp(handle, want_aad, 16) == 0);
			json_kbool(p->w, "dest_ok", dest == p->expected_dest);
			json_kbool(p->w, "flags_cleared", (o.rflags & KLEMU_ARITH_FLAGS) == 0);
			json_kbool(p->w, "xmm456_zeroed",
				   !memcmp(after.xmm[4], zero, 16) && !memcmp(after.xmm[5], zero, 16) &&
					   !memcmp(after.xmm[6], zero, 16));
			if (bits == 128)
				json_kbool(p->w, "xmm3_preserved", memcmp(after.xmm[3], pat3, 16) == 0);
			json_kbool(p->w, "key_not_in_handle", memmem(handle, bits == 128 ? 48 : 64, key, 16) == NULL);
		}
		end_(p);
		obs_end(p);
	}
}

/* An ENCODEKEY that must #GP: SRC bit 3 (reserved) or an unsupported restriction. */
static void check_encodekey_gp(struct probe_ctx *p, int bits, const char *what, uint32_t src)
{
	char id[64];
	const char *op = bits == 128 ? "encodekey128" : "encodekey256";
	uint8_t key[32] = {0};
	uint32_t dest = 0;
	struct kl_outcome o = encode(&p->be, bits, src, key, NULL, &dest, NULL);
	snprintf(id, sizeof(id), "%s.%s", op, what);
	probe_obs_begin(p, id, op);
	probe_obs_outcome(p, &o);
	begin_inputs(p);
	json_kuint(p->w, "src", src);
	end_(p);
	obs_end(p);
}

static int pin_to_cpu(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set);
}

static void check_determinism(struct probe_ctx *p)
{
	uint8_t h1[48], h2[48];
	uint32_t d;
	struct kl_outcome o1 = probe_encode128(&p->be, probe_fips_c1_key, 0, h1, &d);
	struct kl_outcome o2 = probe_encode128(&p->be, probe_fips_c1_key, 0, h2, &d);
	probe_obs_begin(p, "encodekey128.determinism.repeat", "encodekey128");
	probe_obs_outcome(p, o1.signal ? &o1 : &o2);
	begin_facts(p);
	json_kbool(p->w, "equal", !o1.signal && !o2.signal && memcmp(h1, h2, 48) == 0);
	end_(p);
	obs_end(p);

	/* Once pinned to each online CPU: the IWKey is per logical CPU, so a
	 * VMM that forgot to load it on one vCPU shows up here. */
	cpu_set_t orig;
	sched_getaffinity(0, sizeof(orig), &orig);
	int ncpu = 0, differing = 0, faulted = 0;
	long online = sysconf(_SC_NPROCESSORS_CONF);
	probe_obs_begin(p, "encodekey128.determinism.cpus", "encodekey128");
	begin_outputs(p);
	json_key(p->w, "cpus");
	json_begin_array(p->w);
	for (int c = 0; c < online && c < CPU_SETSIZE; c++) {
		if (!CPU_ISSET(c, &orig) || pin_to_cpu(c) != 0)
			continue;
		uint8_t h[48];
		struct kl_outcome o = probe_encode128(&p->be, probe_fips_c1_key, 0, h, &d);
		json_int(p->w, c);
		ncpu++;
		if (o.signal)
			faulted++;
		else if (memcmp(h, h1, 48) != 0)
			differing++;
	}
	json_end_array(p->w);
	json_kint(p->w, "differing", differing);
	json_kint(p->w, "faulted", faulted);
	end_(p);
	sched_setaffinity(0, sizeof(orig), &orig);
	struct kl_outcome none = {0, 0, 0};
	probe_obs_outcome(p, o1.signal ? &o1 : &none);
	begin_facts(p);
	json_kbool(p->w, "equal", ncpu > 0 && !o1.signal && differing == 0 && faulted == 0);
	end_(p);
	obs_end(p);
}

/* ---- AES*KL known answers and round trips ------------------------------ */

static void check_known_answer(struct probe_ctx *p, const char *id, enum klemu_op op, int bits, const uint8_t *key,
			       const uint8_t *in, const uint8_t *want)
{
	uint8_t handle[64] = {0}, data[16];
	uint32_t dest;
	struct kl_outcome o = encode(&p->be, bits, 0, key, handle, &dest, NULL);
	memcpy(data, in, 16);
	if (!o.signal)
		o = probe_aeskl(&p->be, op, handle, data);
	probe_obs_begin(p, id, klemu_op_name(op));
	probe_obs_outcome(p, &o);
	begin_inputs(p);
	json_khex(p->w, "key", key, (size_t)bits / 8);
	json_khex(p->w, "data", in, 16);
	end_(p);
	begin_outputs(p);
	json_khex(p->w, "out", data, 16);
	end_(p);
	begin_facts(p);
	json_kbool(p->w, "matches_reference", !o.signal && memcmp(data, want, 16) == 0);
	json_kbool(p->w, "flags_cleared", !o.signal && (o.rflags & KLEMU_ARITH_FLAGS) == 0);
	end_(p);
	obs_end(p);
}

static void check_roundtrip(struct probe_ctx *p, int bits)
{
	enum klemu_op enc = bits == 128 ? KLEMU_AESENC128KL : KLEMU_AESENC256KL;
	enum klemu_op dec = bits == 128 ? KLEMU_AESDEC128KL : KLEMU_AESDEC256KL;
	uint8_t key[32], handle[64] = {0};
	uint32_t dest;
	int blocks = 16, enc_ok = 0, rt_ok = 0;
	struct kl_outcome o;
	random_bytes(key, sizeof(key));
	o = encode(&p->be, bits, 0, key, handle, &dest, NULL);
	for (int i = 0; i < blocks && !o.signal; i++) {
		uint8_t pt[16], buf[16], ref[16];
		random_bytes(pt, 16);
		memcpy(buf, pt, 16);
		o = probe_aeskl(&p->be, enc, handle, buf);
		if (o.signal || o.zf)
			break;
		klemu_aes_encrypt_block(key, bits, pt, ref);
		enc_ok += memcmp(buf, ref, 16) == 0;
		o = probe_aeskl(&p->be, dec, handle, buf);
		if (o.signal || o.zf)
			break;
		rt_ok += memcmp(buf, pt, 16) == 0;
	}
	probe_obs_begin(p, bits == 128 ? "aes128kl.roundtrip" : "aes256kl.roundtrip", klemu_op_name(enc));
	probe_obs_outcome(p, &o);
	begin_outputs(p);
	json_kint(p->w, "blocks", blocks);
	json_kint(p->w, "encrypt_matching", enc_ok);
	json_kint(p->w, "roundtrip_matching", rt_ok);
	end_(p);
	begin_facts(p);
	json_kbool(p->w, "matches_reference", enc_ok == blocks);
	json_kbool(p->w, "roundtrip_ok", rt_ok == blocks);
	end_(p);
	obs_end(p);
}

static void check_wide(struct probe_ctx *p, enum klemu_op op)
{
	int bits = (op == KLEMU_AESENCWIDE128KL || op == KLEMU_AESDECWIDE128KL) ? 128 : 256;
	int decrypt = (op == KLEMU_AESDECWIDE128KL || op == KLEMU_AESDECWIDE256KL);
	uint8_t key[32], handle[64] = {0}, blocks[8][16], in[8][16];
	uint32_t dest;
	char id[64];
	random_bytes(key, sizeof(key));
	for (int i = 0; i < 8; i++)
		for (int j = 0; j < 16; j++)
			in[i][j] = (uint8_t)(i * 16 + j); /* 8 distinct blocks */
	memcpy(blocks, in, sizeof(blocks));
	struct kl_outcome o = encode(&p->be, bits, 0, key, handle, &dest, NULL);
	if (!o.signal)
		o = widekl(&p->be, op, handle, blocks);
	int lanes = 0;
	for (int i = 0; i < 8 && !o.signal; i++) {
		uint8_t ref[16];
		if (decrypt)
			klemu_aes_decrypt_block(key, bits, in[i], ref);
		else
			klemu_aes_encrypt_block(key, bits, in[i], ref);
		lanes += memcmp(blocks[i], ref, 16) == 0;
	}
	snprintf(id, sizeof(id), "%s.lanes", klemu_op_name(op));
	probe_obs_begin(p, id, klemu_op_name(op));
	probe_obs_outcome(p, &o);
	begin_outputs(p);
	json_kint(p->w, "lanes_matching", lanes);
	end_(p);
	begin_facts(p);
	json_kbool(p->w, "matches_reference", lanes == 8);
	json_kbool(p->w, "flags_cleared", !o.signal && (o.rflags & KLEMU_ARITH_FLAGS) == 0);
	end_(p);
	obs_end(p);
}

/* ---- rejections: restrictions and integrity ---------------------------- */

/* Run op with a handle that must be rejected (or accepted) and record ZF
 * and whether the data register(s) stayed unchanged. */
static void check_use(struct probe_ctx *p, const char *id, enum klemu_op op, const uint8_t *handle)
{
	uint8_t blocks[8][16], before[8][16];
	struct kl_outcome o;
	int wide = op >= KLEMU_AESENCWIDE128KL;
	for (int i = 0; i < 8; i++)
		memset(blocks[i], 0x30 + i, 16);
	memcpy(before, blocks, sizeof(before));
	if (wide)
		o = widekl(&p->be, op, handle, blocks);
	else
		o = probe_aeskl(&p->be, op, handle, blocks[0]);
	probe_obs_begin(p, id, klemu_op_name(op));
	probe_obs_outcome(p, &o);
	begin_facts(p);
	json_kbool(p->w, "data_unchanged", memcmp(blocks, before, wide ? sizeof(blocks) : 16) == 0);
	json_kbool(p->w, "other_flags_cleared", !o.signal && flags_other_than_zf_clear(&o));
	end_(p);
	obs_end(p);
}

static void check_restrictions(struct probe_ctx *p)
{
	uint8_t h[48];
	uint32_t dest, sup = supported_restrictions(p);
	if (sup & KLEMU_RESTRICT_NOENCRYPT &&
	    !probe_encode128(&p->be, probe_fips_c1_key, KLEMU_RESTRICT_NOENCRYPT, h, &dest).signal) {
		check_use(p, "restrict.noencrypt.encrypt_rejected", KLEMU_AESENC128KL, h);
		check_use(p, "restrict.noencrypt.decrypt_allowed", KLEMU_AESDEC128KL, h);
		if (wide_supported(p))
			check_use(p, "restrict.noencrypt.wide_encrypt_rejected", KLEMU_AESENCWIDE128KL, h);
	}
	if (sup & KLEMU_RESTRICT_NODECRYPT &&
	    !probe_encode128(&p->be, probe_fips_c1_key, KLEMU_RESTRICT_NODECRYPT, h, &dest).signal) {
		check_use(p, "restrict.nodecrypt.decrypt_rejected", KLEMU_AESDEC128KL, h);
		check_use(p, "restrict.nodecrypt.encrypt_allowed", KLEMU_AESENC128KL, h);
		if (wide_supported(p))
			check_use(p, "restrict.nodecrypt.wide_decrypt_rejected", KLEMU_AESDECWIDE128KL, h);
	}
	if (sup & KLEMU_RESTRICT_CPL0 && p->cpl > 0 &&
	    !probe_encode128(&p->be, probe_fips_c1_key, KLEMU_RESTRICT_CPL0, h, &dest).signal)
		check_use(p, "restrict.cpl0.user_rejected", KLEMU_AESENC128KL, h);
}

/* Flip each bit of a handle in turn; every flip must be rejected (ZF=1)
 * with the data register unchanged. */
static void check_bitflips(struct probe_ctx *p, int bits)
{
	size_t n = bits == 128 ? 48 : 64;
	enum klemu_op op = bits == 128 ? KLEMU_AESENC128KL : KLEMU_AESENC256KL;
	uint8_t key[32], handle[64] = {0};
	uint32_t dest;
	int rejected = 0, unchanged = 0, accepted = 0, signalled = 0, first_accepted = -1;
	random_bytes(key, sizeof(key));
	struct kl_outcome o = encode(&p->be, bits, 0, key, handle, &dest, NULL);
	for (size_t bit = 0; bit < n * 8 && !o.signal; bit++) {
		uint8_t t[64], data[16], before[16];
		memcpy(t, handle, n);
		t[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		memset(data, 0x5a, 16);
		memcpy(before, data, 16);
		struct kl_outcome u = probe_aeskl(&p->be, op, t, data);
		if (u.signal) {
			signalled++;
			continue;
		}
		if (u.zf) {
			rejected++;
			unchanged += memcmp(data, before, 16) == 0;
		} else {
			accepted++;
			if (first_accepted < 0)
				first_accepted = (int)bit;
		}
	}
	probe_obs_begin(p, bits == 128 ? "integrity.bitflip.h384" : "integrity.bitflip.h512", klemu_op_name(op));
	probe_obs_outcome(p, &o);
	begin_outputs(p);
	json_kint(p->w, "flipped", (long long)n * 8);
	json_kint(p->w, "rejected", rejected);
	json_kint(p->w, "accepted", accepted);
	json_kint(p->w, "signalled", signalled);
	json_kint(p->w, "first_accepted_bit", first_accepted);
	end_(p);
	begin_facts(p);
	json_kbool(p->w, "all_rejected", !o.signal && rejected == (int)n * 8);
	json_kbool(p->w, "data_unchanged", !o.signal && unchanged == rejected);
	end_(p);
	obs_end(p);
}

static void check_integrity_misc(struct probe_ctx *p)
{
	uint8_t h128[64] = {0}, h256[64] = {0}, t[64];
	uint8_t key[32];
	uint32_t dest;
	random_bytes(key, sizeof(key));
	if (encode(&p->be, 128, 0, key, h128, &dest, NULL).signal ||
	    encode(&p->be, 256, 0, key, h256, &dest, NULL).signal)
		return;
	memcpy(t, h128, 48);
	t[0] |= 1u << 3; /* AAD bit 3 is reserved */
	check_use(p, "integrity.reserved_aad_bit", KLEMU_AESENC128KL, t);
	memcpy(t, h128, 48);
	t[3] |= 1u; /* key type 1 (AES-256) on a 128-bit handle */
	check_use(p, "integrity.keytype_swapped", KLEMU_AESENC128KL, t);
	memset(t, 0, sizeof(t));
	memcpy(t, h128, 48); /* a 384-bit handle padded to 512 bits */
	check_use(p, "integrity.h128_on_256", KLEMU_AESENC256KL, t);
	check_use(p, "integrity.h256_on_128", KLEMU_AESENC128KL, h256);
}

/* ---- instructions that must fault -------------------------------------- */

static void check_signal_only(struct probe_ctx *p, const char *id, enum klemu_op op)
{
	struct klemu_regs r;
	uint8_t handle[64] = {0};
	uint32_t dest;
	memset(&r, 0, sizeof(r));
	struct kl_outcome o = p->be.exec(p->be.self, op, &r, 0, &dest, handle);
	probe_obs_begin(p, id, klemu_op_name(op));
	probe_obs_outcome(p, &o);
	obs_end(p);
}

static void check_ud_all(struct probe_ctx *p, const char *prefix, int only_wide)
{
	char id[64];
	for (int op = 0; op < KLEMU_OP_COUNT; op++) {
		if (only_wide && op < KLEMU_AESENCWIDE128KL)
			continue;
		snprintf(id, sizeof(id), "%s.%s", prefix, klemu_op_name((enum klemu_op)op));
		check_signal_only(p, id, (enum klemu_op)op);
	}
}

void probe_run_checks(struct probe_ctx *p)
{
	if (!p->kl_usable) {
		/* The hidden (or advertised-but-unusable) arm: every KL
		 * instruction must raise #UD -> SIGILL (KEYLOCKER.md §3, §6). */
		check_ud_all(p, "ud", 0);
		return;
	}
	check_encodekey_restrictions(p, 128);
	check_encodekey_restrictions(p, 256);
	check_encodekey_gp(p, 128, "src_reserved", 1u << 3);
	check_encodekey_gp(p, 256, "src_reserved", 1u << 3);
	if (supported_restrictions(p) != 7) {
		uint32_t bad = 7u & ~supported_restrictions(p);
		check_encodekey_gp(p, 128, "unsupported_restriction", bad & (0u - bad));
	}
	check_determinism(p);
	check_known_answer(p, "aesenc128kl.fips197_c1", KLEMU_AESENC128KL, 128, probe_fips_c1_key,
			   probe_fips_c1_pt, probe_fips_c1_ct);
	check_known_answer(p, "aesenc128kl.fips197_b", KLEMU_AESENC128KL, 128, fips_b_key, fips_b_pt, fips_b_ct);
	check_known_answer(p, "aesdec128kl.fips197_c1", KLEMU_AESDEC128KL, 128, probe_fips_c1_key,
			   probe_fips_c1_ct, probe_fips_c1_pt);
	{
		uint8_t k256[32];
		for (int i = 0; i < 32; i++)
			k256[i] = (uint8_t)i;
		check_known_answer(p, "aesenc256kl.fips197_c3", KLEMU_AESENC256KL, 256, k256, probe_fips_c1_pt,
				   fips_c3_ct);
		check_known_answer(p, "aesdec256kl.fips197_c3", KLEMU_AESDEC256KL, 256, k256, fips_c3_ct,
				   probe_fips_c1_pt);
	}
	check_roundtrip(p, 128);
	check_roundtrip(p, 256);
	if (wide_supported(p)) {
		check_wide(p, KLEMU_AESENCWIDE128KL);
		check_wide(p, KLEMU_AESDECWIDE128KL);
		check_wide(p, KLEMU_AESENCWIDE256KL);
		check_wide(p, KLEMU_AESDECWIDE256KL);
	} else {
		check_ud_all(p, "wide_absent", 1);
	}
	check_restrictions(p);
	check_bitflips(p, 128);
	check_bitflips(p, 256);
	check_integrity_misc(p);
	if (p->cpl > 0)
		check_signal_only(p, "loadiwkey.user", KLEMU_LOADIWKEY);
}

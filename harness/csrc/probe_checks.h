/*
 * The probe's checks: each runs KL instructions through a backend and
 * writes one observation object (raw facts, never a verdict) with a stable
 * id.  The list of ids is documented in docs/probe.md and validated by the
 * Python side (harness.kl.checks).
 */
#ifndef PROBE_CHECKS_H
#define PROBE_CHECKS_H

#include "klbackend.h"
#include "probe_cpu.h"
#include "probe_json.h"

struct probe_ctx {
	struct kl_backend be;
	const char *provenance; /* native | emulated | absent | advertised-unusable */
	struct probe_cpu cpu;   /* the CPU as the checks see it (virtual when emulated) */
	int kl_usable;          /* KL bit, AESKLE and a first ENCODEKEY128 that did not fault */
	int cpl;                /* privilege level the checks run at */
	uint32_t expected_dest; /* ENCODEKEY DEST for the loaded IWKey: the emulator's, or natively the
				 * first ENCODEKEY's if well-formed (UINT32_MAX: it was not) */
	struct json_writer *w;
	int count;              /* observations written */
};

/* Run every check that applies to ctx (writes array elements). */
void probe_run_checks(struct probe_ctx *p);

/* Encode the FIPS-197 C.1 key with no restrictions (used by backend
 * selection and by `handle save`).  Returns the outcome; handle gets 48 B. */
struct kl_outcome probe_encode128(const struct kl_backend *be, const uint8_t key[16],
				  uint32_t src, uint8_t handle[48], uint32_t *dest);
struct kl_outcome probe_aeskl(const struct kl_backend *be, enum klemu_op op,
			      const void *handle, uint8_t data[16]);

/* Start an observation object (id, provenance, op) and write the outcome
 * fields every instruction has (signal, zf, rflags). */
void probe_obs_begin(struct probe_ctx *p, const char *id, const char *op);
void probe_obs_outcome(struct probe_ctx *p, const struct kl_outcome *o);

extern const uint8_t probe_fips_c1_key[16], probe_fips_c1_pt[16], probe_fips_c1_ct[16];

#endif

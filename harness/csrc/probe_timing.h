/*
 * Cycle figures for the KL instructions and the same AES work with AES-NI,
 * measured in one run so their ratio is meaningful on a noisy machine:
 * pinned to one CPU, serialized TSC reads, a warm-up, many repetitions,
 * median and spread reported, and a run whose spread is too wide flagged.
 */
#ifndef PROBE_TIMING_H
#define PROBE_TIMING_H

#include "klemu.h"
#include "probe_json.h"

struct probe_timing_opts {
	int reps;  /* repetitions per figure (median over these) */
	int iters; /* instructions per repetition */
	int native_kl;           /* time the real instructions */
	struct klemu_ctx *emu;   /* or time the emulator (NULL: neither) */
	const char *provenance;  /* label for the KL figures */
};

void probe_timing_json(struct json_writer *w, const struct probe_timing_opts *opts);

#endif

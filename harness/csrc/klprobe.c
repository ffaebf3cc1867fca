/*
 * klprobe: exercise Intel Key Locker and report raw observations as JSON.
 *
 *   klprobe [run] [--backend auto|native|emulated] [--config PATH]
 *           [--no-timing] [--reps N] [--iters N] [--cpu N] [--trap]
 *   klprobe cpuid
 *   klprobe handle save FILE | handle check FILE   [backend options]
 *   klprobe vectors [--backend native|emulated] [--config PATH]  < ops.jsonl
 *
 * Backends: native (the real instructions), emulated (klemu, configured by
 * the VMM through fw_cfg / $KLEMU_CONFIG / --config).  `auto` picks native
 * when CPUID says KL and AESKLE and a first ENCODEKEY128 does not fault,
 * else emulated when a configuration is present, else the native "absent"
 * path, which checks that every KL instruction raises #UD.
 * --trap runs the native path under trap mode (klemu_trap.h): the real
 * instructions fault and klemu completes them; provenance "trapped".
 *
 * Exit codes: 0 document written; 2 bad usage or configuration (message on
 * stderr).  The probe never judges: pass/fail is decided in Python.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "klbackend.h"
#include "klemu.h"
#include "klemu_conf.h"
#include "klemu_trap.h"
#include "klvectors.h"
#include "probe_checks.h"
#include "probe_cpu.h"
#include "probe_handle.h"
#include "probe_json.h"
#include "probe_timing.h"

#define PROBE_SCHEMA "klharness.probe"
#define PROBE_SCHEMA_VERSION 1
#define PROBE_VERSION "0.1.0"



struct options {
	const char *command; /* run, cpuid, handle-save, handle-check, vectors */
	const char *file;
	const char *backend; /* auto, native, emulated */
	const char *config;
	int timing, reps, iters;
	int cpu; /* -1: any; else pin the whole probe to this CPU */
	int trap; /* native instructions completed by the SIGILL trap layer */
};

static void usage(void)
{
	fprintf(stderr,
		"usage: klprobe [run|cpuid|vectors|handle save FILE|handle check FILE]\n"
		"               [--backend auto|native|emulated] [--config PATH]\n"
		"               [--no-timing] [--reps N] [--iters N] [--cpu N] [--trap]\n");
	exit(2);
}

static void parse_args(int argc, char **argv, struct options *o)
{
	int i = 1;
	o->command = "run";
	o->backend = "auto";
	o->timing = 1;
	o->reps = 31;
	o->iters = 2000;
	o->cpu = -1;
	if (i < argc && argv[i][0] != '-') {
		const char *c = argv[i++];
		if (!strcmp(c, "handle")) {
			if (i + 1 >= argc) usage();
			const char *sub = argv[i++];
			if (!strcmp(sub, "save")) o->command = "handle-save";
			else if (!strcmp(sub, "check")) o->command = "handle-check";
			else usage();
			o->file = argv[i++];
		} else if (!strcmp(c, "run") || !strcmp(c, "cpuid") || !strcmp(c, "vectors")) {
			o->command = c;
		} else {
			fprintf(stderr, "klprobe: unknown command '%s'\n", c);
			usage();
		}
	}
	for (; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--backend") && i + 1 < argc) o->backend = argv[++i];
		else if (!strcmp(a, "--config") && i + 1 < argc) o->config = argv[++i];
		else if (!strcmp(a, "--no-timing")) o->timing = 0;
		else if (!strcmp(a, "--reps") && i + 1 < argc) o->reps = atoi(argv[++i]);
		else if (!strcmp(a, "--iters") && i + 1 < argc) o->iters = atoi(argv[++i]);
		else if (!strcmp(a, "--cpu") && i + 1 < argc) o->cpu = atoi(argv[++i]);
		else if (!strcmp(a, "--trap")) o->trap = 1;
		else {
			fprintf(stderr, "klprobe: unknown option '%s'\n", a);
			usage();
		}
	}
	if (strcmp(o->backend, "auto") && strcmp(o->backend, "native") && strcmp(o->backend, "emulated")) {
		fprintf(stderr, "klprobe: --backend must be auto, native or emulated (got '%s')\n", o->backend);
		exit(2);
	}
	if (o->trap && (!strcmp(o->backend, "emulated") || !strcmp(o->command, "vectors"))) {
		fprintf(stderr, "klprobe: --trap runs the native path: use it with run or handle and --backend native\n");
		exit(2);
	}
	if (o->reps < 3 || o->iters < 1) {
		fprintf(stderr, "klprobe: --reps must be >= 3 and --iters >= 1\n");
		exit(2);
	}
}

/* Everything the document says about how the probe chose to run. */
struct selection {
	struct probe_cpu hw;
	struct klemu_ctx *emu;       /* non-NULL for the emulated backend */
	const char *config_source;   /* where the emulator config came from */
	const char *reason;
	struct probe_ctx ctx;
};

static struct klemu_ctx emu_ctx; /* the emulator's explicit context */

static int load_emulator(const struct options *o, struct selection *s)
{
	struct klemu_conf conf;
	char err[512];
	const char *path = klemu_conf_locate(o->config);
	if (!path) {
		fprintf(stderr, "klprobe: emulated backend needs a configuration: none at --config, $%s or %s "
			"(the harness writes it; for a local run use 'klharness probe --local --emulate')\n",
			KLEMU_CONFIG_ENV, KLEMU_FWCFG_PATH);
		return -1;
	}
	if (klemu_conf_load(path, &conf, err, sizeof(err)) ||
	    klemu_conf_apply(&conf, &emu_ctx, err, sizeof(err))) {
		fprintf(stderr, "klprobe: emulator configuration: %s\n", err);
		return -1;
	}
	s->emu = &emu_ctx;
	s->config_source = path;
	return 0;
}

/* The CPU as the emulated guest sees it: hardware CPUID with the KL bit and
 * leaf 0x19 answered by the emulator's virtual CPU. */
static void emulated_view(const struct probe_cpu *hw, const struct klemu_ctx *emu, struct probe_cpu *out)
{
	uint32_t l19[4];
	*out = *hw;
	out->source_emulated = 1;
	out->leaf7.ecx = (hw->leaf7.ecx & ~KLEMU_CPUID7_ECX_KL) | klemu_cpuid7_ecx_kl(emu);
	if (emu->cpu.kl_present) {
		klemu_cpuid19(emu, l19);
		out->leaf19_present = 1;
		if (out->max_leaf < 0x19)
			out->max_leaf = 0x19;
		out->leaf19.eax = l19[0];
		out->leaf19.ebx = l19[1];
		out->leaf19.ecx = l19[2];
		out->leaf19.edx = l19[3];
	}
}

static int first_encode_ok(const struct kl_backend *be)
{
	uint8_t h[48];
	uint32_t d;
	return probe_encode128(be, probe_fips_c1_key, 0, h, &d).signal == 0;
}

static int select_backend(const struct options *o, struct selection *s)
{
	struct probe_ctx *p = &s->ctx;
	struct kl_backend native;
	memset(s, 0, sizeof(*s));
	probe_cpu_read(&s->hw);
	kl_backend_native(&native);
	int hw_kl = probe_cpu_kl(&s->hw), hw_aeskle = probe_cpu_aeskle(&s->hw);
	int native_ok = hw_kl && hw_aeskle && first_encode_ok(&native);
	int want_emu = !strcmp(o->backend, "emulated") ||
		       (!strcmp(o->backend, "auto") && !native_ok && klemu_conf_locate(o->config));

	p->cpl = 3;
	if (o->trap) {
		/* Trap mode: the native instructions run, fault, and the trap layer
		 * completes them on the context the emulated backend would use.
		 * Where the kernel offers CPUID faulting the trap answers CPUID too;
		 * elsewhere CPUID stays the hardware's and the CPU view comes from
		 * the configuration.  The backend reason says which applied. */
		if (hw_kl && hw_aeskle) {
			fprintf(stderr, "klprobe: --trap: this CPU runs Key Locker itself; nothing would trap\n");
			return -1;
		}
		if (load_emulator(o, s))
			return -1;
		if (klemu_trap_install_ctx(s->emu, s->config_source)) {
			fprintf(stderr, "klprobe: --trap: %s\n", klemu_trap_last_error());
			return -1;
		}
		p->be = native;
		int fault_errno = 0;
		if (klemu_trap_cpuid_faulting(&fault_errno)) {
			/* CPUID faults now and the trap answers it: read the CPU view
			 * the way an unmodified program would, through CPUID itself. */
			probe_cpu_read(&p->cpu);
			p->cpu.source_emulated = 1;
			s->reason = "trap mode: native instructions completed by the SIGILL trap layer; CPUID faulting "
				    "on: CPU view read with CPUID, answered by the trap";
		} else {
			static char why[192];
			emulated_view(&s->hw, s->emu, &p->cpu);
			snprintf(why, sizeof why,
				 "trap mode: native instructions completed by the SIGILL trap layer; no CPUID faulting "
				 "(%s): CPU view from the emulator configuration",
				 fault_errno ? strerrorname_np(fault_errno) : "not offered");
			s->reason = why;
		}
		p->provenance = "trapped";
		p->cpl = s->emu->cpu.cpl;
		p->expected_dest = (uint32_t)(s->emu->iwkey.nobackup | s->emu->iwkey.keysource << 1);
		p->kl_usable = probe_cpu_kl(&p->cpu) && probe_cpu_aeskle(&p->cpu) && first_encode_ok(&p->be);
		return 0;
	}
	if (want_emu) {
		if (load_emulator(o, s))
			return -1;
		kl_backend_emulated(&p->be, s->emu);
		emulated_view(&s->hw, s->emu, &p->cpu);
		p->provenance = "emulated";
		p->cpl = s->emu->cpu.cpl;
		p->expected_dest = (uint32_t)(s->emu->iwkey.nobackup | s->emu->iwkey.keysource << 1);
		p->kl_usable = probe_cpu_kl(&p->cpu) && probe_cpu_aeskle(&p->cpu) && first_encode_ok(&p->be);
		s->reason = !strcmp(o->backend, "emulated") ? "requested" : "KL not usable natively; emulator configured";
		return 0;
	}
	p->be = native;
	p->cpu = s->hw;
	p->kl_usable = native_ok;
	if (native_ok) {
		/* Whoever loaded the IWKey (a KL kernel, klhelper) chose NoBackup and KeySource; user
		 * space cannot read them, only see them in DEST.  Every ENCODEKEY under this IWKey must
		 * report the first one's DEST, and it may only hold NoBackup and KeySource 0 or 1. */
		uint8_t h[48];
		uint32_t d = 0;
		probe_encode128(&p->be, probe_fips_c1_key, 0, h, &d);
		p->expected_dest = (d & ~0x1fu) == 0 && (d >> 1) <= 1 ? d : UINT32_MAX;
		p->provenance = "native";
		s->reason = "CPUID KL and AESKLE set and ENCODEKEY128 ran";
	} else if (hw_kl) {
		p->provenance = "advertised-unusable";
		s->reason = hw_aeskle ? "CPUID says KL and AESKLE but ENCODEKEY128 faulted"
				      : "CPUID says KL but AESKLE=0 (CR4.KL clear or disabled by firmware)";
	} else {
		p->provenance = "absent";
		s->reason = "CPUID.(7,0):ECX[23]=0 and no emulator configured";
	}
	return 0;
}

static void write_header(struct json_writer *w, const struct selection *s)
{
	char boot[40] = "unknown";
	uint8_t id[16];
	if (!klemu_read_boot_id(id))
		for (int i = 0; i < 16; i++)
			sprintf(boot + 2 * i, "%02x", id[i]);
	json_kstr(w, "schema", PROBE_SCHEMA);
	json_kint(w, "schema_version", PROBE_SCHEMA_VERSION);
	json_kstr(w, "probe_version", PROBE_VERSION);
	json_kstr(w, "backend", s->ctx.provenance);
	json_kstr(w, "backend_reason", s->reason);
	json_kbool(w, "kl_usable", s->ctx.kl_usable);
	json_kint(w, "cpl", s->ctx.cpl);
	json_kstr(w, "boot_id", boot);
	json_key(w, "emulator");
	if (s->emu) {
		json_begin_object(w);
		json_kstr(w, "version", KLEMU_VERSION);
		json_kstr(w, "impl", klemu_impl_name());
		json_kstr(w, "config_source", s->config_source);
		json_end_object(w);
	} else {
		json_null(w);
	}
	json_key(w, "hardware_cpu");
	probe_cpu_json(w, &s->hw);
	json_key(w, "cpu");
	probe_cpu_json(w, &s->ctx.cpu);
}

static void write_emulator_stats(struct json_writer *w, const struct selection *s)
{
	if (!s->emu)
		return;
	json_key(w, "emulator_stats");
	json_begin_object(w);
	json_kuint(w, "unwraps", s->emu->stats_unwraps);
	json_kuint(w, "cache_hits", s->emu->stats_cache_hits);
	json_end_object(w);
}

int main(int argc, char **argv)
{
	struct options o = {0};
	struct selection s;
	struct json_writer w;
	int rc = 0;

	parse_args(argc, argv, &o);
	if (o.cpu >= 0) {
		/* e.g. check a handle on a hot-plugged vCPU: the IWKey is per CPU. */
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(o.cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set)) {
			fprintf(stderr, "klprobe: --cpu %d: cannot run there (offline or absent?)\n", o.cpu);
			return 2;
		}
	}
	if (!strcmp(o.command, "vectors")) {
		struct kl_backend be;
		if (!strcmp(o.backend, "native")) {
			kl_backend_native(&be);
			return kl_vectors_run(stdin, stdout, &be, NULL);
		}
		struct klemu_cpu cpu;
		klemu_cpu_tigerlake(&cpu);
		klemu_init(&emu_ctx, &cpu);
		if (o.config) {
			struct selection tmp;
			memset(&tmp, 0, sizeof(tmp));
			if (load_emulator(&o, &tmp))
				return 2;
		}
		kl_backend_emulated(&be, &emu_ctx);
		return kl_vectors_run(stdin, stdout, &be, &emu_ctx);
	}
	if (select_backend(&o, &s))
		return 2;
	if (!strcmp(o.command, "handle-save"))
		return probe_handle_save(&s.ctx, o.file) ? 1 : 0;

	json_init(&w, stdout);
	s.ctx.w = &w;
	json_begin_object(&w);
	write_header(&w, &s);
	json_key(&w, "observations");
	json_begin_array(&w);
	if (!strcmp(o.command, "run"))
		probe_run_checks(&s.ctx);
	else if (!strcmp(o.command, "handle-check"))
		rc = probe_handle_check(&s.ctx, o.file) ? 1 : 0;
	json_end_array(&w);
	json_key(&w, "timing");
	if (!strcmp(o.command, "run") && o.timing) {
		int trapped = o.trap; /* time the trapped instructions, not the emulator alone */
		struct probe_timing_opts t = {o.reps, o.iters, s.ctx.kl_usable && (!s.emu || trapped),
					      s.ctx.kl_usable && !trapped ? s.emu : NULL, s.ctx.provenance};
		probe_timing_json(&w, &t);
	} else {
		json_null(&w);
	}
	write_emulator_stats(&w, &s);
	/* Written last: a document without it was cut short. */
	json_kbool(&w, "complete", 1);
	json_end_object(&w);
	fflush(stdout);
	return rc;
}

/*
 * Raw CPUID as the probe reports it, plus the few derived bits the probe
 * needs to choose a backend.  The Python side (harness.kl.cpuid) decodes the
 * words by name; the probe reports words, not interpretations.
 */
#ifndef PROBE_CPU_H
#define PROBE_CPU_H

#include <stdint.h>

#include "probe_json.h"

struct cpuid_regs {
	uint32_t eax, ebx, ecx, edx;
};

struct probe_cpu {
	char vendor[13];
	int hypervisor; /* CPUID.1:ECX[31] */
	uint32_t max_leaf;
	struct cpuid_regs leaf1;
	struct cpuid_regs leaf7; /* subleaf 0; zero when max_leaf < 7 */
	int leaf19_present;      /* max_leaf >= 0x19 */
	struct cpuid_regs leaf19; /* zero when absent */
	int aesni;               /* CPUID.1:ECX[25] */
	int source_emulated;     /* leaf 7 bit 23 and leaf 0x19 come from klemu */
};

void probe_cpu_read(struct probe_cpu *cpu);
int probe_cpu_kl(const struct probe_cpu *cpu);     /* 7.0:ECX[23] */
int probe_cpu_aeskle(const struct probe_cpu *cpu); /* 0x19:EBX[0] */
void probe_cpu_json(struct json_writer *w, const struct probe_cpu *cpu);

#endif

#include "probe_cpu.h"

#include <cpuid.h>
#include <string.h>

static void cpuid(uint32_t leaf, uint32_t sub, struct cpuid_regs *r)
{
	__cpuid_count(leaf, sub, r->eax, r->ebx, r->ecx, r->edx);
}

void probe_cpu_read(struct probe_cpu *cpu)
{
	struct cpuid_regs r0;
	memset(cpu, 0, sizeof(*cpu));
	cpuid(0, 0, &r0);
	cpu->max_leaf = r0.eax;
	memcpy(cpu->vendor + 0, &r0.ebx, 4);
	memcpy(cpu->vendor + 4, &r0.edx, 4);
	memcpy(cpu->vendor + 8, &r0.ecx, 4);
	cpu->vendor[12] = 0;
	cpuid(1, 0, &cpu->leaf1);
	cpu->hypervisor = (cpu->leaf1.ecx >> 31) & 1;
	cpu->aesni = (cpu->leaf1.ecx >> 25) & 1;
	if (cpu->max_leaf >= 7)
		cpuid(7, 0, &cpu->leaf7);
	if (cpu->max_leaf >= 0x19) {
		cpu->leaf19_present = 1;
		cpuid(0x19, 0, &cpu->leaf19);
	}
}

int probe_cpu_kl(const struct probe_cpu *cpu) { return (cpu->leaf7.ecx >> 23) & 1; }

int probe_cpu_aeskle(const struct probe_cpu *cpu)
{
	return cpu->leaf19_present && (cpu->leaf19.ebx & 1);
}

static void regs_json(struct json_writer *w, const char *key, const struct cpuid_regs *r)
{
	json_key(w, key);
	json_begin_object(w);
	json_kuint(w, "eax", r->eax);
	json_kuint(w, "ebx", r->ebx);
	json_kuint(w, "ecx", r->ecx);
	json_kuint(w, "edx", r->edx);
	json_end_object(w);
}

void probe_cpu_json(struct json_writer *w, const struct probe_cpu *cpu)
{
	json_begin_object(w);
	json_kstr(w, "source", cpu->source_emulated ? "emulated" : "hardware");
	json_kstr(w, "vendor", cpu->vendor);
	json_kbool(w, "hypervisor", cpu->hypervisor);
	json_kuint(w, "max_leaf", cpu->max_leaf);
	json_kbool(w, "aesni", cpu->aesni);
	regs_json(w, "leaf7", &cpu->leaf7);
	if (cpu->leaf19_present)
		regs_json(w, "leaf19", &cpu->leaf19);
	else {
		json_key(w, "leaf19");
		json_null(w);
	}
	json_end_object(w);
}

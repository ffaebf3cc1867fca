#define _GNU_SOURCE
#include "probe_handle.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "klemu_conf.h"
#include "probe_guard.h"

static void hex_to_str(const uint8_t *b, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
	out[2 * n] = 0;
}

static int str_to_hex(const char *s, uint8_t *out, size_t n)
{
	if (strlen(s) != 2 * n)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		if (sscanf(s + 2 * i, "%2x", &v) != 1)
			return -1;
		out[i] = (uint8_t)v;
	}
	return 0;
}

static void boot_id_str(char out[40])
{
	uint8_t id[16];
	if (klemu_read_boot_id(id))
		strcpy(out, "unknown");
	else
		hex_to_str(id, 16, out);
}

int probe_handle_save(struct probe_ctx *p, const char *path)
{
	uint8_t handle[48], data[16];
	uint32_t dest;
	char hex[200], boot[40];
	struct kl_outcome o = probe_encode128(&p->be, probe_fips_c1_key, 0, handle, &dest);
	if (o.signal) {
		fprintf(stderr, "klprobe: handle save: ENCODEKEY128 raised %s (backend %s): KL is not usable here\n",
			probe_signal_name(o.signal), p->be.name);
		return -1;
	}
	memcpy(data, probe_fips_c1_pt, 16);
	o = probe_aeskl(&p->be, KLEMU_AESENC128KL, handle, data);
	if (o.signal || o.zf) {
		fprintf(stderr, "klprobe: handle save: a fresh handle was rejected (ZF=%d, %s)\n", o.zf,
			probe_signal_name(o.signal));
		return -1;
	}
	FILE *f = fopen(path, "w");
	if (!f) {
		fprintf(stderr, "klprobe: handle save: %s: %s\n", path, strerror(errno));
		return -1;
	}
	boot_id_str(boot);
	fprintf(f, "backend = %s\nbits = 128\n", p->be.name);
	hex_to_str(handle, 48, hex);
	fprintf(f, "handle = %s\n", hex);
	hex_to_str(probe_fips_c1_pt, 16, hex);
	fprintf(f, "plaintext = %s\n", hex);
	hex_to_str(data, 16, hex);
	fprintf(f, "ciphertext = %s\nboot_id = %s\n", hex, boot);
	if (fclose(f)) {
		fprintf(stderr, "klprobe: handle save: %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

int probe_handle_check(struct probe_ctx *p, const char *path)
{
	uint8_t handle[48], pt[16], ct[16], data[16];
	char line[256], saved_boot[64] = "", boot[40], backend[32] = "";
	int have = 0;
	FILE *f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "klprobe: handle check: %s: %s (run 'klprobe handle save %s' first)\n", path,
			strerror(errno), path);
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		char key[32], val[200];
		if (sscanf(line, " %31[a-z_] = %199s", key, val) != 2)
			continue;
		if (!strcmp(key, "handle") && !str_to_hex(val, handle, 48)) have |= 1;
		else if (!strcmp(key, "plaintext") && !str_to_hex(val, pt, 16)) have |= 2;
		else if (!strcmp(key, "ciphertext") && !str_to_hex(val, ct, 16)) have |= 4;
		else if (!strcmp(key, "boot_id")) snprintf(saved_boot, sizeof(saved_boot), "%s", val);
		else if (!strcmp(key, "backend")) snprintf(backend, sizeof(backend), "%s", val);
	}
	fclose(f);
	if (have != 7) {
		fprintf(stderr, "klprobe: handle check: %s: missing or malformed handle/plaintext/ciphertext\n", path);
		return -1;
	}
	memcpy(data, pt, 16);
	struct kl_outcome o = probe_aeskl(&p->be, KLEMU_AESENC128KL, handle, data);
	boot_id_str(boot);
	probe_obs_begin(p, "handle.check", "aesenc128kl");
	probe_obs_outcome(p, &o);
	json_key(p->w, "inputs");
	json_begin_object(p->w);
	json_kstr(p->w, "file", path);
	json_kstr(p->w, "saved_backend", backend);
	json_kstr(p->w, "saved_boot_id", saved_boot);
	json_end_object(p->w);
	json_key(p->w, "outputs");
	json_begin_object(p->w);
	json_khex(p->w, "out", data, 16);
	json_kstr(p->w, "boot_id", boot);
	json_end_object(p->w);
	json_key(p->w, "facts");
	json_begin_object(p->w);
	json_kbool(p->w, "handle_valid", !o.signal && !o.zf && !memcmp(data, ct, 16));
	json_kbool(p->w, "same_boot", !strcmp(boot, saved_boot));
	json_end_object(p->w);
	json_end_object(p->w);
	return 0;
}

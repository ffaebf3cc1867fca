#define _GNU_SOURCE
#include "klemu_conf.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define KNOWN_KEYS                                                             \
	"kl, aeskle, cr4_kl, cpl, leaf19_eax, leaf19_ebx, leaf19_ecx, secret, " \
	"boot_id, iwkey_integrity, iwkey_enc, keysource, host_id, random_file"

static int hexval(int c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

/* Parse exactly n bytes of hex, skipping '-' (so a UUID parses too). */
static int parse_hex(const char *s, unsigned char *out, size_t n)
{
	size_t got = 0;
	while (*s) {
		if (*s == '-') { s++; continue; }
		int hi = hexval(s[0]), lo = s[1] ? hexval(s[1]) : -1;
		if (hi < 0 || lo < 0 || got == n)
			return -1;
		out[got++] = (unsigned char)(hi << 4 | lo);
		s += 2;
	}
	return got == n ? 0 : -1;
}

static int parse_u32(const char *s, unsigned *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 0);
	if (errno || end == s || *end || v > 0xffffffffUL)
		return -1;
	*out = (unsigned)v;
	return 0;
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s)) s++;
	char *e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1])) *--e = 0;
	return s;
}

static int set_key(struct klemu_conf *c, const char *k, const char *v, char *err, size_t errlen, int line)
{
	unsigned u;
	if (!strcmp(k, "secret")) {
		if (parse_hex(v, c->secret, 32)) goto badhex32;
		c->have_secret = 1;
		return 0;
	}
	if (!strcmp(k, "host_id")) {
		if (parse_hex(v, c->host_id, 32)) goto badhex32;
		c->have_host_id = 1;
		return 0;
	}
	if (!strcmp(k, "random_file")) {
		if (v[0] != '/' || strlen(v) >= sizeof(c->random_file)) {
			snprintf(err, errlen, "line %d: random_file: need an absolute path", line);
			return -1;
		}
		snprintf(c->random_file, sizeof(c->random_file), "%s", v);
		return 0;
	}
	if (!strcmp(k, "boot_id")) {
		if (parse_hex(v, c->boot_id, 16)) {
			snprintf(err, errlen, "line %d: boot_id: not a UUID (use the form of /proc/sys/kernel/random/boot_id)", line);
			return -1;
		}
		c->have_boot_id = 1;
		return 0;
	}
	if (!strcmp(k, "iwkey_integrity")) {
		if (parse_hex(v, c->iwkey.integrity, 16)) {
			snprintf(err, errlen, "line %d: iwkey_integrity: need 32 hex digits", line);
			return -1;
		}
		c->have_iwkey_integrity = 1;
		return 0;
	}
	if (!strcmp(k, "iwkey_enc")) {
		if (parse_hex(v, c->iwkey.enc, 32)) goto badhex32;
		c->have_iwkey_enc = 1;
		return 0;
	}
	if (parse_u32(v, &u)) {
		snprintf(err, errlen, "line %d: %s: '%s' is not a number (use decimal or 0x hex)", line, k, v);
		return -1;
	}
	if (!strcmp(k, "kl")) c->cpu.kl_present = u != 0;
	else if (!strcmp(k, "aeskle")) c->cpu.aeskle_enabled = u != 0;
	else if (!strcmp(k, "cr4_kl")) c->cpu.cr4_kl = u != 0;
	else if (!strcmp(k, "cpl")) {
		if (u > 3) {
			snprintf(err, errlen, "line %d: cpl: %u is not a privilege level (0-3)", line, u);
			return -1;
		}
		c->cpu.cpl = (int)u;
	} else if (!strcmp(k, "keysource")) {
		if (u > 1) {
			snprintf(err, errlen, "line %d: keysource: %u is not 0 (software) or 1 (random)", line, u);
			return -1;
		}
		c->keysource = (int)u;
	} else if (!strcmp(k, "leaf19_eax")) c->cpu.leaf19_eax = u;
	else if (!strcmp(k, "leaf19_ebx")) c->cpu.leaf19_ebx = u;
	else if (!strcmp(k, "leaf19_ecx")) c->cpu.leaf19_ecx = u;
	else {
		snprintf(err, errlen, "line %d: unknown key '%s' (known: " KNOWN_KEYS ")", line, k);
		return -1;
	}
	return 0;
badhex32:
	snprintf(err, errlen, "line %d: %s: need 64 hex digits (32 bytes)", line, k);
	return -1;
}

int klemu_conf_parse(const char *text, struct klemu_conf *conf, char *err, size_t errlen)
{
	memset(conf, 0, sizeof(*conf));
	klemu_cpu_tigerlake(&conf->cpu);
	char *copy = strdup(text);
	if (!copy) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	int line = 0, rc = 0;
	/* strtok_r would skip empty lines and miscount; split by hand. */
	for (char *p = copy; p && rc == 0;) {
		char *nl = strchr(p, '\n');
		if (nl) *nl = 0;
		line++;
		char *hash = strchr(p, '#');
		if (hash) *hash = 0;
		char *s = trim(p);
		if (*s) {
			char *eq = strchr(s, '=');
			if (!eq) {
				snprintf(err, errlen, "line %d: expected 'key = value', got '%.40s'", line, s);
				rc = -1;
			} else {
				*eq = 0;
				rc = set_key(conf, trim(s), trim(eq + 1), err, errlen, line);
			}
		}
		p = nl ? nl + 1 : NULL;
	}
	free(copy);
	if (rc == 0 && !conf->random_file[0])
		snprintf(conf->random_file, sizeof(conf->random_file), "%s", KLEMU_RANDOM_FILE);
	if (rc == 0 && conf->keysource == 1 && !conf->have_host_id) {
		snprintf(err, errlen, "keysource = 1 needs host_id (the VMM's host identity)");
		rc = -1;
	}
	if (rc == 0 && conf->have_iwkey_integrity != conf->have_iwkey_enc) {
		snprintf(err, errlen, "iwkey_integrity and iwkey_enc must be given together");
		rc = -1;
	}
	return rc;
}

int klemu_conf_load(const char *path, struct klemu_conf *conf, char *err, size_t errlen)
{
	char buf[65536];
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	char inner[400];
	if (klemu_conf_parse(buf, conf, inner, sizeof(inner))) {
		snprintf(err, errlen, "%s: %s", path, inner);
		return -1;
	}
	return 0;
}

const char *klemu_conf_locate(const char *explicit_path)
{
	if (explicit_path)
		return explicit_path;
	const char *env = getenv(KLEMU_CONFIG_ENV);
	if (env && *env)
		return env;
	if (access(KLEMU_FWCFG_PATH, F_OK) == 0)
		return KLEMU_FWCFG_PATH;
	return NULL;
}

int klemu_read_boot_id(unsigned char out[16])
{
	char buf[64] = {0};
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	return parse_hex(trim(buf), out, 16);
}

/* The guest-local random component of a "random KeySource" IWKey: created
 * once per boot (tmpfs), readable by root only, never known to the VMM. */
static int random_component(const char *path, unsigned char out[32], char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (f) {
		size_t n = fread(out, 1, 32, f);
		fclose(f);
		if (n == 32)
			return 0;
	}
	char dir[256];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = 0;
		mkdir(dir, 0700);
	}
	if (getrandom(out, 32, 0) != 32) {
		snprintf(err, errlen, "getrandom failed for the random IWKey component");
		return -1;
	}
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0) {
		/* Another process created it first: use theirs. */
		f = fopen(path, "rb");
		if (f && fread(out, 1, 32, f) == 32) {
			fclose(f);
			return 0;
		}
		if (f)
			fclose(f);
		snprintf(err, errlen, "%s: cannot create the random IWKey component: %s", path, strerror(errno));
		return -1;
	}
	ssize_t w = write(fd, out, 32);
	close(fd);
	if (w != 32) {
		snprintf(err, errlen, "%s: short write", path);
		return -1;
	}
	return 0;
}

int klemu_conf_apply(const struct klemu_conf *conf, struct klemu_ctx *ctx, char *err, size_t errlen)
{
	struct klemu_iwkey key;
	klemu_init(ctx, &conf->cpu);
	if (conf->have_iwkey_integrity) {
		key = conf->iwkey;
	} else if (conf->have_secret) {
		unsigned char boot_id[16];
		if (conf->have_boot_id)
			memcpy(boot_id, conf->boot_id, 16);
		else if (klemu_read_boot_id(boot_id)) {
			snprintf(err, errlen, "cannot read /proc/sys/kernel/random/boot_id to derive the IWKey");
			return -1;
		}
		unsigned char secret[32];
		memcpy(secret, conf->secret, 32);
		if (conf->keysource == 1) {
			unsigned char rnd[32];
			if (random_component(conf->random_file, rnd, err, errlen))
				return -1;
			for (int i = 0; i < 32; i++)
				secret[i] ^= rnd[i] ^ conf->host_id[i];
		}
		klemu_derive_iwkey(secret, boot_id, &key);
		key.keysource = conf->keysource;
	} else {
		snprintf(err, errlen, "no key material: give 'secret' (per-VM) or 'iwkey_integrity' + 'iwkey_enc'");
		return -1;
	}
	klemu_set_iwkey(ctx, &key);
	return 0;
}

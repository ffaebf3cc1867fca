/*
 * The emulated VMM's hand-over: a small "key = value" text the harness
 * writes (per VM, delivered through fw_cfg `opt/klharness/klemu.conf`, or a
 * root-only file for local runs) and the guest-side emulator reads.
 *
 *   # comment
 *   kl = 1              CPUID.(7,0):ECX[23]
 *   aeskle = 1          firmware/VMM lets AESKLE read 1 (with CR4.KL)
 *   cr4_kl = 1          the (modelled) guest kernel set CR4.KL
 *   cpl = 3             privilege level the probe runs at (3 = user)
 *   leaf19_eax = 0x7    restriction support bits
 *   leaf19_ebx = 0x14   wide (bit 2), backup (bit 4); AESKLE is computed
 *   leaf19_ecx = 0x0    NoBackup (bit 0), random KeySource (bit 1)
 *   secret = <64 hex>   per-VM secret; IWKey = derive(secret, boot_id)
 *   boot_id = <uuid>    override /proc/sys/kernel/random/boot_id (tests)
 *   iwkey_integrity = <32 hex>, iwkey_enc = <64 hex>   an explicit IWKey
 *   keysource = 1      the (modelled) guest kernel loads a hardware-random
 *                      IWKey: a guest-local random component (created on
 *                      first use in random_file, 0600, gone at reboot) and the
 *                      VMM's host_id are mixed into the secret, so the VMM
 *                      cannot re-derive the key and it cannot follow the guest
 *                      to another host (the harness changes host_id there)
 *   host_id = <64 hex>  identity of the host the guest runs on (keysource 1)
 *   random_file = PATH  where the random component lives (default
 *                      /run/klemu/random)
 *
 * Unknown keys and malformed values are errors naming the line, so a typo
 * in the harness never silently yields a different virtual CPU.
 */
#ifndef KLEMU_CONF_H
#define KLEMU_CONF_H

#include <stddef.h>

#include "klemu.h"

#define KLEMU_FWCFG_PATH "/sys/firmware/qemu_fw_cfg/by_name/opt/klharness/klemu.conf/raw"
#define KLEMU_CONFIG_ENV "KLEMU_CONFIG"

struct klemu_conf {
	struct klemu_cpu cpu;
	int have_secret;
	unsigned char secret[32];
	int have_boot_id;
	unsigned char boot_id[16];
	int have_iwkey_integrity, have_iwkey_enc;
	struct klemu_iwkey iwkey;
	int keysource;              /* 0 software (derived), 1 random (guest-local + host) */
	int have_host_id;
	unsigned char host_id[32];
	char random_file[256];
};

#define KLEMU_RANDOM_FILE "/run/klemu/random"

/* Parse text (NUL-terminated).  Returns 0, or -1 with err filled
 * ("line 3: unknown key 'kll' (known: kl, aeskle, ...)"). */
int klemu_conf_parse(const char *text, struct klemu_conf *conf, char *err, size_t errlen);

/* Read and parse a file; the error names the path. */
int klemu_conf_load(const char *path, struct klemu_conf *conf, char *err, size_t errlen);

/* Where the configuration comes from, first match: explicit path, then
 * $KLEMU_CONFIG, then the fw_cfg file.  Returns NULL when none exists. */
const char *klemu_conf_locate(const char *explicit_path);

/* Read /proc/sys/kernel/random/boot_id as 16 raw bytes. */
int klemu_read_boot_id(unsigned char out[16]);

/* Build a ready context: CPU from conf, IWKey explicit or derived from the
 * secret and the boot id.  Returns -1 with err when no key material. */
int klemu_conf_apply(const struct klemu_conf *conf, struct klemu_ctx *ctx, char *err, size_t errlen);

#endif

/*
 * `klprobe handle save FILE` / `klprobe handle check FILE`: make a handle
 * now, test later (after reboot, save/restore, migration, hotplug, suspend)
 * whether the CPU still accepts it.  That is the whole lifecycle question
 * of Key Locker in a VM: does the guest's IWKey survive the event?
 *
 * The file is "key = value" text: backend, bits, handle, plaintext,
 * ciphertext, boot_id.  No secret is in it: a handle is useless without the
 * IWKey, and the AES key is the public FIPS-197 C.1 key.
 */
#ifndef PROBE_HANDLE_H
#define PROBE_HANDLE_H

#include "probe_checks.h"

/* Returns 0, or -1 with a message on stderr. */
int probe_handle_save(struct probe_ctx *p, const char *path);
/* Writes one observation `handle.check` (array element).  Returns 0, or -1
 * when the file cannot be read (message on stderr, nothing written). */
int probe_handle_check(struct probe_ctx *p, const char *path);

#endif

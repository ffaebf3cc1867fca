/*
 * The vectors tool: Key Locker instructions driven by JSON lines, one JSON
 * answer line per input line (`klprobe vectors`).  It lets Python (the
 * reference model, the lab) ask "what does this backend do for exactly
 * these inputs?" without a C test per question.
 *
 * Input: one flat JSON object per line; byte strings are lowercase hex in
 * memory byte order; every object may carry "id" (string or number), which
 * is echoed.  Ops:
 *   {"op":"cpu","kl":1,"cr4_kl":1,"aeskle":1,"cpl":3,
 *    "leaf19_eax":7,"leaf19_ebx":20,"leaf19_ecx":3}      (fields optional)
 *       -> {"op":"cpu","ok":true}
 *   {"op":"setiwkey","integrity":"<32 hex>","enc":"<64 hex>",
 *    "nobackup":0,"keysource":0}                    (VMM-side load, no checks)
 *       -> {"op":"setiwkey","ok":true}
 *   {"op":"loadiwkey","integrity":..,"enc":..,"eax":N}
 *       -> {"op":"loadiwkey","fault":null,"zf":0|1}
 *   {"op":"encodekey128"|"encodekey256","src":N,"key":"<32|64 hex>"}
 *       -> {"op":..,"fault":null,"handle":"<96|128 hex>","dest":N,"zf":0,
 *           "rflags":N}
 *   {"op":"aes{enc,dec}{128,256}kl","handle":"<96|128 hex>","data":"<32 hex>"}
 *       -> {"op":..,"fault":null,"zf":0|1,"out":"<32 hex>"}
 *   {"op":"aes{enc,dec}wide{128,256}kl","handle":..,"data":[8 x "<32 hex>"]}
 *       -> {"op":..,"fault":null,"zf":0|1,"out":[8 x "<32 hex>"]}
 * A faulting instruction answers {"op":..,"fault":"UD"|"GP"|"SIG..."} and
 * nothing else.  "rflags" is the arithmetic flags after the instruction;
 * every instruction starts with all of them set, so clearing is visible.
 * enc is EncKey[127:0] followed by EncKey[255:128] (KEYLOCKER.md section 4).
 * A malformed or invalid line answers {"line":N,"error":"..."} (plus "id"
 * when it could be read) and processing continues.  The handle must have
 * exactly the instruction's memory operand size (48 or 64 bytes).
 *
 * emu is the context behind an emulated backend; NULL for the native one,
 * where "setiwkey" loads the key through the ring-0 helper klhelper
 * (/sys/kernel/debug/klhelper/iwkey: LOADIWKEY on every CPU) and "cpu"
 * answers an error (a native CPU's shape is chosen when it is started).
 *
 * Returns 0 when every line was answered without an error object, 1 when
 * at least one line was an error, -1 when reading or writing failed.
 */
#ifndef KLVECTORS_H
#define KLVECTORS_H

#include <stdio.h>

#include "klbackend.h"

int kl_vectors_run(FILE *in, FILE *out, const struct kl_backend *be,
		   struct klemu_ctx *emu);

#endif /* KLVECTORS_H */

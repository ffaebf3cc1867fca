// SPDX-License-Identifier: GPL-2.0-only
/*
 * klhelper's ring-0 checks: what the Key Locker implementation under test (silicon, or a VMM
 * that emulates Key Locker) does with the instructions and MSRs only ring 0 can reach.
 *
 * /sys/kernel/debug/klhelper/ring0: write a command, read its result back (one "name: outcome"
 * line per item; outcomes are "ok", "ud", "nm", "gp" or "trapN"):
 *
 *   hidden      ACRN's hidden-Key-Locker list: setting CR4.KL, reading and writing (1) each of the
 *               four backup MSRs, and each of the eleven instructions.  On a CPU that hides Key
 *               Locker every item faults (#GP, #GP, #UD).  Run it only there, or with CR4.KL clear
 *               (probe_only=1): a CPU that runs Key Locker would execute the writes and LOADIWKEY.
 *   cr4kl-off   on the first CPU: clear CR4.KL, read AESKLE and run ENCODEKEY128, AESENC128KL and
 *               LOADIWKEY (each must #UD), set CR4.KL again and read AESKLE (must be 1).
 *   msr         the MSR access rules on a CPU with the backup MSRs: the copy MSRs are write-only,
 *               the status MSRs read-only, bits above bit 0 reserved.
 *   loadiwkey E LOADIWKEY of the current known key with EAX = E (hex) on the first CPU; prints
 *               the outcome and ZF.  It may replace that CPU's IWKey: load a key again afterwards.
 */
#include <linux/cpu.h>
#include <linux/debugfs.h>
#include <linux/kernel.h>
#include <linux/mutex.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/workqueue.h>

#include <asm/fpu/api.h>
#include <asm/msr.h>
#include <asm/processor.h>

#include "klhelper.h"

#define KLH_RING0_SIZE 4096
#define KLH_CR4_KL_BIT (1UL << 19)

static const char *const klh_insn_names[KLH_INSN_COUNT] = {
	"loadiwkey", "encodekey128", "encodekey256", "aesenc128kl", "aesdec128kl", "aesenc256kl",
	"aesdec256kl", "aesencwide128kl", "aesdecwide128kl", "aesencwide256kl", "aesdecwide256kl",
};

static const u32 klh_backup_msrs[] = { 0x990, 0x991, 0xd91, 0xd92 };

/* A handle of zeros: no instruction accepts it (ZF=1), so nothing but the checks runs. */
static const u8 klh_zero_handle[64] __aligned(16);

static struct {
	struct mutex *lock;
	const struct klh_key *key;
	const bool *key_known;
	char out[KLH_RING0_SIZE];
	size_t used;
} r0;

static void klh_say(const char *fmt, ...) __printf(1, 2);
static void klh_say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	r0.used += vscnprintf(r0.out + r0.used, KLH_RING0_SIZE - r0.used, fmt, ap);
	va_end(ap);
}

static const char *klh_trap_name(int trap, char *buf, size_t len)
{
	switch (trap) {
	case -1: return "ok";
	case 6: return "ud";
	case 7: return "nm";
	case 13: return "gp";
	}
	snprintf(buf, len, "trap%d", trap);
	return buf;
}

static void klh_say_trap(const char *name, int trap)
{
	char buf[16];

	klh_say("%s: %s\n", name, klh_trap_name(trap, buf, sizeof(buf)));
}

static void klh_say_msr(u32 msr, int rd_err, int wr_err)
{
	klh_say("msr %#x read: %s write: %s\n", msr, rd_err ? "gp" : "ok", wr_err ? "gp" : "ok");
}

/* ---- per-CPU work (work_on_cpu: process context on the first CPU) -------------------------- */

static long klh_cpu_hidden(void *arg)
{
	struct klh_insn_state st = { .handle = klh_zero_handle };
	int trap[KLH_INSN_COUNT], i, cr4_err, rd[ARRAY_SIZE(klh_backup_msrs)], wr[ARRAY_SIZE(klh_backup_msrs)];
	unsigned long flags, cr4;
	u32 lo, hi;

	local_irq_save(flags);
	cr4 = __read_cr4();
	cr4_err = klh_write_cr4_safe(cr4 | KLH_CR4_KL_BIT);
	if (!cr4_err)
		klh_write_cr4_safe(cr4);	/* it took: put CR4 back as it was */
	local_irq_restore(flags);
	for (i = 0; i < ARRAY_SIZE(klh_backup_msrs); i++) {
		rd[i] = rdmsr_safe(klh_backup_msrs[i], &lo, &hi);
		wr[i] = wrmsr_safe(klh_backup_msrs[i], 1, 0);
	}
	kernel_fpu_begin();
	for (i = 0; i < KLH_INSN_COUNT; i++)
		trap[i] = klh_try_insn(i, &st);
	kernel_fpu_end();

	klh_say_trap("cr4.kl", cr4_err ? 13 : -1);
	for (i = 0; i < ARRAY_SIZE(klh_backup_msrs); i++)
		klh_say_msr(klh_backup_msrs[i], rd[i], wr[i]);
	for (i = 0; i < KLH_INSN_COUNT; i++)
		klh_say_trap(klh_insn_names[i], trap[i]);
	return 0;
}

static long klh_cpu_cr4kl_off(void *arg)
{
	struct klh_insn_state st = { .handle = klh_zero_handle };
	int enc, aes, load, err;
	u32 off_ebx, on_ebx;
	unsigned long cr4;

	kernel_fpu_begin();	/* also keeps this CPU: the CR4 change never outlives this section */
	cr4 = __read_cr4();
	err = klh_write_cr4_safe(cr4 & ~KLH_CR4_KL_BIT);
	off_ebx = cpuid_ebx(0x19);
	enc = klh_try_insn(KLH_ENCODEKEY128, &st);
	aes = klh_try_insn(KLH_AESENC128KL, &st);
	load = klh_try_insn(KLH_LOADIWKEY, &st);
	klh_write_cr4_safe(cr4);
	on_ebx = cpuid_ebx(0x19);
	kernel_fpu_end();

	klh_say("clear: %s\n", err ? "gp" : "ok");
	klh_say("aeskle_cr4kl_clear: %u\n", off_ebx & 1);
	klh_say_trap("encodekey128", enc);
	klh_say_trap("aesenc128kl", aes);
	klh_say_trap("loadiwkey", load);
	klh_say("aeskle_cr4kl_set: %u\n", on_ebx & 1);
	return 0;
}

static long klh_cpu_msr_rules(void *arg)
{
	u32 lo, hi;

	klh_say("msr 0xd91 read: %s\n", rdmsr_safe(0xd91, &lo, &hi) ? "gp" : "ok");
	klh_say("msr 0xd92 read: %s\n", rdmsr_safe(0xd92, &lo, &hi) ? "gp" : "ok");
	klh_say("msr 0x990 write: %s\n", wrmsr_safe(0x990, 0, 0) ? "gp" : "ok");
	klh_say("msr 0x991 write: %s\n", wrmsr_safe(0x991, 0, 0) ? "gp" : "ok");
	klh_say("msr 0xd91 write 2: %s\n", wrmsr_safe(0xd91, 2, 0) ? "gp" : "ok");
	klh_say("msr 0xd92 write 1<<32: %s\n", wrmsr_safe(0xd92, 0, 1) ? "gp" : "ok");
	klh_say("msr 0xd92 write 0: %s\n", wrmsr_safe(0xd92, 0, 0) ? "gp" : "ok");
	return 0;
}

static long klh_cpu_loadiwkey(void *arg)
{
	struct klh_insn_state st = { .handle = klh_zero_handle, .eax = *(u32 *)arg };
	int trap;

	st.xmm[0] = r0.key->integrity;
	st.xmm[1] = r0.key->enc_lo;
	st.xmm[2] = r0.key->enc_hi;
	kernel_fpu_begin();
	trap = klh_try_insn(KLH_LOADIWKEY, &st);
	kernel_fpu_end();
	memzero_explicit(&st, sizeof(st));
	klh_say_trap("loadiwkey", trap);
	if (trap == -1)
		klh_say("zf: %u\n", st.zf);
	return 0;
}

/* ---- debugfs ------------------------------------------------------------------------------ */

static ssize_t klh_ring0_write(struct file *f, const char __user *ubuf, size_t count, loff_t *ppos)
{
	char buf[64], *cmd;
	long (*fn)(void *) = NULL;
	u32 eax = 0;

	if (count == 0 || count >= sizeof(buf))
		return -EINVAL;
	if (copy_from_user(buf, ubuf, count))
		return -EFAULT;
	buf[count] = '\0';
	cmd = strim(buf);
	if (!strcmp(cmd, "hidden"))
		fn = klh_cpu_hidden;
	else if (!strcmp(cmd, "cr4kl-off"))
		fn = klh_cpu_cr4kl_off;
	else if (!strcmp(cmd, "msr"))
		fn = klh_cpu_msr_rules;
	else if (!strncmp(cmd, "loadiwkey ", 10) && !kstrtou32(cmd + 10, 16, &eax))
		fn = klh_cpu_loadiwkey;
	else
		return -EINVAL;

	mutex_lock(r0.lock);
	if (fn == klh_cpu_loadiwkey && !*r0.key_known) {
		mutex_unlock(r0.lock);
		return -ENOKEY;		/* load a known key first (iwkey) */
	}
	r0.used = 0;
	r0.out[0] = '\0';
	cpus_read_lock();
	work_on_cpu(cpumask_first(cpu_online_mask), fn, &eax);
	cpus_read_unlock();
	mutex_unlock(r0.lock);
	return (ssize_t)count;
}

static ssize_t klh_ring0_read(struct file *f, char __user *ubuf, size_t count, loff_t *ppos)
{
	ssize_t ret;

	mutex_lock(r0.lock);
	ret = simple_read_from_buffer(ubuf, count, ppos, r0.out, r0.used);
	mutex_unlock(r0.lock);
	return ret;
}

static const struct file_operations klh_ring0_fops = {
	.owner = THIS_MODULE, .write = klh_ring0_write, .read = klh_ring0_read };

void klh_ring0_create(struct dentry *dir, struct mutex *lock, const struct klh_key *key, const bool *key_known)
{
	r0.lock = lock;
	r0.key = key;
	r0.key_known = key_known;
	debugfs_create_file("ring0", 0600, dir, NULL, &klh_ring0_fops);
}

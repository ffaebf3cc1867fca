// SPDX-License-Identifier: GPL-2.0-only
/*
 * klhelper - the ring-0 half of klharness's lab mode.
 *
 * User space cannot set CR4.KL, load an IWKey or touch the IWKey backup
 * MSRs; a stock kernel never does (KEYLOCKER.md section 6).  This module
 * does exactly that and nothing else, so the lab can run klprobe natively
 * with a *known* IWKey (silicon vs the emulator, bit for bit), back up and
 * restore the IWKey through the MSRs of section 5, and time each step.
 *
 * On load:
 *   - probe_only=1                     -> nothing is changed; only ring0 and status exist
 *                                         (the ring-0 checks of a CPU that hides Key Locker)
 *   - CPUID.(7,0):ECX[23]=0            -> -ENODEV ("Key Locker not enumerated")
 *   - the kernel already uses KL       -> -EBUSY unless force=1
 *     (CR4.KL set on any CPU, AESKLE=1, X86_FEATURE_KEYLOCKER, or an AES-KL
 *     crypto driver registered)
 *   - otherwise: CR4.KL on every online CPU, and (initial_key=1) one
 *     software-random IWKey loaded on every CPU and backed up to the platform,
 *     as the Linux KL series does.
 * Then, as that series does too (restore=1): a CPU that comes online (vCPU
 * hot-plug, the other CPUs after resume) gets CR4.KL and its IWKey from the
 * platform backup, and so does the boot CPU at resume from S3 (syscore ops),
 * because a CPU loses its IWKey there.  restore=0 leaves them without it.
 *
 * Interface, /sys/kernel/debug/klhelper/ (root only; see README.md):
 *   iwkey            w: "<96 hex> [nobackup] [keysource=0|1]" | "swrandom [nobackup]" | "random [nobackup]"
 *   backup           w: anything -> IA32_COPY_LOCAL_TO_PLATFORM; r: the last result (cycles)
 *   restore          w: anything -> IA32_COPY_PLATFORM_TO_LOCAL on every CPU; r: the last result
 *   status           r: CPUID, CR4.KL and IA32_COPY_STATUS per CPU, IA32_IWKEYBACKUP_STATUS, last results
 *   loadiwkey_bench  w: N -> N LOADIWKEYs of the current known key on one CPU; r: the last result
 *   ring0            w: hidden | cr4kl-off | msr | loadiwkey EAX; r: the outcome (klhelper_ring0.c)
 *
 * Kernel interfaces used, and why (checked against 6.1 and 6.12 headers):
 *   cr4_read_shadow(), cr4_set_bits_irqsoff()/cr4_clear_bits_irqsoff() -> the exported
 *   cr4_update_irqsoff(): they keep the per-CPU CR4 shadow (cpu_tlbstate.cr4) in step with the
 *   register, which context switches rewrite from the shadow - a bare "mov %cr4" would be
 *   undone at the next TSD/seccomp toggle.  Before that, CR4 is written once with an
 *   exception-table fixup, so a CPU (or hypervisor) that #GPs on CR4.KL yields -EIO, not an oops.
 *   LOADIWKEY is ".byte 0xf3,0x0f,0x38,0xdc,0xd1" (XMM0 integrity key, XMM1 EncKey[127:0],
 *   XMM2 EncKey[255:128], EAX control) between kernel_fpu_begin()/kernel_fpu_end(), also under
 *   an exception-table fixup (klhelper_insn.c: objtool cannot decode it).  Per-CPU work runs
 *   through work_on_cpu() under cpus_read_lock() (process context on the target CPU), never in
 *   IPIs where the FPU may be unusable.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cpu.h>
#include <linux/cpumask.h>
#include <linux/crypto.h>
#include <linux/debugfs.h>
#include <linux/kernel.h>
#include <linux/ktime.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/random.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/syscore_ops.h>
#include <linux/uaccess.h>
#include <linux/workqueue.h>

#include <asm/cpufeature.h>
#include <asm/msr.h>
#include <asm/processor.h>
#include <asm/tlbflush.h>
#include <asm/tsc.h>

#include "klhelper.h"

#define KLH_CR4_KL (1UL << 19)
#define KLH_CPUID7_ECX_KL (1U << 23)
#define KLH_L19_EBX_AESKLE (1U << 0)
#define KLH_L19_EBX_BACKUP (1U << 4)
#define KLH_L19_ECX_NOBACKUP (1U << 0)
#define KLH_L19_ECX_RANDOM (1U << 1)

#define MSR_KLH_COPY_LOCAL_TO_PLATFORM 0xd91
#define MSR_KLH_COPY_PLATFORM_TO_LOCAL 0xd92
#define MSR_KLH_COPY_STATUS 0x990
#define MSR_KLH_IWKEYBACKUP_STATUS 0x991

#define KLH_RANDOM_RETRIES 10		/* as Linux: KeySource=1 may report "no entropy" (ZF=1) */
#define KLH_COPY_POLL_NS (100 * NSEC_PER_MSEC) /* Linux polls the backup for ~0.1 s */
#define KLH_BENCH_MAX 1000000
#define KLH_BENCH_BATCH 1000
#define KLH_RESULT_SIZE 2048

static bool force;
module_param(force, bool, 0444);
MODULE_PARM_DESC(force, "load even if the kernel already uses Key Locker (replaces its IWKey: its handles die)");

static bool probe_only;
module_param(probe_only, bool, 0444);
MODULE_PARM_DESC(probe_only, "change nothing; offer only the ring0 checks and status (any CPU, KL or not)");

static bool initial_key = true;
module_param(initial_key, bool, 0444);
MODULE_PARM_DESC(initial_key, "load a software-random IWKey on every CPU at load time and back it up (default 1)");

static unsigned int initial_keysource;
module_param(initial_keysource, uint, 0444);
MODULE_PARM_DESC(initial_keysource, "KeySource of the initial key: 0 software-random (default), 1 hardware-random "
		 "(CPUID.(0x19,0):ECX[1]; loaded on one CPU, backed up, restored on the others)");

static bool restore = true;
module_param(restore, bool, 0444);
MODULE_PARM_DESC(restore, "restore the IWKey from the platform backup on CPUs that come online and at resume "
		 "(default 1, as the Linux KL series; 0 leaves such CPUs without it)");

struct klh_copy {
	int ok;
	int fault;
	unsigned int cpu;
	unsigned long polls;
	u64 cycles;
	u64 status_before;
	u64 status;
	u64 copy_status;	/* IA32_COPY_STATUS after a backup: 0 when the copy failed (a NoBackup key) */
};

static struct {
	struct mutex lock;
	struct dentry *dir;
	u32 l19_eax, l19_ebx, l19_ecx;
	cpumask_t cr4_set;	/* CPUs whose CR4.KL this module set (cleared again on unload) */
	struct klh_key key;	/* the current IWKey when known (zeroed on unload) */
	bool key_known;
	const char *key_origin; /* "none", "given", "swrandom", "random" */
	bool key_nobackup;
	unsigned int key_source;
	unsigned int load_failures;
	char last_backup[KLH_RESULT_SIZE];
	char last_restore[KLH_RESULT_SIZE];
	char last_bench[KLH_RESULT_SIZE];
	/* CPUs that came online and the last resume: written from hot-plug and syscore callbacks,
	 * which must not take klh.lock (its holders take cpus_read_lock), hence a spinlock. */
	spinlock_t events_lock;
	char last_events[KLH_RESULT_SIZE];
	size_t events_used;
	int cpuhp_state;
	bool syscore_registered;
} klh = {
	.lock = __MUTEX_INITIALIZER(klh.lock),
	.key_origin = "none",
	.events_lock = __SPIN_LOCK_UNLOCKED(klh.events_lock),
	.cpuhp_state = -1,
};

static u32 klh_eax(bool nobackup, unsigned int keysource)
{
	return (keysource << 1) | (nobackup ? 1 : 0);
}

/* ---- per-CPU work (run with work_on_cpu() on the target CPU) ------------------------------ */

static long klh_cpu_read_cr4(void *arg)
{
	*(unsigned long *)arg = __read_cr4();
	return 0;
}

static long klh_cpu_enable(void *arg)
{
	unsigned long flags;
	int err;

	local_irq_save(flags);
	err = klh_write_cr4_safe(cr4_read_shadow() | KLH_CR4_KL);
	if (!err)
		cr4_set_bits_irqsoff(KLH_CR4_KL); /* the shadow too, so context switches keep it */
	local_irq_restore(flags);
	return err;
}

static long klh_cpu_disable(void *arg)
{
	unsigned long flags;

	local_irq_save(flags);
	cr4_clear_bits_irqsoff(KLH_CR4_KL);
	local_irq_restore(flags);
	return 0;
}

struct klh_load {
	const struct klh_key *key;
	u32 eax;
	bool retry_zf;
};

static long klh_cpu_load(void *arg)
{
	struct klh_load *l = arg;
	int i, err = -EAGAIN;

	for (i = 0; i < (l->retry_zf ? KLH_RANDOM_RETRIES : 1) && err == -EAGAIN; i++)
		err = klh_loadiwkey(l->key, l->eax);
	return err;
}

/* Write 1 to a copy MSR, then poll bit 0 of a status MSR until it sets or the
 * poll window ends; backup and restore differ only in the two MSRs. */
static long klh_copy_and_poll(struct klh_copy *r, u32 copy_msr, u32 status_msr)
{
	u32 lo, hi;
	u64 t0;
	ktime_t deadline;

	t0 = rdtsc_ordered();
	if (wrmsr_safe(copy_msr, 1, 0))
		goto fault;
	deadline = ktime_add_ns(ktime_get(), KLH_COPY_POLL_NS);
	do {
		if (rdmsr_safe(status_msr, &lo, &hi))
			goto fault;
		r->polls++;
		if (lo & 1)
			break;
		cpu_relax();
	} while (ktime_before(ktime_get(), deadline));
	r->cycles = rdtsc_ordered() - t0;
	r->status = ((u64)hi << 32) | lo;
	r->ok = lo & 1;
	return r->ok ? 0 : -ETIMEDOUT;
fault:
	r->fault = 1;
	return -EIO;
}

static long klh_cpu_backup(void *arg)
{
	struct klh_copy *r = arg;
	u32 lo, hi;
	long err;

	r->cpu = smp_processor_id();
	if (rdmsr_safe(MSR_KLH_IWKEYBACKUP_STATUS, &lo, &hi)) {
		r->fault = 1;
		return -EIO;
	}
	r->status_before = ((u64)hi << 32) | lo;
	err = klh_copy_and_poll(r, MSR_KLH_COPY_LOCAL_TO_PLATFORM, MSR_KLH_IWKEYBACKUP_STATUS);
	/* 0x991 bit 0 may still say "valid" from an earlier backup: 0x990 tells whether this copy worked. */
	if (!rdmsr_safe(MSR_KLH_COPY_STATUS, &lo, &hi))
		r->copy_status = ((u64)hi << 32) | lo;
	return err;
}

static long klh_cpu_restore(void *arg)
{
	struct klh_copy *r = arg;

	r->cpu = smp_processor_id();
	return klh_copy_and_poll(r, MSR_KLH_COPY_PLATFORM_TO_LOCAL, MSR_KLH_COPY_STATUS);
}

struct klh_bench {
	const struct klh_key *key;
	u32 eax;
	unsigned long iters;
	unsigned long failures;
	u64 cycles;
	unsigned int cpu;
};

static long klh_cpu_bench(void *arg)
{
	struct klh_bench *b = arg;

	b->cpu = smp_processor_id();
	b->cycles = klh_loadiwkey_loop(b->key, b->eax, b->iters, KLH_BENCH_BATCH, &b->failures);
	return b->failures ? -EIO : 0;
}

/* ---- CPUs that come online, and resume -------------------------------------------------- */

static void klh_event(const char *fmt, ...) __printf(1, 2);
static void klh_event(const char *fmt, ...)
{
	unsigned long flags;
	va_list ap;

	spin_lock_irqsave(&klh.events_lock, flags);
	if (klh.events_used > KLH_RESULT_SIZE - 160)
		klh.events_used = 0; /* keep the newest lines */
	va_start(ap, fmt);
	klh.events_used += vscnprintf(klh.last_events + klh.events_used, KLH_RESULT_SIZE - klh.events_used, fmt, ap);
	va_end(ap);
	spin_unlock_irqrestore(&klh.events_lock, flags);
}

/* Restore this CPU's IWKey from the platform backup (IA32_COPY_PLATFORM_TO_LOCAL), and say how it went. */
static void klh_restore_here(const char *why)
{
	struct klh_copy c = {};

	if (!restore || !(klh.l19_ebx & KLH_L19_EBX_BACKUP)) {
		klh_event("%s cpu%u: IWKey not restored (%s)\n", why, smp_processor_id(),
			  restore ? "no backup MSRs" : "restore=0");
		return;
	}
	klh_cpu_restore(&c);
	klh_event("%s cpu%u: restore ok=%d fault=%d cycles=%llu polls=%lu status=%#llx\n", why, c.cpu, c.ok, c.fault,
		  c.cycles, c.polls, c.status);
}

/* cpuhp startup callback, on the CPU that comes online (vCPU hot-plug, or an AP after resume). */
static int klh_cpu_online(unsigned int cpu)
{
	unsigned long flags;
	int err;

	local_irq_save(flags);
	err = klh_write_cr4_safe(cr4_read_shadow() | KLH_CR4_KL);
	if (!err)
		cr4_set_bits_irqsoff(KLH_CR4_KL);
	local_irq_restore(flags);
	if (err) {
		klh_event("online cpu%u: setting CR4.KL faulted\n", cpu);
		return 0; /* the CPU comes up anyway, without Key Locker */
	}
	cpumask_set_cpu(cpu, &klh.cr4_set); /* cleared again on unload */
	klh_restore_here("online");
	return 0;
}

/* The boot CPU at resume from S3/S4: CR4 came back with the kernel's saved state, the IWKey did not. */
static void klh_resume(void)
{
	klh_restore_here("resume");
}

static struct syscore_ops klh_syscore_ops = { .resume = klh_resume };

/* ---- operations on every CPU (klh.lock held) ------------------------------------------- */

/* Load `key` on every online CPU; KeySource=1 is loaded on one CPU and copied to the others
 * through the platform backup, as Linux does (each CPU would otherwise draw its own key). */
static int klh_load_all(const struct klh_key *key, bool nobackup, unsigned int keysource, const char *origin)
{
	struct klh_load l = { .key = key, .eax = klh_eax(nobackup, keysource), .retry_zf = keysource == 1 };
	unsigned int cpu, first, failures = 0;
	int err = 0;

	cpus_read_lock();
	first = cpumask_first(cpu_online_mask);
	if (keysource == 1 && num_online_cpus() > 1 && (nobackup || !(klh.l19_ebx & KLH_L19_EBX_BACKUP))) {
		/* Nothing loaded yet: the current key (and what we know of it) stays. */
		cpus_read_unlock();
		pr_info("random KeySource on %u CPUs needs the backup MSRs and no NoBackup (copy to the other CPUs)\n",
			num_online_cpus());
		return -EINVAL;
	}
	for_each_online_cpu(cpu) {
		long r;

		if (keysource == 1 && cpu != first) {
			struct klh_copy c = {};

			r = work_on_cpu(cpu, klh_cpu_restore, &c);
		} else {
			r = work_on_cpu(cpu, klh_cpu_load, &l);
		}
		if (r) {
			failures++;
			pr_info("loading the IWKey on CPU %u failed (%ld)\n", cpu, r);
			err = err ?: (int)r;
		}
		if (keysource == 1 && cpu == first && !r) {
			struct klh_copy c = {};

			r = work_on_cpu(first, klh_cpu_backup, &c);
			if (r) {
				pr_info("backing up the random IWKey on CPU %u failed (%ld, status %#llx)\n",
					first, r, c.status);
				err = (int)r;
				goto out;
			}
		}
	}
out:
	cpus_read_unlock();
	klh.load_failures = failures;
	klh.key_known = !err && keysource == 0;
	klh.key_origin = err ? "unknown (a load failed)" : origin;
	klh.key_nobackup = nobackup;
	klh.key_source = keysource;
	if (klh.key_known)
		klh.key = *key;
	else
		memzero_explicit(&klh.key, sizeof(klh.key));
	return err;
}

static int klh_load_swrandom(bool nobackup)
{
	struct klh_key key;
	int err;

	get_random_bytes(&key, sizeof(key));
	err = klh_load_all(&key, nobackup, 0, "swrandom");
	memzero_explicit(&key, sizeof(key));
	return err;
}

static int klh_enable_all(void)
{
	unsigned int cpu;
	int err = 0;

	cpus_read_lock();
	for_each_online_cpu(cpu) {
		long r = work_on_cpu(cpu, klh_cpu_enable, NULL);

		if (r) {
			pr_err("setting CR4.KL on CPU %u faulted (%ld): the CPU or hypervisor refuses Key Locker\n",
			       cpu, r);
			err = -EIO;
			break;
		}
		cpumask_set_cpu(cpu, &klh.cr4_set);
	}
	cpus_read_unlock();
	return err;
}

static void klh_disable_all(void)
{
	unsigned int cpu;

	cpus_read_lock();
	for_each_cpu_and(cpu, &klh.cr4_set, cpu_online_mask)
		work_on_cpu(cpu, klh_cpu_disable, NULL);
	cpus_read_unlock();
	cpumask_clear(&klh.cr4_set);
}

/* Why the kernel is considered a Key Locker user (NULL: it is not). */
static const char *klh_kernel_uses_kl(char *buf, size_t len)
{
	unsigned int cpu;

	if (klh.l19_ebx & KLH_L19_EBX_AESKLE)
		return "AESKLE=1 (CPUID.(0x19,0):EBX[0]): CR4.KL is already set";
	cpus_read_lock();
	for_each_online_cpu(cpu) {
		unsigned long cr4 = 0;

		work_on_cpu(cpu, klh_cpu_read_cr4, &cr4);
		if (cr4 & KLH_CR4_KL) {
			cpus_read_unlock();
			snprintf(buf, len, "CR4.KL is already set on CPU %u", cpu);
			return buf;
		}
	}
	cpus_read_unlock();
#ifdef X86_FEATURE_KEYLOCKER
	if (boot_cpu_has(X86_FEATURE_KEYLOCKER))
		return "the kernel enabled X86_FEATURE_KEYLOCKER (the Key Locker series)";
#endif
#if IS_ENABLED(CONFIG_CRYPTO_AES_KL)
	if (crypto_has_alg("xts-aes-aeskl", 0, 0))
		return "the AES-KL crypto driver xts-aes-aeskl is registered";
#endif
	return NULL;
}

/* ---- debugfs -------------------------------------------------------------------------------- */

static ssize_t klh_read_text(char __user *ubuf, size_t count, loff_t *ppos, const char *text)
{
	return simple_read_from_buffer(ubuf, count, ppos, text, strlen(text));
}

static int klh_copy_cmd(char *buf, size_t size, const char __user *ubuf, size_t count)
{
	if (count == 0 || count >= size)
		return -EINVAL;
	if (copy_from_user(buf, ubuf, count))
		return -EFAULT;
	buf[count] = '\0';
	return 0;
}

/* "<96 hex> [nobackup] [keysource=0|1]" | "swrandom [nobackup]" | "random [nobackup]" */
static ssize_t klh_iwkey_write(struct file *f, const char __user *ubuf, size_t count, loff_t *ppos)
{
	char buf[256], *p, *tok, *first;
	struct klh_key key = {};
	bool nobackup = false;
	unsigned int keysource = 0;
	int err;

	err = klh_copy_cmd(buf, sizeof(buf), ubuf, count);
	if (err)
		return err;
	p = strim(buf);
	first = strsep(&p, " \t\n");
	while ((tok = strsep(&p, " \t\n"))) {
		if (!*tok)
			continue;
		if (!strcmp(tok, "nobackup"))
			nobackup = true;
		else if (!strncmp(tok, "keysource=", 10) && !kstrtouint(tok + 10, 0, &keysource) && keysource <= 1)
			continue;
		else
			return -EINVAL;
	}
	if (nobackup && !(klh.l19_ecx & KLH_L19_ECX_NOBACKUP))
		return -EOPNOTSUPP; /* LOADIWKEY would #GP: CPUID.(0x19,0):ECX[0]=0 */
	mutex_lock(&klh.lock);
	if (!strcmp(first, "swrandom")) {
		err = klh_load_swrandom(nobackup);
	} else if (!strcmp(first, "random")) {
		if (!(klh.l19_ecx & KLH_L19_ECX_RANDOM)) {
			err = -EOPNOTSUPP; /* CPUID.(0x19,0):ECX[1]=0: no hardware-random KeySource */
		} else {
			get_random_bytes(&key, sizeof(key));
			err = klh_load_all(&key, nobackup, 1, "random");
		}
	} else if (strlen(first) == 96 && !hex2bin(key.integrity.b, first, 16) &&
		   !hex2bin(key.enc_lo.b, first + 32, 16) && !hex2bin(key.enc_hi.b, first + 64, 16)) {
		if (keysource == 1 && !(klh.l19_ecx & KLH_L19_ECX_RANDOM))
			err = -EOPNOTSUPP;
		else
			err = klh_load_all(&key, nobackup, keysource, keysource ? "given+random" : "given");
	} else {
		err = -EINVAL;
	}
	mutex_unlock(&klh.lock);
	memzero_explicit(&key, sizeof(key));
	memzero_explicit(buf, sizeof(buf));
	return err ? err : (ssize_t)count;
}

static ssize_t klh_backup_write(struct file *f, const char __user *ubuf, size_t count, loff_t *ppos)
{
	struct klh_copy c = {};
	long r;

	if (!(klh.l19_ebx & KLH_L19_EBX_BACKUP))
		return -EOPNOTSUPP; /* CPUID.(0x19,0):EBX[4]=0: no backup MSRs */
	mutex_lock(&klh.lock);
	cpus_read_lock();
	r = work_on_cpu(cpumask_first(cpu_online_mask), klh_cpu_backup, &c);
	cpus_read_unlock();
	snprintf(klh.last_backup, sizeof(klh.last_backup),
		 "ok=%d fault=%d cpu=%u cycles=%llu polls=%lu status_before=%#llx status=%#llx copy_status=%#llx\n",
		 c.ok, c.fault, c.cpu, c.cycles, c.polls, c.status_before, c.status, c.copy_status);
	mutex_unlock(&klh.lock);
	return r == -EIO ? -EIO : (ssize_t)count; /* a timeout is a result, read it back */
}

static ssize_t klh_restore_write(struct file *f, const char __user *ubuf, size_t count, loff_t *ppos)
{
	unsigned int cpu, ok = 0, n = 0;
	u64 lo_cycles = U64_MAX, hi_cycles = 0;
	size_t used = 0;
	char *out = klh.last_restore;

	if (!(klh.l19_ebx & KLH_L19_EBX_BACKUP))
		return -EOPNOTSUPP;
	mutex_lock(&klh.lock);
	used += scnprintf(out + used, KLH_RESULT_SIZE - used, "per-cpu:\n");
	cpus_read_lock();
	for_each_online_cpu(cpu) {
		struct klh_copy c = {};

		work_on_cpu(cpu, klh_cpu_restore, &c);
		n++;
		ok += c.ok;
		if (c.ok) {
			lo_cycles = min(lo_cycles, c.cycles);
			hi_cycles = max(hi_cycles, c.cycles);
		}
		used += scnprintf(out + used, KLH_RESULT_SIZE - used,
				  "  cpu%u: ok=%d fault=%d cycles=%llu polls=%lu status=%#llx\n",
				  c.cpu, c.ok, c.fault, c.cycles, c.polls, c.status);
	}
	cpus_read_unlock();
	scnprintf(out + used, KLH_RESULT_SIZE - used, "ok=%u cpus=%u cycles_min=%llu cycles_max=%llu\n",
		  ok, n, ok ? lo_cycles : 0, hi_cycles);
	if (ok != n)
		klh.key_known = false; /* some CPU may now hold a different key */
	mutex_unlock(&klh.lock);
	return (ssize_t)count;
}

static ssize_t klh_bench_write(struct file *f, const char __user *ubuf, size_t count, loff_t *ppos)
{
	char buf[32];
	struct klh_bench b = {};
	unsigned long iters;
	long r;
	int err;

	err = klh_copy_cmd(buf, sizeof(buf), ubuf, count);
	if (err)
		return err;
	if (kstrtoul(strim(buf), 0, &iters) || iters == 0 || iters > KLH_BENCH_MAX)
		return -EINVAL;
	mutex_lock(&klh.lock);
	if (!klh.key_known) {
		/* Reloading an unknown (random) key is impossible: the bench would replace it. */
		mutex_unlock(&klh.lock);
		return -ENOKEY;
	}
	b.key = &klh.key;
	b.eax = klh_eax(klh.key_nobackup, 0);
	b.iters = iters;
	cpus_read_lock();
	r = work_on_cpu(cpumask_first(cpu_online_mask), klh_cpu_bench, &b);
	cpus_read_unlock();
	snprintf(klh.last_bench, sizeof(klh.last_bench),
		 "iters=%lu failures=%lu cpu=%u cycles=%llu cycles_per_op=%llu\n",
		 b.iters, b.failures, b.cpu, b.cycles, b.cycles / b.iters);
	mutex_unlock(&klh.lock);
	return r ? -EIO : (ssize_t)count;
}

static ssize_t klh_status_read(struct file *f, char __user *ubuf, size_t count, loff_t *ppos)
{
	char *out;
	size_t used = 0, size = 8192;
	unsigned int cpu;
	u32 lo = 0, hi = 0;
	ssize_t ret;

	out = kzalloc(size, GFP_KERNEL);
	if (!out)
		return -ENOMEM;
	mutex_lock(&klh.lock);
	used += scnprintf(out + used, size - used,
			  "cpuid.19: eax=%#x ebx=%#x ecx=%#x\nforce: %d\niwkey: %s nobackup=%d keysource=%u known=%d\n"
			  "load_failures: %u\n",
			  cpuid_eax(0x19), cpuid_ebx(0x19), cpuid_ecx(0x19), force, klh.key_origin, klh.key_nobackup,
			  klh.key_source, klh.key_known, klh.load_failures);
	if (klh.l19_ebx & KLH_L19_EBX_BACKUP) {
		if (rdmsr_safe(MSR_KLH_IWKEYBACKUP_STATUS, &lo, &hi))
			used += scnprintf(out + used, size - used, "iwkeybackup_status(0x991): fault\n");
		else
			used += scnprintf(out + used, size - used, "iwkeybackup_status(0x991): %#llx\n",
					  ((u64)hi << 32) | lo);
	}
	cpus_read_lock();
	for_each_online_cpu(cpu) {
		unsigned long cr4 = 0;
		int msr_err = -EOPNOTSUPP;

		work_on_cpu(cpu, klh_cpu_read_cr4, &cr4);
		if (klh.l19_ebx & KLH_L19_EBX_BACKUP)
			msr_err = rdmsr_safe_on_cpu(cpu, MSR_KLH_COPY_STATUS, &lo, &hi);
		used += scnprintf(out + used, size - used, "cpu%u: cr4.kl=%d copy_status(0x990)=", cpu,
				  !!(cr4 & KLH_CR4_KL));
		if (msr_err)
			used += scnprintf(out + used, size - used, "n/a\n");
		else
			used += scnprintf(out + used, size - used, "%#llx\n", ((u64)hi << 32) | lo);
	}
	cpus_read_unlock();
	used += scnprintf(out + used, size - used, "backup: %s", klh.last_backup[0] ? klh.last_backup : "none\n");
	used += scnprintf(out + used, size - used, "restore: %s", klh.last_restore[0] ? klh.last_restore : "none\n");
	used += scnprintf(out + used, size - used, "loadiwkey_bench: %s",
			  klh.last_bench[0] ? klh.last_bench : "none\n");
	spin_lock_irq(&klh.events_lock);
	used += scnprintf(out + used, size - used, "events:\n%s", klh.last_events);
	spin_unlock_irq(&klh.events_lock);
	mutex_unlock(&klh.lock);
	ret = simple_read_from_buffer(ubuf, count, ppos, out, used);
	kfree(out);
	return ret;
}

static ssize_t klh_backup_read(struct file *f, char __user *ubuf, size_t count, loff_t *ppos)
{
	return klh_read_text(ubuf, count, ppos, klh.last_backup[0] ? klh.last_backup : "none\n");
}

static ssize_t klh_restore_read(struct file *f, char __user *ubuf, size_t count, loff_t *ppos)
{
	return klh_read_text(ubuf, count, ppos, klh.last_restore[0] ? klh.last_restore : "none\n");
}

static ssize_t klh_bench_read(struct file *f, char __user *ubuf, size_t count, loff_t *ppos)
{
	return klh_read_text(ubuf, count, ppos, klh.last_bench[0] ? klh.last_bench : "none\n");
}

static const struct file_operations klh_iwkey_fops = { .owner = THIS_MODULE, .write = klh_iwkey_write };
static const struct file_operations klh_backup_fops = {
	.owner = THIS_MODULE, .write = klh_backup_write, .read = klh_backup_read };
static const struct file_operations klh_restore_fops = {
	.owner = THIS_MODULE, .write = klh_restore_write, .read = klh_restore_read };
static const struct file_operations klh_bench_fops = {
	.owner = THIS_MODULE, .write = klh_bench_write, .read = klh_bench_read };
static const struct file_operations klh_status_fops = { .owner = THIS_MODULE, .read = klh_status_read };

/* ---- load and unload -------------------------------------------------------------------------- */

static int __init klh_init(void)
{
	u32 eax, ebx, ecx, edx;
	char why_buf[64];
	const char *why;
	int err;

	if (probe_only) {
		if (cpuid_eax(0) >= 0x19)
			cpuid_count(0x19, 0, &klh.l19_eax, &klh.l19_ebx, &klh.l19_ecx, &edx);
		klh.dir = debugfs_create_dir("klhelper", NULL);
		if (IS_ERR_OR_NULL(klh.dir))
			return -ENODEV;
		debugfs_create_file("status", 0400, klh.dir, NULL, &klh_status_fops);
		klh_ring0_create(klh.dir, &klh.lock, &klh.key, &klh.key_known);
		pr_info("probe_only: nothing changed; ring-0 checks at /sys/kernel/debug/klhelper/ring0\n");
		return 0;
	}
	if (cpuid_eax(0) < 7 || !(cpuid_ecx(7) & KLH_CPUID7_ECX_KL)) {
		pr_info("Key Locker not enumerated (CPUID.(7,0):ECX[23]=0); not loading\n");
		return -ENODEV;
	}
	if (cpuid_eax(0) < 0x19) {
		pr_info("CPUID.(7,0):ECX[23]=1 but leaf 0x19 is beyond the maximum leaf %#x; not loading\n",
			cpuid_eax(0));
		return -ENODEV;
	}
	cpuid_count(0x19, 0, &eax, &ebx, &ecx, &edx);
	klh.l19_eax = eax;
	klh.l19_ebx = ebx;
	klh.l19_ecx = ecx;
	why = klh_kernel_uses_kl(why_buf, sizeof(why_buf));
	if (why && !force) {
		pr_info("the kernel already uses Key Locker (%s); not touching it (force=1 overrides and "
			"replaces the kernel's IWKey, killing its handles)\n", why);
		return -EBUSY;
	}
	if (why)
		pr_warn("force=1: the kernel already uses Key Locker (%s); its handles stop working now\n", why);
	err = klh_enable_all();
	if (err)
		goto undo;
	if (initial_key) {
		mutex_lock(&klh.lock);
		if (initial_keysource == 1 && (klh.l19_ecx & KLH_L19_ECX_RANDOM)) {
			struct klh_key key;

			get_random_bytes(&key, sizeof(key));
			err = klh_load_all(&key, false, 1, "random");
			memzero_explicit(&key, sizeof(key));
		} else if (initial_keysource != 0) {
			pr_err("initial_keysource=%u: only 0, or 1 where CPUID.(0x19,0):ECX[1]=1\n", initial_keysource);
			err = -EINVAL;
		} else {
			err = klh_load_swrandom(false);
		}
		if (!err && (klh.l19_ebx & KLH_L19_EBX_BACKUP)) {
			struct klh_copy c = {};

			cpus_read_lock();
			work_on_cpu(cpumask_first(cpu_online_mask), klh_cpu_backup, &c);
			cpus_read_unlock();
			snprintf(klh.last_backup, sizeof(klh.last_backup), "ok=%d fault=%d cpu=%u cycles=%llu polls=%lu "
				 "status_before=%#llx status=%#llx copy_status=%#llx (at load)\n", c.ok, c.fault, c.cpu,
				 c.cycles, c.polls, c.status_before, c.status, c.copy_status);
		}
		mutex_unlock(&klh.lock);
		if (err) {
			pr_err("loading a software-random IWKey failed (%d)\n", err);
			goto undo;
		}
	}
	/* CPUs that come online later: CR4.KL and the IWKey (the CPUs online now already have both). */
	err = cpuhp_setup_state_nocalls(CPUHP_AP_ONLINE_DYN, "klhelper:online", klh_cpu_online, NULL);
	if (err < 0) {
		pr_err("cannot register the CPU hot-plug callback (%d)\n", err);
		goto undo;
	}
	klh.cpuhp_state = err;
	register_syscore_ops(&klh_syscore_ops);
	klh.syscore_registered = true;
	klh.dir = debugfs_create_dir("klhelper", NULL);
	if (IS_ERR_OR_NULL(klh.dir)) {
		pr_warn("debugfs unavailable (%ld): Key Locker is enabled but there is no interface\n",
			PTR_ERR(klh.dir));
		klh.dir = NULL;
	} else {
		debugfs_create_file("iwkey", 0200, klh.dir, NULL, &klh_iwkey_fops);
		debugfs_create_file("backup", 0600, klh.dir, NULL, &klh_backup_fops);
		debugfs_create_file("restore", 0600, klh.dir, NULL, &klh_restore_fops);
		debugfs_create_file("loadiwkey_bench", 0600, klh.dir, NULL, &klh_bench_fops);
		debugfs_create_file("status", 0400, klh.dir, NULL, &klh_status_fops);
		klh_ring0_create(klh.dir, &klh.lock, &klh.key, &klh.key_known);
	}
	pr_info("Key Locker enabled: CR4.KL set on %u CPU(s); leaf 0x19 eax=%#x ebx=%#x ecx=%#x; IWKey %s; "
		"interface /sys/kernel/debug/klhelper/\n", cpumask_weight(&klh.cr4_set), cpuid_eax(0x19),
		cpuid_ebx(0x19), cpuid_ecx(0x19), klh.key_origin);
	return 0;
undo:
	klh_disable_all();
	memzero_explicit(&klh.key, sizeof(klh.key));
	return err;
}

static void __exit klh_exit(void)
{
	if (klh.syscore_registered)
		unregister_syscore_ops(&klh_syscore_ops);
	if (klh.cpuhp_state >= 0)
		cpuhp_remove_state_nocalls(klh.cpuhp_state);
	debugfs_remove_recursive(klh.dir);
	mutex_lock(&klh.lock);
	klh_disable_all();
	memzero_explicit(&klh.key, sizeof(klh.key));
	mutex_unlock(&klh.lock);
	pr_info("unloaded: CR4.KL cleared again on the CPUs this module set it on\n");
}

module_init(klh_init);
module_exit(klh_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("klharness lab helper: CR4.KL, LOADIWKEY, IWKey backup/restore and timing for Key Locker tests");
MODULE_AUTHOR("klharness");

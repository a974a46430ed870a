// SPDX-License-Identifier: GPL-2.0
/*
 * kq_kfence: ufence's test module for the real kernel KFENCE.
 *
 * Loaded in a QEMU guest booted with KFENCE enabled (kernel/boot-kfence.sh), it
 * makes KFENCE print one report of every bug type and leaves known leaks in
 * the pool, so ufence's kernel parsers are tested against real kernel output.
 *
 * KFENCE guards only sampled allocations, so every test first retries until
 * is_kfence_address() says the object is in the KFENCE pool (and, for
 * out-of-bounds tests, sits against the guard page on the wanted side).
 *
 * Every test function is noinline and not __init, so its name stays in the
 * stacks KFENCE prints and in the objects file after init memory is freed.
 * Before each bug the module logs "kq: expect <bug> in <function>", and the
 * leak loops log how many of their allocations are KFENCE objects: the
 * integration test checks what ufence parses against these lines.
 */
#include <linux/delay.h>
#include <linux/kfence.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/slab.h>

#define KQ_TRIES 4000          /* per guarded allocation; ~1.5 ms sleep each */
#define KQ_LEAK_MAX 4000       /* bound on leaked allocations per leak site */
#define KQ_PROBE_TRIES 50      /* allocations per skip_kfence probe */

static int leak_target = 32;   /* KFENCE objects to leak from kq_leak_site */
module_param(leak_target, int, 0444);
MODULE_PARM_DESC(leak_target, "KFENCE objects leaked from kq_leak_site");
static int minor_target = 8;   /* ... and from kq_leak_minor_site */
module_param(minor_target, int, 0444);
MODULE_PARM_DESC(minor_target, "KFENCE objects leaked from kq_leak_minor_site");

static struct kmem_cache *kq_cache;
static void *leaked[2 * KQ_LEAK_MAX];
static int nleaked;
static volatile char kq_sink;
static int expected;

enum kq_side { KQ_ANY, KQ_LEFT, KQ_RIGHT };

static bool kq_aligned(const char *p, size_t size, enum kq_side side)
{
	unsigned long start = (unsigned long)p;

	if (side == KQ_LEFT)
		return (start & ~PAGE_MASK) == 0;
	if (side == KQ_RIGHT)
		return ((start + size) & ~PAGE_MASK) == 0;
	return true;
}

static void kq_free(struct kmem_cache *cache, void *p)
{
	if (cache)
		kmem_cache_free(cache, p);
	else
		kfree(p);
}

/*
 * An object of @size from kmalloc (or @cache) that KFENCE guards, placed on
 * @side of its page; NULL if sampling never gave one. Sleeping between tries
 * lets KFENCE's sample timer reopen its allocation gate.
 */
static noinline char *kq_guarded(struct kmem_cache *cache, size_t size, enum kq_side side, const char *who)
{
	int tries;

	for (tries = 1; tries <= KQ_TRIES; tries++) {
		char *p = cache ? kmem_cache_alloc(cache, GFP_KERNEL) : kmalloc(size, GFP_KERNEL);

		if (p && is_kfence_address(p) && kq_aligned(p, size, side)) {
			pr_info("kq: %s: KFENCE object after %d tries\n", who, tries);
			return p;
		}
		if (p)
			kq_free(cache, p);
		usleep_range(1000, 2000);
	}
	pr_err("kq: %s: FAILED: no KFENCE object in %d tries\n", who, KQ_TRIES);
	return NULL;
}

static void kq_expect(const char *bug, const char *func)
{
	expected++;
	pr_info("kq: expect %s in %s\n", bug, func);
}

static noinline void kq_oob_read_left(void)
{
	char *p = kq_guarded(NULL, 32, KQ_LEFT, __func__);

	if (!p)
		return;
	OPTIMIZER_HIDE_VAR(p);
	kq_expect("out-of-bounds read", __func__);
	kq_sink = READ_ONCE(p[-1]);
	kfree(p);
}

static noinline void kq_oob_read_right(void)
{
	char *p = kq_guarded(NULL, 32, KQ_RIGHT, __func__);

	if (!p)
		return;
	OPTIMIZER_HIDE_VAR(p);
	kq_expect("out-of-bounds read", __func__);
	kq_sink = READ_ONCE(p[32]);
	kfree(p);
}

static noinline void kq_oob_write_left(void)
{
	char *p = kq_guarded(NULL, 64, KQ_LEFT, __func__);

	if (!p)
		return;
	OPTIMIZER_HIDE_VAR(p);
	kq_expect("out-of-bounds write", __func__);
	WRITE_ONCE(p[-3], 0x41);
	kfree(p);
}

static noinline void kq_oob_write_right(void)
{
	char *p = kq_guarded(NULL, 8, KQ_RIGHT, __func__);

	if (!p)
		return;
	OPTIMIZER_HIDE_VAR(p);
	kq_expect("out-of-bounds write", __func__);
	WRITE_ONCE(p[8], 0x42);
	kfree(p);
}

/* An object of our own cache, to get cache=kq_cache in a report. */
static noinline void kq_cache_oob_read(void)
{
	char *p = kq_guarded(kq_cache, 48, KQ_RIGHT, __func__);

	if (!p)
		return;
	OPTIMIZER_HIDE_VAR(p);
	kq_expect("out-of-bounds read", __func__);
	kq_sink = READ_ONCE(p[48]);
	kmem_cache_free(kq_cache, p);
}

static noinline void kq_uaf_read(void)
{
	char *p = kq_guarded(NULL, 32, KQ_ANY, __func__);

	if (!p)
		return;
	kfree(p);
	OPTIMIZER_HIDE_VAR(p);
	kq_expect("use-after-free read", __func__);
	kq_sink = READ_ONCE(p[5]);
}

static noinline void kq_uaf_write(void)
{
	char *p = kq_guarded(NULL, 32, KQ_ANY, __func__);

	if (!p)
		return;
	kfree(p);
	OPTIMIZER_HIDE_VAR(p);
	kq_expect("use-after-free write", __func__);
	WRITE_ONCE(p[7], 0x43);
}

/*
 * 13 bytes is not a multiple of kmalloc's 8-byte alignment, so p[13] lies in
 * the canary whether KFENCE placed the object left or right; the free finds it.
 */
static noinline void kq_corrupt_canary(void)
{
	char *p = kq_guarded(NULL, 13, KQ_ANY, __func__);

	if (!p)
		return;
	OPTIMIZER_HIDE_VAR(p);
	WRITE_ONCE(p[13], 0x78);
	WRITE_ONCE(p[15], 0x79);
	kq_expect("memory corruption", __func__);
	kfree(p);
}

static noinline void kq_invalid_free(void)
{
	char *p = kq_guarded(NULL, 32, KQ_ANY, __func__);

	if (!p)
		return;
	OPTIMIZER_HIDE_VAR(p);
	kq_expect("invalid free", __func__);
	kfree(p + 1);
	kfree(p);	/* KFENCE refused the bad pointer; this frees it for real */
}

static noinline void kq_double_free(void)
{
	char *p = kq_guarded(NULL, 32, KQ_ANY, __func__);

	if (!p)
		return;
	kfree(p);
	OPTIMIZER_HIDE_VAR(p);
	kq_expect("invalid free", __func__);	/* KFENCE calls a double free "invalid free" */
	kfree(p);
}

/*
 * Page 0 of the pool is a guard page that belongs to no object (object 0 is
 * on page 2), so KFENCE cannot blame anyone: "invalid read". __kfence_pool is
 * exported for is_kfence_address(); KFENCE unprotects the page after the report.
 */
static noinline void kq_invalid_access(void)
{
	char *pool = READ_ONCE(__kfence_pool);

	if (!pool) {
		pr_err("kq: kq_invalid_access: FAILED: no KFENCE pool\n");
		return;
	}
	OPTIMIZER_HIDE_VAR(pool);
	kq_expect("invalid read", __func__);
	kq_sink = READ_ONCE(pool[100]);
}

/* The leak: one distinctive allocation site whose objects are never freed. */
static noinline void *kq_leak_site(void)
{
	return kmalloc(64, GFP_KERNEL);
}

/* A smaller leak from another site (a bigger size class), to rank below. */
static noinline void *kq_leak_minor_site(void)
{
	return kmalloc(128, GFP_KERNEL);
}

/* Normal traffic at the same size: allocated and freed, so never a suspect. */
static noinline void kq_churn_site(void)
{
	void *p = kmalloc(64, GFP_KERNEL);

	OPTIMIZER_HIDE_VAR(p);
	kfree(p);
}

/* Leak from @site until @target of its objects are KFENCE objects. */
static noinline int kq_leak_loop(void *(*site)(void), int target, const char *name, int size)
{
	int allocs = 0, landed = 0;

	while (landed < target && allocs < KQ_LEAK_MAX) {
		void *p = site();

		if (!p)
			break;
		leaked[nleaked++] = p;
		allocs++;
		landed += is_kfence_address(p);
		kq_churn_site();
		kq_churn_site();
		usleep_range(1000, 2000);
	}
	pr_info("kq: leak: %d of %d kmalloc(%d) from %s are KFENCE objects\n", landed, allocs, size, name);
	return landed;
}

/*
 * /sys/module/kq_kfence/parameters/probe: writing 0 probes kq_cache, writing
 * N > 0 probes kmalloc(N): KQ_PROBE_TRIES allocations, each after a sleep
 * long enough for KFENCE's gate to reopen, and how many KFENCE guarded.
 * Reading gives the last result. This shows a cache's skip_kfence working.
 */
static char probe_result[64] = "none";

static int kq_probe_set(const char *val, const struct kernel_param *kp)
{
	int size, i, landed = 0, err = kstrtoint(val, 0, &size);

	if (err)
		return err;
	if (!kq_cache)
		return -ENODEV;	/* set at load time, before kq_init */
	if (size < 0 || size > 4096)
		return -EINVAL;
	for (i = 0; i < KQ_PROBE_TRIES; i++) {
		void *p;

		usleep_range(5000, 6000);	/* > one jiffy at HZ=250: the gate reopens */
		p = size ? kmalloc(size, GFP_KERNEL) : kmem_cache_alloc(kq_cache, GFP_KERNEL);
		landed += is_kfence_address(p);
		kq_free(size ? NULL : kq_cache, p);
	}
	if (size)
		snprintf(probe_result, sizeof(probe_result), "kmalloc(%d) %d/%d", size, landed, KQ_PROBE_TRIES);
	else
		snprintf(probe_result, sizeof(probe_result), "kq_cache %d/%d", landed, KQ_PROBE_TRIES);
	pr_info("kq: probe %s landed in KFENCE\n", probe_result);
	return 0;
}

static int kq_probe_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%s\n", probe_result);
}

static const struct kernel_param_ops kq_probe_ops = {
	.set = kq_probe_set,
	.get = kq_probe_get,
};
module_param_cb(probe, &kq_probe_ops, NULL, 0644);
MODULE_PARM_DESC(probe, "write 0 (kq_cache) or a kmalloc size: count KFENCE-guarded allocations");

static int __init kq_init(void)
{
	int leaks, minor;

	if (!READ_ONCE(__kfence_pool)) {
		pr_err("kq: KFENCE is not initialized; boot with kfence.sample_interval=N\n");
		return -ENODEV;
	}
	kq_cache = kmem_cache_create("kq_cache", 48, 0, SLAB_NO_MERGE, NULL);
	if (!kq_cache)
		return -ENOMEM;
	pr_info("kq: start\n");
	kq_oob_read_left();
	kq_oob_read_right();
	kq_oob_write_left();
	kq_oob_write_right();
	kq_cache_oob_read();
	kq_uaf_read();
	kq_uaf_write();
	kq_corrupt_canary();
	kq_invalid_free();
	kq_double_free();
	kq_invalid_access();
	leaks = kq_leak_loop(kq_leak_site, leak_target, "kq_leak_site", 64);
	minor = kq_leak_loop(kq_leak_minor_site, minor_target, "kq_leak_minor_site", 128);
	pr_info("kq: done: %d reports expected, %d + %d leaked KFENCE objects\n", expected, leaks, minor);
	return 0;
}

static void __exit kq_exit(void)
{
	while (nleaked)
		kfree(leaked[--nleaked]);
	kmem_cache_destroy(kq_cache);
}

module_init(kq_init);
module_exit(kq_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("ufence test module: triggers every KFENCE bug type and leaks objects");

/*
 * Batched revocation: revoke_batch=N > 1, guard=uffd only.
 *
 * A free normally takes the object's page away at once (UFFDIO_MOVE, or
 * MADV_DONTNEED), and taking away a page that another CPU may have in its
 * TLB costs a shootdown: with a second thread of the process running on
 * another CPU, an IPI per free, ~14 us here (a VM exit under Firecracker)
 * against ~2 us for the rest of the free. Two threads freeing on two CPUs
 * then run at a fraction of one thread's speed.
 *
 * With revoke_batch=N, while frees come from more than one CPU (below), a
 * freed object's page stays mapped, the object's own bytes overwritten with
 * the canary so all its check covers is canary, until N frees have collected (or
 * the oldest is REVOKE_AGE_NS old, seen at a later free or by the control
 * thread). Then each page of the batch is checked and all are dropped by
 * one process_madvise(MADV_DONTNEED): one flush for N frees. The slots go
 * to the quarantine as usual; the next allocation of one gets a fresh
 * canary page through the userfaultfd.
 *
 * The price, which is why the default is 1: during the window (at most N
 * frees or ~REVOKE_AGE_NS) a use-after-free read goes unseen, and a write is
 * caught late, at revocation, as a memory corruption of a freed object with
 * its allocation and free stacks, not at the faulting instruction. KFENCE on
 * x86 makes the same trade in the kernel: it flushes only the local TLB when
 * it protects a page and lets other CPUs use stale entries until they flush.
 */
#include <string.h>

#include "uf.h"

#define REVOKE_AGE_NS 100000000ull   /* 100 ms */

static uint32_t pending[UF_REVOKE_MAX];
static uint32_t npending;            /* pool lock */

/* Detach the whole batch (pool lock held). */
static uint32_t take_all(uint32_t *out)
{
	uint32_t n = npending;
	memcpy(out, pending, n * sizeof *out);
	npending = 0;
	return n;
}

static void report_late_write(uint32_t i, uintptr_t bad)
{
	struct uf_meta *m = &uf_pool.meta[i];
	struct uf_bug_info b;
	memset(&b, 0, sizeof b);
	b.bug = UF_BUG_CORRUPTION;
	b.access = -1;
	b.addr = bad;
	uintptr_t lo, hi;
	uf_canary_range(m, &lo, &hi);
	uf_canary_dump(bad, hi, &b);   /* to the end of what is checked */
	b.has_object = 1;
	b.slot = i;
	b.obj = *m;
	/* the write came after this free; the revoking thread's own stack says
	 * nothing about it */
	b.nframes = uf_depot_get(m->free_stack, b.frames, UF_MAX_FRAMES);
	if (b.nframes < 0)
		b.nframes = 0;
	b.after_free = 1;
	uf_report(&b);
}

/* Check and drop the pages of n freed slots, then queue the slots. */
static void revoke(const uint32_t *slots, uint32_t n)
{
	uintptr_t pages[UF_REVOKE_MAX] = {0};
	for (uint32_t k = 0; k < n; k++) {
		pages[k] = uf_slot_page(slots[k]);
		uintptr_t bad, lo, hi;
		uf_canary_range(&uf_pool.meta[slots[k]], &lo, &hi);
		if (uf_canary_scan(lo, hi, &bad))
			report_late_write(slots[k], bad);
	}
	/* a stray write between the check and the drop is lost with the page:
	 * the window is the length of this loop's system call */
	if (uf_guard_mech == UF_GUARD_UFFD) {
		uf_guard_discard_list(pages, n);
		uf_stat_add(UF_STAT_pages_revoked_batched, n);
	} else {
		/* demoted meanwhile: a dropped page would refill with zeros */
		for (uint32_t k = 0; k < n; k++)
			uf_guard_protect(pages[k], uf_pool.page);
	}
	uf_pool_lock();
	for (uint32_t k = 0; k < n; k++) {
		atomic_store(&uf_pool.meta[slots[k]].page,
			     uf_guard_mech == UF_GUARD_UFFD ? UF_PAGE_NONE : UF_PAGE_MARKED);
		uf_pool_requeue(slots[k]);
	}
	uf_pool_unlock();
	uf_stat_add(UF_STAT_pool_resident_bytes, -(int64_t)(n * uf_pool.page));
}

/* CPUs (bit cpu % 64) that freed in this ~1 ms epoch and the one before
 * (pool lock). Only frees made on several CPUs at once pay an IPI per
 * revocation, so only then is a batch worth its window: a single thread, or
 * threads sharing one CPU, keep immediate revocation (UFFDIO_MOVE, which
 * needs no system call at the next allocation, is also the cheaper path
 * there: ~10% a malloc+free). A thread that migrates leaves its old CPU in
 * the mask for up to 2 ms, which costs a few batched frees, nothing more. */
static uint64_t epoch, cur_cpus, prev_cpus;

int uf_revoke_wanted(uint64_t cpubit, uint64_t now_ns)
{
	uint64_t e = now_ns >> 20;
	if (e != epoch) {
		prev_cpus = e == epoch + 1 ? cur_cpus : 0;
		cur_cpus = 0;
		epoch = e;
	}
	cur_cpus |= cpubit;
	return ((cur_cpus | prev_cpus) & ~cpubit) != 0;
}

/* Slot i was just freed (state FREED, off every list, page present, its
 * slack checked). The caller holds no lock. */
void uf_revoke_defer(uint32_t i)
{
	struct uf_meta *m = &uf_pool.meta[i];
	uf_canary_fill(m->addr, m->addr + m->size);
	uint32_t batch[UF_REVOKE_MAX];
	uint32_t n = 0;
	uint64_t want = (uint64_t)uf_cur[UF_SET_revoke_batch].v;
	uf_pool_lock();
	pending[npending++] = i;
	if (npending >= want || npending >= UF_REVOKE_MAX ||
	    m->free_ns - uf_pool.meta[pending[0]].free_ns >= REVOKE_AGE_NS)
		n = take_all(batch);
	uf_pool_unlock();
	if (n)
		revoke(batch, n);
}

/* Revoke what is pending: all of it (force), or only if the oldest is past
 * its age (the control thread's periodic call). */
void uf_revoke_flush(int force)
{
	if (!__atomic_load_n(&npending, __ATOMIC_RELAXED))
		return;
	uint32_t batch[UF_REVOKE_MAX];
	uint32_t n = 0;
	uf_pool_lock();
	if (npending && (force || uf_now_ns() - uf_pool.meta[pending[0]].free_ns >= REVOKE_AGE_NS))
		n = take_all(batch);
	uf_pool_unlock();
	if (n)
		revoke(batch, n);
}

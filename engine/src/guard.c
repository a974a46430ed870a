/*
 * Guard pages. MADV_GUARD_INSTALL (Linux 6.13+) puts page-table markers that
 * fault on touch without splitting the VMA, so live objects are not limited
 * by vm.max_map_count; installing discards the page's contents. Older kernels
 * answer EINVAL and the engine falls back to mprotect (one VMA split per
 * protected page, ~32k live objects at most). Where userfaultfd can move
 * pages, object pages are recycled instead of discarded (uffd.c); guard
 * pages stay markers. `guard=` forces any of the three.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "uf.h"

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
#ifndef MADV_GUARD_REMOVE
#define MADV_GUARD_REMOVE 103
#endif

int uf_guard_mech;
uint32_t uf_guard_live_cap = UINT32_MAX;

/* mprotect splits the pool's mapping around every accessible object page:
 * about two VMAs per live guarded object, counted against vm.max_map_count,
 * which the program itself needs too (jemalloc in redis failed its own mmap
 * once the engine had taken them all). Keep a quarter of the limit, and at
 * least 4096 maps, for the program; past the cap allocations go to the next
 * allocator and count as skipped (capacity). Guard regions need no VMAs. */
static uint32_t mprotect_live_cap(void)
{
	long max = 65530;
	int fd = open("/proc/sys/vm/max_map_count", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		char buf[32];
		ssize_t n = read(fd, buf, sizeof buf - 1);
		close(fd);
		if (n > 0) {
			long v = 0;
			for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; i++)
				v = v * 10 + (buf[i] - '0');
			if (v > 0)
				max = v;
		}
	}
	long keep = max / 4 > 4096 ? max / 4 : 4096;
	long cap = (max - keep) / 2;
	return cap > 0 ? (uint32_t)cap : 0;
}

static int madv(uintptr_t a, size_t len, int advice)
{
	for (int tries = 0; tries < 100; tries++) {
		if (madvise((void *)a, len, advice) == 0)
			return 0;
		if (errno != EINTR && errno != EAGAIN)
			return -1;
	}
	return -1;
}

static int probe_madvise(void)
{
	size_t pg = uf_pool.page ? uf_pool.page : 4096;
	void *p = mmap(NULL, 2 * pg, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return 0;
	int ok = madv((uintptr_t)p, pg, MADV_GUARD_INSTALL) == 0 &&
		 mprotect(p, 2 * pg, PROT_READ | PROT_WRITE) == 0 &&
		 madv((uintptr_t)p, pg, MADV_GUARD_REMOVE) == 0;
	munmap(p, 2 * pg);
	return ok;
}

int uf_guard_init(int want)
{
	if ((want == 0 || want == 3) && probe_madvise() && uf_uffd_init() == 0) {
		uf_guard_mech = UF_GUARD_UFFD;
	} else if (want == 3) {
		static const char msg[] = "ufence: guard=uffd: userfaultfd with UFFDIO_MOVE and guard regions not available\n";
		uf_write_all(uf_proc.log_fd, msg, sizeof msg - 1);
		uf_guard_mech = 0;
		return -1;
	} else if (want != 2 && probe_madvise()) {
		uf_guard_mech = UF_GUARD_MADVISE;
	} else if (want == 1) {
		static const char msg[] = "ufence: guard=madvise: MADV_GUARD_INSTALL not supported by this kernel\n";
		uf_write_all(uf_proc.log_fd, msg, sizeof msg - 1);
		uf_guard_mech = 0;
		return -1;
	} else {
		uf_guard_mech = UF_GUARD_MPROTECT;
		uf_guard_live_cap = mprotect_live_cap();
	}
	uf_stat_set(UF_STAT_guard_mechanism, (uint64_t)uf_guard_mech);
	return 0;
}

int uf_guard_protect(uintptr_t a, size_t len)
{
	if (uf_guard_mech != UF_GUARD_MPROTECT)
		return madv(a, len, MADV_GUARD_INSTALL);
	return mprotect((void *)a, len, PROT_NONE);
}

int uf_guard_unprotect(uintptr_t a, size_t len)
{
	if (uf_guard_mech != UF_GUARD_MPROTECT)
		return madv(a, len, MADV_GUARD_REMOVE);
	return mprotect((void *)a, len, PROT_READ | PROT_WRITE);
}

/* Turn never-used PROT_NONE address space into slots. madvise: guard every
 * page first (markers persist across mprotect), then open the VMA, so there
 * is no moment where the new range is accessible. mprotect: nothing to do. */
int uf_guard_activate(uintptr_t a, size_t len)
{
	if (uf_guard_mech != UF_GUARD_MPROTECT) {
		if (madv(a, len, MADV_GUARD_INSTALL))
			return -1;
		if (mprotect((void *)a, len, PROT_READ | PROT_WRITE))
			return -1;
		/* uffd: registering makes a page-less slot fault; pool.c
		 * then takes the object pages' markers off in one batch */
		if (uf_guard_mech == UF_GUARD_UFFD && uf_uffd_register(a, len))
			uf_uffd_give_up();
		return 0;
	}
	return uf_guard_mech == UF_GUARD_MPROTECT ? 0 : -1;
}

/* drop a page (guard=uffd: the slot then faults through the userfaultfd) */
int uf_guard_discard(uintptr_t a, size_t len)
{
	return madv(a, len, MADV_DONTNEED);
}

/* One advice over many pages in a few process_madvise calls (Linux 6.13+
 * takes any advice for the caller's own process). page(k, arg) gives the
 * k-th page. Returns how many pages, from the first, took the advice. */
static uint32_t madvise_many(uintptr_t (*page)(uint32_t k, const void *arg), const void *arg,
			     uint32_t n, int advice)
{
#ifdef SYS_process_madvise
	/* a pidfd of the caller, opened now: one kept from before a fork (or a
	 * raw clone) would name the parent */
	int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
	if (pidfd < 0)
		return 0;
	struct iovec v[256];
	uint32_t done = 0;
	while (done < n) {
		uint32_t k = n - done < 256 ? n - done : 256;
		for (uint32_t j = 0; j < k; j++) {
			v[j].iov_base = (void *)page(done + j, arg);
			v[j].iov_len = uf_pool.page;
		}
		long r = syscall(SYS_process_madvise, pidfd, v, (size_t)k, advice, 0u);
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			break;
		}
		done += (uint32_t)((size_t)r / uf_pool.page);
		if ((size_t)r < (size_t)k * uf_pool.page)
			break;   /* partial: the rest did not take it */
	}
	close(pidfd);
	return done;
#else
	(void)page;
	(void)arg;
	(void)n;
	(void)advice;
	return 0;
#endif
}

struct strided {
	uintptr_t first;
	size_t stride;
};

static uintptr_t strided_page(uint32_t k, const void *arg)
{
	const struct strided *s = arg;
	return s->first + (uintptr_t)k * s->stride;
}

/* guard=uffd: take the markers off n pages `stride` bytes apart, from
 * `first`: ~0.16 us a page against ~0.9 us for one MADV_GUARD_REMOVE each
 * at first use. The pages must already be registered with the userfaultfd,
 * so with the marker gone they fault through it. Returns how many pages,
 * from the first, lost their marker. */
uint32_t uf_guard_unmark_many(uintptr_t first, size_t stride, uint32_t n)
{
	struct strided s = {first, stride};
	return madvise_many(strided_page, &s, n, MADV_GUARD_REMOVE);
}

static uintptr_t listed_page(uint32_t k, const void *arg)
{
	return ((const uintptr_t *)arg)[k];
}

/* Drop n listed pages with one TLB flush: process_madvise(MADV_DONTNEED)
 * over many ranges flushes once for all of them on the kernels measured
 * (6.18; one that flushed per range would be no worse than n madvise calls).
 * With another thread of the process running on another CPU a flush is an
 * IPI: ~14 us a page one call each, ~0.66 us a page 64 at a time. Pages the
 * call did not take are dropped one by one. */
void uf_guard_discard_list(const uintptr_t *pages, uint32_t n)
{
	uint32_t done = madvise_many(listed_page, pages, n, MADV_DONTNEED);
	for (uint32_t k = done; k < n; k++)
		uf_guard_discard(pages[k], uf_pool.page);
}

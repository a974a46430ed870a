/*
 * Page recycling with userfaultfd: guard=uffd, auto's first choice.
 *
 * With guard regions alone, a free costs MADV_GUARD_INSTALL, which throws the
 * object's page away (zap, TLB flush, free to the page allocator), and the
 * next allocation of the slot faults a new zeroed page in: about 7 us of
 * kernel work per guarded malloc+free on the machines measured
 * (bench/profile.md), most of it allocating, zeroing and freeing pages.
 *
 * Here the pool is registered with a userfaultfd in missing mode with
 * UFFD_FEATURE_SIGBUS, so an object page that has no page behind it faults
 * (SIGBUS, BUS_ADRERR) instead of being filled with zeros: a slot without a
 * page is as inaccessible as a guarded one. A free then takes the object's
 * page away with one UFFDIO_MOVE (Linux 6.8+) into the slot that will be
 * allocated next, and that allocation needs no system call at all. Guard
 * pages between the slots stay MADV_GUARD_INSTALL markers (Linux 6.13+).
 *
 * Safety:
 * - A descriptor acts on the mm that created it. A child made by fork() gets
 *   its own in the atfork child handler (the kernel drops the child's
 *   registrations, as we do not ask for UFFD_FEATURE_EVENT_FORK). A child made
 *   without the handlers (_Fork, a raw clone) would move its parent's pages
 *   through the inherited descriptor, so every call first reads a
 *   MADV_WIPEONFORK word that only the owning process sees nonzero; a process
 *   that does not own the descriptor drops to plain guard regions.
 * - Kernel accesses to a page that is not there (a syscall handed a freed
 *   buffer) fail with EFAULT, as they do on guard markers.
 * - Any refusal (the page is shared with a child after fork, pinned, or the
 *   target already has a page) is answered by the caller with MADV_DONTNEED
 *   and a fresh page later: slower, never wrong. A descriptor that stops
 *   working (the program closed it) demotes the engine to guard regions.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "uf.h"

/* newer than the build machine's headers may be */
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16)
#endif
#ifndef _UFFDIO_MOVE
#define _UFFDIO_MOVE 0x05
#endif
struct uf_uffdio_move {
	uint64_t dst, src, len, mode;
	int64_t move;
};
#define UF_UFFDIO_MOVE _IOWR(UFFDIO, _UFFDIO_MOVE, struct uf_uffdio_move)
#define UF_MOVE_DONTWAKE 1ull
#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#endif

static int uffd = -1;
static volatile uint32_t *owner_word;   /* MADV_WIPEONFORK: 0 in a child */

static int open_uffd(void)
{
	/* unprivileged processes may only ask for user-mode faults
	 * (vm.unprivileged_userfaultfd=0); kernel-mode faults then give
	 * SIGBUS/EFAULT all the same */
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (fd < 0)
		return -1;
	struct uffdio_api api;
	memset(&api, 0, sizeof api);
	api.api = UFFD_API;
	api.features = UFFD_FEATURE_SIGBUS | UFFD_FEATURE_MOVE;
	if (ioctl(fd, UFFDIO_API, &api) || !(api.features & UFFD_FEATURE_MOVE) ||
	    !(api.features & UFFD_FEATURE_SIGBUS)) {
		close(fd);
		return -1;
	}
	/* keep it out of the program's low descriptors (and of close(3..9)
	 * loops that run before exec) */
	int hi = fcntl(fd, F_DUPFD_CLOEXEC, 512);
	if (hi >= 0) {
		close(fd);
		fd = hi;
	}
	return fd;
}

static int move(int fd, uintptr_t dst, uintptr_t src, size_t len)
{
	struct uf_uffdio_move m = {dst, src, len, UF_MOVE_DONTWAKE, 0};
	for (int tries = 0; tries < 100; tries++) {
		if (ioctl(fd, UF_UFFDIO_MOVE, &m) == 0)
			return 0;
		if (errno != EAGAIN && errno != EINTR)
			return errno;
		if (m.move > 0)
			return EIO;      /* partial: never for one page */
	}
	return EAGAIN;
}

static int do_register(int fd, uintptr_t a, size_t len)
{
	struct uffdio_register r;
	memset(&r, 0, sizeof r);
	r.range.start = a;
	r.range.len = len;
	r.mode = UFFDIO_REGISTER_MODE_MISSING;
	return ioctl(fd, UFFDIO_REGISTER, &r) ? -1 : 0;
}

/* Does moving a page, and faulting on a moved-away one, work here? */
static int probe(int fd)
{
	size_t pg = uf_pool.page ? uf_pool.page : 4096;
	char *p = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 0;
	int ok = 0;
	p[0] = 0x5a;            /* before registering: a missing page would fault */
	if (do_register(fd, (uintptr_t)p, 2 * pg) == 0) {
		ok = move(fd, (uintptr_t)p + pg, (uintptr_t)p, pg) == 0 && p[pg] == 0x5a;
		struct uffdio_range r = {(uintptr_t)p, 2 * pg};
		ioctl(fd, UFFDIO_UNREGISTER, &r);
	}
	munmap(p, 2 * pg);
	return ok;
}

int uf_uffd_init(void)
{
	if (!owner_word) {
		void *w = mmap(NULL, uf_pool.page ? uf_pool.page : 4096, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (w == MAP_FAILED || madvise(w, uf_pool.page ? uf_pool.page : 4096, MADV_WIPEONFORK))
			return -1;
		owner_word = w;
	}
	int fd = open_uffd();
	if (fd < 0)
		return -1;
	if (!probe(fd)) {
		close(fd);
		return -1;
	}
	uffd = fd;
	*owner_word = 1;
	return 0;
}

/* The descriptor is ours to use: created by this process, still open. */
static int usable(void)
{
	return uffd >= 0 && owner_word && *owner_word;
}

/* plain guard regions from now on: pages already moved stay valid, slots
 * without a page are simply re-guarded or refilled by the madvise path */
void uf_uffd_give_up(void)
{
	__atomic_store_n(&uf_guard_mech, UF_GUARD_MADVISE, __ATOMIC_RELAXED);
	uf_stat_set(UF_STAT_guard_mechanism, UF_GUARD_MADVISE);
}

int uf_uffd_register(uintptr_t a, size_t len)
{
	if (!usable())
		return -1;
	return do_register(uffd, a, len);
}

int uf_uffd_move(uintptr_t dst, uintptr_t src, size_t len)
{
	if (!usable()) {
		uf_uffd_give_up();
		return EPERM;
	}
	int e = move(uffd, dst, src, len);
	/* the descriptor is gone (the program closed it, and with it our
	 * registration): guard regions from here on. Other errors are per page. */
	if (e == EBADF || e == ENOTTY)
		uf_uffd_give_up();
	return e;
}

/* a fresh page with the contents of src (the canary pattern) */
int uf_uffd_fill(uintptr_t dst, const void *src, size_t len)
{
	if (!usable()) {
		uf_uffd_give_up();
		return EPERM;
	}
	struct uffdio_copy c;
	for (int tries = 0; tries < 100; tries++) {
		memset(&c, 0, sizeof c);
		c.dst = dst;
		c.src = (uintptr_t)src;
		c.len = len;
		c.mode = UFFDIO_COPY_MODE_DONTWAKE;
		if (ioctl(uffd, UFFDIO_COPY, &c) == 0)
			return 0;
		if (errno != EAGAIN && errno != EINTR)
			break;
	}
	int e = errno;
	if (e == EBADF || e == ENOTTY)
		uf_uffd_give_up();
	return e;
}

/* the zero page (a later write copies it as usual): opening a page after a
 * report, from the signal handler. Async-signal-safe. */
int uf_uffd_zero(uintptr_t dst, size_t len)
{
	if (!usable())
		return EPERM;
	struct uffdio_zeropage z;
	memset(&z, 0, sizeof z);
	z.range.start = dst;
	z.range.len = len;
	z.mode = UFFDIO_ZEROPAGE_MODE_DONTWAKE;
	return ioctl(uffd, UFFDIO_ZEROPAGE, &z) ? errno : 0;
}

/* fork(): the child's pool is no longer registered and its inherited
 * descriptor acts on the parent; make it its own, or give up on it. */
void uf_uffd_atfork_child(void)
{
	if (uffd < 0)
		return;
	close(uffd);
	uffd = -1;
	int fd = open_uffd();
	if (fd >= 0 && (uf_pool.active_end == uf_pool.base ||
			do_register(fd, uf_pool.base, uf_pool.active_end - uf_pool.base) == 0)) {
		uffd = fd;
		*owner_word = 1;
		return;
	}
	if (fd >= 0)
		close(fd);
	uf_uffd_give_up();
}

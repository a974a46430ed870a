/*
 * The malloc family. Every entry point is one predictable branch on uf_gate
 * when the engine is off; free() and friends are one range compare
 * (uf_owns). Everything not guarded goes to the next allocator in link order
 * (dlsym(RTLD_NEXT)), so the engine stacks on glibc, jemalloc or tcmalloc.
 *
 * Before dlsym has answered (and while it runs, since dlsym itself may
 * allocate), allocations come from a bump arena that lives inside the
 * engine's reserved range, so free() recognises it with the same compare.
 */
#include <dlfcn.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "uf.h"

#define RA() ((uintptr_t)__builtin_return_address(0))
#define FA() ((uintptr_t)__builtin_frame_address(0))

/* ---- bootstrap: first calls resolve the next allocator ---- */
static void *boot_malloc(size_t n);
static void boot_free(void *p);
static void *boot_calloc(size_t n, size_t m);
static void *boot_realloc(void *p, size_t n);
static void *boot_memalign(size_t a, size_t n);

struct uf_real uf_real = {
	.malloc = boot_malloc,
	.free = boot_free,
	.calloc = boot_calloc,
	.realloc = boot_realloc,
	.memalign = boot_memalign,
};

static _Atomic int resolve_state;     /* 0 none, 1 running, 2 done */
static __thread int resolving_here __attribute__((tls_model("initial-exec")));

/* arena: [range_base, range_base + UF_ARENA_SIZE), see pool.c */
extern char *uf_arena_base;
extern size_t uf_arena_size;
static _Atomic size_t arena_used;

static void *arena_alloc(size_t n, size_t align)
{
	if (!uf_arena_base)
		uf_pool_reserve();
	if (align < 16)
		align = 16;
	for (;;) {
		size_t old = atomic_load(&arena_used);
		size_t start = (old + 16 + align - 1) & ~(align - 1);
		size_t end = start + ((n + 15) & ~(size_t)15);
		if (end > uf_arena_size || end < start)
			return NULL;
		if (atomic_compare_exchange_weak(&arena_used, &old, end)) {
			((size_t *)(uf_arena_base + start))[-1] = n;
			return uf_arena_base + start;
		}
	}
}

int uf_arena_owns(const void *p)
{
	return uf_arena_base && (uintptr_t)p - (uintptr_t)uf_arena_base < uf_arena_size;
}

static size_t arena_size_of(const void *p)
{
	return ((const size_t *)p)[-1];
}

#define RESOLVE(field, name)                                                 \
	do {                                                                 \
		void *s = dlsym(RTLD_NEXT, name);                            \
		if (s)                                                       \
			memcpy(&r.field, &s, sizeof s);                      \
	} while (0)

void uf_resolve(void)
{
	if (atomic_load_explicit(&resolve_state, memory_order_acquire) == 2)
		return;
	int expect = 0;
	if (!atomic_compare_exchange_strong(&resolve_state, &expect, 1)) {
		while (atomic_load_explicit(&resolve_state, memory_order_acquire) != 2)
			sched_yield();
		return;
	}
	uf_pool_reserve();
	resolving_here = 1;
	struct uf_real r = {0};
	RESOLVE(malloc, "malloc");
	RESOLVE(free, "free");
	RESOLVE(calloc, "calloc");
	RESOLVE(realloc, "realloc");
	RESOLVE(memalign, "memalign");
	RESOLVE(posix_memalign, "posix_memalign");
	RESOLVE(aligned_alloc, "aligned_alloc");
	RESOLVE(valloc, "valloc");
	RESOLVE(pvalloc, "pvalloc");
	RESOLVE(malloc_usable_size, "malloc_usable_size");
	RESOLVE(sigaction, "sigaction");
	resolving_here = 0;
	if (!r.malloc || !r.free || !r.calloc || !r.realloc) {
		static const char msg[] = "ufence: cannot find the next allocator\n";
		uf_write_all(2, msg, sizeof msg - 1);
		_exit(127);
	}
	uf_real = r;
	atomic_store_explicit(&resolve_state, 2, memory_order_release);
}

static void *boot_malloc(size_t n)
{
	if (resolving_here)
		return arena_alloc(n, 16);
	uf_resolve();
	return uf_real.malloc(n);
}

static void boot_free(void *p)
{
	if (resolving_here || !p)
		return;
	uf_resolve();
	uf_real.free(p);
}

static void *boot_calloc(size_t n, size_t m)
{
	if (resolving_here)
		return arena_alloc(n * m, 16);     /* fresh mmap memory is zero */
	uf_resolve();
	return uf_real.calloc(n, m);
}

static void *boot_realloc(void *p, size_t n)
{
	if (resolving_here) {
		void *q = arena_alloc(n, 16);
		if (q && p)
			memcpy(q, p, n);
		return q;
	}
	uf_resolve();
	return uf_real.realloc(p, n);
}

static void *boot_memalign(size_t a, size_t n)
{
	if (resolving_here)
		return arena_alloc(n, a);
	uf_resolve();
	return uf_real.memalign ? uf_real.memalign(a, n) : NULL;
}

/* ---- slow paths ---- */
static UF_NOINLINE void free_ours(void *p, uintptr_t ra, uintptr_t fa)
{
	if (uf_arena_owns(p))
		return;                     /* bootstrap memory is never reused */
	uf_pool_free(p, ra, fa);
}

static size_t usable_any(void *p)
{
	if (uf_owns(p))
		return uf_arena_owns(p) ? arena_size_of(p) : uf_pool_usable(p);
	if (!p)
		return 0;
	uf_resolve();
	return uf_real.malloc_usable_size ? uf_real.malloc_usable_size(p) : 0;
}

static void *next_malloc(size_t n)
{
	return uf_real.malloc(n);
}

static UF_NOINLINE void *realloc_slow(void *p, size_t n, uintptr_t ra, uintptr_t fa)
{
	if (uf_arena_owns(p)) {
		size_t old = arena_size_of(p);
		void *q = next_malloc(n ? n : 1);
		if (q)
			memcpy(q, p, old < n ? old : n);
		return q;
	}
	if (uf_owns(p)) {
		size_t old = uf_pool_usable(p);
		if (!old && !n) {
			uf_pool_free(p, ra, fa);
			return NULL;
		}
		if (!old) {
			/* not a live guarded object: report as a bad free, keep going */
			uf_pool_free(p, ra, fa);
			return NULL;
		}
		if (n == 0) {
			uf_pool_free(p, ra, fa);
			return NULL;
		}
		/* Moving to a fresh slot keeps use-after-free detection for the
		 * old pointer (as KFENCE's krealloc); in place only when the pool
		 * or the gate says no. */
		void *q = NULL;
		if (uf_gate)
			q = uf_sampled(n, 0, 0, ra, fa);
		if (!q) {
			void *r = uf_pool_realloc(p, n, ra, fa);
			if (r)
				return r;
			q = next_malloc(n);
		}
		if (!q)
			return NULL;
		memcpy(q, p, old < n ? old : n);
		uf_pool_free(p, ra, fa);
		return q;
	}
	/* unguarded object: move it into the pool if the gate picks this call */
	if (n && uf_real.malloc_usable_size) {
		void *q = uf_sampled(n, 0, 0, ra, fa);
		if (q) {
			size_t old = uf_real.malloc_usable_size(p);
			memcpy(q, p, old < n ? old : n);
			uf_real.free(p);
			return q;
		}
	}
	return uf_real.realloc(p, n);
}

static size_t page_size(void)
{
	return uf_pool.page ? uf_pool.page : (size_t)sysconf(_SC_PAGESIZE);
}

static void *aligned_common(size_t align, size_t n, uintptr_t ra, uintptr_t fa)
{
	if (UF_UNLIKELY(uf_gate) && align && !(align & (align - 1))) {
		void *p = uf_sampled(n, align, 0, ra, fa);
		if (p)
			return p;
	}
	uf_resolve();
	if (uf_real.memalign)
		return uf_real.memalign(align, n);
	if (uf_real.posix_memalign) {
		void *p = NULL;
		int e = uf_real.posix_memalign(&p, align < sizeof(void *) ? sizeof(void *) : align, n);
		if (e) {
			errno = e;
			return NULL;
		}
		return p;
	}
	errno = ENOMEM;
	return NULL;
}

/* ---- the interposed symbols ---- */
UF_EXPORT void *malloc(size_t n)
{
	uint64_t gate = uf_gate;
	if (UF_UNLIKELY(gate)) {
		void *p;
		if (gate == UF_GATE_COUNT) {
			/* sampling: most calls end at this decrement */
			if (UF_LIKELY(--uf_tls_countdown > 0))
				return uf_real.malloc(n);
			p = uf_sampled_counted(n, 0, 0, RA(), FA());
		} else {
			p = uf_sampled(n, 0, 0, RA(), FA());
		}
		if (p)
			return p;
	}
	return uf_real.malloc(n);
}

UF_EXPORT void free(void *p)
{
	if (uf_owns(p)) {
		free_ours(p, RA(), FA());
		return;
	}
	uf_real.free(p);
}

/* the overflow check only where we may allocate: the next allocator makes
 * its own, so calloc's off path stays a test and a jump */
static UF_NOINLINE void *calloc_slow(size_t n, size_t m, uintptr_t ra, uintptr_t fa, int counted)
{
	size_t t;
	if (UF_UNLIKELY(__builtin_mul_overflow(n, m, &t))) {
		errno = ENOMEM;
		return NULL;
	}
	void *p = counted ? uf_sampled_counted(t, 0, 1, ra, fa) : uf_sampled(t, 0, 1, ra, fa);
	return p ? p : uf_real.calloc(n, m);
}

UF_EXPORT void *calloc(size_t n, size_t m)
{
	uint64_t gate = uf_gate;
	if (UF_UNLIKELY(gate)) {
		if (gate != UF_GATE_COUNT)
			return calloc_slow(n, m, RA(), FA(), 0);
		if (UF_UNLIKELY(--uf_tls_countdown <= 0))
			return calloc_slow(n, m, RA(), FA(), 1);
	}
	return uf_real.calloc(n, m);
}

UF_EXPORT void *realloc(void *p, size_t n)
{
	if (!p) {
		if (UF_UNLIKELY(uf_gate)) {
			void *q = uf_sampled(n, 0, 0, RA(), FA());
			if (q)
				return q;
		}
		return uf_real.malloc(n);
	}
	if (uf_owns(p) || UF_UNLIKELY(uf_gate && n && n <= uf_pool.page))
		return realloc_slow(p, n, RA(), FA());
	return uf_real.realloc(p, n);
}

UF_EXPORT void *reallocarray(void *p, size_t n, size_t m)
{
	size_t t;
	if (__builtin_mul_overflow(n, m, &t)) {
		errno = ENOMEM;
		return NULL;
	}
	if (!p) {
		if (UF_UNLIKELY(uf_gate)) {
			void *q = uf_sampled(t, 0, 0, RA(), FA());
			if (q)
				return q;
		}
		return uf_real.malloc(t);
	}
	if (uf_owns(p) || UF_UNLIKELY(uf_gate && t && t <= uf_pool.page))
		return realloc_slow(p, t, RA(), FA());
	return uf_real.realloc(p, t);
}

UF_EXPORT void *memalign(size_t a, size_t n)
{
	return aligned_common(a, n, RA(), FA());
}

UF_EXPORT void *aligned_alloc(size_t a, size_t n)
{
	if (UF_UNLIKELY(uf_gate) && a && !(a & (a - 1))) {
		void *p = uf_sampled(n, a, 0, RA(), FA());
		if (p)
			return p;
	}
	uf_resolve();
	if (uf_real.aligned_alloc)
		return uf_real.aligned_alloc(a, n);
	return aligned_common(a, n, RA(), FA());
}

UF_EXPORT int posix_memalign(void **out, size_t a, size_t n)
{
	if (a < sizeof(void *) || (a & (a - 1)))
		return EINVAL;
	if (UF_UNLIKELY(uf_gate)) {
		void *p = uf_sampled(n, a, 0, RA(), FA());
		if (p) {
			*out = p;
			return 0;
		}
	}
	uf_resolve();
	if (uf_real.posix_memalign)
		return uf_real.posix_memalign(out, a, n);
	void *p = aligned_common(a, n, RA(), FA());
	if (!p)
		return ENOMEM;
	*out = p;
	return 0;
}

UF_EXPORT void *valloc(size_t n)
{
	return aligned_common(page_size(), n, RA(), FA());
}

UF_EXPORT void *pvalloc(size_t n)
{
	size_t pg = page_size();
	size_t r = (n + pg - 1) & ~(pg - 1);
	if (r < n) {
		errno = ENOMEM;
		return NULL;
	}
	return aligned_common(pg, r ? r : pg, RA(), FA());
}

UF_EXPORT size_t malloc_usable_size(void *p)
{
	return usable_any(p);
}

UF_EXPORT void free_sized(void *p, size_t n)
{
	(void)n;
	if (uf_owns(p)) {
		free_ours(p, RA(), FA());
		return;
	}
	uf_real.free(p);
}

UF_EXPORT void free_aligned_sized(void *p, size_t a, size_t n)
{
	(void)a;
	(void)n;
	if (uf_owns(p)) {
		free_ours(p, RA(), FA());
		return;
	}
	uf_real.free(p);
}

UF_EXPORT void cfree(void *p)
{
	free(p);
}

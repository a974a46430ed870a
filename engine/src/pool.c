/*
 * The pool, as KFENCE's: one reserved region where slot i's object page is
 * pool_base + (2i + 2) * page and every odd page is a guard. Address space
 * for the largest num_objects is reserved up front (PROT_NONE, NORESERVE),
 * so the pool grows while the process runs without moving.
 *
 * Objects sit at the left or right edge of their page at random; the rest of
 * the page holds the canary 0xaa ^ (addr & 7), checked at free. Freed slots
 * stay protected and go to the tail of a FIFO freelist, so the
 * least-recently-freed slot is reused first and use-after-free stays
 * detectable as long as possible.
 *
 * With guard=uffd (uffd.c) a free moves the object's page into the slot
 * that will be allocated next instead of throwing it away: the oldest
 * quarantined slots (up to READY_MAX) sit on a second FIFO, "ready", with a
 * page behind them, and an allocation takes the ready head with no system
 * call. The price is that use-after-free of those few oldest, about-to-be-
 * reused objects goes unseen, as it would a moment later anyway.
 *
 * Locking: one mutex, only on the guarded path, held for list and state
 * changes; system calls (protection, moves) and canary fills run outside it.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/auxv.h>
#include <unistd.h>

#include "uf.h"

#define UF_ARENA_SIZE (1u << 20)
#define NONE UINT32_MAX
#define CANARY_U64 0xadacafaea9a8abaaull
#define BLOOM_BITS 16
#define READY_MAX 64u          /* pages kept behind the next slots to allocate */

/* The canary of any 8-aligned run, so the aligned middle of the slack is
 * filled and checked by the C library's memcpy/memcmp (vector loops), not
 * word by word; the unaligned ends and the first bad byte stay exact. */
#define PAT_BYTES 4096u
static uint64_t canary_pat[PAT_BYTES / 8];

struct uf_pool uf_pool;
char *uf_arena_base;
size_t uf_arena_size;
/* adaptive: held for a few list operations, so a contending thread spins a
 * moment instead of paying a futex sleep and wake-up */
static pthread_mutex_t pool_mu = PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP;
static _Atomic int reserve_state;
static _Atomic uint8_t bloom[1u << BLOOM_BITS];
/* guard=uffd: one bit per CPU (mod 64) with a page move under way */
static _Atomic uint64_t movers;

void uf_pool_lock(void)
{
	pthread_mutex_lock(&pool_mu);
}

void uf_pool_unlock(void)
{
	pthread_mutex_unlock(&pool_mu);
}

void uf_pool_atfork_child(void)
{
	pthread_mutex_t fresh = PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP;
	pool_mu = fresh;
}

int uf_pool_reserve(void)
{
	int expect = 0;
	if (!atomic_compare_exchange_strong(&reserve_state, &expect, 1)) {
		while (atomic_load(&reserve_state) == 1)
			;
		return uf_pool.ok ? 0 : -1;
	}
	size_t page = (size_t)getauxval(AT_PAGESZ);
	if (!page)
		page = 4096;
	uf_pool.page = page;
	for (size_t k = 0; k < PAT_BYTES / 8; k++)
		canary_pat[k] = CANARY_U64;
	uint64_t slots = 16777215;   /* num_objects' maximum in settings.def */
	void *m = MAP_FAILED;
	size_t total = 0;
	for (; slots >= 1024; slots /= 2) {
		total = UF_ARENA_SIZE + (2 * slots + 2) * page;
		m = mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (m != MAP_FAILED)
			break;
	}
	if (m == MAP_FAILED) {
		/* no pool: a private arena only, the engine never guards */
		m = mmap(NULL, UF_ARENA_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m != MAP_FAILED) {
			uf_arena_base = m;
			uf_arena_size = UF_ARENA_SIZE;
			uf_pool.range_base = (uintptr_t)m;
			__atomic_store_n(&uf_pool.range_len, UF_ARENA_SIZE, __ATOMIC_RELEASE);
		}
		atomic_store(&reserve_state, 2);
		return -1;
	}
	mprotect(m, UF_ARENA_SIZE, PROT_READ | PROT_WRITE);
	uf_arena_base = m;
	uf_arena_size = UF_ARENA_SIZE;
	void *meta = mmap(NULL, slots * sizeof(struct uf_meta), PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uf_pool.range_base = (uintptr_t)m;
	uf_pool.base = (uintptr_t)m + UF_ARENA_SIZE;
	uf_pool.end = (uintptr_t)m + total;
	uf_pool.reserved_slots = (uint32_t)slots;
	uf_pool.quarantine.head = uf_pool.quarantine.tail = NONE;
	uf_pool.ready.head = uf_pool.ready.tail = NONE;
	uf_pool.active_end = uf_pool.base;
	if (meta != MAP_FAILED) {
		uf_pool.meta = meta;
		uf_pool.ok = 1;
	}
	__atomic_store_n(&uf_pool.range_len, total, __ATOMIC_RELEASE);
	atomic_store(&reserve_state, 2);
	return uf_pool.ok ? 0 : -1;
}

static void fifo_push(struct uf_fifo *q, uint32_t i)
{
	struct uf_meta *m = &uf_pool.meta[i];
	m->next = NONE;
	m->inlist = 1;
	if (q->tail == NONE)
		q->head = i;
	else
		uf_pool.meta[q->tail].next = i;
	q->tail = i;
	q->count++;
}

/* back to the head: a slot that was taken but not used */
static void fifo_push_front(struct uf_fifo *q, uint32_t i)
{
	struct uf_meta *m = &uf_pool.meta[i];
	m->inlist = 1;
	m->next = q->head;
	q->head = i;
	if (q->tail == NONE)
		q->tail = i;
	q->count++;
}

/* the head, skipping slots past a shrunk limit (retired: they come back
 * through uf_pool_resize, a ready one with its page) */
static uint32_t fifo_take(struct uf_fifo *q)
{
	while (q->head != NONE) {
		uint32_t i = q->head;
		struct uf_meta *m = &uf_pool.meta[i];
		q->head = m->next;
		if (q->head == NONE)
			q->tail = NONE;
		q->count--;
		m->inlist = 0;
		if (i < uf_pool.limit)
			return i;
	}
	return NONE;
}

static void push(uint32_t i)
{
	fifo_push(&uf_pool.quarantine, i);
}

#define CHUNK_MIN 256u
#define CHUNK_MAX 4096u

/* Slots become usable in chunks, when first needed, so a large num_objects
 * costs nothing until the program fills the pool. Chunks double from 256
 * slots to 4096: activating one costs about 0.2 us a slot (markers), and a
 * short-lived process (a fork child that guards one sample) should pay for
 * a few hundred, not thousands. A new chunk goes to the head of the
 * freelist: never-used slots are taken before freed ones, as when KFENCE
 * queues every slot at boot. Pool lock held. */
static int activate_chunk(void)
{
	uint32_t lo = uf_pool.initialized, hi = uf_pool.limit;
	uint32_t step = lo < CHUNK_MIN ? CHUNK_MIN : lo < CHUNK_MAX ? lo : CHUNK_MAX;
	if (hi > lo + step)
		hi = lo + step;
	if (hi <= lo)
		return -1;
	uintptr_t from = lo ? uf_pool.base + (2 * (uintptr_t)lo + 2) * uf_pool.page : uf_pool.base;
	uintptr_t to = uf_pool.base + (2 * (uintptr_t)hi + 2) * uf_pool.page;
	if (uf_guard_activate(from, to - from))
		return -1;
	for (uint32_t i = lo; i < hi; i++) {
		struct uf_meta *m = &uf_pool.meta[i];
		memset(m, 0, sizeof *m);
		m->next = i + 1 < hi ? i + 1 : uf_pool.quarantine.head;
		m->inlist = 1;
	}
	/* guard=uffd: object pages lose their markers now, in a batch, so a
	 * first use needs no system call (a page-less slot faults through the
	 * userfaultfd all the same); where that fails they keep them */
	if (uf_guard_mech == UF_GUARD_UFFD) {
		uint32_t done = uf_guard_unmark_many(uf_slot_page(lo), 2 * uf_pool.page, hi - lo);
		for (uint32_t i = lo; i < lo + done; i++)
			atomic_store(&uf_pool.meta[i].page, UF_PAGE_NONE);
	}
	if (uf_pool.quarantine.head == NONE)
		uf_pool.quarantine.tail = hi - 1;
	uf_pool.quarantine.head = lo;
	uf_pool.quarantine.count += hi - lo;
	uf_pool.active_end = to;
	__atomic_store_n(&uf_pool.initialized, hi, __ATOMIC_RELEASE);
	return 0;
}

/* a freed slot whose page is gone joins the quarantine (pool lock held) */
void uf_pool_requeue(uint32_t i)
{
	if (i < uf_pool.limit)
		push(i);
	else
		uf_pool.meta[i].inlist = 0;
}

static uint32_t pop(void)
{
	uint32_t head = uf_pool.quarantine.head;
	if (uf_pool.initialized < uf_pool.limit &&
	    (head == NONE || atomic_load(&uf_pool.meta[head].state) != UF_SLOT_UNUSED))
		activate_chunk();
	return fifo_take(&uf_pool.quarantine);
}

int uf_pool_resize(uint32_t n, char *err, size_t errlen)
{
	if (!uf_pool.ok) {
		uf_strlcpy(err, "num_objects: the pool could not be reserved", errlen);
		return ENOMEM;
	}
	if (n > uf_pool.reserved_slots) {
		uf_strlcpy(err, "num_objects: larger than the reserved address space", errlen);
		return ERANGE;
	}
	uf_pool_lock();
	/* slots retired by an earlier shrink come back */
	uint32_t upto = n < uf_pool.initialized ? n : uf_pool.initialized;
	for (uint32_t i = uf_pool.limit; i < upto; i++) {
		struct uf_meta *m = &uf_pool.meta[i];
		if (atomic_load(&m->state) != UF_SLOT_ALLOCATED && !m->inlist)
			push(i);
	}
	uf_pool.limit = n;
	uf_stat_set(UF_STAT_pool_slots, n);
	uf_stat_set(UF_STAT_pool_reserved_bytes, uf_pool.end - uf_pool.base);
	uf_pool_unlock();
	return 0;
}

void uf_canary_fill(uintptr_t from, uintptr_t to)
{
	while (from < to && (from & 7))
		*(volatile uint8_t *)from = uf_canary_byte(from), from++;
	while (to - from >= 8 && from < to) {
		size_t n = (to - from) & ~(uintptr_t)7;
		if (n > PAT_BYTES)
			n = PAT_BYTES;
		memcpy((void *)from, canary_pat, n);
		from += n;
	}
	while (from < to)
		*(volatile uint8_t *)from = uf_canary_byte(from), from++;
}

int uf_canary_scan(uintptr_t from, uintptr_t to, uintptr_t *bad)
{
	while (from < to && (from & 7)) {
		if (*(uint8_t *)from != uf_canary_byte(from))
			goto found;
		from++;
	}
	while (from < to && to - from >= 8) {
		size_t n = (to - from) & ~(uintptr_t)7;
		if (n > PAT_BYTES)
			n = PAT_BYTES;
		if (memcmp((const void *)from, canary_pat, n)) {
			while (*(const uint64_t *)from == CANARY_U64)
				from += 8;       /* the bad word; the loop below finds the byte */
			break;
		}
		from += n;
	}
	for (; from < to; from++)
		if (*(uint8_t *)from != uf_canary_byte(from))
			goto found;
	return 0;
found:
	*bad = from;
	return 1;
}

/* The bytes around an object that its canary check covers: the whole page,
 * or with a short canary (Anolis KFENCE's full mode) the cache lines from
 * the one before the object's first byte to the one after its last, as
 * [ALIGN_DOWN(addr - 1, line), ALIGN(addr + size + 1, line)) within the page.
 * A free in full mode then reads two or three lines, not the page: reading
 * 4 KiB a free cost mariadbd 1.8% of its CPU in the check alone, and pushed
 * its own data out of the L1 cache (48 KiB: a dozen frees fill it). A stray
 * write further out in the slack goes unseen; the guard pages still catch
 * every access that runs off the object's page-edge side. */
void uf_canary_range(const struct uf_meta *m, uintptr_t *lo, uintptr_t *hi)
{
	uintptr_t page = m->addr & ~(uf_pool.page - 1), end = page + uf_pool.page;
	*lo = page;
	*hi = end;
	if (!(m->flags & UF_SLOT_SHORT_CANARY))
		return;
	uintptr_t l = (m->addr - 1) & ~(uintptr_t)(UF_CANARY_LINE - 1);
	uintptr_t h = (m->addr + m->size + UF_CANARY_LINE) & ~(uintptr_t)(UF_CANARY_LINE - 1);
	if (m->addr > page)
		*lo = l;
	if (h < end)
		*hi = h;
}

int uf_canary_first_bad(const struct uf_meta *m, uintptr_t *bad)
{
	uintptr_t lo, hi;
	uf_canary_range(m, &lo, &hi);
	if (uf_canary_scan(lo, m->addr, bad))
		return 1;
	return uf_canary_scan(m->addr + m->size, hi, bad);
}

/* canary over what an object's check covers outside it (short canary: a
 * few lines, so an allocation refills them rather than trust the page) */
static void fill_short_canary(const struct uf_meta *m)
{
	uintptr_t lo, hi;
	uf_canary_range(m, &lo, &hi);
	uf_canary_fill(lo, m->addr);
	uf_canary_fill(m->addr + m->size, hi);
}

/* KFENCE's print_diff_canary: up to 16 bytes from the first bad one,
 * stopping at `lim`. */
void uf_canary_dump(uintptr_t bad, uintptr_t lim, struct uf_bug_info *b)
{
	uintptr_t end = bad + sizeof b->dump;
	if (end > lim)
		end = lim;
	b->ndump = 0;
	for (uintptr_t a = bad; a < end; a++) {
		uint8_t v = *(uint8_t *)a;
		b->dump[b->ndump] = v;
		b->dump_bad[b->ndump] = v != uf_canary_byte(a);
		b->ndump++;
	}
	b->bad = bad;
}

/* a live object's canary: the dump stops at the object (left side) or the
 * end of what is checked (right side) */
static void dump_canary(const struct uf_meta *m, uintptr_t bad, struct uf_bug_info *b)
{
	uintptr_t lo, hi;
	uf_canary_range(m, &lo, &hi);
	uf_canary_dump(bad, bad < m->addr ? m->addr : hi, b);
}

static uint32_t cover_hash(const uintptr_t *f, int n)
{
	return uf_stack_hash(f, n < 4 ? n : 4);
}

static void bloom_add(uint32_t h, int d)
{
	uint32_t i1 = h & ((1u << BLOOM_BITS) - 1), i2 = (h >> BLOOM_BITS) & ((1u << BLOOM_BITS) - 1);
	uint32_t idx[2] = {i1, i2};
	for (int k = 0; k < 2; k++) {
		uint8_t v = atomic_load_explicit(&bloom[idx[k]], memory_order_relaxed);
		if (d > 0 && v < 255)
			atomic_fetch_add_explicit(&bloom[idx[k]], 1, memory_order_relaxed);
		else if (d < 0 && v > 0 && v < 255)
			atomic_fetch_sub_explicit(&bloom[idx[k]], 1, memory_order_relaxed);
	}
}

static int bloom_has(uint32_t h)
{
	return atomic_load_explicit(&bloom[h & ((1u << BLOOM_BITS) - 1)], memory_order_relaxed) &&
	       atomic_load_explicit(&bloom[(h >> BLOOM_BITS) & ((1u << BLOOM_BITS) - 1)], memory_order_relaxed);
}

static size_t placement_align(size_t size, size_t align)
{
	size_t a = 16;
	if (uf_cur[UF_SET_align].v == 1) {
		/* precise: the largest power of two dividing size, at most 16,
		 * so a 13-byte object ends exactly at the guard page */
		a = size & (~size + 1);
		if (a > 16)
			a = 16;
	}
	if (align > a)
		a = align;
	return a;
}

static void set_dirty(struct uf_meta *m, uint32_t lo, uint32_t hi)
{
	m->dirty_lo = lo;
	m->dirty_hi = hi;
}

/* Make slot i's object page accessible for a new object, and say in its
 * dirty range where the page may not hold canary. Returns 0, or -1 (the
 * slot goes back). */
static int open_slot(uint32_t i, uintptr_t pg)
{
	struct uf_meta *m = &uf_pool.meta[i];
	if (uf_guard_mech != UF_GUARD_UFFD) {
		set_dirty(m, 0, (uint32_t)uf_pool.page);
		return uf_guard_unprotect(pg, uf_pool.page);
	}
	uint8_t ps = atomic_load(&m->page);
	if (ps == UF_PAGE_PRESENT)
		return 0;          /* its dirty range was set with the page */
	if (ps == UF_PAGE_MARKED && uf_guard_unprotect(pg, uf_pool.page))
		return -1;
	int e = uf_uffd_fill(pg, canary_pat, uf_pool.page);
	set_dirty(m, 0, e == 0 ? 0 : (uint32_t)uf_pool.page);  /* a fresh page is all canary */
	if (e != 0 && e != EEXIST) {
		atomic_store(&m->page, UF_PAGE_NONE);
		/* demoted meanwhile: the page is an ordinary one now */
		return uf_guard_mech == UF_GUARD_UFFD ? -1 : uf_guard_unprotect(pg, uf_pool.page);
	}
	atomic_store(&m->page, UF_PAGE_PRESENT);
	return 0;
}

/* guard=uffd: give the freed object's page to slot dst (taken from the
 * quarantine). 1: dst has a page now; 0: it has none. The freed page is
 * gone from src either way. */
static int recycle_page(uintptr_t src, uint32_t dst, const struct uf_meta *from, int clean)
{
	struct uf_meta *d = &uf_pool.meta[dst];
	uintptr_t dpg = uf_slot_page(dst);
	uint8_t ps = atomic_load(&d->page);
	int e = EEXIST;
	/* The freed object's slack was checked just now: only its own bytes
	 * need canary again (a racing stray write in the moment between that
	 * check and the move would be blamed on the next object; the move
	 * makes every later one fault). A short canary checked only a few
	 * lines: nothing is known of the rest of the page. */
	if (clean && !(from->flags & UF_SLOT_SHORT_CANARY))
		set_dirty(d, (uint32_t)(from->addr - src), (uint32_t)(from->addr - src + from->size));
	else
		set_dirty(d, 0, (uint32_t)uf_pool.page);
	if (ps != UF_PAGE_PRESENT) {
		e = ps == UF_PAGE_MARKED && uf_guard_unprotect(dpg, uf_pool.page) ? EIO : 0;
		if (!e) {
			atomic_store(&d->page, UF_PAGE_NONE);
			e = uf_uffd_move(dpg, src, uf_pool.page);
		}
	}
	if (e == 0) {
		atomic_store(&d->page, UF_PAGE_PRESENT);
		uf_stat_add(UF_STAT_pages_recycled, 1);
		return 1;
	}
	/* refused (shared after fork, pinned...) or dst already has a page:
	 * the freed page goes away the plain way */
	if (uf_guard_mech == UF_GUARD_UFFD)
		uf_guard_discard(src, uf_pool.page);
	else
		uf_guard_protect(src, uf_pool.page);
	if (e == EEXIST) {
		atomic_store(&d->page, UF_PAGE_PRESENT);
		set_dirty(d, 0, (uint32_t)uf_pool.page);  /* someone else's page: nothing known */
	}
	return e == EEXIST;
}

/* The slots the next allocation and the next free will take have sat in a
 * FIFO since they were queued (the ready slots for ~64 allocations, the
 * quarantine's head for thousands): their metadata (80 bytes, two lines),
 * shm record and, for a ready slot, the mapping of its page are cold. In
 * mariadbd those first loads were the larger part of pop() and of
 * publishing a record (bench/profile.md). Touching them ahead, before the
 * stack walk, overlaps the misses with it. The heads are read without the
 * lock: a stale one only prefetches a line that is not needed.
 * always_inline: GCC's pure-function analysis takes a function made of
 * prefetches alone for one without effect and drops the calls to it. */
#define UF_PREFETCH_FN static inline __attribute__((always_inline)) void
UF_PREFETCH_FN prefetch_meta(uint32_t i)
{
	if (i >= uf_pool.initialized)
		return;
	const char *m = (const char *)&uf_pool.meta[i];
	__builtin_prefetch(m, 1);
	__builtin_prefetch(m + sizeof(struct uf_meta) - 1, 1);
}

UF_PREFETCH_FN prefetch_record(uint32_t i)
{
	if (uf_shm.slots && i < uf_pool.reserved_slots)
		__builtin_prefetch(&uf_shm.slots[i], 1);
}

/* the slot the next allocation will take: meta, record and its page (a
 * prefetch walks the page tables, so the TLB miss on a page moved in at a
 * free is paid here too) */
UF_PREFETCH_FN prefetch_next_alloc(void)
{
	uint32_t i = __atomic_load_n(&uf_pool.ready.head, __ATOMIC_RELAXED);
	if (i >= uf_pool.initialized)      /* NONE included */
		return;
	prefetch_meta(i);
	prefetch_record(i);
	__builtin_prefetch((const void *)uf_slot_page(i), 1);
}

void *uf_pool_alloc(size_t size, size_t align, int zero, uintptr_t caller, uintptr_t fp)
{
	if (!uf_pool.ok)
		return NULL;
	/* pool full: say so without a stack walk or the lock (racy, harmless) */
	uint32_t live = atomic_load_explicit(&uf_pool.live, memory_order_relaxed);
	if ((live >= uf_pool.limit || live >= uf_guard_live_cap) &&
	    (__atomic_load_n(&uf_mode, __ATOMIC_RELAXED) != UF_GATE_FULL || !uf_control_grow_pool(live))) {
		uf_stat_add(UF_STAT_skipped_capacity, 1);
		return NULL;
	}
	prefetch_next_alloc();
	uintptr_t frames[UF_MAX_FRAMES];
	int n = uf_stack_capture(caller, fp, frames, uf_proc.stack_depth);
	/* skip-covered is a sampling heuristic: as in Anolis, full mode guards
	 * every allocation while the pool lasts, and keeps its objects out of
	 * the filter (four atomic updates of its counters a malloc+free, 0.5%
	 * of mariadbd's CPU under full mode, saved; after a switch to
	 * sampling the filter sees only objects sampled since, which errs
	 * towards guarding) */
	int sampling = __atomic_load_n(&uf_mode, __ATOMIC_RELAXED) != UF_GATE_FULL;
	uint32_t ch = sampling ? cover_hash(frames, n) : 0;
	uint32_t limit = uf_pool.limit;
	int64_t thresh = uf_cur[UF_SET_skip_covered_thresh].v;
	if (sampling && limit && (uint64_t)atomic_load(&uf_pool.live) * 100 >= (uint64_t)thresh * limit &&
	    bloom_has(ch)) {
		uf_stat_add(UF_STAT_skipped_covered, 1);
		return NULL;
	}
	uf_pool_lock();
	uint32_t i = fifo_take(&uf_pool.ready);   /* also drains it after a demotion */
	int ready = i != NONE;
	if (!ready)
		i = pop();
	uf_pool_unlock();
	if (i == NONE) {
		uf_stat_add(UF_STAT_skipped_capacity, 1);
		return NULL;
	}
	size_t page = uf_pool.page;
	uintptr_t pg = uf_slot_page(i);
	struct uf_meta *m = &uf_pool.meta[i];
	/* a ready slot's page was counted resident already */
	if (!ready && open_slot(i, pg)) {
		uf_pool_lock();
		fifo_push_front(&uf_pool.quarantine, i);
		uf_pool_unlock();
		uf_stat_add(UF_STAT_skipped_capacity, 1);
		return NULL;
	}
	size_t a = placement_align(size, align);
	int right = size < page && (uf_rand() & 1);
	uintptr_t addr = right ? ((pg + page - size) & ~(uintptr_t)(a - 1)) : pg;
	if (addr < pg)
		addr = pg;
	int64_t cm = uf_cur[UF_SET_canary].v;
	int short_canary = cm == UF_CANARY_SHORT || (cm == UF_CANARY_AUTO && !sampling);
	m->addr = addr;
	m->size = size;
	m->flags = (right ? UF_SLOT_RIGHT : 0) | (size == page ? UF_SLOT_PAGE_ALLOC : 0) |
		   (short_canary ? UF_SLOT_SHORT_CANARY : 0);
	if (short_canary) {
		fill_short_canary(m);
	} else {
		/* canary over the slack, where the page may not hold it already (a
		 * page moved in: only where the previous object was) */
		uintptr_t lo = pg + m->dirty_lo, hi = pg + m->dirty_hi;
		if (lo < addr)
			uf_canary_fill(lo, hi < addr ? hi : addr);
		if (hi > addr + size)
			uf_canary_fill(lo > addr + size ? lo : addr + size, hi);
	}
	if (zero)
		memset((void *)addr, 0, size);
	uint32_t sid = uf_depot_put(frames, n);
	m->alloc_stack = sid;
	m->free_stack = 0;
	m->alloc_tid = (uint32_t)uf_gettid();
	m->alloc_cpu = (uint32_t)sched_getcpu();
	m->free_tid = 0;
	m->alloc_ns = uf_now_ns();
	m->free_ns = 0;
	m->open = 0;
	m->cover_hash = ch;
	m->in_bloom = (uint8_t)sampling;
	atomic_store_explicit(&m->state, UF_SLOT_ALLOCATED, memory_order_release);
	if (sampling)
		bloom_add(ch, 1);
	atomic_fetch_add(&uf_pool.live, 1);
	uf_stat_add(UF_STAT_currently_allocated, 1);
	uf_stat_add(UF_STAT_total_allocations, 1);
	if (!ready)
		uf_stat_add(UF_STAT_pool_resident_bytes, (int64_t)page);
	uf_shm_slot_publish(i, m);
	return (void *)addr;
}

/* slot of an address on an object page, or -1 (guard page / outside) */
static int64_t slot_of(uintptr_t a)
{
	if (a < uf_pool.base || a >= uf_pool.end)
		return -1;
	uintptr_t pi = (a - uf_pool.base) / uf_pool.page;
	if (pi < 2 || (pi & 1))
		return -1;
	uintptr_t i = pi / 2 - 1;
	if (i >= uf_pool.initialized)
		return -1;
	return (int64_t)i;
}

size_t uf_pool_usable(const void *p)
{
	int64_t i = slot_of((uintptr_t)p);
	if (i < 0)
		return 0;
	struct uf_meta *m = &uf_pool.meta[i];
	if (atomic_load(&m->state) != UF_SLOT_ALLOCATED || m->addr != (uintptr_t)p)
		return 0;
	return m->size;
}

static void free_report(int bug, uintptr_t a, int64_t slot, const struct uf_meta *m,
			const uintptr_t *frames, int n)
{
	struct uf_bug_info b;
	memset(&b, 0, sizeof b);
	b.bug = bug;
	b.access = -1;
	b.addr = a;
	if (slot >= 0 && m && atomic_load(&m->state) != UF_SLOT_UNUSED) {
		b.has_object = 1;
		b.slot = (uint32_t)slot;
		b.obj = *m;
	}
	memcpy(b.frames, frames, (size_t)n * sizeof *frames);
	b.nframes = n;
	uf_report(&b);
}

void uf_pool_free(void *p, uintptr_t caller, uintptr_t fp)
{
	uintptr_t a = (uintptr_t)p;
	uintptr_t frames[UF_MAX_FRAMES];
	int in = uf_tls.in_engine;
	uf_tls.in_engine = 1;
	int64_t i = slot_of(a);
	if (i >= 0) {
		/* this object's meta and record (cold if it lived long), and the
		 * quarantine head the move will give its page to */
		prefetch_meta((uint32_t)i);
		prefetch_record((uint32_t)i);
		prefetch_meta(__atomic_load_n(&uf_pool.quarantine.head, __ATOMIC_RELAXED));
	}
	int n = uf_stack_capture(caller, fp, frames, uf_proc.stack_depth);
	if (i < 0) {
		free_report(UF_BUG_INVALID_FREE, a, -1, NULL, frames, n);
		goto out;
	}
	struct uf_meta *m = &uf_pool.meta[i];
	uint32_t sid = uf_depot_put(frames, n);
	struct uf_bug_info b;
	int corrupt = 0;
	uf_pool_lock();
	uint32_t st = atomic_load(&m->state);
	if (st != UF_SLOT_ALLOCATED || m->addr != a) {
		int bug = (st == UF_SLOT_FREED && m->addr == a) ? UF_BUG_DOUBLE_FREE : UF_BUG_INVALID_FREE;
		struct uf_meta copy = *m;
		uf_pool_unlock();
		free_report(bug, a, i, &copy, frames, n);
		goto out;
	}
	uintptr_t bad;
	if (uf_canary_first_bad(m, &bad)) {
		corrupt = 1;
		memset(&b, 0, sizeof b);
		dump_canary(m, bad, &b);
	}
	m->free_stack = sid;
	m->free_tid = (uint32_t)uf_gettid();
	m->free_ns = uf_now_ns();
	atomic_store_explicit(&m->state, UF_SLOT_FREED, memory_order_release);
	m->inlist = 1;          /* on its way to the quarantine: resize keeps off */
	uint8_t open = m->open;
	m->open = 0;
	m->flags &= ~UF_SLOT_UNPROTECTED;
	if (m->in_bloom)
		bloom_add(m->cover_hash, -1);
	int uffd = uf_guard_mech == UF_GUARD_UFFD;
	uint64_t mybit = uffd ? 1ull << ((unsigned)sched_getcpu() & 63) : 0;
	/* revoke_batch: while frees come from more than one CPU, the page
	 * stays until its batch goes (revoke.c) */
	int defer = uffd && !corrupt && !open && uf_cur[UF_SET_revoke_batch].v > 1 &&
		    uf_revoke_wanted(mybit, m->free_ns);
	uint32_t dst = NONE;
	/* UFFDIO_MOVE takes the pool's anon_vma write lock and holds it across
	 * the TLB shootdown, so a thread moving while another CPU is in the
	 * middle of a move only spins; it drops its page instead (MADV_DONTNEED
	 * takes no such lock) and the next allocation gets a fresh one. A mover
	 * on this thread's own CPU is not running (it was preempted before or
	 * after its system call): no contention, move as usual. */
	if (uffd && !defer && uf_pool.ready.count + uf_pool.ready_reserved < READY_MAX &&
	    !(atomic_load_explicit(&movers, memory_order_relaxed) & ~mybit)) {
		dst = pop();
		if (dst != NONE) {
			uf_pool.ready_reserved++;
			atomic_fetch_or_explicit(&movers, mybit, memory_order_relaxed);
		}
	}
	uf_pool_unlock();

	uintptr_t pg = uf_slot_page((uint32_t)i);
	int dst_ready = 0;
	if (defer) {
		/* the page stays mapped until its batch goes */
	} else if (dst != NONE) {
		dst_ready = recycle_page(pg, dst, m, !corrupt);
		atomic_fetch_and_explicit(&movers, ~mybit, memory_order_relaxed);
	} else if (uffd) {
		uf_guard_discard(pg, uf_pool.page);
	} else {
		uf_guard_protect(pg, uf_pool.page);
	}
	if (uffd && !defer)
		atomic_store(&m->page, UF_PAGE_NONE);
	if (open & UF_OPEN_LEFT)
		uf_guard_protect(pg - uf_pool.page, uf_pool.page);
	if (open & UF_OPEN_RIGHT)
		uf_guard_protect(pg + uf_pool.page, uf_pool.page);

	uf_pool_lock();
	if (!defer)
		uf_pool_requeue((uint32_t)i);
	if (dst != NONE) {
		uf_pool.ready_reserved--;
		if (dst_ready)
			fifo_push(&uf_pool.ready, dst);
		else
			fifo_push_front(&uf_pool.quarantine, dst);
	}
	atomic_fetch_sub(&uf_pool.live, 1);
	struct uf_meta copy = *m;
	uf_pool_unlock();
	/* the freed page left (unless deferred); a page moved to dst stays */
	int64_t resident = (dst_ready ? 1 : 0) - (defer ? 0 : 1);
	if (resident)
		uf_stat_add(UF_STAT_pool_resident_bytes, resident * (int64_t)uf_pool.page);
	uf_stat_add(UF_STAT_currently_allocated, -1);
	uf_stat_add(UF_STAT_total_frees, 1);
	uf_shm_slot_publish((uint32_t)i, &copy);
	if (defer)
		uf_revoke_defer((uint32_t)i);
	if (corrupt) {
		b.bug = UF_BUG_CORRUPTION;
		b.access = -1;
		b.addr = b.bad;
		b.has_object = 1;
		b.slot = (uint32_t)i;
		b.obj = copy;
		memcpy(b.frames, frames, (size_t)n * sizeof *frames);
		b.nframes = n;
		uf_report(&b);
	}
out:
	uf_tls.in_engine = in;
}

/* in-place realloc, when no new slot can be had: left-placed objects grow to
 * the page end, any object shrinks; the canary follows the new end */
void *uf_pool_realloc(void *p, size_t n, uintptr_t caller, uintptr_t fp)
{
	(void)caller;
	(void)fp;
	int64_t i = slot_of((uintptr_t)p);
	if (i < 0)
		return NULL;
	struct uf_meta *m = &uf_pool.meta[i];
	uintptr_t pg = uf_slot_page((uint32_t)i);
	uintptr_t bad;
	void *r = NULL;
	uf_pool_lock();
	if (atomic_load(&m->state) == UF_SLOT_ALLOCATED && m->addr == (uintptr_t)p &&
	    !uf_canary_first_bad(m, &bad) && m->addr + n <= pg + uf_pool.page &&
	    (m->addr == pg || n <= m->size)) {
		size_t old = m->size;
		m->size = n;
		if (m->flags & UF_SLOT_SHORT_CANARY)
			fill_short_canary(m);   /* a grown object's lines were not filled */
		else if (n < old)
			uf_canary_fill(m->addr + n, m->addr + old);
		r = p;
	}
	struct uf_meta copy = *m;
	uf_pool_unlock();
	if (r)
		uf_shm_slot_publish((uint32_t)i, &copy);
	return r;
}

void uf_pool_open_page(uintptr_t page)
{
	if (uf_guard_mech == UF_GUARD_UFFD && page < uf_pool.active_end) {
		/* a marker goes; then a page without one would fault through
		 * the userfaultfd: map the zero page there */
		uf_guard_unprotect(page, uf_pool.page);
		int e = uf_uffd_zero(page, uf_pool.page);
		if (e == 0 || e == EEXIST) {
			int64_t i = slot_of(page);
			if (i >= 0) {
				set_dirty(&uf_pool.meta[i], 0, (uint32_t)uf_pool.page);  /* zeros */
				atomic_store(&uf_pool.meta[i].page, UF_PAGE_PRESENT);
			}
			return;
		}
	}
	if (uf_guard_mech == UF_GUARD_MADVISE && page < uf_pool.active_end) {
		if (uf_guard_unprotect(page, uf_pool.page) == 0)
			return;
	}
	mprotect((void *)page, uf_pool.page, PROT_READ | PROT_WRITE);
}

/* guard=uffd, fault=abort: a marker where a page-less slot faulted, so the
 * access faults again as under the other mechanisms (SIGSEGV). Async-signal-
 * safe. 0, or -1 when the page stays as it was. */
int uf_pool_seal_page(uintptr_t page)
{
	if (uf_guard_mech != UF_GUARD_UFFD || uf_guard_protect(page, uf_pool.page))
		return -1;
	int64_t i = slot_of(page);
	if (i >= 0)
		atomic_store(&uf_pool.meta[i].page, UF_PAGE_MARKED);
	return 0;
}

void uf_pool_check_all(void)
{
	/* the exit stack only if a report needs it: capturing it can mean
	 * reading /proc/self/maps, which every exiting process would pay */
	uintptr_t frames[UF_MAX_FRAMES];
	int n = -1;
	uf_revoke_flush(1);     /* late writes to freed objects are reported too */
	uf_pool_lock();
	for (uint32_t i = 0; i < uf_pool.initialized; i++) {
		struct uf_meta *m = &uf_pool.meta[i];
		uintptr_t bad;
		if (atomic_load(&m->state) != UF_SLOT_ALLOCATED || !uf_canary_first_bad(m, &bad))
			continue;
		struct uf_bug_info b;
		memset(&b, 0, sizeof b);
		dump_canary(m, bad, &b);
		b.bug = UF_BUG_CORRUPTION;
		b.access = -1;
		b.addr = bad;
		b.has_object = 1;
		b.slot = i;
		b.obj = *m;
		/* No access happened at exit: the useful stack (and the title's
		 * function) is where the object came from, not the engine's exit hook. */
		b.nframes = uf_depot_get(m->alloc_stack, b.frames, UF_MAX_FRAMES);
		if (b.nframes <= 0) {
			if (n < 0) {
				/* under the pool lock: the module table must not take the
				 * loader's lock here (a thread holding it may be waiting
				 * for ours in malloc) */
				uf_tls.no_refresh = 1;
				n = uf_stack_capture((uintptr_t)__builtin_return_address(0),
						     (uintptr_t)__builtin_frame_address(0), frames, uf_proc.stack_depth);
				uf_tls.no_refresh = 0;
			}
			memcpy(b.frames, frames, (size_t)n * sizeof *frames);
			b.nframes = n;
		}
		b.at_exit = 1;
		uf_report(&b);
	}
	uf_pool_unlock();
}

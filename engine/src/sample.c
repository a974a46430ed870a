/*
 * The gate: which allocations go to the pool.
 *
 *   off       uf_hot.word == 0: the only cost is the branch in malloc(), and
 *             no control thread (see uf.h, union uf_hot).
 *   full      every eligible allocation while the pool lasts.
 *   rate N    1 in N on average: a per-thread countdown in initial-exec TLS,
 *             reloaded uniformly in [1, 2N-1] (as GWP-ASan), no shared writes.
 *   interval  the gate opens every sample_interval ms with 1 + burst
 *             tokens; the allocations that take them are guarded (KFENCE's
 *             allocation gate). In a multi-threaded program the control
 *             thread opens it, and between openings malloc pays only the
 *             branch. A single-threaded program runs no thread (a second one
 *             would make glibc's malloc take its locked paths in every call):
 *             the gate word stays set and each thread reads the clock every
 *             poll_stride allocations, a stride that adapts to the program's
 *             allocation rate so the clock is read about 32 times an interval.
 *
 * Filters (size_classes, callers, page_allocs) are checked before a token or
 * the countdown is consumed, so they narrow without starving the sampler.
 */
#include <string.h>

#include "uf.h"

union uf_hot uf_hot __attribute__((aligned(UF_HOT_ALIGN)));
int uf_mode;
_Atomic int uf_forking;
_Atomic int uf_interval_tokens;
int uf_sample_rate;
uint32_t uf_class_mask;
__thread int32_t uf_tls_countdown __attribute__((tls_model("initial-exec")));
int uf_sampler_polled;
static _Atomic uint64_t gate_due_ns;    /* thread-less interval: the next opening */
static _Atomic uint64_t housekept_ns;
#define POLL_STRIDE_MAX (1u << 16)
#define HOUSEKEEP_NS 100000000ull

/* glibc 2.32+: false once the program created a thread (never set back);
 * without it (older glibc, other libcs) we cannot tell and run the thread */
extern char __libc_single_threaded __attribute__((weak));

int uf_single_threaded(void)
{
	return &__libc_single_threaded && __atomic_load_n(&__libc_single_threaded, __ATOMIC_RELAXED);
}

static const unsigned class_size[] = {8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096};
static const char *const class_name[] = {
	"malloc-8", "malloc-16", "malloc-32", "malloc-64", "malloc-96", "malloc-128",
	"malloc-192", "malloc-256", "malloc-512", "malloc-1k", "malloc-2k", "malloc-4k",
};
#define NCLASS (int)(sizeof class_size / sizeof class_size[0])

int uf_size_class(size_t size)
{
	for (int i = 0; i < NCLASS; i++)
		if (size <= class_size[i])
			return i;
	return NCLASS - 1;
}

const char *uf_size_class_name(size_t size, int page_alloc)
{
	(void)page_alloc;
	return class_name[uf_size_class(size)];
}

static int parse_size(const char *s, size_t n, unsigned *out)
{
	unsigned v = 0;
	size_t i = 0;
	if (n == 0)
		return -1;
	for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
		v = v * 10 + (unsigned)(s[i] - '0');
		if (v > 1u << 20)
			return -1;
	}
	if (i == 0)
		return -1;
	if (i < n && (s[i] == 'k' || s[i] == 'K')) {
		v *= 1024;
		i++;
	}
	if (i != n)
		return -1;
	*out = v;
	return 0;
}

/* "16,64-256,1k": a class is selected by its size or by a range that holds it */
int uf_parse_size_classes(const char *text, uint32_t *mask, char *err, size_t errlen)
{
	uint32_t m = 0;
	const char *p = text;
	if (!*p) {
		*mask = 0;
		return 0;
	}
	while (*p) {
		const char *e = strchr(p, ',');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		const char *dash = memchr(p, '-', n);
		unsigned lo, hi;
		if (dash) {
			if (parse_size(p, (size_t)(dash - p), &lo) || parse_size(dash + 1, n - (size_t)(dash - p) - 1, &hi) || lo > hi)
				goto bad;
		} else {
			if (parse_size(p, n, &lo))
				goto bad;
			hi = lo;
			int c = uf_size_class(lo);
			if (class_size[c] != lo)
				goto bad;
		}
		int any = 0;
		for (int c = 0; c < NCLASS; c++)
			if (class_size[c] >= lo && class_size[c] <= hi) {
				m |= 1u << c;
				any = 1;
			}
		if (!any)
			goto bad;
		p += n;
		if (*p == ',') {
			p++;
			if (!*p)
				goto bad;
		}
	}
	*mask = m;
	return 0;
bad:
	uf_strlcpy(err, "size_classes: expected sizes of classes 8,16,32,64,96,128,192,256,512,1k,2k,4k or ranges like 64-256", errlen);
	return -1;
}

void uf_sample_configure(void)
{
	int64_t iv = uf_cur[UF_SET_sample_interval].v;
	int64_t rate = uf_cur[UF_SET_sample_rate].v;
	int polled = !atomic_load(&uf_control_running);
	int was_polled_interval = uf_sampler_polled && uf_mode == UF_GATE_INTERVAL;
	uf_sample_rate = (int)rate;
	int mode = UF_GATE_OFF, gate = UF_GATE_OFF;
	if (!uf_pool.ok || !atomic_load(&uf_proc.ready))
		mode = UF_GATE_OFF;
	else if (iv == -1)
		mode = gate = UF_GATE_FULL;
	else if (rate > 0) {
		mode = UF_GATE_RATE;
		gate = UF_GATE_COUNT;
	}
	else if (iv > 0) {
		mode = UF_GATE_INTERVAL;
		if (polled) {
			gate = UF_GATE_COUNT;           /* every allocation counts down */
			if (!was_polled_interval)
				atomic_store(&gate_due_ns, uf_now_ns() + (uint64_t)iv * 1000000ull);
		} else if (atomic_load(&uf_interval_tokens) > 0) {
			gate = UF_GATE_INTERVAL;        /* an opening not taken yet */
		}                                       /* else opened by uf_sample_tick */
	}
	uf_sampler_polled = polled;
	/* mode first: a thread that sees the new gate sees the new mode */
	__atomic_store_n(&uf_mode, mode, __ATOMIC_RELAXED);
	__atomic_store_n(&uf_hot.gate, gate, __ATOMIC_RELEASE);
}

/* An allocation saw the wake word: a CLI wrote a request to a process that
 * may run no control thread. Clear it first, so a request written after this
 * point wakes us again, then apply (control.c serialises with the thread).
 * Not while forking: until the child has its own file, the word and the
 * request block are its parent's. */
void uf_sample_poll_wake(void)
{
	if (uf_tls.in_engine || !atomic_load(&uf_proc.ready) || atomic_load(&uf_forking))
		return;
	__atomic_store_n(&uf_hot.wake, 0, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	uf_tls.in_engine = 1;
	uf_control_poll();
	uf_tls.in_engine = 0;
}

void uf_sample_tick(void)
{
	if (uf_mode != UF_GATE_INTERVAL)
		return;
	atomic_store(&uf_interval_tokens, 1 + (int)uf_cur[UF_SET_burst].v);
	__atomic_store_n(&uf_hot.gate, UF_GATE_INTERVAL, __ATOMIC_RELEASE);
}

/* the control thread found tokens behind a closed gate */
void uf_sample_tick_reopen(void)
{
	if (uf_mode == UF_GATE_INTERVAL && !uf_sampler_polled && atomic_load(&uf_interval_tokens) > 0)
		__atomic_store_n(&uf_hot.gate, UF_GATE_INTERVAL, __ATOMIC_RELEASE);
}

/* What the control thread does off the allocation path, done here by a
 * thread-less sampler at most every 100 ms: heartbeat and metadata size, a
 * revocation batch that aged, modules dlopen'ed since the last look. */
static void housekeep(uint64_t now)
{
	uint64_t last = atomic_load(&housekept_ns);
	if (now - last < HOUSEKEEP_NS || !atomic_compare_exchange_strong(&housekept_ns, &last, now))
		return;
	uf_tls.in_engine = 1;
	uf_control_housekeep();
	uf_revoke_flush(0);
	uf_modules_refresh(0);
	uf_tls.in_engine = 0;
}

/* The program has threads that did not come through our pthread_create
 * (threads.c: glibc's own, for SIGEV_THREAD timers). Start the control
 * thread 10 ms after first noticing, so not from an allocation made inside
 * glibc's thread creation. Returns 1 once it may have started. */
static int noticed_threads(uint64_t now)
{
	static _Atomic uint64_t first_seen_ns;
	if (uf_single_threaded())
		return 0;
	uint64_t seen = atomic_load(&first_seen_ns);
	if (!seen) {
		atomic_compare_exchange_strong(&first_seen_ns, &seen, now);
		return 0;
	}
	if (now - seen < 10000000ull)
		return 0;
	uf_control_adopt();
	return 1;
}

/* What a thread-less sampler does at a clock read (interval) or a sample
 * (1 in N): hand over to the control thread if the program went
 * multi-threaded behind our back, else the thread's housekeeping. Returns 0
 * once the thread has taken over. */
static int threadless_duties(uint64_t now)
{
	if (noticed_threads(now) && !uf_sampler_polled)
		return 0;
	housekeep(now);
	return 1;
}

/* Thread-less interval sampling: this thread's countdown ran out. Read the
 * clock, adapt the stride (double it while reads come faster than
 * interval/64, halve it while slower than interval/32), and open the gate
 * when it is due. Returns 1 when this call opened it. */
static int poll_interval_clock(void)
{
	uint64_t now = uf_now_ns();
	uint64_t aim = (uint64_t)uf_cur[UF_SET_sample_interval].v * (1000000ull / 32);
	uint64_t since = now - uf_tls.polled_ns;
	uint32_t stride = uf_tls.poll_stride ? uf_tls.poll_stride : 1;
	if (since < aim / 2 && stride < POLL_STRIDE_MAX)
		stride *= 2;
	else if (since > aim && stride > 1)
		stride /= 2;
	uf_tls.poll_stride = stride;
	uf_tls.polled_ns = now;
	uf_tls_countdown = (int32_t)stride;
	if (!threadless_duties(now))
		return 0;
	uint64_t due = atomic_load(&gate_due_ns);
	/* one thread opens it: UINT64_MAX until its last token is taken */
	if (now < due || !atomic_compare_exchange_strong(&gate_due_ns, &due, UINT64_MAX))
		return 0;
	atomic_store(&uf_interval_tokens, 1 + (int)uf_cur[UF_SET_burst].v);
	return 1;
}

static void close_interval_gate(void)
{
	int expect = UF_GATE_INTERVAL;
	__atomic_compare_exchange_n((int32_t *)&uf_hot.gate, &expect, UF_GATE_OFF, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

/* countdown reload: uniform in [1, 2N-1], mean exactly N (as GWP-ASan);
 * [1, 2N] would have mean N + 1/2 and bias leak estimates low */
static int32_t reload(void)
{
	uint64_t n = (uint64_t)uf_sample_rate;
	if (n <= 1)
		return 1;
	return (int32_t)(1 + uf_rand() % (2 * n - 1));
}

/* counted: the caller (malloc or calloc, seeing UF_GATE_COUNT) already took
 * one off this thread's countdown and found it run out */
static void *sampled_slow(size_t size, size_t align, int zero, uintptr_t caller, uintptr_t fp,
				      int counted)
{
	if (UF_UNLIKELY(uf_hot.wake))
		uf_sample_poll_wake();
	/* the private mode decides; the gate word only brought us here */
	int g = __atomic_load_n(&uf_mode, __ATOMIC_RELAXED);
	if (g == UF_GATE_RATE) {
		int32_t c = counted ? uf_tls_countdown : --uf_tls_countdown;
		if (c > 0)
			return NULL;
		if (c < 0) {
			uf_tls_countdown = reload();
			return NULL;
		}
	} else if (g == UF_GATE_INTERVAL) {
		if (uf_sampler_polled && atomic_load_explicit(&uf_interval_tokens, memory_order_relaxed) <= 0) {
			if (!counted && --uf_tls_countdown > 0)
				return NULL;
			if (uf_tls.in_engine || !poll_interval_clock())
				return NULL;
		}
	} else if (g == UF_GATE_OFF) {
		return NULL;
	}
	if (uf_tls.in_engine)
		return NULL;
	size_t page = uf_pool.page;
	if (size == 0)
		goto keep;
	if (size > page || align > page) {
		uf_stat_add(UF_STAT_skipped_incompatible, 1);
		goto keep;
	}
	if (size == page && !uf_cur[UF_SET_page_allocs].v)
		goto filtered;
	if (uf_class_mask && !(uf_class_mask & (1u << uf_size_class(size))))
		goto filtered;
	if (uf_cur[UF_SET_callers].text[0] && !uf_filter_caller(caller))
		goto filtered;
	if (g == UF_GATE_RATE) {
		uf_tls_countdown = reload();
		if (uf_sampler_polled)
			threadless_duties(uf_now_ns());
	} else if (g == UF_GATE_INTERVAL) {
		int t = atomic_fetch_sub(&uf_interval_tokens, 1);
		int polled = uf_sampler_polled;
		if (t <= 0) {
			if (!polled)
				close_interval_gate();
			return NULL;
		}
		/* the interval counts from this sample, as KFENCE's timer waits
		 * for the gate to be taken: wake the control thread, or set the
		 * clock the allocations read */
		if (t == 1 && polled)
			atomic_store(&gate_due_ns, uf_now_ns() + (uint64_t)uf_cur[UF_SET_sample_interval].v * 1000000ull);
		else if (t == 1) {
			close_interval_gate();
			uf_control_gate_taken();
		}
	}
	uf_tls.in_engine = 1;
	void *p = uf_pool_alloc(size, align, zero, caller, fp);
	uf_tls.in_engine = 0;
	return p;
filtered:
	uf_stat_add(UF_STAT_skipped_filtered, 1);
keep:
	/* the next eligible call takes the sample (or the open gate's token) */
	if (g == UF_GATE_RATE || (g == UF_GATE_INTERVAL && uf_sampler_polled))
		uf_tls_countdown = 1;
	return NULL;
}

/* malloc and calloc saw UF_GATE_COUNT and ran this thread's countdown out */
UF_HIDDEN void *uf_sampled_counted(size_t size, size_t align, int zero, uintptr_t caller, uintptr_t fp)
{
	return sampled_slow(size, align, zero, caller, fp, 1);
}

/* The gate word sent this call here: the other entry points, and malloc and
 * calloc outside the counting modes */
UF_HIDDEN void *uf_sampled(size_t size, size_t align, int zero, uintptr_t caller, uintptr_t fp)
{
	return sampled_slow(size, align, zero, caller, fp, 0);
}

/*
 * The gate: which allocations go to the pool.
 *
 *   off       uf_hot.word == 0: the only cost is the branch in malloc(), and
 *             no control thread (see uf.h, union uf_hot).
 *   full      every eligible allocation while the pool lasts.
 *   rate N    1 in N on average: a per-thread countdown in initial-exec TLS,
 *             reloaded uniformly in [1, 2N-1] (as GWP-ASan), no shared writes.
 *   interval  the control thread opens the gate every sample_interval ms with
 *             1 + burst tokens; the allocations that take them are guarded
 *             (KFENCE's allocation gate).
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
	uf_sample_rate = (int)rate;
	int mode = UF_GATE_OFF, gate = UF_GATE_OFF;
	if (!uf_pool.ok || !atomic_load(&uf_proc.ready))
		mode = UF_GATE_OFF;
	else if (iv == -1)
		mode = gate = UF_GATE_FULL;
	else if (rate > 0)
		mode = gate = UF_GATE_RATE;
	else if (iv > 0)
		mode = UF_GATE_INTERVAL;  /* gate opened by uf_sample_tick */
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

void *uf_sampled(size_t size, size_t align, int zero, uintptr_t caller, uintptr_t fp);

UF_HIDDEN void *uf_sampled(size_t size, size_t align, int zero, uintptr_t caller, uintptr_t fp)
{
	if (UF_UNLIKELY(uf_hot.wake))
		uf_sample_poll_wake();
	/* the private mode decides; the gate word only brought us here */
	int g = __atomic_load_n(&uf_mode, __ATOMIC_RELAXED);
	if (g == UF_GATE_RATE) {
		int32_t c = --uf_tls_countdown;
		if (UF_LIKELY(c > 0))
			return NULL;
		if (c < 0) {
			uf_tls_countdown = reload();
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
	} else if (g == UF_GATE_INTERVAL) {
		int t = atomic_fetch_sub(&uf_interval_tokens, 1);
		if (t <= 0) {
			close_interval_gate();
			return NULL;
		}
		if (t == 1) {
			close_interval_gate();
			/* the interval counts from this sample, as KFENCE's timer
			 * waits for the gate to be taken: wake the control thread */
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
	if (g == UF_GATE_RATE)
		uf_tls_countdown = 1;   /* the next eligible call takes the sample */
	return NULL;
}

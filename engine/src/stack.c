/*
 * Stack capture by frame-pointer walk: ~1 ns a frame, cheap enough for full
 * mode (glibc backtrace() costs ~2 us for 10 frames). The first frame is the
 * interposed function's return address, so the immediate caller is always
 * right even in code built without frame pointers; the walk then follows
 * saved frame pointers while they stay inside the thread's stack and keep
 * going up. Starting from the caller's frame leaves the engine's own frames
 * out of every stack.
 */
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include "uf.h"

static void learn_bounds(void)
{
	pthread_attr_t at;
	void *lo;
	size_t sz;
	int in = uf_tls.in_engine;
	uf_tls.in_engine = 1;      /* pthread_getattr_np may allocate */
	uf_tls.stack_known = -1;
	if (pthread_getattr_np(pthread_self(), &at) == 0) {
		if (pthread_attr_getstack(&at, &lo, &sz) == 0) {
			uf_tls.stack_lo = (uintptr_t)lo;
			uf_tls.stack_hi = (uintptr_t)lo + sz;
			uf_tls.stack_known = 1;
		}
		pthread_attr_destroy(&at);
	}
	uf_tls.in_engine = in;
}

static int walk(uintptr_t f, uintptr_t lo, uintptr_t hi, uintptr_t *out, int n, int max)
{
	uintptr_t prev = lo;
	while (n < max) {
		if (f < prev || (f & 7) || f < lo || f + 16 > hi)
			break;
		uintptr_t ret = ((uintptr_t *)f)[1];
		if (ret < 4096)
			break;
		out[n++] = ret;
		prev = f + 16;
		f = ((uintptr_t *)f)[0];
	}
	return n;
}

int uf_stack_capture(uintptr_t first, uintptr_t fp, uintptr_t *out, int max)
{
	int n = 0;
	if (max <= 0)
		return 0;
	out[n++] = first;
	if (!uf_tls.stack_known)
		learn_bounds();
	if (uf_tls.stack_known != 1 || !fp)
		return n;
	/* fp is the interposed function's own frame: its saved fp is the caller's */
	return walk(((uintptr_t *)fp)[0], fp, uf_tls.stack_hi, out, n, max);
}

/* In the signal handler: bounds from TLS if known, else page by page with
 * mincore (a syscall, async-signal-safe) so a bad frame pointer cannot fault. */
static int fp_readable(uintptr_t fp, uintptr_t sp)
{
	unsigned char vec[2];
	if (fp < sp || (fp & 7))
		return 0;
	if (uf_tls.stack_known == 1 && sp >= uf_tls.stack_lo && sp < uf_tls.stack_hi)
		return fp + 16 <= uf_tls.stack_hi;
	uintptr_t start = fp & ~(uintptr_t)4095, end = (fp + 16 + 4095) & ~(uintptr_t)4095;
	return mincore((void *)start, end - start, vec) == 0;
}

/* lr: where a frameless leaf returns to ([sp] on x86-64, x30 on arm64) */
int uf_stack_from_context(uintptr_t pc, uintptr_t fp, uintptr_t sp, uintptr_t lr, uintptr_t *out, int max)
{
	int n = 0;
	if (max <= 0)
		return 0;
	out[n++] = pc;
	/* A fault in a frameless leaf (libc's memcpy): fp is still the caller's
	 * frame, so the walk would skip the caller itself. Its return address
	 * is in lr; take it when it is not what the frame walk will yield. */
	uintptr_t next = fp_readable(fp, sp) ? ((uintptr_t *)fp)[1] : 0;
	if (lr && lr != next && lr != pc && n < max && uf_is_return_address(lr))
		out[n++] = lr;
	if (uf_tls.stack_known == 1 && sp >= uf_tls.stack_lo && sp < uf_tls.stack_hi)
		return walk(fp, sp, uf_tls.stack_hi, out, n, max);
	uintptr_t pg = 4096, ok_lo = 0, ok_hi = 0;
	uintptr_t prev = sp, f = fp;
	while (n < max) {
		if (f < prev || (f & 7) || f - sp > (64u << 20))
			break;
		uintptr_t need = (f + 16 + pg - 1) & ~(pg - 1);
		uintptr_t start = f & ~(pg - 1);
		if (!(start >= ok_lo && need <= ok_hi)) {
			unsigned char vec[2];
			if (mincore((void *)start, need - start, vec) != 0)
				break;
			ok_lo = start;
			ok_hi = need;
		}
		uintptr_t ret = ((uintptr_t *)f)[1];
		if (ret < 4096)
			break;
		out[n++] = ret;
		prev = f + 16;
		f = ((uintptr_t *)f)[0];
	}
	return n;
}

uint32_t uf_stack_hash(const uintptr_t *f, int n)
{
	uint64_t h = 0x9e3779b97f4a7c15ull ^ (uint64_t)n;
	for (int i = 0; i < n; i++) {
		h ^= f[i];
		h *= 0xff51afd7ed558ccdull;
		h ^= h >> 33;
	}
	return (uint32_t)(h ^ (h >> 32));
}

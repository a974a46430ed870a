/*
 * Stack capture by frame-pointer walk: ~1 ns a frame, cheap enough for full
 * mode (glibc backtrace() costs ~2 us for 10 frames). The first frame is the
 * interposed function's return address, so the immediate caller is always
 * right even in code built without frame pointers; the walk then follows
 * saved frame pointers while they stay inside the thread's stack and keep
 * going up. Starting from the caller's frame leaves the engine's own frames
 * out of every stack.
 */
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "maps.h"
#include "uf.h"

/* The bounds of the stack this thread runs on: the mapping that holds the
 * current stack pointer. Read from /proc/self/maps (once per thread), never
 * with pthread_getattr_np: that allocates while holding the thread's lock,
 * so a program calling it whose realloc gets guarded would wait on itself. */
static void learn_bounds(void)
{
	struct uf_maps_line ml;
	char path[32];
	uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
	uf_tls.stack_known = -1;
	if (uf_maps_find(sp, &ml, path, sizeof path)) {
		uf_tls.stack_lo = ml.start;
		uf_tls.stack_hi = ml.end;
		uf_tls.stack_known = 1;
	}
}

static int walk(uintptr_t f, uintptr_t lo, uintptr_t hi, uintptr_t *out, int n, int max)
{
	uintptr_t prev = lo;
	while (n < max) {
		if (f < prev || (f & 7) || f < lo || hi < 16 || f > hi - 16)   /* no wrap-around */
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

/* Read a frame record without trusting it: process_vm_readv on ourselves
 * answers EFAULT for unmapped or PROT_NONE memory instead of faulting
 * (mincore would accept a PROT_NONE guard page). Async-signal-safe. */
static int safe_read16(uintptr_t a, uintptr_t out[2])
{
	struct iovec local = {out, 16}, remote = {(void *)a, 16};
	return process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == 16 ? 0 : -1;
}

/* Walk on a stack whose bounds are unknown (a coroutine, a signal stack, a
 * custom stack): each record is read with safe_read16. About a microsecond
 * a frame, so only used off the thread's own stack. */
static int walk_checked(uintptr_t fp, uintptr_t sp, uintptr_t *out, int n, int max)
{
	uintptr_t prev = sp, f = fp, rec[2];
	while (n < max) {
		if (f < prev || (f & 7) || f - sp > (64u << 20) || safe_read16(f, rec))
			break;
		if (rec[1] < 4096)
			break;
		out[n++] = rec[1];
		prev = f + 16;
		f = rec[0];
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
	if (!fp)
		return n;
	/* fp is the interposed function's own frame: its saved fp is the caller's */
	if (uf_tls.stack_known == 1 && fp >= uf_tls.stack_lo && fp < uf_tls.stack_hi)
		return walk(((uintptr_t *)fp)[0], fp, uf_tls.stack_hi, out, n, max);
	/* not on the stack pthread knows (coroutines, sigaltstack, custom stacks) */
	return walk_checked(((uintptr_t *)fp)[0], fp, out, n, max);
}

/* In the signal handler: bounds from TLS if known, else checked reads. */
static uintptr_t next_return(uintptr_t fp, uintptr_t sp)
{
	uintptr_t rec[2];
	if (fp < sp || (fp & 7))
		return 0;
	if (uf_tls.stack_known == 1 && sp >= uf_tls.stack_lo && sp < uf_tls.stack_hi)
		return fp <= uf_tls.stack_hi - 16 ? ((uintptr_t *)fp)[1] : 0;
	return safe_read16(fp, rec) ? 0 : rec[1];
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
	uintptr_t next = next_return(fp, sp);
	if (lr && lr != next && lr != pc && n < max && uf_is_return_address(lr))
		out[n++] = lr;
	if (uf_tls.stack_known == 1 && sp >= uf_tls.stack_lo && sp < uf_tls.stack_hi)
		return walk(fp, sp, uf_tls.stack_hi, out, n, max);
	return walk_checked(fp, sp, out, n, max);
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

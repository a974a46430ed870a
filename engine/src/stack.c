/*
 * Stack capture. The first frame is the interposed function's return
 * address, so the immediate caller is always right; from there the walk
 * (unwind.c) steps by each module's call-frame information, which keeps
 * the callers of functions built without frame pointers (operator new,
 * __rust_alloc, most of libc and CPython), and by the saved frame pointer
 * where a module has none (JIT code). `unwind=fp` walks frame pointers
 * only, as before: ~13 instructions a frame against ~50, for a user who
 * wants the last few percent of full mode and builds with frame pointers.
 * Starting from the caller's frame leaves the engine's own frames out of
 * every stack.
 */
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
	/* fp is the interposed function's own frame record: above it the
	 * caller's stack as it was at the call, and in it the caller's rbp */
	return uf_unwind_from_call(first, fp, uf_cur[UF_SET_unwind].v == 0, out, n, max);
}

/* In the signal handler: bounds from TLS if known, else checked reads. */
static uintptr_t next_return(uintptr_t fp, uintptr_t sp)
{
	uintptr_t ra;
	if (fp < sp || uf_stack_read(sp, fp + 8, &ra))
		return 0;
	return ra;
}

/* lr: where a frameless leaf returns to ([sp] on x86-64, x30 on arm64) */
int uf_stack_from_context(uintptr_t pc, uintptr_t fp, uintptr_t sp, uintptr_t lr, uintptr_t *out, int max)
{
	int n = 0;
	if (max <= 0)
		return 0;
	out[n++] = pc;
	/* A fault in a frameless leaf (libc's memcpy) with no call-frame
	 * information: fp is still the caller's frame, so the frame-pointer
	 * step would skip the caller itself. Its return address is in lr; take
	 * it when it is not what that step will yield. */
	if (uf_unwind_kind(pc) != UF_UNWIND_CFA) {
		uintptr_t next = next_return(fp, sp);
		if (lr && lr != next && lr != pc && n < max && uf_is_return_address(lr))
			out[n++] = lr;
	}
	return uf_unwind_walk(pc, 0, sp, fp, 1, out, n, max);
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

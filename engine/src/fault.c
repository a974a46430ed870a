/*
 * SIGSEGV/SIGBUS: faults in the pool are classified as KFENCE does
 * (kfence_handle_page_fault) and reported; then the page is opened and the
 * program continues (re-protected at free), or with fault=abort the
 * previous disposition comes back and the access faults again, so the
 * program dies with the original signal and a core. Signals that are not
 * ours go to the handler the program (or a library before us) installed.
 *
 * The program's later sigaction/signal calls for SIGSEGV/SIGBUS are recorded
 * as the handler to forward to, so ufence stays first.
 *
 * Everything here is async-signal-safe: no allocation, no stdio, no locks
 * other than the report spinlock.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "uf.h"

static struct sigaction prev_segv, prev_bus;
static int installed;
static _Atomic int act_lock;

static struct sigaction *prev_of(int sig)
{
	return sig == SIGSEGV ? &prev_segv : &prev_bus;
}

static int real_sigaction(int sig, const struct sigaction *a, struct sigaction *o)
{
	if (!uf_real.sigaction)
		uf_resolve();
	return uf_real.sigaction(sig, a, o);
}

static void lock_act(void)
{
	int e = 0;
	while (!atomic_compare_exchange_weak(&act_lock, &e, 1))
		e = 0;
}

static void unlock_act(void)
{
	atomic_store(&act_lock, 0);
}

static void context_regs(void *ucv, uintptr_t *pc, uintptr_t *fp, uintptr_t *sp, uintptr_t *lr, int *write)
{
	ucontext_t *uc = ucv;
	*write = -1;
	*lr = 0;
#if defined(__x86_64__)
	*pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
	*fp = (uintptr_t)uc->uc_mcontext.gregs[REG_RBP];
	*sp = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
	*lr = *(const uintptr_t *)*sp;     /* the interrupted stack is mapped */
	*write = (uc->uc_mcontext.gregs[REG_ERR] & 2) ? 1 : 0;
#elif defined(__aarch64__)
	*pc = (uintptr_t)uc->uc_mcontext.pc;
	*fp = (uintptr_t)uc->uc_mcontext.regs[29];
	*sp = (uintptr_t)uc->uc_mcontext.sp;
	*lr = (uintptr_t)uc->uc_mcontext.regs[30];
	/* ESR record in __reserved: WnR (bit 6) tells a write */
	const uint8_t *p = (const uint8_t *)uc->uc_mcontext.__reserved;
	const uint8_t *end = p + sizeof uc->uc_mcontext.__reserved;
	while (p + 8 <= end) {
		uint32_t magic, size;
		memcpy(&magic, p, 4);
		memcpy(&size, p + 4, 4);
		if (!magic || size < 8)
			break;
		if (magic == 0x45535201 && p + 16 <= end) {
			uint64_t esr;
			memcpy(&esr, p + 8, 8);
			*write = (esr >> 6) & 1;
			break;
		}
		p += size;
	}
#else
	*pc = *fp = *sp = 0;
#endif
}

static void forward(int sig, siginfo_t *si, void *uc)
{
	struct sigaction p = *prev_of(sig);
	if (p.sa_flags & SA_SIGINFO) {
		if (p.sa_sigaction) {
			if (p.sa_flags & SA_RESETHAND)
				prev_of(sig)->sa_handler = SIG_DFL;
			p.sa_sigaction(sig, si, uc);
			return;
		}
	} else if (p.sa_handler != SIG_DFL && p.sa_handler != SIG_IGN) {
		if (p.sa_flags & SA_RESETHAND)
			prev_of(sig)->sa_handler = SIG_DFL;
		p.sa_handler(sig);
		return;
	}
	if (p.sa_handler == SIG_IGN && si->si_code <= 0)
		return;                  /* an ignored kill(): nothing to do */
	/* default action: die with this signal (and a core); a fault re-executes */
	struct sigaction d;
	memset(&d, 0, sizeof d);
	d.sa_handler = SIG_DFL;
	real_sigaction(sig, &d, NULL);
	if (si->si_code <= 0)
		raise(sig);
}

static int classify_and_report(int sig, siginfo_t *si, void *uc)
{
	uintptr_t a = (uintptr_t)si->si_addr;
	size_t pgsz = uf_pool.page;
	uintptr_t page = a & ~(uintptr_t)(pgsz - 1);
	uintptr_t pi = (page - uf_pool.base) / pgsz;
	uint32_t init = uf_pool.initialized;
	uintptr_t pc, fp, sp, lr;
	int write;
	context_regs(uc, &pc, &fp, &sp, &lr, &write);

	struct uf_bug_info b;
	memset(&b, 0, sizeof b);
	b.addr = a;
	b.access = write < 0 ? 0 : write;
	b.signo = sig;
	b.si_code = si->si_code;
	b.first_is_pc = 1;
	b.nframes = uf_stack_from_context(pc, fp, sp, lr, b.frames, uf_proc.stack_depth);
	b.bug = UF_BUG_INVALID;
	struct uf_meta *open_meta = NULL;
	uint8_t open_bit = 0;

	if ((pi & 1) && pi < 2 * (uintptr_t)init + 2) {
		/* guard page: the allocated neighbour (the nearer one if both) */
		struct uf_meta *l = NULL, *r = NULL;
		int64_t li = pi >= 3 ? (int64_t)((pi - 3) / 2) : -1, ri = (int64_t)((pi - 1) / 2);
		if (li >= 0 && atomic_load(&uf_pool.meta[li].state) == UF_SLOT_ALLOCATED)
			l = &uf_pool.meta[li];
		if (ri < (int64_t)init && atomic_load(&uf_pool.meta[ri].state) == UF_SLOT_ALLOCATED)
			r = &uf_pool.meta[ri];
		struct uf_meta *m = l;
		int64_t mi = li;
		if (r && (!l || a - (l->addr + l->size) > r->addr - a)) {
			m = r;
			mi = ri;
		}
		if (m) {
			b.bug = UF_BUG_OOB;
			b.has_object = 1;
			b.slot = (uint32_t)mi;
			b.obj = *m;
			if (a >= m->addr) {
				b.side = 1;
				b.distance = (int64_t)(a - m->addr);
				open_bit = UF_OPEN_RIGHT;
			} else {
				b.side = 0;
				b.distance = (int64_t)(m->addr - a);
				open_bit = UF_OPEN_LEFT;
			}
			open_meta = m;
		}
	} else if (pi >= 2 && pi < 2 * (uintptr_t)init + 2) {
		uint32_t i = (uint32_t)(pi / 2 - 1);
		struct uf_meta *m = &uf_pool.meta[i];
		uint32_t st = atomic_load(&m->state);
		if (st == UF_SLOT_FREED) {
			b.bug = UF_BUG_UAF;
			b.has_object = 1;
			b.slot = i;
			b.obj = *m;
			open_meta = m;
			open_bit = UF_OPEN_OBJECT;
		} else if (st == UF_SLOT_ALLOCATED) {
			/* raced with a reallocation of this slot: just retry */
			return 1;
		}
	}
	uf_report(&b);
	if (uf_cur[UF_SET_fault].v == 1) {
		/* abort: give the signal back to whoever had it, and let the
		 * access fault again */
		if (sig == SIGBUS && uf_pool_seal_page(page) == 0)
			sig = SIGSEGV;   /* a page-less slot (guard=uffd) now has a marker */
		real_sigaction(sig, prev_of(sig), NULL);
		if (!(prev_of(sig)->sa_flags & SA_SIGINFO) && prev_of(sig)->sa_handler == SIG_IGN) {
			struct sigaction d;
			memset(&d, 0, sizeof d);
			d.sa_handler = SIG_DFL;
			real_sigaction(sig, &d, NULL);
		}
		return 1;
	}
	uf_pool_open_page(page);
	if (open_meta) {
		__atomic_fetch_or(&open_meta->open, open_bit, __ATOMIC_RELAXED);
		__atomic_fetch_or(&open_meta->flags, UF_SLOT_UNPROTECTED, __ATOMIC_RELAXED);
		uf_shm_slot_publish(b.slot, open_meta);
	}
	return 1;
}

static void handler(int sig, siginfo_t *si, void *uc)
{
	int saved = errno;
	uintptr_t a = (uintptr_t)si->si_addr;
	if (si->si_code > 0 && uf_pool.ok && a >= uf_pool.base && a < uf_pool.end) {
		int in = uf_tls.in_engine;
		uf_tls.in_engine = 1;
		int done = classify_and_report(sig, si, uc);
		uf_tls.in_engine = in;
		if (done) {
			errno = saved;
			return;
		}
	}
	if (sig == SIGBUS && uf_shm_fault(a)) {
		errno = saved;
		return;
	}
	forward(sig, si, uc);
	errno = saved;
}

int uf_fault_install(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = handler;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	lock_act();
	int rc = real_sigaction(SIGSEGV, &sa, &prev_segv) | real_sigaction(SIGBUS, &sa, &prev_bus);
	installed = rc == 0;
	unlock_act();
	return rc;
}

/* an alternate stack for the main thread, unless the program has one */
void uf_fault_altstack(void)
{
	stack_t cur;
	if (sigaltstack(NULL, &cur) || !(cur.ss_flags & SS_DISABLE))
		return;
	size_t sz = 64 * 1024;
	void *m = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return;
	stack_t ss = {.ss_sp = m, .ss_size = sz, .ss_flags = 0};
	sigaltstack(&ss, NULL);
}

/* ---- keep ufence first: record the program's SIGSEGV/SIGBUS handler ---- */
UF_EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	if ((sig == SIGSEGV || sig == SIGBUS) && installed) {
		lock_act();
		if (old)
			*old = *prev_of(sig);
		if (act)
			*prev_of(sig) = *act;
		unlock_act();
		return 0;
	}
	return real_sigaction(sig, act, old);
}

UF_EXPORT sighandler_t signal(int sig, sighandler_t h)
{
	struct sigaction sa, old;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = h;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaction(sig, &sa, &old))
		return SIG_ERR;
	if (old.sa_flags & SA_SIGINFO) {
		/* the previous handler took three arguments; hand back its address */
		sighandler_t r;
		void (*f)(int, siginfo_t *, void *) = old.sa_sigaction;
		memcpy(&r, &f, sizeof r);
		return r;
	}
	return old.sa_handler;
}

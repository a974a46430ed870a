/*
 * Change requests and the control thread.
 *
 * A request (whole, or none of it) is applied by whoever sees it first:
 * the control thread, woken by a futex on request_seq, or, in a process
 * that runs no control thread, the next allocation, sent down the slow path
 * by the wake word of the hot page (sample.c). req_mu serialises the two.
 *
 * The thread exists only where it costs the program nothing or is needed:
 * in full mode, and in the sampling modes once the program has a thread of
 * its own. It opens the interval gate every sample_interval ms, keeps the
 * heartbeat and refreshes the module table when dlopen/dlclose changed it.
 * Off mode, and sampling in a single-threaded program, run no thread, since
 * a second thread alone makes glibc's malloc take its multi-threaded
 * (locked) paths: there the allocations keep the interval clock and do the
 * housekeeping (sample.c). Once started it stays.
 */
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "uf.h"

static uint32_t wake_word;
static _Atomic int start_deferred;    /* fork child: start at the first allocation */
static pthread_mutex_t req_mu = PTHREAD_MUTEX_INITIALIZER;
_Atomic int uf_control_running;

/* Which processes run the thread: full mode (it ages revocation batches and
 * answers the CLI at once) and sampling in a multi-threaded program. A
 * single-threaded program samples without it: its allocations keep the
 * interval clock and apply requests (sample.c), since a second thread alone
 * would make glibc's malloc take its locked paths in every call. Without a
 * hot page (or with a hot page we could not map) a CLI can reach us only
 * through the thread. */
int uf_control_needed(const struct uf_value *v)
{
	if (uf_shm.file && !uf_shm.hot)
		return 1;
	int64_t iv = v[UF_SET_sample_interval].v;
	if (iv == -1)
		return 1;
	if (iv == 0 && v[UF_SET_sample_rate].v <= 0)
		return 0;
	return !uf_single_threaded();
}

/* The program started a thread of its own (threads.c, or noticed by a
 * thread-less sampler): from now on the control thread costs glibc nothing
 * more, and keeps the clock off the allocation path. Not in off mode, which
 * never runs it. Under req_mu, so no request is applied meanwhile; a holder
 * means another thread is applying one, which starts the thread itself. */
void uf_control_adopt(void)
{
	static _Atomic int failed;
	if (atomic_load(&uf_control_running) || atomic_load(&failed) || !atomic_load(&uf_proc.ready) ||
	    atomic_load(&uf_forking) || !uf_control_needed(uf_cur) || pthread_mutex_trylock(&req_mu))
		return;
	if (!atomic_load(&uf_control_running)) {
		if (uf_control_start())
			atomic_store(&failed, 1);   /* stays thread-less: slower, never wrong */
		else
			uf_sample_configure();
	}
	pthread_mutex_unlock(&req_mu);
}

static void futex_wait(uint32_t *addr, uint32_t val, uint64_t ns, int shared)
{
	struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
	syscall(SYS_futex, addr, shared ? FUTEX_WAIT : FUTEX_WAIT_PRIVATE, val, &ts, NULL, 0);
}

static void futex_wake(uint32_t *addr, int shared)
{
	syscall(SYS_futex, addr, shared ? FUTEX_WAKE : FUTEX_WAKE_PRIVATE, 1 << 30, NULL, NULL, 0);
}

void uf_control_wake(void)
{
	__atomic_add_fetch(&wake_word, 1, __ATOMIC_RELEASE);
	if (uf_shm.hdr)
		futex_wake(&uf_shm.hdr->request_seq, 1);
}

/* The control thread sleeps on the token word while the interval gate is
 * open, so the allocation that takes the last token wakes it (no wake can be
 * lost: the word has changed before the thread would sleep on it). */
void uf_control_gate_taken(void)
{
	futex_wake((uint32_t *)&uf_interval_tokens, 0);
}

/* what the thread keeps fresh; also done on every request, for an engine
 * that runs no thread */
void uf_control_housekeep(void)
{
	struct uf_shm_header *h = uf_shm.hdr;
	if (!h)
		return;
	__atomic_store_n(&h->heartbeat_ns, uf_now_ns(), __ATOMIC_RELAXED);
	/* the file's real pages; the slot-array extent only if that is unknown */
	uint64_t used = uf_shm_resident_bytes();
	if (!used)
		used = h->slots_off + (uint64_t)uf_pool.initialized * sizeof(struct uf_shm_slot);
	uf_stat_set(UF_STAT_metadata_bytes, used);
}

static void respond(uint32_t seq, int status, const char *msg)
{
	struct uf_shm_header *h = uf_shm.hdr;
	uf_control_housekeep();
	h->response_status = status;
	memset(h->response_msg, 0, sizeof h->response_msg);
	uf_strlcpy(h->response_msg, msg, sizeof h->response_msg);
	__atomic_store_n(&h->ack_seq, seq, __ATOMIC_RELEASE);
	futex_wake(&h->ack_seq, 1);
}

/* Copy the request out of the file first: the CLI (or anyone with write
 * access) may change it under us, and nothing in it is trusted. */
static void handle_request(uint32_t seq)
{
	struct uf_shm_header *h = uf_shm.hdr;
	uint64_t mask = __atomic_load_n(&h->request_mask, __ATOMIC_ACQUIRE);
	static struct uf_value next[UF_SET_COUNT];
	char err[UF_MSG_LEN] = "";
	memcpy(next, uf_cur, sizeof next);
	if (mask >> UF_SET_COUNT) {
		uf_stat_add(UF_STAT_settings_refused, 1);
		respond(seq, EINVAL, "request names a setting index this engine does not have");
		return;
	}
	const struct uf_shm_setting *req = (const void *)(uf_shm.map + uf_shm.request_off);
	for (int i = 0; i < UF_SET_COUNT; i++) {
		if (!(mask & (1ull << i)))
			continue;
		char text[UF_SETTING_TEXT];
		memcpy(text, req[i].text, sizeof text);
		text[sizeof text - 1] = 0;
		int rc = uf_setting_parse(i, text, &next[i], err, sizeof err);
		if (rc) {
			uf_stat_add(UF_STAT_settings_refused, 1);
			respond(seq, rc, err);
			return;
		}
	}
	/* start the thread before the mode that needs it: a refusal then
	 * leaves everything as it was */
	if (uf_control_needed(next) && !atomic_load(&uf_control_running) && uf_control_start()) {
		uf_stat_add(UF_STAT_settings_refused, 1);
		respond(seq, EAGAIN, "cannot start the engine's control thread");
		return;
	}
	int rc = uf_settings_apply(next, err, sizeof err);
	if (rc) {
		uf_stat_add(UF_STAT_settings_refused, 1);
		respond(seq, rc, err);
		return;
	}
	respond(seq, 0, "ok");
}

static void *control_main(void *arg)
{
	(void)arg;
	sigset_t all;
	sigfillset(&all);
	/* synchronous faults stay deliverable: a blocked SIGBUS (our file
	 * truncated under us) would kill the process instead of reaching the
	 * handler */
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGBUS);
	sigdelset(&all, SIGILL);
	sigdelset(&all, SIGFPE);
	pthread_sigmask(SIG_SETMASK, &all, NULL);
	uf_tls.in_engine = 1;           /* this thread's allocations are never guarded */
	uint64_t next_tick = 0;
	uint64_t last_modules = 0;
	for (;;) {
		struct uf_shm_header *h = uf_shm.hdr;
		uint64_t now = uf_now_ns();
		int64_t iv = uf_cur[UF_SET_sample_interval].v;
		uint64_t wait = 50000000ull;   /* a CLI that forgets FUTEX_WAKE still sees < 100 ms */
		int interval = iv > 0 && uf_cur[UF_SET_sample_rate].v == 0;
		if (interval) {
			/* As KFENCE: the next gate opens sample_interval ms after the
			 * previous one was taken, not on a fixed clock, so a process
			 * that rarely allocates is not woken every interval for nothing.
			 * The allocation that takes the last token wakes this thread. */
			if (atomic_load(&uf_interval_tokens) <= 0) {
				if (!next_tick)
					next_tick = now + (uint64_t)iv * 1000000ull;
				if (now >= next_tick) {
					uf_sample_tick();
					next_tick = 0;
				} else if (next_tick - now < wait) {
					wait = next_tick - now;
				}
			} else {
				/* tokens left behind a closed gate (a reconfiguration
				 * raced the last tick): open it again */
				uf_sample_tick_reopen();
			}
		} else {
			next_tick = 0;
		}
		uf_control_poll();
		/* if an allocation is applying a request, the futex wait below
		 * returns when it is acknowledged (or at the timeout) */
		uint32_t seq = __atomic_load_n(&h->request_seq, __ATOMIC_ACQUIRE);
		if (now - last_modules >= 100000000ull || atomic_load(&uf_modules_dirty)) {
			uf_modules_refresh(0);
			last_modules = now;
		}
		uf_control_housekeep();
		uf_revoke_flush(0);   /* a batch of frees that stopped short ages out */
		int tokens = atomic_load(&uf_interval_tokens);
		if (interval && tokens <= 0 && !next_tick)
			continue;          /* taken since the top of the loop: schedule the next gate now */
		if (interval && tokens > 0)
			/* requests are still seen within the 50 ms wait bound */
			futex_wait((uint32_t *)&uf_interval_tokens, (uint32_t)tokens, wait, 0);
		else
			futex_wait(&h->request_seq, seq, wait, uf_shm.file);
	}
	return NULL;
}

/* Start the thread at the next allocation's slow path (sent there by the wake
 * word), not now: uf_control_poll starts it. */
void uf_control_defer(void)
{
	atomic_store(&start_deferred, 1);
	__atomic_store_n(&uf_hot.wake, 1, __ATOMIC_RELEASE);
}

/* Apply pending requests. Called by the control thread and, with the engine's
 * recursion guard set and no engine lock held, by an allocation that saw the
 * wake word. Bounded: a hostile writer bumping request_seq cannot hold an
 * allocating thread here. */
void uf_control_poll(void)
{
	struct uf_shm_header *h = uf_shm.hdr;
	if (!h)
		return;
	if (atomic_load(&start_deferred) && atomic_exchange(&start_deferred, 0) && uf_control_needed(uf_cur))
		uf_control_start();
	for (int round = 0; round < 2; round++) {
		if (pthread_mutex_trylock(&req_mu))
			return;          /* the holder applies it (and re-checks below) */
		for (int n = 0; n < 4; n++) {
			uint32_t seq = __atomic_load_n(&h->request_seq, __ATOMIC_ACQUIRE);
			if (seq == __atomic_load_n(&h->ack_seq, __ATOMIC_ACQUIRE))
				break;
			handle_request(seq);
		}
		pthread_mutex_unlock(&req_mu);
		/* a request that came while we held the lock was seen by a thread
		 * whose trylock failed: look again after unlocking */
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if (__atomic_load_n(&h->request_seq, __ATOMIC_ACQUIRE) == __atomic_load_n(&h->ack_seq, __ATOMIC_ACQUIRE))
			return;
	}
}

/* Said once, in full mode only, where a full pool means allocations the
 * user asked to have guarded go to the next allocator. */
static void pool_full_notice(uint64_t live, int by_guard)
{
	static _Atomic int said;
	if (atomic_exchange(&said, 1))
		return;
	char line[320];
	struct uf_buf b = {line, 0, sizeof line};
	uf_put(&b, "ufence: pool full: ");
	uf_put_dec(&b, live);
	uf_put(&b, " guarded objects live");
	if (by_guard)
		uf_put(&b, " (all that guard=mprotect allows under vm.max_map_count; guard=uffd or madvise has no such limit)");
	else {
		uf_put(&b, " (max_objects=");
		uf_put_dec(&b, (uint64_t)uf_cur[UF_SET_max_objects].v);
		uf_put(&b, "): further allocations go unguarded until some are freed; raise it with: ufence set ");
		uf_put_dec(&b, (uint64_t)getpid());
		uf_put(&b, " max_objects=N");
	}
	uf_putc(&b, '\n');
	uf_write_all(uf_proc.log_fd, line, b.len < sizeof line ? b.len : sizeof line);
}

/* Full mode guards every eligible allocation, so a pool whose every slot is
 * live doubles, up to max_objects, rather than send allocations to the next
 * allocator: the user need not know the program's live-object count first
 * (Anolis sizes its pool by hand), and the pool stays within twice the live
 * set, which keeps the quarantine's address range (and its TLB cost) small.
 * Only num_objects changes, under req_mu as a request would; nothing here
 * takes the module lock or allocates, since it runs inside the program's
 * malloc. 1: there is room now. */
int uf_control_grow_pool(uint32_t live)
{
	uint64_t cap = (uint64_t)uf_cur[UF_SET_max_objects].v;
	int by_guard = 0;
	if (cap > uf_pool.reserved_slots)
		cap = uf_pool.reserved_slots;
	if (cap > uf_guard_live_cap) {
		cap = uf_guard_live_cap;
		by_guard = 1;
	}
	uint32_t limit = uf_pool.limit;
	if (live < limit && live < uf_guard_live_cap)
		return 1;               /* room made meanwhile */
	if (limit >= cap) {
		pool_full_notice(live, by_guard);
		return 0;
	}
	if (pthread_mutex_trylock(&req_mu))
		return 0;               /* a change is being applied: this one allocation goes unguarded */
	if (uf_pool.limit == limit) {
		uint64_t n = 2ull * limit;
		if (n > cap)
			n = cap;
		char text[24], err[UF_MSG_LEN];
		struct uf_buf b = {text, 0, sizeof text};
		uf_put_dec(&b, n);
		text[b.len < sizeof text ? b.len : sizeof text - 1] = 0;
		struct uf_value v;
		if (!uf_setting_parse(UF_SET_num_objects, text, &v, err, sizeof err) &&
		    !uf_pool_resize((uint32_t)n, err, sizeof err)) {
			uf_cur[UF_SET_num_objects] = v;
			uf_settings_publish();
		}
	}
	pthread_mutex_unlock(&req_mu);
	return live < uf_pool.limit;
}

/* fork child: no thread survived; the parent's request lock state is moot */
void uf_control_atfork_child(void)
{
	atomic_store(&start_deferred, 0);
	pthread_mutex_init(&req_mu, NULL);
	atomic_store(&uf_control_running, 0);
	if (uf_shm.hdr)
		uf_shm.hdr->control_thread = 0;
}

int uf_control_start(void)
{
	if (!uf_shm.hdr)
		return -1;
	int expect = 0;
	if (!atomic_compare_exchange_strong(&uf_control_running, &expect, 1))
		return 0;
	/* its own allocations (thread stack, TLS) go to the next allocator */
	int in = uf_tls.in_engine;
	uf_tls.in_engine = 1;
	pthread_t t;
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&at, 256 * 1024);
	/* the thread must not take signals meant for the program: block them
	 * across the create so none arrives before control_main blocks them */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int rc = pthread_create(&t, &at, control_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&at);
	if (rc == 0) {
		pthread_setname_np(t, "ufence-ctl");
		uf_shm.hdr->control_thread = 1;
	} else {
		atomic_store(&uf_control_running, 0);
	}
	uf_tls.in_engine = in;
	return rc;
}

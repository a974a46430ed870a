/*
 * The control thread: waits on request_seq with a futex (so `ufence set`
 * takes effect at once), applies a whole change request or none of it,
 * updates the heartbeat, opens the sampling gate every sample_interval ms,
 * and refreshes the module table when dlopen/dlclose changed it.
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

static void respond(uint32_t seq, int status, const char *msg)
{
	struct uf_shm_header *h = uf_shm.hdr;
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
	pthread_sigmask(SIG_BLOCK, &all, NULL);
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
			if (!next_tick || now >= next_tick) {
				uf_sample_tick();
				next_tick = now + (uint64_t)iv * 1000000ull;
			}
			if (next_tick - now < wait)
				wait = next_tick - now;
		} else {
			next_tick = 0;
		}
		uint32_t seq = __atomic_load_n(&h->request_seq, __ATOMIC_ACQUIRE);
		if (seq != __atomic_load_n(&h->ack_seq, __ATOMIC_ACQUIRE)) {
			handle_request(seq);
			continue;
		}
		if (now - last_modules >= 100000000ull || atomic_load(&uf_modules_dirty)) {
			uf_modules_refresh(0);
			last_modules = now;
		}
		__atomic_store_n(&h->heartbeat_ns, now, __ATOMIC_RELAXED);
		uf_stat_set(UF_STAT_metadata_bytes, h->slots_off + (uint64_t)uf_pool.initialized * sizeof(struct uf_shm_slot));
		futex_wait(&h->request_seq, seq, wait, uf_shm.file);
	}
	return NULL;
}

int uf_control_start(void)
{
	if (!uf_shm.hdr)
		return -1;
	pthread_t t;
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&at, 256 * 1024);
	int rc = pthread_create(&t, &at, control_main, NULL);
	pthread_attr_destroy(&at);
	if (rc == 0)
		pthread_setname_np(t, "ufence-ctl");
	return rc;
}

/*
 * Start-up and process life: the constructor reads UFENCE_OPTIONS, probes
 * the guard mechanism, creates the shared-memory file, sizes the pool,
 * installs the fault handler and starts the control thread if the mode needs
 * one; only then does the gate open. The destructor checks live canaries (check_on_exit, as
 * KFENCE's check_on_panic) and removes the file, but never unmaps anything:
 * other threads and later destructors keep allocating.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "uf.h"

__thread struct uf_tls uf_tls __attribute__((tls_model("initial-exec")));
struct uf_proc uf_proc = {.log_fd = 2, .stack_depth = 32};
extern char **environ;

int uf_gettid(void)
{
	if (UF_UNLIKELY(!uf_tls.tid))
		uf_tls.tid = (int)syscall(SYS_gettid);
	return uf_tls.tid;
}

uint64_t uf_rand(void)
{
	uint64_t x = uf_tls.rng;
	if (UF_UNLIKELY(!x)) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		x = ((uint64_t)uf_gettid() << 32) ^ (uint64_t)ts.tv_nsec ^ (uintptr_t)&uf_tls;
		x |= 1;
	}
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	uf_tls.rng = x;
	return x;
}

uint64_t uf_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void uf_init_early(void)
{
	uf_resolve();
}

void uf_die_after_bug(void)
{
	struct sigaction d;
	memset(&d, 0, sizeof d);
	d.sa_handler = SIG_DFL;
	uf_real.sigaction(SIGABRT, &d, NULL);
	raise(SIGABRT);
	_exit(134);
}

static void report_dir_choose(void);

/* a path that does not fit is refused, never silently cut (a cut path is
 * another directory) */
static void report_dir_default(void)
{
	report_dir_choose();
	if (strlen(uf_proc.report_dir) + 40 >= sizeof uf_proc.report_dir) {
		static const char msg[] = "ufence: report directory path too long; JSON reports disabled\n";
		uf_write_all(uf_proc.log_fd, msg, sizeof msg - 1);
		uf_proc.report_dir[0] = 0;
	}
}

static void report_dir_choose(void)
{
	const char *d = getenv("UFENCE_REPORT_DIR");
	struct uf_buf b = {uf_proc.report_dir, 0, sizeof uf_proc.report_dir};
	if (d && *d) {
		uf_put(&b, d);
		return;
	}
	const char *x = getenv("XDG_STATE_HOME");
	if (x && x[0] == '/') {
		uf_put(&b, x);
		uf_put(&b, "/ufence/reports");
		return;
	}
	const char *home = getenv("HOME");
	if (home && home[0] == '/') {
		uf_put(&b, home);
		uf_put(&b, "/.local/state/ufence/reports");
	}
}

static void read_comm(void)
{
	int fd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = read(fd, uf_proc.comm, sizeof uf_proc.comm - 1);
		close(fd);
		if (n > 0) {
			uf_proc.comm[n] = 0;
			char *nl = strchr(uf_proc.comm, '\n');
			if (nl)
				*nl = 0;
		}
	}
	ssize_t n = readlink("/proc/self/exe", uf_proc.exe, sizeof uf_proc.exe - 1);
	uf_proc.exe[n > 0 ? n : 0] = 0;
}

/* follow_exec=0: drop the engine from LD_PRELOAD so exec'd programs run bare */
static void drop_from_preload(void)
{
	for (char **e = environ; e && *e; e++) {
		if (strncmp(*e, "LD_PRELOAD=", 11))
			continue;
		static char buf[4096];
		struct uf_buf b = {buf, 0, sizeof buf};
		uf_put(&b, "LD_PRELOAD=");
		const char *p = *e + 11;
		int first = 1;
		while (*p) {
			size_t n = strcspn(p, ": ");
			char tok[UF_PATH_LEN];
			size_t c = n < sizeof tok - 1 ? n : sizeof tok - 1;
			memcpy(tok, p, c);
			tok[c] = 0;
			if (n && !strstr(uf_basename(tok), "libufence")) {
				if (!first)
					uf_putc(&b, ':');
				uf_putn(&b, p, n);
				first = 0;
			}
			p += n;
			while (*p == ':' || *p == ' ')
				p++;
		}
		*e = buf;
	}
}

/* lock order: modules, pool, report (a report never takes the others) */
static void atfork_prepare(void)
{
	atomic_store(&uf_forking, 1);
	uf_modules_atfork_lock();
	uf_pool_lock();
	uf_report_atfork_lock();
}

static void atfork_parent(void)
{
	uf_report_atfork_unlock();
	uf_pool_unlock();
	uf_modules_atfork_unlock(0);
	uf_stat_add(UF_STAT_fork_children, 1);
	atomic_store(&uf_forking, 0);
}

static void atfork_child(void)
{
	uf_report_atfork_unlock();
	uf_report_atfork_child();
	uf_pool_atfork_child();
	uf_uffd_atfork_child();
	uf_modules_atfork_unlock(1);
	uf_tls.tid = 0;
	uf_tls.rng = 0;
	uf_proc.pid = getpid();
	uf_shm_after_fork();
	if (uf_shm.hdr)
		uf_shm.hdr->ack_seq = uf_shm.hdr->request_seq;
	uf_control_atfork_child();
	/* A child that runs a control thread is a multi-threaded process, and
	 * glibc then takes its locked paths in malloc and in every cancellable
	 * system call: for fork-heavy programs (hackbench: 320 children) that
	 * was most of the sampling modes' cost. A sampling child runs none
	 * (control.c: the child is single-threaded); in full mode the thread
	 * starts at the child's first allocation (the wake word sends it down
	 * the slow path), so a child that never allocates never gets one. */
	if (uf_control_needed(uf_cur)) {
		if (uf_shm.hot)
			uf_control_defer();
		else
			uf_control_start();
	} else {
		uf_sample_configure();   /* a sampling child keeps the clock itself */
	}
	atomic_store(&uf_forking, 0);
}

__attribute__((constructor(101))) static void uf_ctor(void)
{
	uf_init_early();
	uf_tls.in_engine = 1;
	uf_proc.pid = getpid();
	uf_proc.start_mono_ns = uf_now_ns();
	struct timespec rt;
	clock_gettime(CLOCK_REALTIME, &rt);
	uf_proc.start_real_ns = (uint64_t)rt.tv_sec * 1000000000ull + (uint64_t)rt.tv_nsec;
	const char *lf = getenv("UFENCE_LOG_FD");
	if (lf && *lf) {
		char *end;
		long v = strtol(lf, &end, 10);
		if (!*end && v >= 0 && v < 65536 && fcntl((int)v, F_GETFD) >= 0)
			uf_proc.log_fd = (int)v;
	}
	read_comm();
	report_dir_default();
	uf_settings_defaults();
	uf_options_parse(getenv("UFENCE_OPTIONS"));
	uf_proc.stack_depth = (int)uf_cur[UF_SET_stack_depth].v;

	int deg = 0;
	if (!uf_pool.ok)
		deg |= UF_DEGRADED_NO_POOL;
	uf_shm_create();
	if (uf_guard_init((int)uf_cur[UF_SET_guard].v)) {
		deg |= UF_DEGRADED_NO_GUARD;
		uf_pool.ok = 0;
	}
	uf_modules_refresh(1);
	if (uf_fault_install()) {
		deg |= UF_DEGRADED_NO_SIGNAL;
		uf_pool.ok = 0;
	}
	uf_fault_altstack();
	char err[UF_MSG_LEN] = "";
	static struct uf_value next[UF_SET_COUNT];
	memcpy(next, uf_cur, sizeof next);
	if (uf_pool.ok && uf_settings_apply(next, err, sizeof err)) {
		struct uf_buf b = {err + strlen(err), 0, 0};
		(void)b;
		uf_write_all(uf_proc.log_fd, "ufence: ", 8);
		uf_write_all(uf_proc.log_fd, err, strlen(err));
		uf_write_all(uf_proc.log_fd, "\n", 1);
	}
	uf_stat_set(UF_STAT_degraded, uf_stat_get(UF_STAT_degraded) | (uint64_t)deg);
	uf_stat_set(UF_STAT_pool_reserved_bytes, uf_pool.end - uf_pool.base);
	if (!uf_cur[UF_SET_follow_exec].v)
		drop_from_preload();
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
	atomic_store(&uf_proc.ready, 1);
	uf_settings_publish();
	/* off mode runs no thread (control.c); a later request starts it */
	if (uf_control_needed(uf_cur))
		uf_control_start();
	uf_control_housekeep();
	uf_sample_configure();
	uf_tls.in_engine = 0;
}

__attribute__((destructor(101))) static void uf_dtor(void)
{
	if (!atomic_load(&uf_proc.ready))
		return;
	int in = uf_tls.in_engine;
	uf_tls.in_engine = 1;
	if (uf_cur[UF_SET_check_on_exit].v && uf_pool.ok)
		uf_pool_check_all();
	uf_shm_remove();
	uf_tls.in_engine = in;
}

/* A child that ends with _exit() runs no destructor: still remove its file.
 * (exit() reaches the kernel through libc's internal _exit, not this one.) */
UF_EXPORT __attribute__((noreturn)) void _exit(int code)
{
	uf_shm_remove();
	for (;;)
		syscall(SYS_exit_group, code);
}

UF_EXPORT __attribute__((noreturn)) void _Exit(int code)
{
	_exit(code);
}

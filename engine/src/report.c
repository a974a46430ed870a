/*
 * Bug reports: KFENCE-shaped text on the log fd and one JSON file per bug in
 * the report directory (docs/design.md). Runs in signal context, so it only
 * formats into static buffers (under a spinlock), resolves names through
 * symbols.c and writes with write(2). One report per object: a second bug on
 * an object that was already reported is counted, not printed. And, with
 * dedup_reports, one per bug site: full mode puts every object of a buggy loop
 * in the pool, and a million copies of one report would flood the log and
 * the report directory of the process it is meant to help.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "uf.h"

static _Atomic int report_lock;
static _Atomic int report_owner;
static _Atomic uint32_t report_seq;
static char text_buf[32768];
static char json_buf[65536];
static const char rule[] = "==================================================================\n";

int uf_report_claim(uint32_t slot)
{
	uint32_t old = __atomic_fetch_or(&uf_pool.meta[slot].flags, UF_SLOT_REPORTED, __ATOMIC_ACQ_REL);
	return (old & UF_SLOT_REPORTED) != 0;
}

static void lock(void)
{
	int tid = uf_gettid();
	int e = 0;
	while (!atomic_compare_exchange_weak(&report_lock, &e, 1)) {
		e = 0;
		if (atomic_load(&report_owner) == tid)
			return;          /* re-entered from our own report: proceed */
	}
	atomic_store(&report_owner, tid);
}

static void unlock(void)
{
	atomic_store(&report_owner, 0);
	atomic_store(&report_lock, 0);
}

/* fork: a report in progress in another thread must not leave the lock
 * held forever in the child */
void uf_report_atfork_lock(void)
{
	lock();
}

void uf_report_atfork_unlock(void)
{
	unlock();
}

/* Bug sites already reported: (kind, access, code address) keys in a small
 * open-addressed set, lock-free since reports come from signal handlers.
 * When a probe run is full the bug is reported: never lose a new one. */
#define SEEN_SLOTS 4096u
#define SEEN_PROBES 16u
static _Atomic uint64_t seen[SEEN_SLOTS];
static _Atomic int told_dedup;

static int seen_before(const struct uf_bug_info *b)
{
	if (!b->nframes)
		return 0;
	uint64_t key = ((uint64_t)b->frames[0] << 8) | ((uint64_t)(b->bug & 31) << 3) |
		       ((uint64_t)((b->access + 1) & 3) << 1) | 1u;
	uint64_t h = key * 0x9e3779b97f4a7c15ull;
	uint32_t at = (uint32_t)(h >> 52);
	for (uint32_t k = 0; k < SEEN_PROBES; k++) {
		_Atomic uint64_t *slot = &seen[(at + k) % SEEN_SLOTS];
		uint64_t cur = atomic_load(slot);
		if (cur == 0 && atomic_compare_exchange_strong(slot, &cur, key))
			return 0;
		if (cur == key)
			return 1;
	}
	return 0;
}

/* a fork child is its own process with its own reports: it reports its bugs
 * once itself */
void uf_report_atfork_child(void)
{
	for (uint32_t k = 0; k < SEEN_SLOTS; k++)
		atomic_store_explicit(&seen[k], 0, memory_order_relaxed);
	atomic_store(&told_dedup, 0);
}

static void note_dedup(void)
{
	if (atomic_exchange(&told_dedup, 1))
		return;
	static const char msg[] = "ufence: a bug at a site already reported is counted, not printed "
				  "(reports_deduplicated in ufence stats; dedup_reports=0 prints every one)\n";
	uf_write_all(uf_proc.log_fd, msg, sizeof msg - 1);
}

static const char *access_name(int a)
{
	return a == 1 ? "write" : "read";
}

struct frame_info {
	uintptr_t pc;
	char name[512];          /* C++ symbols run long; a cut one cannot be demangled */
	uintptr_t off, size;
	int level;               /* 0 unknown, 1 module only, 2 symbol */
	struct uf_module mod;
};

static void resolve(uintptr_t pc, int is_return, struct frame_info *f)
{
	f->pc = pc;
	f->off = f->size = 0;
	f->level = uf_symbolize(pc, is_return, f->name, sizeof f->name, &f->off, &f->size, &f->mod);
}

static void put_func(struct uf_buf *b, const struct frame_info *f)
{
	/* C++ and Rust names demangled (the JSON keeps the symbol as it is) */
	static char readable[512];
	if (f->level == 2) {
		uf_put(b, uf_demangle(f->name, readable, sizeof readable) == 0 ? readable : f->name);
		uf_putc(b, '+');
		uf_put_hex(b, f->off);
		uf_putc(b, '/');
		uf_put_hex(b, f->size);
	} else {
		uf_put_hex(b, f->pc);
	}
}

static void put_text_frame(struct uf_buf *b, const struct frame_info *f)
{
	uf_putc(b, ' ');
	put_func(b, f);
	if (f->level >= 1) {
		uf_put(b, " [");
		uf_put(b, uf_basename(f->mod.path[0] ? f->mod.path : "?"));
		if (f->level == 1) {
			uf_putc(b, '+');
			uf_put_hex(b, f->pc - f->mod.base);
		}
		uf_putc(b, ']');
	}
	uf_putc(b, '\n');
}

static void put_json_frame(struct uf_buf *j, const struct frame_info *f)
{
	uf_put(j, "{\"pc\": \"");
	uf_put_hex(j, f->pc);
	uf_putc(j, '"');
	if (f->level >= 1) {
		uf_put(j, ", \"module\": ");
		uf_put_json_str(j, f->mod.path);
		uf_put(j, ", \"offset\": \"");
		uf_put_hex(j, f->pc - f->mod.base);
		uf_putc(j, '"');
		if (f->mod.build_id_len) {
			uf_put(j, ", \"build_id\": \"");
			for (uint32_t i = 0; i < f->mod.build_id_len && i < UF_BUILD_ID_MAX; i++) {
				uf_putc(j, "0123456789abcdef"[f->mod.build_id[i] >> 4]);
				uf_putc(j, "0123456789abcdef"[f->mod.build_id[i] & 15]);
			}
			uf_putc(j, '"');
		}
	}
	if (f->level == 2) {
		uf_put(j, ", \"function\": ");
		uf_put_json_str(j, f->name);
		uf_put(j, ", \"function_offset\": ");
		uf_put_dec(j, f->off);
		uf_put(j, ", \"function_size\": ");
		uf_put_dec(j, f->size);
	}
	uf_putc(j, '}');
}

static void put_stack(struct uf_buf *t, struct uf_buf *j, const uintptr_t *frames, int n, int first_is_pc)
{
	uf_putc(j, '[');
	for (int i = 0; i < n; i++) {
		static struct frame_info f;          /* under the report lock: off the handler's stack */
		resolve(frames[i], !(i == 0 && first_is_pc), &f);
		put_text_frame(t, &f);
		if (i)
			uf_put(j, ", ");
		put_json_frame(j, &f);
	}
	uf_putc(j, ']');
}

static const char *state_name(uint32_t s)
{
	return s == UF_SLOT_ALLOCATED ? "allocated" : s == UF_SLOT_FREED ? "freed" : "unused";
}

static void put_track(struct uf_buf *t, struct uf_buf *j, const char *kind, uint32_t tid, int64_t cpu,
		      uint64_t ns, uint32_t stack, uint64_t now)
{
	uint64_t rel = ns > uf_proc.start_mono_ns ? ns - uf_proc.start_mono_ns : 0;
	uint64_t age = now > ns ? now - ns : 0;
	uf_put(t, "\n");
	uf_put(t, kind);
	uf_put(t, " by thread ");
	uf_put_dec(t, tid);
	uf_put(t, " at ");
	uf_put_secs(t, rel);
	uf_put(t, "s (");
	uf_put_secs(t, age);
	uf_put(t, "s ago):\n");
	uf_put(j, "{\"kind\": \"");
	uf_put(j, kind);
	uf_put(j, "\", \"tid\": ");
	uf_put_dec(j, tid);
	if (cpu >= 0) {
		uf_put(j, ", \"cpu\": ");
		uf_put_dec(j, (uint64_t)cpu);
	}
	uf_put(j, ", \"timestamp\": ");
	uf_put_secs(j, rel);
	uf_put(j, ", \"age\": ");
	uf_put_secs(j, age);
	if (stack) {
		uf_put(j, ", \"stack_id\": ");
		uf_put_dec(j, stack);
	}
	uf_put(j, ", \"frames\": ");
	uintptr_t fr[UF_MAX_FRAMES];
	int n = uf_depot_get(stack, fr, UF_MAX_FRAMES);
	if (!n) {
		uf_put(t, " no ");
		uf_put(t, kind[0] == 'a' ? "allocation" : "deallocation");
		uf_put(t, " stack\n");
		uf_put(j, "[]");
	} else {
		put_stack(t, j, fr, n, 0);
	}
	uf_putc(j, '}');
}

static void put_object(struct uf_buf *t, struct uf_buf *j, const struct uf_bug_info *b, uint64_t now)
{
	const struct uf_meta *m = &b->obj;
	uint32_t st = atomic_load(&m->state);
	uintptr_t end = m->addr + (m->size ? m->size - 1 : 0);
	const char *cache = uf_size_class_name(m->size, m->flags & UF_SLOT_PAGE_ALLOC);
	uf_put(t, "\nufence-#");
	uf_put_dec(t, b->slot);
	uf_put(t, ": ");
	uf_put_hex(t, m->addr);
	uf_putc(t, '-');
	uf_put_hex(t, end);
	uf_put(t, ", size=");
	uf_put_dec(t, m->size);
	uf_put(t, ", cache=");
	uf_put(t, cache);
	uf_put(t, "\n");

	uf_put(j, ", \"object\": {\"index\": ");
	uf_put_dec(j, b->slot);
	uf_put(j, ", \"state\": \"");
	uf_put(j, state_name(st));
	uf_put(j, "\", \"start\": \"");
	uf_put_hex(j, m->addr);
	uf_put(j, "\", \"end\": \"");
	uf_put_hex(j, end);
	uf_put(j, "\", \"size\": ");
	uf_put_dec(j, m->size);
	uf_put(j, ", \"cache\": \"");
	uf_put(j, cache);
	uf_put(j, "\", \"flags\": [");
	int k = 0;
	if (m->flags & UF_SLOT_RIGHT)
		uf_put(j, k++ ? ", \"right\"" : "\"right\"");
	else
		uf_put(j, k++ ? ", \"left\"" : "\"left\"");
	if (m->flags & UF_SLOT_PAGE_ALLOC)
		uf_put(j, ", \"page\"");
	uf_put(j, "], \"alloc\": ");
	put_track(t, j, "allocated", m->alloc_tid, m->alloc_cpu, m->alloc_ns, m->alloc_stack, now);
	if (st == UF_SLOT_FREED) {
		uf_put(j, ", \"free\": ");
		put_track(t, j, "freed", m->free_tid, -1, m->free_ns, m->free_stack, now);
	}
	uf_putc(j, '}');
}

static int mkdir_p(const char *dir)
{
	char tmp[UF_PATH_LEN];
	if (uf_strlcpy(tmp, dir, sizeof tmp) >= sizeof tmp)
		return -1;
	for (char *p = tmp + 1; *p; p++) {
		if (*p == '/') {
			*p = 0;
			mkdir(tmp, 0700);
			*p = '/';
		}
	}
	if (mkdir(tmp, 0700) && errno != EEXIST)
		return -1;
	return 0;
}

static void write_json(const char *json, size_t n, char *path, size_t pathlen)
{
	path[0] = 0;
	if (!uf_proc.report_dir[0] || mkdir_p(uf_proc.report_dir))
		return;
	uint32_t seq = atomic_fetch_add(&report_seq, 1) + 1;
	char tmp[UF_PATH_LEN + 64];
	struct uf_buf p = {path, 0, pathlen}, q = {tmp, 0, sizeof tmp};
	uf_put(&p, uf_proc.report_dir);
	uf_putc(&p, '/');
	uf_put_dec(&p, (uint64_t)getpid());
	uf_putc(&p, '-');
	uf_put_dec(&p, seq);
	uf_put(&p, ".json");
	uf_put(&q, path);
	uf_put(&q, ".tmp");
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		path[0] = 0;
		return;
	}
	uf_write_all(fd, json, n);
	close(fd);
	if (rename(tmp, path)) {
		unlink(tmp);
		path[0] = 0;
		return;
	}
	uf_stat_add(UF_STAT_reports_written, 1);
}

static const char *bug_name(int bug)
{
	static const char *const n[] = {"out-of-bounds", "use-after-free", "memory corruption", "invalid",
					"invalid free", "double free"};
	return n[bug];
}

void uf_report(struct uf_bug_info *b)
{
	uf_stat_add(UF_STAT_total_bugs, 1);
	if (uf_shm.hdr)
		__atomic_fetch_add(&uf_shm.hdr->bugs_seen, 1, __ATOMIC_RELAXED);
	if (b->has_object && uf_report_claim(b->slot)) {
		uf_stat_add(UF_STAT_reports_suppressed, 1);
		return;
	}
	if (b->has_object) {
		b->obj.flags |= UF_SLOT_REPORTED;
		uf_shm_slot_publish(b->slot, &uf_pool.meta[b->slot]);   /* live state, not the copy */
	}
	if (uf_cur[UF_SET_dedup_reports].v && seen_before(b)) {
		uf_stat_add(UF_STAT_reports_deduplicated, 1);
		note_dedup();
		return;
	}
	lock();
	uint64_t now = uf_now_ns();
	struct uf_buf t = {text_buf, 0, sizeof text_buf}, j = {json_buf, 0, sizeof json_buf};
	static struct frame_info top;
	if (b->nframes)
		resolve(b->frames[0], !b->first_is_pc, &top);
	int with_access = b->bug == UF_BUG_OOB || b->bug == UF_BUG_UAF || b->bug == UF_BUG_INVALID;

	uf_put(&t, rule);
	uf_put(&t, "BUG: UFENCE: ");
	uf_put(&t, bug_name(b->bug));
	if (with_access) {
		uf_putc(&t, ' ');
		uf_put(&t, access_name(b->access));
	}
	uf_put(&t, " in ");
	static char func[600];
	struct uf_buf fb = {func, 0, sizeof func};
	if (b->nframes)
		put_func(&fb, &top);
	else
		uf_put(&fb, "?");
	uf_put(&t, func);
	uf_put(&t, "\n\n");

	switch (b->bug) {
	case UF_BUG_OOB:
		uf_put(&t, "Out-of-bounds ");
		uf_put(&t, access_name(b->access));
		uf_put(&t, " at ");
		uf_put_hex(&t, b->addr);
		uf_put(&t, " (");
		uf_put_dec(&t, (uint64_t)b->distance);
		uf_put(&t, b->side ? "B right of ufence-#" : "B left of ufence-#");
		uf_put_dec(&t, b->slot);
		uf_put(&t, "):\n");
		break;
	case UF_BUG_UAF:
		uf_put(&t, "Use-after-free ");
		uf_put(&t, access_name(b->access));
		uf_put(&t, " at ");
		uf_put_hex(&t, b->addr);
		uf_put(&t, " (in ufence-#");
		uf_put_dec(&t, b->slot);
		uf_put(&t, "):\n");
		break;
	case UF_BUG_CORRUPTION:
		uf_put(&t, "Corrupted memory at ");
		uf_put_hex(&t, b->addr);
		uf_put(&t, " [");
		for (int i = 0; i < b->ndump; i++) {
			if (b->dump_bad[i]) {
				uf_putc(&t, ' ');
				uf_put_hex2(&t, b->dump[i]);
			} else {
				uf_put(&t, " .");
			}
		}
		uf_put(&t, " ] (in ufence-#");
		uf_put_dec(&t, b->slot);
		uf_put(&t, b->after_free ? ", after free, found at revocation):\n"
			   : b->at_exit   ? ", found at exit):\n"
					  : "):\n");
		break;
	case UF_BUG_INVALID:
		uf_put(&t, "Invalid ");
		uf_put(&t, access_name(b->access));
		uf_put(&t, " at ");
		uf_put_hex(&t, b->addr);
		uf_put(&t, ":\n");
		break;
	default:
		uf_put(&t, b->bug == UF_BUG_DOUBLE_FREE ? "Double free of " : "Invalid free of ");
		uf_put_hex(&t, b->addr);
		if (b->has_object) {
			uf_put(&t, " (in ufence-#");
			uf_put_dec(&t, b->slot);
			uf_putc(&t, ')');
		}
		uf_put(&t, ":\n");
	}

	uf_put(&j, "{\"schema\": \"ufence.report/1\", \"source\": \"process\", \"bug\": \"");
	uf_put(&j, bug_name(b->bug));
	uf_put(&j, "\", \"access\": ");
	uf_put(&j, with_access ? (b->access == 1 ? "\"write\"" : "\"read\"") : "null");
	uf_put(&j, ", \"function\": ");
	uf_put_json_str(&j, func);
	uf_put(&j, ", \"address\": \"");
	uf_put_hex(&j, b->addr);
	uf_putc(&j, '"');
	if (b->bug == UF_BUG_OOB) {
		uf_put(&j, ", \"distance\": ");
		uf_put_dec(&j, (uint64_t)b->distance);
		uf_put(&j, b->side ? ", \"side\": \"right\"" : ", \"side\": \"left\"");
	}
	if (b->bug == UF_BUG_CORRUPTION) {
		uf_put(&j, ", \"corruption\": [");
		for (int i = 0; i < b->ndump; i++) {
			if (i)
				uf_put(&j, ", ");
			uf_put(&j, "{\"value\": ");
			if (b->dump_bad[i])
				uf_put_dec(&j, b->dump[i]);
			else
				uf_put(&j, "null");
			uf_putc(&j, '}');
		}
		uf_putc(&j, ']');
	}
	uf_put(&j, ", \"stack\": ");
	put_stack(&t, &j, b->frames, b->nframes, b->first_is_pc);
	if (b->has_object)
		put_object(&t, &j, b, now);

	int tid = uf_gettid();
	struct timespec rt;
	clock_gettime(CLOCK_REALTIME, &rt);
	uf_put(&j, ", \"pid\": ");
	uf_put_dec(&j, (uint64_t)getpid());
	uf_put(&j, ", \"tid\": ");
	uf_put_dec(&j, (uint64_t)tid);
	uf_put(&j, ", \"comm\": ");
	uf_put_json_str(&j, uf_proc.comm);
	uf_put(&j, ", \"exe\": ");
	uf_put_json_str(&j, uf_proc.exe);
	uf_put(&j, ", \"timestamp\": ");
	uf_put_secs(&j, (uint64_t)rt.tv_sec * 1000000000ull + (uint64_t)rt.tv_nsec);
	uf_put(&j, ", \"extra\": {\"guard\": \"");
	uf_put(&j, uf_guard_mech == UF_GUARD_UFFD ? "uffd" : uf_guard_mech == UF_GUARD_MADVISE ? "madvise" : "mprotect");
	uf_putc(&j, '"');
	if (b->signo) {
		uf_put(&j, ", \"signal\": ");
		uf_put_dec(&j, (uint64_t)b->signo);
		uf_put(&j, ", \"si_code\": ");
		uf_put_sdec(&j, b->si_code);
	}
	if (b->at_exit)
		uf_put(&j, ", \"at_exit\": true");
	if (b->after_free)
		uf_put(&j, ", \"after_free\": true");
	uf_put(&j, "}}\n");

	char path[UF_PATH_LEN + 32];
	write_json(j.p, j.len, path, sizeof path);

	uf_put(&t, "\nPID: ");
	uf_put_dec(&t, (uint64_t)getpid());
	uf_put(&t, " TID: ");
	uf_put_dec(&t, (uint64_t)tid);
	uf_put(&t, " Comm: ");
	uf_put(&t, uf_proc.comm);
	uf_put(&t, " Exe: ");
	uf_put(&t, uf_proc.exe);
	uf_putc(&t, '\n');
	if (path[0]) {
		uf_put(&t, "Report: ");
		uf_put(&t, path);
		uf_putc(&t, '\n');
	}
	uf_put(&t, rule);
	uf_write_all(uf_proc.log_fd, t.p, t.len);
	unlock();
	if (uf_cur[UF_SET_fault].v == 1 && !b->signo)
		uf_die_after_bug();
}

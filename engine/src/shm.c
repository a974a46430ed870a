/*
 * The per-process shared-memory file "<pid>.shm" in the run directory
 * (default /dev/shm/ufence-<uid>): created safely (directory 0700, owned by
 * us, not a symlink; file O_CREAT|O_EXCL|O_NOFOLLOW 0600), truncated to a
 * sparse size that fits the largest pool and the depot, removed at exit.
 * Without a usable run directory the same layout lives in anonymous memory
 * (the engine works, it just cannot be observed: degraded NO_SHM).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "uf.h"

struct uf_shm uf_shm;
extern uint64_t uf_depot_len, uf_depot_size;
extern _Atomic uint64_t uf_depot_used;

#define DEPOT_TABLE_LEN (1u << 20)
#define DEPOT_ARENA (64u << 20)
#define MODULES_CAP 512

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

static void put_dir(const char *d, const char *why)
{
	struct uf_buf b;
	char t[512];
	b.p = t;
	b.len = 0;
	b.cap = sizeof t;
	uf_put(&b, "ufence: run dir ");
	uf_put(&b, d);
	uf_put(&b, ": ");
	uf_put(&b, why);
	uf_put(&b, "; state not published\n");
	uf_write_all(uf_proc.log_fd, b.p, b.len);
}

/* mkdir -p with 0700; the last component must be ours and private */
static int safe_dir(const char *dir)
{
	char tmp[UF_PATH_LEN];
	if (dir[0] != '/') {
		put_dir(dir, "not an absolute path");
		return -1;
	}
	uf_strlcpy(tmp, dir, sizeof tmp);
	for (char *p = tmp + 1; *p; p++) {
		if (*p == '/') {
			*p = 0;
			mkdir(tmp, 0700);
			*p = '/';
		}
	}
	if (mkdir(tmp, 0700) && errno != EEXIST) {
		put_dir(dir, "cannot create");
		return -1;
	}
	struct stat st;
	if (lstat(tmp, &st) || !S_ISDIR(st.st_mode)) {
		put_dir(dir, "not a directory (or a symlink)");
		return -1;
	}
	if (st.st_uid != geteuid() || (st.st_mode & 077)) {
		put_dir(dir, "not owned by this user with mode 0700");
		return -1;
	}
	return 0;
}

/* The file is built under a temporary name and renamed into place once its
 * header is complete, so a reader never sees a half-written file. */
static char tmp_path[UF_PATH_LEN + 16];

static int open_file(int pid)
{
	struct uf_buf b = {uf_shm.path, 0, sizeof uf_shm.path};
	uf_put(&b, uf_shm.dir);
	uf_putc(&b, '/');
	uf_put_dec(&b, (uint64_t)pid);
	uf_put(&b, ".shm");
	struct uf_buf t = {tmp_path, 0, sizeof tmp_path};
	uf_put(&t, uf_shm.dir);
	uf_put(&t, "/.");
	uf_put_dec(&t, (uint64_t)pid);
	uf_put(&t, ".shm.new");
	for (int tries = 0; tries < 2; tries++) {
		int fd = open(tmp_path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd >= 0)
			return fd;
		if (errno != EEXIST)
			return -1;
		/* left by a process with our pid that died while starting */
		struct stat st;
		if (lstat(tmp_path, &st) || !S_ISREG(st.st_mode) || st.st_uid != geteuid())
			return -1;
		unlink(tmp_path);
	}
	return -1;
}

/* rename over any stale file of a dead process that had our pid */
static void publish_name(void)
{
	if (rename(tmp_path, uf_shm.path))
		unlink(tmp_path);
}

static void read_file(const char *path, char *out, size_t cap, int nul_to_space)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	out[0] = 0;
	if (fd < 0)
		return;
	ssize_t n = read(fd, out, cap - 1);
	close(fd);
	if (n <= 0)
		return;
	out[n] = 0;
	for (ssize_t i = 0; i < n; i++) {
		if (out[i] == 0 && nul_to_space)
			out[i] = ' ';
		if (out[i] == '\n')
			out[i] = nul_to_space ? ' ' : 0;
	}
	while (n > 0 && out[n - 1] == ' ')
		out[--n] = 0;
}

static uint64_t starttime(void)
{
	char buf[1024];
	read_file("/proc/self/stat", buf, sizeof buf, 0);
	char *p = strrchr(buf, ')');
	if (!p)
		return 0;
	/* field 3 follows ") "; starttime is field 22 */
	int field = 2;
	for (; *p && field < 22; p++)
		if (*p == ' ')
			field++;
	return strtoull(p, NULL, 10);
}

/* cmdline: read from /proc at start-up; a fork child's is its parent's,
 * already in the copied file */
static void fill_identity(struct uf_shm_header *h, int cmdline)
{
	h->pid = (uint32_t)getpid();
	h->ppid = (uint32_t)getppid();
	h->uid = (uint32_t)geteuid();
	h->proc_starttime = starttime();
	h->start_realtime_ns = uf_proc.start_real_ns;
	h->start_monotonic_ns = uf_proc.start_mono_ns;
	h->heartbeat_ns = uf_now_ns();
	uf_strlcpy(h->comm, uf_proc.comm, sizeof h->comm);
	uf_strlcpy(h->exe, uf_proc.exe, sizeof h->exe);
	if (cmdline)
		read_file("/proc/self/cmdline", h->cmdline, sizeof h->cmdline, 1);
}

static void remember_fd(int fd);

/* Map the file's hot page over uf_hot (see uf.h), keeping the gate's value;
 * the wake word starts clear. Anything else: uf_hot stays (or becomes) a
 * private page and only the control thread takes requests. */
static int hot_map(int fd)
{
	size_t page = uf_pool.page ? uf_pool.page : 4096;
	int32_t gate = uf_hot.gate;
	void *want = (void *)&uf_hot;
	uf_shm.hot = 0;
	if (((uintptr_t)want & (page - 1)) || page > sizeof uf_hot)
		return -1;
	void *p = fd >= 0 ? mmap(want, page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, (off_t)uf_shm.hot_off)
			  : MAP_FAILED;
	if (p != want) {
		/* MAP_FIXED failed: the old mapping is still there, or it was
		 * replaced; either way put a private page back */
		mmap(want, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
		uf_hot.gate = gate;
		return -1;
	}
	uf_hot.wake = 0;
	uf_hot.gate = gate;
	uf_shm.hot = 1;
	return 0;
}

/* the hot page is private again (fork without a file of our own, file
 * truncated): the gate is restored from the private mode */
static void hot_private(void)
{
	size_t page = uf_pool.page ? uf_pool.page : 4096;
	int32_t gate = uf_hot.gate;
	if (!uf_shm.hot)
		return;
	mmap((void *)&uf_hot, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	uf_hot.gate = gate;
	uf_shm.hot = 0;
	if (uf_shm.hdr)
		uf_shm.hdr->hot_off = 0;
}

int uf_shm_create(void)
{
	uint64_t slots = uf_pool.reserved_slots ? uf_pool.reserved_slots : 1;
	uint64_t off = align_up(sizeof(struct uf_shm_header), 64);
	uint64_t settings_off = off;
	off += UF_MAX_SETTINGS * sizeof(struct uf_shm_setting);
	uint64_t request_off = off;
	off += UF_MAX_SETTINGS * sizeof(struct uf_shm_setting);
	uint64_t stats_off = off;
	off += UF_MAX_STATS * 8;
	uint64_t modules_off = align_up(off, 64);
	off = modules_off + MODULES_CAP * sizeof(struct uf_shm_module);
	uint64_t table_off = align_up(off, 4096);
	off = table_off + DEPOT_TABLE_LEN * 4ull;
	uint64_t arena_off = off;
	off += DEPOT_ARENA;
	uint64_t slots_off = align_up(off, 4096);
	off = slots_off + slots * sizeof(struct uf_shm_slot);
	uint64_t page = uf_pool.page ? uf_pool.page : 4096;
	uint64_t hot_off = align_up(off, page);
	uint64_t size = hot_off + page;

	const char *rd = getenv("UFENCE_RUN_DIR");
	struct uf_buf b = {uf_shm.dir, 0, sizeof uf_shm.dir};
	int too_long = 0;
	if (rd && *rd) {
		/* never cut: a cut path is another directory */
		too_long = strlen(rd) + 32 >= sizeof uf_shm.dir;
		uf_put(&b, too_long ? "(too long)" : rd);
	} else {
		uf_put(&b, "/dev/shm/ufence-");
		uf_put_dec(&b, geteuid());
	}
	char *map = MAP_FAILED;
	int fd = -1;
	if (too_long)
		put_dir("UFENCE_RUN_DIR", "path too long");
	if (!too_long && safe_dir(uf_shm.dir) == 0 && (fd = open_file(getpid())) >= 0) {
		if (ftruncate(fd, (off_t)size) == 0)
			map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (map == MAP_FAILED) {
			unlink(tmp_path);
			close(fd);
			fd = -1;
		}
	}
	uf_shm.file = map != MAP_FAILED;
	if (map == MAP_FAILED) {
		map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (map == MAP_FAILED)
			return -1;
		uf_shm.path[0] = 0;
	}
	uf_shm.fd = fd;
	if (fd >= 0)
		remember_fd(fd);
	uf_shm.map = map;
	uf_shm.size = size;
	struct uf_shm_header *h = (void *)map;
	uf_shm.hdr = h;
	uf_shm.stats = (uint64_t *)(map + stats_off);
	uf_shm.slots = (struct uf_shm_slot *)(map + slots_off);
	uf_shm.depot_table = (uint32_t *)(map + table_off);
	uf_shm.depot_arena = map + arena_off;
	uf_shm.modules = (struct uf_shm_module *)(map + modules_off);
	uf_depot_len = DEPOT_TABLE_LEN;
	uf_shm.settings_off = settings_off;
	uf_shm.request_off = request_off;
	uf_depot_size = DEPOT_ARENA;

	h->version = UF_SHM_VERSION;
	h->header_size = sizeof *h;
	h->file_size = size;
	h->page_size = (uint32_t)uf_pool.page;
	fill_identity(h, 1);
	uf_strlcpy(h->engine_version, UF_ENGINE_VERSION, sizeof h->engine_version);
	h->pool_base = uf_pool.base;
	h->pool_reserved_slots = uf_pool.reserved_slots;
	h->settings_count = UF_SET_COUNT;
	h->setting_size = sizeof(struct uf_shm_setting);
	h->settings_off = settings_off;
	h->request_off = request_off;
	h->stats_count = UF_STAT_COUNT;
	h->stats_off = stats_off;
	h->slot_size = sizeof(struct uf_shm_slot);
	h->slots_off = slots_off;
	h->slots_capacity = slots;
	h->depot_table_off = table_off;
	h->depot_table_len = DEPOT_TABLE_LEN;
	h->depot_arena_off = arena_off;
	h->depot_arena_size = DEPOT_ARENA;
	h->depot_arena_used = 8;
	h->module_size = sizeof(struct uf_shm_module);
	h->modules_off = modules_off;
	h->modules_capacity = MODULES_CAP;
	uf_strlcpy(h->report_dir, uf_proc.report_dir, sizeof h->report_dir);
	uf_shm.hot_off = hot_off;
	if (uf_shm.file && hot_map(fd) == 0) {
		h->hot_off = hot_off;
		h->hot_size = (uint32_t)page;
	}
	if (!uf_shm.file)
		uf_stat_set(UF_STAT_degraded, UF_DEGRADED_NO_SHM);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	memcpy(h->magic, UF_SHM_MAGIC, 8);
	if (uf_shm.file)
		publish_name();
	return 0;
}

static dev_t shm_dev;
static ino_t shm_ino;

static void remember_fd(int fd)
{
	struct stat st;
	if (fstat(fd, &st) == 0) {
		shm_dev = st.st_dev;
		shm_ino = st.st_ino;
	}
}

/* Our descriptor, if the program has not closed it (daemons close every fd)
 * or reused its number; else the file opened again by name; else -1. Never
 * hand back, use or close a descriptor that is not ours. */
static int our_fd(void)
{
	struct stat st;
	if (uf_shm.fd >= 0 && fstat(uf_shm.fd, &st) == 0 && st.st_dev == shm_dev && st.st_ino == shm_ino)
		return uf_shm.fd;
	int fd = uf_shm.path[0] ? open(uf_shm.path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) : -1;
	if (fd >= 0 && fstat(fd, &st) == 0 && st.st_dev == shm_dev && st.st_ino == shm_ino)
		return fd;
	if (fd >= 0)
		close(fd);
	return -1;
}

/* Memory the file really holds: it is sparse (room for 16M slots and a
 * large depot) and on tmpfs, so its allocated blocks are its resident
 * pages. 0 when the descriptor is no longer ours (then callers estimate). */
uint64_t uf_shm_resident_bytes(void)
{
	struct stat st;
	if (uf_shm.fd >= 0 && fstat(uf_shm.fd, &st) == 0 && st.st_dev == shm_dev && st.st_ino == shm_ino)
		return (uint64_t)st.st_blocks * 512u;
	return 0;
}

static void copy_range(int fd, uint64_t from, uint64_t len)
{
	for (uint64_t o = from; o < from + len && o < uf_shm.size;) {
		ssize_t w = pwrite(fd, uf_shm.map + o, (size_t)(from + len - o), (off_t)o);
		if (w <= 0)
			return;
		o += (uint64_t)w;
	}
}

/* Copy the parent's file into our own, page runs that hold data only, then
 * map the copy over the same address so every pointer stays valid. */
void uf_shm_after_fork(void)
{
	if (!uf_shm.file)
		return;                 /* anonymous fallback: fork copied it */
	int old = our_fd();
	int fd = open_file(getpid());
	if (fd < 0 || ftruncate(fd, (off_t)uf_shm.size)) {
		/* cannot publish: a private copy-on-write view, so the parent's
		 * file is never written by the child */
		if (fd >= 0) {
			close(fd);
			unlink(tmp_path);
		}
		if (old >= 0) {
			mmap(uf_shm.map, uf_shm.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, old, 0);
			close(old);
		}
		/* the parent's hot page must not stay shared with us */
		hot_private();
		uf_shm.file = 0;
		uf_shm.path[0] = 0;
		uf_shm.fd = -1;
		return;
	}
	off_t pos = 0, end = (off_t)uf_shm.size;
	if (old < 0) {
		/* no way to find the holes: copy what is in use, not the dedup
		 * table (ids are arena offsets, readers never need it) */
		copy_range(fd, 0, (uint64_t)((char *)uf_shm.depot_table - uf_shm.map));
		copy_range(fd, (uint64_t)(uf_shm.depot_arena - uf_shm.map), atomic_load(&uf_depot_used));
		copy_range(fd, (uint64_t)((char *)uf_shm.slots - uf_shm.map),
			   (uint64_t)uf_pool.initialized * sizeof(struct uf_shm_slot));
		pos = end;
	}
	while (pos < end) {
		off_t d = lseek(old, pos, SEEK_DATA);
		if (d < 0)
			break;
		off_t hole = lseek(old, d, SEEK_HOLE);
		if (hole < 0)
			hole = end;
		for (off_t o = d; o < hole;) {
			/* in the kernel, file to file: read through our mapping,
			 * every page would fault in first (fork copied no PTEs of
			 * a shared file mapping) */
			off_t in = o, out = o;
			ssize_t w = copy_file_range(old, &in, fd, &out, (size_t)(hole - o), 0);
			if (w <= 0)
				w = pwrite(fd, uf_shm.map + o, (size_t)(hole - o), o);
			if (w <= 0)
				break;
			o += w;
		}
		pos = hole;
	}
	mmap(uf_shm.map, uf_shm.size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
	if (old >= 0)
		close(old);
	/* the hot page too: until now it was the parent's (or, after a failed
	 * exec, our old file's) */
	if (uf_shm.hot && hot_map(fd))
		uf_shm.hdr->hot_off = 0;
	uf_shm.fd = fd;
	remember_fd(fd);
	fill_identity(uf_shm.hdr, 0);
	publish_name();
}

/* exec failed after uf_shm_remove(): publish the same contents again */
void uf_shm_republish(void)
{
	if (uf_shm.file && access(uf_shm.path, F_OK) != 0)
		uf_shm_after_fork();
}

/* Someone truncated our file: pages past its end SIGBUS. Put anonymous
 * memory there (async-signal-safe: fstat + mmap) so the engine and the
 * program carry on; what lived there is no longer observable. */
int uf_shm_fault(uintptr_t addr)
{
	uintptr_t base = (uintptr_t)uf_shm.map;
	size_t page = uf_pool.page ? uf_pool.page : 4096;
	if (uf_shm.hot && addr - (uintptr_t)&uf_hot < page) {
		/* the hot page went with the truncated part: a private one, the
		 * gate from the private mode (hot_private cannot read the old) */
		mmap((void *)&uf_hot, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
		uf_hot.gate = uf_mode;
		uf_shm.hot = 0;
		/* no stats here: they may be past the end too (that fault comes
		 * back here and says degraded) */
		return 1;
	}
	if (!base || addr < base || addr >= base + uf_shm.size || !uf_shm.file)
		return 0;
	struct stat st;
	uintptr_t from = 0;
	int fd = our_fd();
	if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size > 0)
		from = ((uintptr_t)st.st_size + uf_pool.page - 1) & ~(uintptr_t)(uf_pool.page - 1);
	if (from > addr - base)
		from = (addr - base) & ~(uintptr_t)(uf_pool.page - 1);
	if (fd >= 0 && fd != uf_shm.fd)
		close(fd);
	if (mmap((void *)(base + from), uf_shm.size - from, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0) == MAP_FAILED)
		return 0;
	uf_stat_add(UF_STAT_degraded, 0);
	if (uf_shm.stats)
		__atomic_fetch_or(&uf_shm.stats[UF_STAT_degraded], UF_DEGRADED_NO_SHM, __ATOMIC_RELAXED);
	return 1;
}

void uf_shm_remove(void)
{
	if (uf_shm.file && uf_shm.path[0] && uf_proc.pid == getpid())
		unlink(uf_shm.path);
}

void uf_shm_slot_publish(uint32_t i, const struct uf_meta *m)
{
	if (!uf_shm.slots || i >= uf_pool.reserved_slots)
		return;
	struct uf_shm_slot *s = &uf_shm.slots[i];
	uint32_t seq = __atomic_load_n(&s->seq, __ATOMIC_RELAXED);
	if (seq & 1)
		seq++;
	__atomic_store_n(&s->seq, seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	s->state = atomic_load(&m->state);
	s->flags = m->flags;
	s->alloc_stack = m->alloc_stack;
	s->addr = m->addr;
	s->size = m->size;
	s->alloc_tid = m->alloc_tid;
	s->free_tid = m->free_tid;
	s->free_stack = m->free_stack;
	s->alloc_cpu = m->alloc_cpu;
	s->alloc_ns = m->alloc_ns;
	s->free_ns = m->free_ns;
	__atomic_store_n(&s->seq, seq + 2, __ATOMIC_RELEASE);
}

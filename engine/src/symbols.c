/*
 * Modules and symbols without dladdr (not async-signal-safe): the module
 * table is refreshed with dl_iterate_phdr outside signal context (init,
 * control thread) and read under a seqlock; function names come from the
 * module's own file, .symtab or else .dynsym, mapped with open+mmap, which
 * are safe in a signal handler. Symbol lookups run under the report lock.
 */
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "maps.h"
#include "uf.h"

#define MAX_MODULES 512
#define REFRESH_WAIT_SPINS 1000   /* yields, ~1 ms: a rebuild takes tens of microseconds */

static struct uf_module mods[MAX_MODULES];
static _Atomic uint32_t mods_seq;
static int nmods;
static unsigned long long last_adds, last_subs;
/* where the modules of the first table start: loaded before the program
 * ran, they are never unloaded (ld.so only closes what dlopen opened) */
static uintptr_t initial_starts[MAX_MODULES];
static int ninitial = -1;
static pthread_mutex_t mods_mu = PTHREAD_MUTEX_INITIALIZER;
_Atomic int uf_modules_dirty;

struct collect {
	struct uf_module *out;
	int n;
};

/* The GNU build id in a PT_NOTE segment [p, end), in memory or in a mapped
 * file; fills m and returns 1 when found. Bounds-checked: notes come from
 * files we do not trust. */
static int note_build_id(const char *p, const char *end, struct uf_module *m)
{
	while (p + sizeof(ElfW(Nhdr)) <= end) {
		const ElfW(Nhdr) *nh = (const void *)p;
		const char *name = p + sizeof *nh;
		const char *desc = name + ((nh->n_namesz + 3) & ~3u);
		if (desc > end || nh->n_descsz > (size_t)(end - desc))
			return 0;
		if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && memcmp(name, "GNU", 4) == 0) {
			uint32_t n = nh->n_descsz < UF_BUILD_ID_MAX ? nh->n_descsz : UF_BUILD_ID_MAX;
			memcpy(m->build_id, desc, n);
			m->build_id_len = n;
			return 1;
		}
		p = desc + ((nh->n_descsz + 3) & ~3u);
	}
	return 0;
}

static void build_id_of(struct dl_phdr_info *info, struct uf_module *m)
{
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_NOTE)
			continue;
		const char *p = (const char *)(info->dlpi_addr + ph->p_vaddr);
		if (note_build_id(p, p + ph->p_memsz, m))
			return;
	}
}

static int collect_cb(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size;
	struct collect *c = data;
	if (c->n >= MAX_MODULES)
		return 1;
	struct uf_module *m = &c->out[c->n];
	memset(m, 0, sizeof *m);
	uintptr_t lo = UINTPTR_MAX, hi = 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type == PT_GNU_EH_FRAME)
			m->eh_hdr = info->dlpi_addr + ph->p_vaddr;
		if (ph->p_type != PT_LOAD)
			continue;
		uintptr_t s = info->dlpi_addr + ph->p_vaddr, e = s + ph->p_memsz;
		if (ph->p_flags & PF_X) {
			if (!m->xstart || s < m->xstart)
				m->xstart = s;
			if (e > m->xend)
				m->xend = e;
		}
		if (s < lo)
			lo = s;
		if (e > hi)
			hi = e;
	}
	if (!hi)
		return 0;
	for (int i = 0; i < info->dlpi_phnum && m->eh_hdr; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t s = info->dlpi_addr + ph->p_vaddr, e = s + ph->p_memsz;
		if (ph->p_type == PT_LOAD && m->eh_hdr >= s && m->eh_hdr < e) {
			m->eh_lo = s;           /* .eh_frame sits next to its header */
			m->eh_hi = e;
		}
	}
	m->base = info->dlpi_addr;
	m->start = lo;
	m->end = hi;
	const char *name = info->dlpi_name;
	if (!name || !*name)
		name = c->n == 0 ? uf_proc.exe : "";
	uf_strlcpy(m->path, name, sizeof m->path);
	build_id_of(info, m);
	c->n++;
	return 0;
}

static int counts_cb(struct dl_phdr_info *info, size_t size, void *data)
{
	if (size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs) {
		((unsigned long long *)data)[0] = info->dlpi_adds;
		((unsigned long long *)data)[1] = info->dlpi_subs;
	}
	return 1;
}

static void publish_shm(void)
{
	if (!uf_shm.modules)
		return;
	struct uf_shm_header *h = uf_shm.hdr;
	uint32_t seq = __atomic_load_n(&h->modules_seq, __ATOMIC_RELAXED);
	__atomic_store_n(&h->modules_seq, seq | 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	for (int i = 0; i < nmods; i++) {
		struct uf_shm_module *s = &uf_shm.modules[i];
		memset(s, 0, sizeof *s);
		s->base = mods[i].base;
		s->start = mods[i].start;
		s->end = mods[i].end;
		s->build_id_len = mods[i].build_id_len;
		memcpy(s->build_id, mods[i].build_id, sizeof s->build_id);
		uf_strlcpy(s->path, mods[i].path, sizeof s->path);
	}
	h->modules_count = (uint32_t)nmods;
	__atomic_store_n(&h->modules_seq, (seq | 1) + 1, __ATOMIC_RELEASE);
}

void uf_callers_update(void);

void uf_modules_atfork_lock(void)
{
	pthread_mutex_lock(&mods_mu);
}

void uf_modules_atfork_unlock(int child)
{
	if (child)
		pthread_mutex_init(&mods_mu, NULL);
	else
		pthread_mutex_unlock(&mods_mu);
}

/* Under mods_mu: the table from dl_iterate_phdr, published (c: the
 * loader's add/remove counts it reflects) */
static void rebuild_locked(const unsigned long long c[2])
{
	static struct uf_module tmp[MAX_MODULES];
	struct collect col = {tmp, 0};
	dl_iterate_phdr(collect_cb, &col);
	if (ninitial < 0) {
		for (int i = 0; i < col.n; i++)
			initial_starts[i] = tmp[i].start;
		ninitial = col.n;
	}
	for (int i = 0; i < col.n; i++)
		for (int k = 0; k < ninitial && !tmp[i].permanent; k++)
			tmp[i].permanent = tmp[i].start == initial_starts[k];
	uint32_t seq = atomic_load(&mods_seq);
	atomic_store(&mods_seq, seq | 1);
	atomic_thread_fence(memory_order_release);
	memcpy(mods, tmp, sizeof(struct uf_module) * (size_t)col.n);
	nmods = col.n;
	atomic_store_explicit(&mods_seq, (seq | 1) + 1, memory_order_release);
	if (c[1] != last_subs)
		uf_unwind_forget();   /* a dlclose: its addresses may come back as another module's */
	last_adds = c[0];
	last_subs = c[1];
	atomic_store(&uf_modules_dirty, 0);
	publish_shm();
	uf_stat_add(UF_STAT_modules_rebuilt, 1);
}

/* the table was rebuilt from the allocation path: the callers filter
 * follows at the control thread's next look */
static _Atomic int callers_pending;

void uf_modules_refresh(int force)
{
	unsigned long long c[2] = {0, 0};
	dl_iterate_phdr(counts_cb, c);
	/* Nothing loaded or unloaded since (the loader's counts): an address in
	 * no module is code of no module (JIT), and rebuilding would only change
	 * the table's generation and send the unwinder's "no module" rules to be
	 * looked at again, for ever. */
	if (!force && c[0] == last_adds && c[1] == last_subs) {
		atomic_store(&uf_modules_dirty, 0);
		if (atomic_exchange(&callers_pending, 0))
			uf_callers_update();
		return;
	}
	pthread_mutex_lock(&mods_mu);
	rebuild_locked(c);
	pthread_mutex_unlock(&mods_mu);
	atomic_store(&callers_pending, 0);
	uf_callers_update();
}

/* From the allocation path, for code in no module the table knows (a
 * library dlopen'ed a moment ago: its first allocations would otherwise be
 * walked without its call-frame information): refresh now, if the loader is
 * between changes (r_state: not in the middle of a dlopen or dlclose, which
 * a signal handler's malloc could have interrupted), something was loaded
 * since (else it is code of no module, JIT), and no one else holds the table
 * (trylock: the control thread may hold mods_mu waiting for the loader's
 * lock, which the loader may hold while it allocates), nor from a walk
 * under the pool lock (uf_tls.no_refresh). 1 if refreshed. The callers
 * filter is left to the control thread. */
int uf_modules_refresh_now(void)
{
	if (uf_tls.no_refresh || _r_debug.r_state != RT_CONSISTENT)
		return 0;
	unsigned long long c[2] = {0, 0};
	dl_iterate_phdr(counts_cb, c);
	if (c[0] == last_adds && c[1] == last_subs)
		return 0;
	/* The control thread may be rebuilding the table for this very load
	 * (its look came first): wait for it a little, or the walk would take
	 * the frame-pointer step through the new module's frameless code. Only
	 * a little: if this thread holds a loader lock from an outer call (a
	 * dl_iterate_phdr callback that allocates), the holder may be waiting
	 * for it. */
	uint32_t gen = uf_modules_generation();
	for (int k = 0; pthread_mutex_trylock(&mods_mu); k++) {
		if (uf_modules_generation() != gen)
			return 1;                            /* rebuilt meanwhile */
		if (k >= REFRESH_WAIT_SPINS)
			return 0;
		sched_yield();
	}
	if (c[0] != last_adds || c[1] != last_subs)
		rebuild_locked(c);
	pthread_mutex_unlock(&mods_mu);
	atomic_store(&callers_pending, 1);
	atomic_store(&uf_modules_dirty, 1);          /* the control thread's next look */
	return 1;
}

/* The module holding pc, read under the seqlock: the whole entry into
 * copy, or (eh) only what the unwinder needs, which is far smaller than
 * the path and build id. 1 if found. */
static int lookup(uintptr_t pc, struct uf_module *copy, struct uf_eh *eh)
{
	for (int tries = 0; tries < 100; tries++) {
		uint32_t s = atomic_load_explicit(&mods_seq, memory_order_acquire);
		if (s & 1)
			continue;
		int found = 0, n = nmods;
		for (int i = 0; i < n && i < MAX_MODULES; i++) {
			const struct uf_module *m = &mods[i];
			if (pc >= m->start && pc < m->end) {
				if (copy)
					memcpy(copy, m, sizeof *copy);
				else
					*eh = (struct uf_eh){pc >= m->xstart && pc < m->xend ? m->eh_hdr : 0,
							     m->eh_lo, m->eh_hi, m->permanent};
				found = 1;
				break;
			}
		}
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&mods_seq, memory_order_relaxed) == s)
			return found;
	}
	return 0;
}

const struct uf_module *uf_module_of(uintptr_t pc, struct uf_module *copy)
{
	return lookup(pc, copy, NULL) ? copy : NULL;
}

int uf_module_eh(uintptr_t pc, struct uf_eh *eh)
{
	if (!lookup(pc, NULL, eh)) {
		/* dlopen'ed since the last refresh, or code of no module (JIT) */
		if (!atomic_load_explicit(&uf_modules_dirty, memory_order_relaxed)) {
			atomic_store(&uf_modules_dirty, 1);
			uf_control_wake();
		}
		return -1;
	}
	return eh->hdr ? 1 : 0;
}

uint32_t uf_modules_generation(void)
{
	return atomic_load_explicit(&mods_seq, memory_order_relaxed) >> 1;
}

/* Is a a return address: inside an executable segment, right after a call
 * instruction? Used to recover the caller of a frameless leaf (memcpy) at
 * fault time. Only reads code bytes of mapped executable segments. */
int uf_is_return_address(uintptr_t a)
{
	struct uf_module m;
	if (!uf_module_of(a, &m) || a < m.xstart + 8 || a >= m.xend)
		return 0;
	/* the table may lag a dlclose by one refresh: is it still mapped? */
	unsigned char vec[2];
	uintptr_t pg = (a - 8) & ~(uintptr_t)4095;
	if (mincore((void *)pg, a - pg, vec))
		return 0;
	const uint8_t *c = (const uint8_t *)a;
#if defined(__x86_64__)
	if (c[-5] == 0xe8)
		return 1;                                   /* call rel32 */
	if (c[-2] == 0xff && (c[-1] & 0x38) == 0x10)
		return 1;                                   /* call *%reg */
	if (c[-3] == 0xff && (c[-2] & 0x38) == 0x10)
		return 1;                                   /* call *disp8(%reg) */
	if (c[-6] == 0xff && (c[-5] & 0x38) == 0x10)
		return 1;                                   /* call *disp32(%rip|reg) */
	if (c[-7] == 0xff && (c[-6] & 0x38) == 0x10)
		return 1;                                   /* call *disp32(sib) */
	return 0;
#elif defined(__aarch64__)
	uint32_t insn;
	memcpy(&insn, c - 4, 4);
	return (insn & 0xfc000000u) == 0x94000000u || (insn & 0xfffffc1fu) == 0xd63f0000u;
#else
	(void)c;
	return 0;
#endif
}

/* ---- callers filter: ranges of the named modules ---- */
#define MAX_RANGES 64
static struct {
	uintptr_t lo, hi;
} ranges[MAX_RANGES];
static _Atomic int nranges;

static int name_matches(const char *list, const char *path)
{
	const char *base = uf_basename(path);
	size_t bl = strlen(base), pl = strlen(path);
	const char *p = list;
	while (*p) {
		const char *e = strchr(p, ',');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n && ((n == bl && memcmp(p, base, n) == 0) || (n == pl && memcmp(p, path, n) == 0)))
			return 1;
		/* "libfoo.so" also matches "libfoo.so.1" */
		if (n && bl > n && memcmp(p, base, n) == 0 && base[n] == '.')
			return 1;
		p += n + (e ? 1 : 0);
	}
	return 0;
}

void uf_callers_update(void)
{
	const char *list = uf_cur[UF_SET_callers].text;
	int k = 0;
	pthread_mutex_lock(&mods_mu);
	atomic_store(&nranges, 0);
	for (int i = 0; i < nmods && k < MAX_RANGES && *list; i++) {
		if (name_matches(list, mods[i].path)) {
			ranges[k].lo = mods[i].start;
			ranges[k].hi = mods[i].end;
			k++;
		}
	}
	atomic_store(&nranges, k);
	pthread_mutex_unlock(&mods_mu);
}

int uf_filter_caller(uintptr_t caller)
{
	int n = atomic_load_explicit(&nranges, memory_order_acquire);
	for (int i = 0; i < n; i++)
		if (caller >= ranges[i].lo && caller < ranges[i].hi)
			return 1;
	/* maybe a module dlopen'ed since the last refresh: have it looked at */
	if (!atomic_load_explicit(&uf_modules_dirty, memory_order_relaxed)) {
		struct uf_module m;
		if (!uf_module_of(caller, &m)) {
			atomic_store(&uf_modules_dirty, 1);
			uf_control_wake();
		}
	}
	return 0;
}


/* ---- modules the table does not know yet (dlopen'ed since the last
 * refresh): found in /proc/self/maps (maps.c), safe in a handler ---- */
static void file_layout(const char *path, uintptr_t fileoff, uintptr_t *vaddr, struct uf_module *m);

static int module_from_maps(uintptr_t pc, struct uf_module *m)
{
	struct uf_maps_line hit;
	memset(m, 0, sizeof *m);
	if (!uf_maps_find(pc, &hit, m->path, sizeof m->path) || hit.path[0] != '/') {
		m->path[0] = 0;
		return 0;
	}
	uintptr_t fileoff = hit.off + (pc - hit.start), vaddr = fileoff;
	file_layout(m->path, fileoff, &vaddr, m);
	m->base = pc - vaddr;
	m->start = hit.start;
	m->end = hit.end;
	if (hit.exec) {
		m->xstart = hit.start;
		m->xend = hit.end;
	}
	return 1;
}

/* ---- ELF symbol tables, from the file ---- */
#define SYMCACHE 32
struct symfile {
	char path[UF_PATH_LEN];
	const uint8_t *map;
	size_t size;
	const ElfW(Sym) *syms[2];
	size_t nsyms[2];
	const char *strs[2];
	size_t strsz[2];
	int ok;
};
static struct symfile cache[SYMCACHE];
static int cache_next;

static void load(struct symfile *f, const char *path)
{
	memset(f, 0, sizeof *f);
	uf_strlcpy(f->path, path, sizeof f->path);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	struct stat st;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size < (off_t)sizeof(ElfW(Ehdr))) {
		close(fd);
		return;
	}
	void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		return;
	f->map = m;
	f->size = (size_t)st.st_size;
	const ElfW(Ehdr) *eh = m;
	if (memcmp(eh->e_ident, ELFMAG, SELFMAG) || eh->e_shentsize != sizeof(ElfW(Shdr)) ||
	    eh->e_shoff + (uint64_t)eh->e_shnum * sizeof(ElfW(Shdr)) > f->size)
		return;
	const ElfW(Shdr) *sh = (const void *)((const uint8_t *)m + eh->e_shoff);
	for (int i = 0; i < eh->e_shnum; i++) {
		int k = sh[i].sh_type == SHT_SYMTAB ? 0 : sh[i].sh_type == SHT_DYNSYM ? 1 : -1;
		if (k < 0 || sh[i].sh_link >= eh->e_shnum)
			continue;
		const ElfW(Shdr) *str = &sh[sh[i].sh_link];
		if (sh[i].sh_offset + sh[i].sh_size > f->size || str->sh_offset + str->sh_size > f->size)
			continue;
		f->syms[k] = (const void *)((const uint8_t *)m + sh[i].sh_offset);
		f->nsyms[k] = sh[i].sh_size / sizeof(ElfW(Sym));
		f->strs[k] = (const char *)m + str->sh_offset;
		f->strsz[k] = str->sh_size;
	}
	f->ok = 1;
}

static struct symfile *file_for(const char *path)
{
	for (int i = 0; i < SYMCACHE; i++)
		if (cache[i].path[0] && uf_streq(cache[i].path, path))
			return &cache[i];
	struct symfile *f = &cache[cache_next];
	cache_next = (cache_next + 1) % SYMCACHE;
	if (f->map)
		munmap((void *)f->map, f->size);
	load(f, path);
	return f;
}

/* first PT_LOAD's vaddr and the build id, from the file's program headers */
static void file_layout(const char *path, uintptr_t fileoff, uintptr_t *vaddr, struct uf_module *m)
{
	struct symfile *f = file_for(path);
	if (!f->ok)
		return;
	const ElfW(Ehdr) *eh = (const void *)f->map;
	if (eh->e_phentsize != sizeof(ElfW(Phdr)) || eh->e_phoff + (uint64_t)eh->e_phnum * sizeof(ElfW(Phdr)) > f->size)
		return;
	const ElfW(Phdr) *ph = (const void *)(f->map + eh->e_phoff);
	for (int i = 0; i < eh->e_phnum; i++) {
		if (ph[i].p_type == PT_LOAD && fileoff >= ph[i].p_offset && fileoff < ph[i].p_offset + ph[i].p_filesz)
			*vaddr = ph[i].p_vaddr + (fileoff - ph[i].p_offset);
		if (ph[i].p_type != PT_NOTE || ph[i].p_offset + ph[i].p_filesz > f->size || m->build_id_len)
			continue;
		const char *p = (const char *)f->map + ph[i].p_offset;
		note_build_id(p, p + ph[i].p_filesz, m);
	}
}

int uf_symbolize(uintptr_t pc, int is_return, char *name, size_t namelen,
		 uintptr_t *fn_off, uintptr_t *fn_size, struct uf_module *mod)
{
	name[0] = 0;
	if (!uf_module_of(pc, mod) && !module_from_maps(pc, mod))
		return 0;
	if (!mod->path[0] || mod->path[0] != '/')
		return 1;
	struct symfile *f = file_for(mod->path);
	if (!f->ok)
		return 1;
	uintptr_t key = pc - mod->base - (is_return ? 1 : 0);
	for (int k = 0; k < 2; k++) {
		const ElfW(Sym) *best = NULL;
		for (size_t i = 0; i < f->nsyms[k]; i++) {
			const ElfW(Sym) *s = &f->syms[k][i];
			int t = ELF64_ST_TYPE(s->st_info);
			if ((t != STT_FUNC && t != STT_GNU_IFUNC) || s->st_shndx == SHN_UNDEF || !s->st_value)
				continue;
			if (key >= s->st_value && key < s->st_value + (s->st_size ? s->st_size : 1)) {
				best = s;
				break;
			}
		}
		if (best && best->st_name < f->strsz[k]) {
			const char *nm = f->strs[k] + best->st_name;
			size_t maxl = f->strsz[k] - best->st_name;
			size_t l = strnlen(nm, maxl);
			if (l >= namelen)
				l = namelen - 1;
			memcpy(name, nm, l);
			name[l] = 0;
			*fn_off = pc - mod->base - best->st_value;
			*fn_size = best->st_size;
			return 2;
		}
	}
	return 1;
}

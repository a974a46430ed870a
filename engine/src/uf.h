/*
 * ufence engine: internal declarations shared by the engine's files.
 *
 * Split by concern as KFENCE splits core.c/report.c:
 *   interpose.c  malloc family, bootstrap arena, forwarding to the next allocator
 *   sample.c     the gate (off / interval / rate / full) and the filters
 *   pool.c       the reserved region, slots, placement, canaries, freelist
 *   guard.c      MADV_GUARD_INSTALL/REMOVE or mprotect
 *   uffd.c       userfaultfd: object pages recycled by UFFDIO_MOVE
 *   fault.c      SIGSEGV/SIGBUS handler, classification, sigaction interposition
 *   report.c     KFENCE-shaped text and JSON reports
 *   fmt.c        async-signal-safe formatting into fixed buffers
 *   symbols.c    module table (dl_iterate_phdr) and ELF symbol lookup from files
 *   stack.c      frame-pointer stack capture
 *   depot.c      stack depot in the shared-memory file
 *   shm.c        the per-process shared-memory file
 *   settings.c   the settings table, the validator, UFENCE_OPTIONS
 *   control.c    the control thread: live requests, heartbeat, sampling timer
 *   init.c       start-up, exit checks, fork handling, follow_exec, _exit
 *   exec.c       exec* wrappers: the shm file never outlives its image
 */
#ifndef UF_INTERNAL_H
#define UF_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ufence/shm.h"

#define UF_HIDDEN __attribute__((visibility("hidden")))
#define UF_EXPORT __attribute__((visibility("default")))
#define UF_LIKELY(x) __builtin_expect(!!(x), 1)
#define UF_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define UF_NOINLINE __attribute__((noinline))

#define UF_MAX_FRAMES 64
#define UF_ENGINE_VERSION "0.1.0"

/* ---- settings (settings.c) ---- */
enum uf_kind { UF_INT, UF_BOOL, UF_ENUM, UF_STR };
#define UF_LIVE 1
#define UF_BOOT 2

enum uf_setting_id {
#define UF_SETTING(name, kind, def, mn, mx, choices, flags, help) UF_SET_##name,
#include "settings.def"
#undef UF_SETTING
	UF_SET_COUNT
};

struct uf_setting_def {
	const char *name;
	int kind;
	const char *def;
	int64_t min, max;
	const char *choices;
	int flags;
};

struct uf_value {
	int64_t v;
	char text[UF_SETTING_TEXT];
};

extern const struct uf_setting_def uf_setting_defs[UF_SET_COUNT];
extern struct uf_value uf_cur[UF_SET_COUNT];   /* applied values (private) */

int uf_setting_find(const char *name, size_t len);
/* Parse text for setting id into out; on error write a one-line reason to err. */
int uf_setting_parse(int id, const char *text, struct uf_value *out, char *err, size_t errlen);
void uf_settings_defaults(void);
void uf_options_parse(const char *opts);     /* UFENCE_OPTIONS at start-up */
/* Apply a whole new settings vector (all-or-nothing); returns 0 or an errno. */
int uf_settings_apply(const struct uf_value *next, char *err, size_t errlen);
void uf_settings_publish(void);              /* copy current values into the shm file */

/* ---- sampling and filters (sample.c) ---- */
enum uf_gate_mode { UF_GATE_OFF = 0, UF_GATE_FULL = 1, UF_GATE_RATE = 2, UF_GATE_INTERVAL = 3 };
/* gate word value (never a mode): malloc and calloc take one off this
 * thread's countdown inline and call uf_sampled_counted when it runs out
 * (1 in N, and interval sampling without a control thread); the other entry
 * points call uf_sampled, which counts itself */
#define UF_GATE_COUNT 4
/*
 * The one word the fast path tests, alone on a page of our .bss so that
 * shm.c can map the shm file's hot page over it: then a CLI can set the wake
 * half through the file and the next allocation takes the slow path, which
 * applies the request; an engine in off mode needs no thread (a second
 * thread alone makes glibc take its multi-threaded malloc paths). The gate
 * is only a hint ("take the slow path"): anyone with the file can write it,
 * so the real mode is uf_mode, private.
 */
/* 4 KiB: a larger alignment would give .bss a LOAD segment of its own, which
 * valgrind cannot attribute to the library. Larger pages: uf_hot is not mapped
 * (shm.c checks) and the control thread always runs. */
#define UF_HOT_ALIGN 4096
union uf_hot {
	struct {
		volatile int32_t gate;       /* nonzero: slow path (engine writes) */
		volatile uint32_t wake;      /* nonzero: a request waits (CLI writes) */
	};
	volatile uint64_t word;              /* gate | wake, one load */
	char pad[UF_HOT_ALIGN];
};
extern union uf_hot uf_hot UF_HIDDEN;
extern int uf_mode;                          /* enum uf_gate_mode, private */
#define uf_gate (uf_hot.word)                /* fast-path test: nonzero = slow path */
void uf_sample_poll_wake(void);              /* slow path saw wake: apply a request */
void *uf_sampled(size_t size, size_t align, int zero, uintptr_t caller, uintptr_t fp);
void *uf_sampled_counted(size_t size, size_t align, int zero, uintptr_t caller, uintptr_t fp);
extern _Atomic int uf_forking;               /* between atfork prepare and parent/child */
extern _Atomic int uf_interval_tokens;
extern int uf_sample_rate;
extern __thread int32_t uf_tls_countdown __attribute__((tls_model("initial-exec")));
void uf_sample_configure(void);              /* recompute gate from uf_cur */
void uf_sample_tick(void);                   /* interval timer: open the gate */
void uf_sample_tick_reopen(void);            /* tokens behind a closed gate: open it */
extern int uf_sampler_polled;                /* 1: no control thread, allocations keep the clock */
int uf_single_threaded(void);                /* glibc's own view: 0 when unknown */
int uf_size_class(size_t size);              /* index into the malloc-N classes */
const char *uf_size_class_name(size_t size, int page_alloc);
int uf_parse_size_classes(const char *text, uint32_t *mask, char *err, size_t errlen);
int uf_filter_caller(uintptr_t caller);      /* 1 = allowed */
extern uint32_t uf_class_mask;               /* 0 = all */

/* ---- thread-local engine state ---- */
struct uf_tls {
	int in_engine;         /* recursion guard */
	int tid;
	uint64_t rng;
	uintptr_t stack_lo, stack_hi;
	int stack_known;
	uint32_t poll_stride;  /* thread-less interval: allocations between clock reads */
	uint64_t polled_ns;    /* when this thread last read the clock for it */
	int no_refresh;        /* a stack walked under the pool lock: no module-table refresh */
};
extern __thread struct uf_tls uf_tls __attribute__((tls_model("initial-exec")));
int uf_gettid(void);
uint64_t uf_rand(void);

/* ---- real allocator (interpose.c) ---- */
struct uf_real {
	void *(*malloc)(size_t);
	void (*free)(void *);
	void *(*calloc)(size_t, size_t);
	void *(*realloc)(void *, size_t);
	void *(*memalign)(size_t, size_t);
	int (*posix_memalign)(void **, size_t, size_t);
	void *(*aligned_alloc)(size_t, size_t);
	void *(*valloc)(size_t);
	void *(*pvalloc)(size_t);
	size_t (*malloc_usable_size)(void *);
	int (*sigaction)(int, const void *, void *);
};
extern struct uf_real uf_real UF_HIDDEN;
void uf_resolve(void);
int uf_arena_owns(const void *p);

/* ---- pool (pool.c) ---- */
struct uf_meta {
	uintptr_t addr;        /* object start */
	size_t size;
	_Atomic uint32_t state;
	uint32_t flags;
	uint32_t alloc_stack, free_stack;
	uint32_t alloc_tid, free_tid;
	uint64_t alloc_ns, free_ns;
	uint32_t next;         /* freelist link, UINT32_MAX = none */
	uint32_t cover_hash;   /* skip-covered bloom key */
	uint32_t alloc_cpu;
	uint8_t inlist;
	uint8_t open;          /* pages opened after a report: UF_OPEN_* */
	_Atomic uint8_t page;  /* guard=uffd: UF_PAGE_* behind the object page */
	uint8_t in_bloom;      /* counted in the skip-covered filter (sampled) */
	/* guard=uffd, a page moved in: the page offsets that may not hold
	 * canary (the previous object's bytes); the rest is known canary */
	uint32_t dirty_lo, dirty_hi;
};
/* guard=uffd: what is behind a slot's object page */
#define UF_PAGE_MARKED 0u      /* a guard marker (where activation could not take it off) */
#define UF_PAGE_NONE 1u        /* nothing: any access faults (SIGBUS) */
#define UF_PAGE_PRESENT 2u     /* a page: the object's, or one moved in */
#define UF_OPEN_LEFT 1u
#define UF_OPEN_RIGHT 2u
#define UF_OPEN_OBJECT 4u

/* a FIFO of slots linked through uf_meta.next */
struct uf_fifo {
	uint32_t head, tail, count;
};

struct uf_pool {
	uintptr_t range_base;  /* arena + pool: [range_base, range_base + range_len) */
	size_t range_len;
	uintptr_t base;        /* pool_base */
	uintptr_t end;
	size_t page;
	uint32_t reserved_slots;
	uint32_t initialized;  /* slots whose guards are installed */
	uint32_t limit;        /* num_objects applied */
	uintptr_t active_end;  /* madvise mode: end of the RW+guarded part */
	struct uf_meta *meta;
	struct uf_fifo quarantine;       /* freed (and never-used) slots, oldest first */
	struct uf_fifo ready;            /* guard=uffd: the next to allocate, with a page */
	uint32_t ready_reserved;         /* taken from the quarantine, page on its way */
	_Atomic uint32_t live;
	int ok;
};
extern struct uf_pool uf_pool UF_HIDDEN;
/* single range compare used by free(): arena and pool together */
static inline int uf_owns(const void *p)
{
	return UF_UNLIKELY((uintptr_t)p - uf_pool.range_base < uf_pool.range_len);
}
int uf_pool_reserve(void);                   /* address space + arena, at first use */
int uf_pool_resize(uint32_t n, char *err, size_t errlen);
void *uf_pool_alloc(size_t size, size_t align, int zero, uintptr_t caller, uintptr_t fp);
void uf_pool_free(void *p, uintptr_t caller, uintptr_t fp);
size_t uf_pool_usable(const void *p);
void *uf_pool_realloc(void *p, size_t n, uintptr_t caller, uintptr_t fp);
void uf_pool_check_all(void);                /* check_on_exit */
void uf_pool_lock(void);
void uf_pool_unlock(void);
void uf_pool_atfork_child(void);
static inline uintptr_t uf_slot_page(uint32_t i)
{
	return uf_pool.base + (2 * (uintptr_t)i + 2) * uf_pool.page;
}
void uf_pool_open_page(uintptr_t page);
int uf_pool_seal_page(uintptr_t page);       /* fault=abort: a marker, so it faults SIGSEGV */
int uf_canary_first_bad(const struct uf_meta *m, uintptr_t *bad);
/* canary= (settings.def order) and the short canary's unit: an L1 line */
enum { UF_CANARY_AUTO = 0, UF_CANARY_PAGE = 1, UF_CANARY_SHORT = 2 };
#define UF_CANARY_LINE 64u
void uf_canary_range(const struct uf_meta *m, uintptr_t *lo, uintptr_t *hi);   /* what its check covers */
static inline uint8_t uf_canary_byte(uintptr_t a)
{
	return (uint8_t)(0xaa ^ (a & 7));
}
void uf_canary_fill(uintptr_t from, uintptr_t to);
int uf_canary_scan(uintptr_t from, uintptr_t to, uintptr_t *bad);   /* 1: *bad is the first */
struct uf_bug_info;
void uf_canary_dump(uintptr_t bad, uintptr_t lim, struct uf_bug_info *b);   /* bytes from bad, < lim */
void uf_pool_requeue(uint32_t i);            /* pool lock held */

/* ---- batched revocation (revoke.c) ---- */
#define UF_REVOKE_MAX 256u                   /* revoke_batch's maximum in settings.def */
int uf_revoke_wanted(uint64_t cpubit, uint64_t now_ns);   /* pool lock */
void uf_revoke_defer(uint32_t i);
void uf_revoke_flush(int force);             /* force = 0: only a batch past its age */

/* ---- guard (guard.c) ---- */
enum { UF_GUARD_MADVISE = 1, UF_GUARD_MPROTECT = 2, UF_GUARD_UFFD = 3 };
extern int uf_guard_mech;
extern uint32_t uf_guard_live_cap;          /* live guarded objects the mechanism allows */
int uf_guard_init(int want);                 /* want: 0 auto, 1 madvise, 2 mprotect */
int uf_guard_protect(uintptr_t addr, size_t len);
int uf_guard_unprotect(uintptr_t addr, size_t len);
int uf_guard_activate(uintptr_t addr, size_t len);
int uf_guard_discard(uintptr_t addr, size_t len);   /* MADV_DONTNEED */
uint32_t uf_guard_unmark_many(uintptr_t first, size_t stride, uint32_t n);
void uf_guard_discard_list(const uintptr_t *pages, uint32_t n);   /* one TLB flush */

/* ---- uffd (uffd.c): 0 or an errno ---- */
int uf_uffd_init(void);                      /* 0 = page recycling works here */
int uf_uffd_register(uintptr_t addr, size_t len);
int uf_uffd_move(uintptr_t dst, uintptr_t src, size_t len);
int uf_uffd_fill(uintptr_t dst, const void *src, size_t len);
int uf_uffd_zero(uintptr_t dst, size_t len); /* async-signal-safe */
void uf_uffd_give_up(void);                  /* plain guard regions from now on */
void uf_uffd_atfork_child(void);

/* ---- stack (stack.c) ---- */
int uf_stack_capture(uintptr_t first, uintptr_t fp, uintptr_t *out, int max);
int uf_stack_from_context(uintptr_t pc, uintptr_t fp, uintptr_t sp, uintptr_t lr, uintptr_t *out, int max);
int uf_is_return_address(uintptr_t a);
uint32_t uf_stack_hash(const uintptr_t *f, int n);

/* ---- depot (depot.c) ---- */
uint32_t uf_depot_put(const uintptr_t *frames, int n);
int uf_depot_get(uint32_t id, uintptr_t *out, int max);

/* ---- shm (shm.c) ---- */
struct uf_shm {
	char *map;
	size_t size;
	struct uf_shm_header *hdr;
	uint64_t *stats;
	struct uf_shm_slot *slots;
	uint32_t *depot_table;
	char *depot_arena;
	struct uf_shm_module *modules;
	uint64_t settings_off, request_off;  /* private copies: never read back */
	uint64_t hot_off;      /* the hot page in the file (0 = none) */
	int hot;               /* 1 = uf_hot is mapped from the file */
	int fd;
	int file;              /* 1 = a real file in the run dir */
	char path[UF_PATH_LEN];
	char dir[UF_PATH_LEN];
};
uint64_t uf_shm_resident_bytes(void);        /* 0 = unknown */

extern struct uf_shm uf_shm;
int uf_shm_create(void);
void uf_shm_after_fork(void);
void uf_shm_remove(void);
void uf_shm_republish(void);
int uf_shm_fault(uintptr_t addr);             /* SIGBUS: file truncated under us */                  /* after a failed exec */
void uf_shm_slot_publish(uint32_t i, const struct uf_meta *m);
static inline void uf_stat_add(int which, int64_t d)
{
	if (uf_shm.stats)
		__atomic_fetch_add(&uf_shm.stats[which], (uint64_t)d, __ATOMIC_RELAXED);
}
static inline void uf_stat_set(int which, uint64_t v)
{
	if (uf_shm.stats)
		__atomic_store_n(&uf_shm.stats[which], v, __ATOMIC_RELAXED);
}
static inline uint64_t uf_stat_get(int which)
{
	return uf_shm.stats ? __atomic_load_n(&uf_shm.stats[which], __ATOMIC_RELAXED) : 0;
}

/* ---- modules and symbols (symbols.c) ---- */
struct uf_module {
	uintptr_t base, start, end;
	uintptr_t xstart, xend; /* executable segment(s) */
	uintptr_t eh_hdr;       /* its .eh_frame_hdr (PT_GNU_EH_FRAME), 0 if none */
	uintptr_t eh_lo, eh_hi; /* the loaded segment holding it (and .eh_frame) */
	int permanent;          /* loaded before the program ran: never unmapped */
	char path[UF_PATH_LEN];
	uint8_t build_id[UF_BUILD_ID_MAX];
	uint32_t build_id_len;
};
void uf_modules_refresh(int force);
/* the call-frame information of the module whose code holds pc */
struct uf_eh {
	uintptr_t hdr;          /* .eh_frame_hdr */
	uintptr_t lo, hi;       /* its loaded segment */
	int permanent;          /* reads inside [lo, hi) need no mapping check */
};
/* 1: pc is code with a .eh_frame_hdr; 0: in a module, without; -1: in no
 * module the table knows (it is asked to refresh) */
int uf_module_eh(uintptr_t pc, struct uf_eh *eh);
uint32_t uf_modules_generation(void);      /* changes with every refresh of the table */
int uf_modules_refresh_now(void);          /* allocation path only, never in a signal handler */

/* unwind.c: how to find the caller of the frame at one code address */
enum { UF_UNWIND_NONE = 0, UF_UNWIND_CFA = 1, UF_UNWIND_STOP = 2 };
int uf_unwind_kind(uintptr_t pc);   /* pc inside the instruction; NONE: no usable CFI (frame pointer), STOP: outermost */
void uf_unwind_forget(void);
/* From a frame (pc: a return address if is_ret, else the faulting pc; sp and
 * rbp as they are in it) to its callers, appended to out[n..max); cfi 0:
 * frame pointers only. */
int uf_unwind_walk(uintptr_t pc, int is_ret, uintptr_t sp, uintptr_t fp, int cfi, uintptr_t *out, int n, int max);
int uf_stack_read(uintptr_t sp, uintptr_t a, uintptr_t *v);   /* one word of the stack sp is on; 0 = ok */
/* the walk from inside an interposed function: first its return address, fp its frame record */
int uf_unwind_from_call(uintptr_t first, uintptr_t fp, int cfi, uintptr_t *out, int n, int max);
const struct uf_module *uf_module_of(uintptr_t pc, struct uf_module *copy);
/* demangle.c: C++ (Itanium) and Rust legacy names; 0 and out filled, or -1
 * (not mangled, or beyond what it reads). Under the report lock only. */
int uf_demangle(const char *mangled, char *out, size_t outlen);
int uf_demangle_rust_v0(const char *mangled, char *out, size_t outlen);   /* demangle_v0.c */
int uf_symbolize(uintptr_t pc, int is_return, char *name, size_t namelen,
		 uintptr_t *fn_off, uintptr_t *fn_size, struct uf_module *mod);
extern _Atomic int uf_modules_dirty;
void uf_modules_atfork_lock(void);
void uf_modules_atfork_unlock(int child);

/* ---- faults (fault.c) ---- */
int uf_fault_install(void);
void uf_fault_altstack(void);

/* ---- reports (report.c) ---- */
enum uf_bug {
	UF_BUG_OOB, UF_BUG_UAF, UF_BUG_CORRUPTION, UF_BUG_INVALID,
	UF_BUG_INVALID_FREE, UF_BUG_DOUBLE_FREE,
};
struct uf_bug_info {
	int bug;
	int access;            /* 0 read, 1 write, -1 none */
	uintptr_t addr;
	int has_object;
	uint32_t slot;
	struct uf_meta obj;    /* copy */
	int64_t distance;
	int side;              /* 0 left, 1 right */
	uintptr_t frames[UF_MAX_FRAMES];
	int nframes;
	int first_is_pc;       /* frames[0] is a faulting pc, not a return address */
	int signo, si_code;
	uintptr_t bad;         /* corruption: first corrupted byte */
	uint8_t dump[16];      /* corruption: bytes from bad on */
	uint8_t dump_bad[16];
	int ndump;
	int at_exit;           /* found by check_on_exit */
	int after_free;        /* revoke_batch: written while freed, found at revocation */
};
void uf_report(struct uf_bug_info *b);
/* one report per object: returns 1 if this slot was already reported */
int uf_report_claim(uint32_t slot);
void uf_report_atfork_lock(void);
void uf_report_atfork_unlock(void);
void uf_report_atfork_child(void);          /* forget the bug sites the parent reported */

/* ---- control (control.c) ---- */
int uf_control_start(void);                  /* once; later calls return 0 */
void uf_control_defer(void);                 /* start at the next allocation's slow path */
int uf_control_needed(const struct uf_value *v); /* settings v need the thread */
void uf_control_wake(void);
void uf_control_gate_taken(void);            /* the interval gate's last token went */
void uf_control_poll(void);                  /* apply a pending request, if any */
void uf_control_atfork_child(void);
void uf_control_housekeep(void);             /* heartbeat, metadata_bytes */
void uf_control_adopt(void);                 /* the program went multi-threaded: start the thread */
int uf_control_grow_pool(uint32_t live);     /* full mode, pool full: double num_objects; 1 = room now */
extern _Atomic int uf_control_running;

/* ---- init and process (init.c) ---- */
struct uf_proc {
	int pid;
	uint64_t start_mono_ns;
	uint64_t start_real_ns;
	char comm[UF_COMM_LEN];
	char exe[UF_PATH_LEN];
	char report_dir[UF_PATH_LEN];
	int log_fd;
	_Atomic int ready;     /* constructor finished */
	int stack_depth;
};
extern struct uf_proc uf_proc;
uint64_t uf_now_ns(void);
void uf_init_early(void);
void uf_die_after_bug(void);                 /* fault=abort for non-signal bugs */

/* ---- fmt (fmt.c) ---- */
struct uf_buf {
	char *p;
	size_t len, cap;
};
void uf_put(struct uf_buf *b, const char *s);
void uf_putn(struct uf_buf *b, const char *s, size_t n);
void uf_putc(struct uf_buf *b, char c);
void uf_put_dec(struct uf_buf *b, uint64_t v);
void uf_put_sdec(struct uf_buf *b, int64_t v);
void uf_put_hex(struct uf_buf *b, uint64_t v);       /* 0x... */
void uf_put_hex2(struct uf_buf *b, unsigned v);      /* 0xNN */
void uf_put_secs(struct uf_buf *b, uint64_t ns);     /* S.UUUUUU */
void uf_put_json_str(struct uf_buf *b, const char *s);
void uf_write_all(int fd, const char *p, size_t n);
size_t uf_strlcpy(char *dst, const char *src, size_t n);
int uf_streq(const char *a, const char *b);
const char *uf_basename(const char *p);

#endif

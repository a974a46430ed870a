/*
 * ufence per-process shared-memory file: the one interface between the C
 * engine (writer) and the Python CLI (reader, and writer of change requests).
 *
 * The file lives in the run directory (see docs/design.md "Run directory"),
 * is named "<pid>.shm", mode 0600, and is mapped MAP_SHARED by the engine.
 * Every multi-byte field is native-endian (x86_64 / aarch64 little-endian).
 * Python mirrors these structs in src/ufence/backends/process/layout.py and a
 * test compiles engine/tools/layout_dump.c to check every offset.
 *
 * Rules:
 *  - The engine never trusts what it reads back from this file: the only
 *    fields it reads are the request block (copied, then validated) and it
 *    keeps its authoritative allocator state in private memory.
 *  - Readers never lock against the engine. Slot records carry a seqlock
 *    (odd = being written); a reader retries or skips a record that changes.
 *  - Sections are located through the offsets in the header, never by
 *    assuming sizeof(): the header records each record size so a newer
 *    reader can read an older file.
 */
#ifndef UFENCE_SHM_H
#define UFENCE_SHM_H

#include <stdint.h>

#define UF_SHM_MAGIC "UFENCE\x01\x00"   /* 8 bytes */
#define UF_SHM_VERSION 1u

#define UF_SETTING_TEXT 248             /* per-setting canonical text */
#define UF_MAX_SETTINGS 64              /* room in the settings arrays */
#define UF_MSG_LEN 256
#define UF_PATH_LEN 256
#define UF_COMM_LEN 32
#define UF_BUILD_ID_MAX 32

/* Statistics counters; order is the ABI. Python: layout.STAT_NAMES. */
#define UF_STATS(X)                                                          \
	X(currently_allocated)  /* guarded objects live now */               \
	X(total_allocations)    /* guarded allocations ever */               \
	X(total_frees)          /* guarded frees ever */                     \
	X(total_bugs)           /* every bug found (reported or not) */      \
	X(skipped_incompatible) /* too large / alignment > page / etc. */    \
	X(skipped_capacity)     /* pool full: went to the next allocator */  \
	X(skipped_covered)      /* skip-covered heuristic */                 \
	X(skipped_filtered)     /* size_classes / callers / page_allocs */   \
	X(reports_written)      /* JSON report files written */              \
	X(reports_suppressed)   /* second bug on an already reported object */\
	X(depot_stacks)         /* distinct stacks in the depot */           \
	X(depot_full)           /* stacks dropped: depot arena full */       \
	X(pool_slots)           /* slots usable now (== num_objects applied)*/\
	X(pool_reserved_bytes)  /* address space reserved for the pool */    \
	X(pool_resident_bytes)  /* object pages currently backed */          \
	X(metadata_bytes)       /* bytes of this file in use */              \
	X(guard_mechanism)      /* 1 = madvise, 2 = mprotect, 3 = uffd */   \
	X(degraded)             /* nonzero: engine fell back to plain alloc */\
	X(settings_refused)     /* change requests refused */                \
	X(fork_children)        /* forks seen */                             \
	X(pages_recycled)       /* freed pages moved to the next slot (uffd) */ \
	X(pages_revoked_batched) /* freed pages dropped in batches (revoke_batch) */ \
	X(reports_deduplicated) /* bugs not printed: same kind and code address as one that was */ \
	X(modules_rebuilt)      /* module table rebuilt: a dlopen or dlclose seen */

enum uf_stat {
#define UF_STAT_ENUM(name) UF_STAT_##name,
	UF_STATS(UF_STAT_ENUM)
#undef UF_STAT_ENUM
	UF_STAT_COUNT
};
#define UF_MAX_STATS 64

/* degraded reasons (stats.degraded is a bitmask of these) */
#define UF_DEGRADED_NO_POOL     1u  /* could not reserve the pool */
#define UF_DEGRADED_NO_SHM      2u  /* no shared-memory file (engine runs, not observable) */
#define UF_DEGRADED_NO_SIGNAL   4u  /* could not install SIGSEGV handler */
#define UF_DEGRADED_NO_GUARD    8u  /* neither madvise guards nor mprotect work */

enum uf_slot_state {
	UF_SLOT_UNUSED = 0,
	UF_SLOT_ALLOCATED = 1,
	UF_SLOT_FREED = 2,
};

/* uf_shm_slot.flags */
#define UF_SLOT_REPORTED   1u  /* a bug was reported on this object */
#define UF_SLOT_PAGE_ALLOC 2u  /* page-sized, page-aligned allocation */
#define UF_SLOT_RIGHT      4u  /* placed at the right edge of its page */
#define UF_SLOT_UNPROTECTED 8u /* a guard/object page was opened after a report */
#define UF_SLOT_SHORT_CANARY 16u /* canary checked only in the cache lines around the object */

struct uf_shm_setting {
	int64_t value;                  /* int / bool / enum index; 0 for strings */
	char text[UF_SETTING_TEXT];     /* canonical text of the value */
};

/* One per pool slot, index = KFENCE-style object number (ufence-#N). */
struct uf_shm_slot {
	uint32_t seq;          /* seqlock: odd while the engine writes */
	uint32_t state;        /* enum uf_slot_state */
	uint32_t flags;        /* UF_SLOT_* */
	uint32_t alloc_stack;  /* depot id, 0 = no stack */
	uint64_t addr;         /* object start */
	uint64_t size;         /* requested size */
	uint32_t alloc_tid;
	uint32_t free_tid;
	uint32_t free_stack;   /* depot id, 0 = no stack */
	uint32_t alloc_cpu;
	uint64_t alloc_ns;     /* CLOCK_MONOTONIC ns */
	uint64_t free_ns;      /* CLOCK_MONOTONIC ns, 0 = not freed */
};                             /* 64 bytes */

/*
 * Stack depot: append-only arena of records, deduplicated by hash.
 * A stack id is (byte offset of the record in the arena) / 8; id 0 is never
 * used (the arena starts with an 8-byte pad). Records are written fully
 * before they are published in the hash table, so a reader that follows an
 * id it found in a slot always sees a complete record.
 */
struct uf_depot_rec {
	uint32_t hash;
	uint16_t nframes;
	uint16_t reserved;
	uint64_t frames[];     /* return addresses, innermost first, engine frames removed */
};

/* Loaded modules, refreshed by the engine when dl_iterate_phdr's adds/subs change. */
struct uf_shm_module {
	uint64_t base;         /* load bias (dlpi_addr) */
	uint64_t start;        /* lowest mapped address of its PT_LOAD segments */
	uint64_t end;          /* one past the highest */
	uint32_t build_id_len;
	uint8_t build_id[UF_BUILD_ID_MAX];
	uint32_t reserved;
	char path[UF_PATH_LEN];
};

struct uf_shm_header {
	char magic[8];                  /* UF_SHM_MAGIC */
	uint32_t version;               /* UF_SHM_VERSION */
	uint32_t header_size;           /* sizeof(struct uf_shm_header) */
	uint64_t file_size;             /* bytes the file was truncated to */

	/* identity, for ps and for detecting pid reuse */
	uint32_t pid;
	uint32_t ppid;
	uint32_t uid;
	uint32_t page_size;
	uint64_t proc_starttime;        /* field 22 of /proc/self/stat (clock ticks) */
	uint64_t start_realtime_ns;     /* CLOCK_REALTIME at engine init */
	uint64_t start_monotonic_ns;    /* CLOCK_MONOTONIC at engine init */
	uint64_t heartbeat_ns;          /* CLOCK_MONOTONIC, updated by the control thread */
	char comm[UF_COMM_LEN];
	char exe[UF_PATH_LEN];
	char cmdline[UF_PATH_LEN];      /* argv joined by spaces, truncated */
	char engine_version[32];

	/* pool geometry: object page of slot i = pool_base + (2*i + 2) * page_size */
	uint64_t pool_base;
	uint64_t pool_reserved_slots;   /* address space reserved for this many */

	/* settings: current (engine writes) and requested (CLI writes) */
	uint32_t settings_count;        /* entries of settings.def, in its order */
	uint32_t setting_size;          /* sizeof(struct uf_shm_setting) */
	uint64_t settings_off;          /* current values: settings_count entries */
	uint64_t request_off;           /* requested values: settings_count entries */

	/*
	 * Change protocol (CLI side holds flock(LOCK_EX) on the file meanwhile):
	 * write request texts, set request_mask (bit i = setting i), then
	 * request_seq++ (release). The engine copies and validates the whole
	 * request, applies all of it or none, writes response_status (0 = ok,
	 * else an errno value) and response_msg, then ack_seq = request_seq.
	 * FUTEX_WAKE on request_seq wakes the control thread at once.
	 */
	uint64_t request_mask;
	uint32_t request_seq;
	uint32_t ack_seq;
	int32_t response_status;
	uint32_t reserved0;
	char response_msg[UF_MSG_LEN];

	/* statistics */
	uint32_t stats_count;           /* UF_STAT_COUNT */
	uint32_t reserved1;
	uint64_t stats_off;             /* uint64_t[stats_count] */

	/* slots */
	uint32_t slot_size;             /* sizeof(struct uf_shm_slot) */
	uint32_t reserved2;
	uint64_t slots_off;
	uint64_t slots_capacity;        /* records that fit in the file */

	/* stack depot */
	uint64_t depot_table_off;       /* uint32_t[depot_table_len], 0 = empty */
	uint64_t depot_table_len;       /* power of two */
	uint64_t depot_arena_off;
	uint64_t depot_arena_size;
	uint64_t depot_arena_used;      /* bytes used, atomically bumped */

	/* modules */
	uint32_t module_size;           /* sizeof(struct uf_shm_module) */
	uint32_t modules_count;         /* valid entries */
	uint64_t modules_off;
	uint32_t modules_capacity;
	uint32_t modules_seq;           /* seqlock over the whole table */

	/* bugs */
	uint64_t bugs_seen;             /* == stats total_bugs, kept for old readers */
	char report_dir[UF_PATH_LEN];   /* where JSON reports go */

	/*
	 * Hot page (added after version 1 shipped; readers check header_size).
	 * The page at hot_off is mapped MAP_SHARED over the engine's own copy
	 * of the word its malloc fast path tests, so a CLI can wake an engine
	 * that runs no thread: u32 at hot_off + 0 is the gate (engine writes,
	 * nonzero = take the slow path), u32 at hot_off + 4 is the wake word
	 * (CLI writes nonzero after request_seq++; the next allocation applies
	 * the request and clears it). Nothing read there is trusted: a bad
	 * value only sends allocations down the slow path. hot_off = 0: no hot
	 * page; only the control thread (futex on request_seq) applies requests.
	 */
	uint64_t hot_off;
	uint32_t hot_size;              /* bytes (one page) */
	uint32_t control_thread;        /* 1 once the engine's control thread runs */
};

#endif

/*
 * Call-frame unwinding from the modules' own .eh_frame (x86-64), for code
 * built without frame pointers: distribution libraries, CPython, Rust. The
 * frame-pointer walk alone loses the caller of every frameless function on
 * the way: `operator new` in libstdc++ and `__rust_alloc` sit between most
 * C++ and Rust allocations and malloc, and with them the frame that matters
 * most (the function that allocated) was missing from "allocated by".
 *
 * rule_word() answers, for one code address, how to find its caller:
 * the CFA (canonical frame address) as rsp or rbp plus an offset, the
 * return address at CFA-8, and where rbp was saved. It finds the FDE
 * through the module's .eh_frame_hdr search table and runs the CIE's and
 * FDE's CFI program up to the address. Rules are cached per address in a
 * lock-free table, so a steady-state walk costs a hash probe a frame.
 * Async-signal-safe: no allocation, no locks; it reads only the mapped
 * .eh_frame_hdr/.eh_frame of modules in the engine's module table.
 */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "uf.h"

#if defined(__x86_64__)

#define REG_RBP 6
#define REG_RSP 7
#define REG_RA 16

/* decoding of one CFI program into the rule at a target address */
struct cfi_row {
	int cfa_reg;           /* REG_RSP or REG_RBP; -1: not expressible here */
	int64_t cfa_off;
	int rbp_how;           /* 0 same value, 1 saved at CFA + rbp_off, -1 not expressible */
	int64_t rbp_off;
	int ra_ok;             /* the return address is at CFA - 8 */
};

struct cursor {
	const uint8_t *p, *end;
	int bad;
};

/* LEB128, unsigned or sign-extended from the last byte's bit 6 */
static uint64_t leb(struct cursor *c, int is_signed)
{
	uint64_t v = 0;
	unsigned shift = 0;
	while (c->p < c->end) {
		uint8_t b = *c->p++;
		if (shift < 64)
			v |= (uint64_t)(b & 0x7f) << shift;
		shift += 7;
		if (!(b & 0x80)) {
			if (is_signed && shift < 64 && (b & 0x40))
				v |= ~(uint64_t)0 << shift;
			return v;
		}
	}
	c->bad = 1;
	return 0;
}

static uint64_t uleb(struct cursor *c)
{
	return leb(c, 0);
}

static int64_t sleb(struct cursor *c)
{
	return (int64_t)leb(c, 1);
}

static uint64_t fixed(struct cursor *c, unsigned n)
{
	if ((size_t)(c->end - c->p) < n) {
		c->bad = 1;
		return 0;
	}
	uint64_t v = 0;
	memcpy(&v, c->p, n);
	c->p += n;
	return v;
}

/* A DW_EH_PE-encoded pointer; pcrel and datarel (base: the .eh_frame_hdr)
 * are what GNU ld and lld emit; anything else is refused. */
static uintptr_t encoded(struct cursor *c, uint8_t enc, uintptr_t datarel)
{
	if (enc == 0xff)       /* DW_EH_PE_omit */
		return 0;
	uintptr_t here = (uintptr_t)c->p;
	uint64_t v;
	switch (enc & 0x0f) {
	case 0x00: v = fixed(c, 8); break;
	case 0x01: v = uleb(c); break;
	case 0x02: v = fixed(c, 2); break;
	case 0x03: v = fixed(c, 4); break;
	case 0x04: v = fixed(c, 8); break;
	case 0x09: v = (uint64_t)sleb(c); break;
	case 0x0a: v = (uint64_t)(int64_t)(int16_t)fixed(c, 2); break;
	case 0x0b: v = (uint64_t)(int64_t)(int32_t)fixed(c, 4); break;
	case 0x0c: v = fixed(c, 8); break;
	default: c->bad = 1; return 0;
	}
	switch (enc & 0x70) {
	case 0x00: break;
	case 0x10: v += here; break;
	case 0x30: v += datarel; break;
	default: c->bad = 1; return 0;
	}
	if (enc & 0x80)        /* indirect: only personality pointers use it, never followed */
		c->bad = 1;
	return (uintptr_t)v;
}

/* May [a, a+n) be read? Inside the .eh_frame segment of a module that can
 * never be unloaded (loaded before the program ran: ld.so never unmaps
 * those), a bounds check; anywhere else (a dlopen'ed module, whose table
 * entry can lag its dlclose by one refresh, or data pointing outside the
 * segment) mincore says whether it is still mapped. */
static int readable(const struct uf_eh *e, uintptr_t a, size_t n)
{
	if (e->permanent && a >= e->lo && n <= e->hi - a && a <= e->hi)
		return 1;
	unsigned char vec[4];
	uintptr_t pg = a & ~(uintptr_t)4095;
	size_t len = a + n - pg;
	if (len > 3 * 4096)
		len = 3 * 4096;
	return mincore((void *)pg, len, vec) == 0;
}

struct cie {
	uint64_t code_align;
	int64_t data_align;
	uint64_t ra_reg;
	uint8_t fde_enc;
	int has_z;
	const uint8_t *insns, *end;
};

static int parse_cie(const struct uf_eh *e, const uint8_t *p, struct cie *cie)
{
	uintptr_t datarel = e->hdr;
	if (!readable(e, (uintptr_t)p, 8))
		return -1;
	struct cursor c = {p, p + 4, 0};
	uint64_t len = fixed(&c, 4);
	if (len < 4 || len >= 0xfffffff0u)
		return -1;
	c.end = p + 4 + len;
	if (!readable(e, (uintptr_t)p, 4 + len) || fixed(&c, 4) != 0)   /* CIE id 0 */
		return -1;
	uint8_t version = (uint8_t)fixed(&c, 1);
	const char *aug = (const char *)c.p;
	size_t alen = strnlen(aug, (size_t)(c.end - c.p));
	if (c.bad || alen == (size_t)(c.end - c.p))
		return -1;
	c.p += alen + 1;
	if (aug[0] == 'e' && aug[1] == 'h')
		return -1;                                 /* pre-GCC-3 "eh" data: not met in practice */
	cie->code_align = uleb(&c);
	cie->data_align = sleb(&c);
	cie->ra_reg = version == 1 ? fixed(&c, 1) : uleb(&c);
	cie->fde_enc = 0;
	cie->has_z = aug[0] == 'z';
	if (cie->has_z) {
		uint64_t zlen = uleb(&c);
		const uint8_t *zend = c.p + zlen;
		if (zend > c.end)
			return -1;
		for (const char *a = aug + 1; *a && !c.bad; a++) {
			if (*a == 'R')
				cie->fde_enc = (uint8_t)fixed(&c, 1);
			else if (*a == 'L')
				fixed(&c, 1);
			else if (*a == 'P') {
				uint8_t penc = (uint8_t)fixed(&c, 1);
				struct cursor pc = c;
				encoded(&pc, (uint8_t)(penc & 0x7f), datarel);   /* skipped, never followed */
				c.p = pc.p;
				c.bad |= pc.bad;
			} else if (*a == 'S' || *a == 'B' || *a == 'G')
				;          /* signal frame / arm64 flags: no data */
			else
				break;     /* unknown: the length above lets us skip the rest */
		}
		c.p = zend;
	}
	cie->insns = c.p;
	cie->end = c.end;
	return c.bad || cie->ra_reg != REG_RA ? -1 : 0;
}

struct regrule {
	int how;               /* 0 same/undefined-for-rbp, 1 offset from CFA, -1 other */
	int64_t off;
};

struct cfi_state {
	int cfa_reg;
	int64_t cfa_off;
	struct regrule rbp, ra;
};

/* a register saved in a way this walker does not follow (another register,
 * an expression): a step through it falls back to the frame pointer */
static void opaque(struct cfi_state *st, uint64_t reg)
{
	if (reg == REG_RBP)
		st->rbp.how = -1;
	if (reg == REG_RA)
		st->ra.how = -1;
}

/* Run one CFI program from loc, stopping at the first row past target. */
static int run_cfi(struct cursor *c, const struct cie *cie, uintptr_t *loc, uintptr_t target,
		   struct cfi_state *st, const struct cfi_state *initial, uintptr_t datarel)
{
	struct cfi_state saved[8];
	int depth = 0;
	while (c->p < c->end && !c->bad) {
		uint8_t op = *c->p++;
		uint8_t hi = op & 0xc0, low = op & 0x3f;
		uint64_t reg = 0, delta = 0;
		int64_t off = 0;
		if (hi == 0x40) {                  /* advance_loc */
			delta = low * cie->code_align;
			goto advance;
		}
		if (hi == 0x80) {                  /* offset */
			reg = low;
			off = (int64_t)uleb(c) * cie->data_align;
			goto set_offset;
		}
		if (hi == 0xc0) {                  /* restore */
			reg = low;
			goto restore;
		}
		switch (op) {
		case 0x00: continue;                                   /* nop */
		case 0x01:                                             /* set_loc */
			delta = encoded(c, cie->fde_enc, datarel);
			if (delta < *loc)
				return -1;
			delta -= *loc;
			goto advance;
		case 0x02: delta = fixed(c, 1) * cie->code_align; goto advance;
		case 0x03: delta = fixed(c, 2) * cie->code_align; goto advance;
		case 0x04: delta = fixed(c, 4) * cie->code_align; goto advance;
		case 0x05: reg = uleb(c); off = (int64_t)uleb(c) * cie->data_align; goto set_offset;
		case 0x06: reg = uleb(c); goto restore;
		case 0x07:                                             /* undefined */
		case 0x08:                                             /* same_value */
			reg = uleb(c);
			if (reg == REG_RBP)
				st->rbp.how = 0;
			if (reg == REG_RA)
				st->ra.how = -1;     /* undefined RA: the outermost frame */
			continue;
		case 0x09:                                             /* register */
			reg = uleb(c);
			uleb(c);
			opaque(st, reg);
			continue;
		case 0x0a:                                             /* remember_state */
			if (depth == 8)
				return -1;
			saved[depth++] = *st;
			continue;
		case 0x0b:                                             /* restore_state */
			if (!depth)
				return -1;
			*st = saved[--depth];
			continue;
		case 0x0c: st->cfa_reg = (int)uleb(c); st->cfa_off = (int64_t)uleb(c); continue;
		case 0x0d: st->cfa_reg = (int)uleb(c); continue;
		case 0x0e: st->cfa_off = (int64_t)uleb(c); continue;
		case 0x0f: st->cfa_reg = -1; c->p += uleb(c); continue;  /* def_cfa_expression */
		case 0x10:                                             /* expression */
		case 0x16:                                             /* val_expression */
			reg = uleb(c);
			c->p += uleb(c);
			opaque(st, reg);
			continue;
		case 0x11: reg = uleb(c); off = sleb(c) * cie->data_align; goto set_offset;
		case 0x12: st->cfa_reg = (int)uleb(c); st->cfa_off = sleb(c) * cie->data_align; continue;
		case 0x13: st->cfa_off = sleb(c) * cie->data_align; continue;
		case 0x14:                                             /* val_offset */
		case 0x15:
			reg = uleb(c);
			if (op == 0x14)
				uleb(c);
			else
				sleb(c);
			opaque(st, reg);
			continue;
		case 0x2e: uleb(c); continue;                          /* GNU_args_size */
		case 0x2f: reg = uleb(c); off = -(int64_t)uleb(c) * cie->data_align; goto set_offset;
		default: return -1;
		}
advance:
		if (*loc + delta > target)
			return 0;                  /* the row in force at target is the current one */
		*loc += delta;
		continue;
set_offset:
		if (reg == REG_RBP)
			st->rbp = (struct regrule){1, off};
		if (reg == REG_RA)
			st->ra = (struct regrule){1, off};
		continue;
restore:
		if (!initial)
			return -1;                 /* restore inside the CIE's own program */
		if (reg == REG_RBP)
			st->rbp = initial->rbp;
		if (reg == REG_RA)
			st->ra = initial->ra;
		continue;
	}
	return c->bad ? -1 : 0;
}

/* The FDE covering pc through the .eh_frame_hdr binary search table; 0 if
 * none (or a table encoding other than GNU ld's and lld's datarel sdata4). */
static const uint8_t *find_fde(const struct uf_eh *e, uintptr_t pc)
{
	uintptr_t hdr = e->hdr;
	const uint8_t *h = (const uint8_t *)hdr;
	if (!readable(e, hdr, 12) || h[0] != 1 || h[3] != 0x3b)
		return NULL;
	struct cursor c = {h + 4, h + 24, 0};
	encoded(&c, h[1], hdr);                          /* eh_frame_ptr: not needed */
	uint64_t count = encoded(&c, h[2], hdr);
	if (c.bad || !count || count > (1u << 24))
		return NULL;
	const int32_t *table = (const int32_t *)c.p;
	if (!readable(e, (uintptr_t)table, count * 8))
		return NULL;
	uint64_t lo = 0, hi = count;
	while (hi - lo > 1) {                              /* last entry with start <= pc */
		uint64_t mid = (lo + hi) / 2;
		if (hdr + (intptr_t)table[2 * mid] <= pc)
			lo = mid;
		else
			hi = mid;
	}
	if (hdr + (intptr_t)table[2 * lo] > pc)
		return NULL;
	return (const uint8_t *)(hdr + (intptr_t)table[2 * lo + 1]);
}

static int decode(const struct uf_eh *e, uintptr_t pc, struct cfi_row *row)
{
	uintptr_t hdr = e->hdr;
	const uint8_t *fde = find_fde(e, pc);
	if (!fde || !readable(e, (uintptr_t)fde, 16))
		return -1;
	struct cursor c = {fde, fde + 8, 0};
	uint64_t len = fixed(&c, 4);
	if (len == 0 || len >= 0xfffffff0u || !readable(e, (uintptr_t)fde, 4 + len))
		return -1;
	c.end = fde + 4 + len;
	uint32_t cie_ptr = (uint32_t)fixed(&c, 4);
	struct cie cie;
	if (!cie_ptr || parse_cie(e, fde + 4 - cie_ptr, &cie))
		return -1;
	uintptr_t start = encoded(&c, cie.fde_enc, hdr);
	uintptr_t range = encoded(&c, cie.fde_enc & 0x0f, hdr);
	if (c.bad || pc < start || pc - start >= range)
		return -1;
	if (cie.has_z)
		c.p += uleb(&c);
	struct cfi_state st = {REG_RSP, 8, {0, 0}, {1, -8}};
	uintptr_t loc = start;
	struct cursor ci = {cie.insns, cie.end, 0};
	if (run_cfi(&ci, &cie, &loc, UINTPTR_MAX, &st, NULL, hdr))
		return -1;
	struct cfi_state initial = st;
	loc = start;
	if (run_cfi(&c, &cie, &loc, pc, &st, &initial, hdr))
		return -1;
	row->cfa_reg = st.cfa_reg == REG_RSP || st.cfa_reg == REG_RBP ? st.cfa_reg : -1;
	row->cfa_off = st.cfa_off;
	row->rbp_how = st.rbp.how;
	row->rbp_off = st.rbp.off;
	row->ra_ok = st.ra.how == 1 && st.ra.off == -8;
	return 0;
}

/* Cache: one entry per code address, two words written and read without a
 * lock; the rule word carries the address's low 32 bits, so a torn pair
 * from two racing writers reads as a miss, never as another address's rule
 * (and a wrong rule could only misname a frame: every stack read is
 * bounds-checked). Four ways a set, a set one cache line: a direct-mapped
 * table of 4096 missed 0.1% of lookups in mariadbd, all conflicts (a
 * 32768-entry one missed only the first sight of each address), and each
 * miss re-ran the CFI program. */
#define CACHE_WAYS 4u
#define CACHE_SETS 2048u
static struct {
	_Atomic uint64_t pc, rule;
} cache[CACHE_SETS][CACHE_WAYS] __attribute__((aligned(64)));

static inline uint32_t set_of(uintptr_t pc)
{
	return (uint32_t)(pc ^ (pc >> 11)) & (CACHE_SETS - 1);
}

/* rule word: bits 0-1 kind, 2 rbp-based CFA, 3 rbp saved, 4-15 cfa_off/8,
 * 16-23 rbp_off/8 (signed), 24 the address was in no module the table knew
 * (25-31: the table's generation then), 32-63 the address's low bits. An
 * address in a library dlopen'ed since the last refresh must not keep the
 * frame-pointer rule once the table has the library: the first version
 * cached it for good, and a frameless dlopen'ed library (a Python C
 * extension, a plugin) lost its callers in every later stack. */
#define RULE_UNKNOWN (1ull << 24)
static uint64_t pack(const struct cfi_row *r, int kind)
{
	uint64_t w = (uint64_t)kind;
	if (kind == UF_UNWIND_CFA) {
		w |= (uint64_t)(r->cfa_reg == REG_RBP) << 2 | (uint64_t)(r->rbp_how == 1) << 3;
		w |= ((uint64_t)(r->cfa_off / 8) & 0xfff) << 4;
		w |= ((uint64_t)(r->rbp_off / 8) & 0xff) << 16;
	}
	return w;
}

static __attribute__((noinline)) uint64_t rule_slow(uintptr_t pc, uint32_t set, int may_refresh)
{
	struct cfi_row row;
	struct uf_eh eh;
	int kind = UF_UNWIND_NONE;
	uint64_t unknown = 0;
	uint32_t gen = uf_modules_generation();      /* before the lookup: a refresh after it retries */
	int found = uf_module_eh(pc, &eh);
	/* refreshed now, or by the control thread since the lookup (then the
	 * refresh finds nothing left to do): look again (a seqlock read, fine
	 * in a signal handler too) */
	if (found < 0 && ((may_refresh && uf_modules_refresh_now()) || uf_modules_generation() != gen)) {
		gen = uf_modules_generation();
		found = uf_module_eh(pc, &eh);
	}
	if (found < 0)          /* a module the table has not seen yet: ask again after its refresh */
		unknown = RULE_UNKNOWN | (uint64_t)(gen & 0x7f) << 25;
	if (found > 0 && decode(&eh, pc, &row) == 0) {
		if (row.cfa_reg < 0 || row.rbp_how < 0 || (row.cfa_off & 7) || row.cfa_off < 8 ||
		    row.cfa_off / 8 > 0x7ff ||
		    (row.rbp_how == 1 && ((row.rbp_off & 7) || row.rbp_off / 8 < -128 || row.rbp_off / 8 > 127)))
			kind = UF_UNWIND_NONE;        /* not expressible: the frame-pointer step */
		else
			kind = row.ra_ok ? UF_UNWIND_CFA : UF_UNWIND_STOP;
	}
	uint64_t w = pack(&row, kind) | unknown | (uint64_t)(uint32_t)pc << 32;
	/* an empty way, else any: no shared replacement state to write */
	uint32_t way = (uint32_t)uf_rand() & (CACHE_WAYS - 1);
	for (uint32_t k = 0; k < CACHE_WAYS; k++)
		if (!atomic_load_explicit(&cache[set][k].pc, memory_order_relaxed)) {
			way = k;
			break;
		}
	atomic_store_explicit(&cache[set][way].pc, 0, memory_order_relaxed);
	atomic_store_explicit(&cache[set][way].rule, w, memory_order_release);
	atomic_store_explicit(&cache[set][way].pc, pc, memory_order_release);
	return w;
}

/* Each thread's own small memo in front of the table: perf showed the walk
 * waiting on the table's cache line in most frames under full mode (its
 * 128 KiB do not stay in the L1 cache next to a page per object), while a
 * thread's stacks keep coming back to the same few dozen callers. Same
 * torn-pair rule as the table (the rule word carries the address's low
 * bits: a signal handler that interrupts an update reads a miss). Cleared
 * at a thread's next walk when the table is forgotten (a dlclose). */
static inline uint64_t rule_table(uintptr_t pc, int may_refresh);
#define MEMO_SLOTS 64u
static __thread struct {
	uintptr_t pc;
	uint64_t rule;
} memo[MEMO_SLOTS] __attribute__((tls_model("initial-exec")));
static __thread uint32_t memo_gen __attribute__((tls_model("initial-exec")));
static _Atomic uint32_t cache_gen;

static inline void memo_sync(void)
{
	uint32_t g = atomic_load_explicit(&cache_gen, memory_order_relaxed);
	if (__builtin_expect(memo_gen != g, 0)) {
		for (uint32_t i = 0; i < MEMO_SLOTS; i++)
			memo[i].pc = 0;
		memo_gen = g;
	}
}

/* may_refresh: not in a signal handler, so an address of a module loaded
 * since the last refresh may refresh the table (uf_modules_refresh_now) */
static inline uint64_t rule_word(uintptr_t pc, int may_refresh)
{
	uint32_t mi = (uint32_t)(pc ^ (pc >> 7)) & (MEMO_SLOTS - 1);
	if (memo[mi].pc == pc) {
		uint64_t w = memo[mi].rule;
		__asm__ volatile("" ::: "memory");
		if (__builtin_expect((uint32_t)(w >> 32) == (uint32_t)pc, 1) && memo[mi].pc == pc)
			return w;
	}
	uint64_t w = rule_table(pc, may_refresh);
	if (!(w & RULE_UNKNOWN)) {
		memo[mi].pc = 0;                     /* a handler in between sees a miss */
		__asm__ volatile("" ::: "memory");
		memo[mi].rule = w;
		__asm__ volatile("" ::: "memory");
		memo[mi].pc = pc;
	}
	return w;
}

static inline uint64_t rule_table(uintptr_t pc, int may_refresh)
{
	uint32_t set = set_of(pc);
	for (uint32_t k = 0; k < CACHE_WAYS; k++) {
		if (atomic_load_explicit(&cache[set][k].pc, memory_order_acquire) == pc) {
			uint64_t w = atomic_load_explicit(&cache[set][k].rule, memory_order_acquire);
			if (__builtin_expect((uint32_t)(w >> 32) == (uint32_t)pc, 1) &&
			    __builtin_expect(!(w & RULE_UNKNOWN) ||
					     ((w >> 25) & 0x7f) == (uf_modules_generation() & 0x7f), 1))
				return w;
		}
	}
	return rule_slow(pc, set, may_refresh);
}


/* a dlclose may give its addresses to another module later: forget all
 * (symbols.c, when the module table loses one) */
void uf_unwind_forget(void)
{
	for (uint32_t i = 0; i < CACHE_SETS; i++)
		for (uint32_t k = 0; k < CACHE_WAYS; k++)
			atomic_store_explicit(&cache[i][k].pc, 0, memory_order_relaxed);
	atomic_fetch_add_explicit(&cache_gen, 1, memory_order_release);     /* and every thread's memo */
}

#else

static inline void memo_sync(void)
{
}

static inline uint64_t rule_word(uintptr_t pc, int may_refresh)
{
	(void)pc;
	(void)may_refresh;
	return UF_UNWIND_NONE;
}

void uf_unwind_forget(void)
{
}

#endif

/* Read a frame record without trusting it: process_vm_readv on ourselves
 * answers EFAULT for unmapped or PROT_NONE memory instead of faulting
 * (mincore would accept a PROT_NONE guard page). Async-signal-safe. */
static int safe_read(uintptr_t a, uintptr_t *out)
{
	struct iovec local = {out, 8}, remote = {(void *)a, 8};
	return process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == 8 ? 0 : -1;
}

/* Where a walk may read: the thread's stack when sp is on it (plain loads,
 * ~1 ns), else anywhere mapped within 64 MiB above the start (a coroutine,
 * a signal stack, a custom stack: each word read with safe_read, about a
 * microsecond, so only off the thread's own stack). */
struct span {
	uintptr_t lo, last;    /* a word at a is readable if a - lo <= last */
	int known;
};

static struct span span_of(uintptr_t sp)
{
	if (uf_tls.stack_known == 1 && sp >= uf_tls.stack_lo && sp < uf_tls.stack_hi && uf_tls.stack_hi - uf_tls.stack_lo >= 8)
		return (struct span){uf_tls.stack_lo, uf_tls.stack_hi - uf_tls.stack_lo - 8, 1};
	return (struct span){sp, (64u << 20) - 8, 0};
}

/* `known` is a constant in each expansion: on the thread's own stack a
 * plain load after one range check (a misaligned word there is only a
 * wrong frame), elsewhere a checked read of an aligned word */
static inline __attribute__((always_inline)) int rd(const struct span *s, const int known, uintptr_t a, uintptr_t *v)
{
	if ((!known && (a & 7)) || a - s->lo > s->last)
		return -1;
	if (known) {
		*v = *(const uintptr_t *)a;
		return 0;
	}
	return safe_read(a, v);
}

/* One step from a frame (its sp and rbp) by its rule word w: the caller's
 * return address and registers; by the CFA where the module's call-frame
 * information gives one, else by the saved frame pointer. 0 = ok. The
 * stack pointer must rise at every step, so a walk always ends. */
static inline __attribute__((always_inline)) int step(const struct span *s, const int known, uint64_t w,
						      uintptr_t sp, uintptr_t fp, uintptr_t *ra, uintptr_t *nsp,
						      uintptr_t *nfp)
{
	*nfp = fp;
	if (__builtin_expect(w & UF_UNWIND_CFA, 1)) {
		*nsp = ((w & 4) ? fp : sp) + (uintptr_t)((w >> 1) & 0x7ff8);      /* cfa_off/8 in bits 4-15 */
		if (*nsp <= sp || rd(s, known, *nsp - 8, ra))
			return -1;
		return (w & 8) ? rd(s, known, *nsp + (uintptr_t)((int64_t)(int8_t)(uint8_t)(w >> 16) * 8), nfp) : 0;
	}
	if ((w & UF_UNWIND_STOP) || fp < sp || rd(s, known, fp, nfp) || rd(s, known, fp + 8, ra))
		return -1;
	*nsp = fp + 16;
	return 0;
}

/* pc: a return address (adj 1: its rule is the call's) or a faulting pc (adj 0) */
static inline __attribute__((always_inline)) int walk_span(const struct span *s, const int known, uintptr_t pc,
							   uintptr_t adj, uintptr_t sp, uintptr_t fp, int cfi,
							   uintptr_t *out, int n, int max)
{
	while (n < max) {
		uintptr_t ra, nsp, nfp;
		uint64_t w = cfi ? rule_word(pc - adj, cfi > 1) : UF_UNWIND_NONE;
		if (step(s, known, w, sp, fp, &ra, &nsp, &nfp) || ra < 4096)
			break;
		out[n++] = ra;
		pc = ra;
		adj = 1;
		sp = nsp;
		fp = nfp;
	}
	return n;
}

static inline __attribute__((always_inline)) int walk(const struct span *s, uintptr_t pc, uintptr_t adj, uintptr_t sp,
						       uintptr_t fp, int cfi, uintptr_t *out, int n, int max)
{
	if (cfi)
		memo_sync();
	if (__builtin_expect(s->known, 1))
		return walk_span(s, 1, pc, adj, sp, fp, cfi, out, n, max);
	return walk_span(s, 0, pc, adj, sp, fp, cfi, out, n, max);
}

int uf_unwind_walk(uintptr_t pc, int is_ret, uintptr_t sp, uintptr_t fp, int cfi, uintptr_t *out, int n, int max)
{
	struct span s = span_of(sp);
	return walk(&s, pc, is_ret != 0, sp, fp, cfi, out, n, max);
}

int uf_unwind_from_call(uintptr_t first, uintptr_t fp, int cfi, uintptr_t *out, int n, int max)
{
	struct span s = span_of(fp);
	uintptr_t caller_fp;
	if (s.known ? rd(&s, 1, fp, &caller_fp) : rd(&s, 0, fp, &caller_fp))
		return n;
	/* cfi 2: an allocation or a free, not a signal handler: the module
	 * table may be refreshed for a library it has not seen yet */
	return walk(&s, first, 1, fp + 16, caller_fp, cfi ? 2 : 0, out, n, max);
}

int uf_stack_read(uintptr_t sp, uintptr_t a, uintptr_t *v)
{
	struct span s = span_of(sp);
	return s.known ? rd(&s, 1, a, v) : rd(&s, 0, a, v);
}

int uf_unwind_kind(uintptr_t pc)
{
	memo_sync();
	return (int)(rule_word(pc, 0) & 3);
}

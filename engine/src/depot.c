/*
 * Stack depot in the shared-memory file: an append-only arena of records,
 * deduplicated through an open-addressing table of ids. Insertion is
 * lock-free: bump the arena, write the record, then publish its id with a
 * CAS; a reader that finds an id always sees a complete record. The engine
 * keeps the table size, arena size and fill level in private memory and
 * bounds-checks every id it reads back.
 */
#include <string.h>

#include "uf.h"

#define PROBES 64

UF_HIDDEN uint64_t uf_depot_len;    /* table entries, power of two */
UF_HIDDEN uint64_t uf_depot_size;   /* arena bytes */
UF_HIDDEN _Atomic uint64_t uf_depot_used = 8;

static int same(const struct uf_depot_rec *r, uint32_t h, const uintptr_t *f, int n)
{
	return r->hash == h && r->nframes == n && memcmp(r->frames, f, (size_t)n * 8) == 0;
}

static const struct uf_depot_rec *rec_of(uint32_t id)
{
	uint64_t off = (uint64_t)id * 8;
	uint64_t used = atomic_load(&uf_depot_used);
	if (!id || off + sizeof(struct uf_depot_rec) > used)
		return NULL;
	const struct uf_depot_rec *r = (const void *)(uf_shm.depot_arena + off);
	if (r->nframes > UF_MAX_FRAMES || off + 8 + (uint64_t)r->nframes * 8 > used)
		return NULL;
	return r;
}

uint32_t uf_depot_put(const uintptr_t *frames, int n)
{
	if (!uf_shm.depot_table || !uf_depot_len || n <= 0)
		return 0;
	uint32_t h = uf_stack_hash(frames, n);
	uint64_t idx = h & (uf_depot_len - 1);
	uint32_t mine = 0;
	for (int p = 0; p < PROBES; p++, idx = (idx + 1) & (uf_depot_len - 1)) {
		uint32_t *slot = &uf_shm.depot_table[idx];
		uint32_t id = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
		if (!id) {
			if (!mine) {
				uint64_t sz = 8 + (uint64_t)n * 8;
				uint64_t off = atomic_fetch_add(&uf_depot_used, sz);
				if (off + sz > uf_depot_size || (off / 8) > UINT32_MAX) {
					uf_stat_add(UF_STAT_depot_full, 1);
					return 0;
				}
				struct uf_depot_rec *r = (void *)(uf_shm.depot_arena + off);
				r->hash = h;
				r->nframes = (uint16_t)n;
				r->reserved = 0;
				memcpy(r->frames, frames, (size_t)n * 8);
				mine = (uint32_t)(off / 8);
				uint64_t used = off + sz;
				uint64_t cur = __atomic_load_n(&uf_shm.hdr->depot_arena_used, __ATOMIC_RELAXED);
				while (cur < used && !__atomic_compare_exchange_n(&uf_shm.hdr->depot_arena_used, &cur, used, 1,
										   __ATOMIC_RELEASE, __ATOMIC_RELAXED))
					;
			}
			uint32_t expect = 0;
			if (__atomic_compare_exchange_n(slot, &expect, mine, 0, __ATOMIC_RELEASE, __ATOMIC_ACQUIRE)) {
				uf_stat_add(UF_STAT_depot_stacks, 1);
				return mine;
			}
			id = expect;
		}
		const struct uf_depot_rec *r = rec_of(id);
		if (r && same(r, h, frames, n))
			return id;
	}
	uf_stat_add(UF_STAT_depot_full, 1);
	return 0;
}

int uf_depot_get(uint32_t id, uintptr_t *out, int max)
{
	const struct uf_depot_rec *r = rec_of(id);
	if (!r)
		return 0;
	int n = r->nframes < max ? r->nframes : max;
	memcpy(out, r->frames, (size_t)n * 8);
	return n;
}

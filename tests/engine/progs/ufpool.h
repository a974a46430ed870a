/*
 * Test-program side of the engine contract: find this process's ufence
 * shared-memory file (engine/include/ufence/shm.h) to learn the pool range,
 * the guard mechanism, the applied settings and live statistics, so a test
 * program knows for certain whether an allocation is guarded and where in
 * its page it was placed, instead of guessing from address patterns.
 *
 * Build with -I engine/include. Header-only so every program stays one file.
 */
#ifndef UFPOOL_H
#define UFPOOL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ufence/shm.h"

/* Exit codes the pytest side recognises (distinct from 0 and signals). */
#define UFP_EXIT_NO_ENGINE 77   /* no shm file for this pid: engine not loaded */
#define UFP_EXIT_TIMEOUT   78   /* never got a guarded object of the wanted side */
#define UFP_EXIT_CHECK     79   /* a program-side check failed (message on stdout) */

struct ufpool {
	const struct uf_shm_header *h;
	uintptr_t base;   /* first byte of the pool (page 0, a guard page) */
	uintptr_t end;    /* one past the last slot's right guard page */
	uintptr_t page;
};

static struct ufpool ufp;

static inline double ufp_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Map <run dir>/<pid>.shm read-only. Returns 0, or -1 if there is no engine. */
static inline int ufpool_open(void)
{
	char dir[512], path[600];
	const char *env = getenv("UFENCE_RUN_DIR");
	if (env && *env)
		snprintf(dir, sizeof dir, "%s", env);
	else
		snprintf(dir, sizeof dir, "/dev/shm/ufence-%u", (unsigned)getuid());
	snprintf(path, sizeof path, "%s/%d.shm", dir, (int)getpid());

	/* The engine may publish the file a moment after start-up: wait a little. */
	int fd = -1;
	for (double t0 = ufp_now(); fd < 0 && ufp_now() - t0 < 2.0;) {
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			usleep(2000);
	}
	if (fd < 0)
		return -1;
	struct stat st;
	if (fstat(fd, &st) != 0 || (size_t)st.st_size < sizeof(struct uf_shm_header)) {
		close(fd);
		return -1;
	}
	void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		return -1;
	ufp.h = m;
	if (memcmp(ufp.h->magic, UF_SHM_MAGIC, 8) != 0)
		return -1;
	ufp.page = ufp.h->page_size;
	if (ufp.h->pool_base == 0) /* the engine may reserve its pool at the first allocation */
		free(malloc(16));
	ufp.base = (uintptr_t)ufp.h->pool_base;
	ufp.end = ufp.base + (2 * (uintptr_t)ufp.h->pool_reserved_slots + 2) * ufp.page;
	return 0;
}

/* Whether libufence.so is mapped into this process (independent of the shm file). */
static inline int engine_mapped(void)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[1024];
	int found = 0;
	if (!f)
		return 0;
	while (!found && fgets(line, sizeof line, f))
		found = strstr(line, "libufence") != NULL;
	fclose(f);
	return found;
}

/* ufpool_open() or exit(UFP_EXIT_NO_ENGINE) with a message the test shows. */
static inline void ufpool_require(void)
{
	if (!engine_mapped()) {
		printf("ufpool: engine not loaded in pid %d\n", (int)getpid());
		fflush(stdout);
		exit(UFP_EXIT_NO_ENGINE);
	}
	if (ufpool_open() != 0) {
		printf("ufpool: no ufence shm file for pid %d\n", (int)getpid());
		fflush(stdout);
		exit(UFP_EXIT_NO_ENGINE);
	}
}

static inline int in_pool(const void *p)
{
	uintptr_t a = (uintptr_t)p;
	return ufp.h && a >= ufp.base + 2 * ufp.page && a < ufp.end;
}

static inline uint64_t ufstat(enum uf_stat s)
{
	const volatile uint64_t *st = (const volatile uint64_t *)((const char *)ufp.h + ufp.h->stats_off);
	return (uint32_t)s < ufp.h->stats_count ? st[s] : 0;
}

/* Current canonical text of setting number i (settings.def order). */
static inline const char *ufsetting(unsigned i)
{
	if (i >= ufp.h->settings_count)
		return "?";
	const char *s = (const char *)ufp.h + ufp.h->settings_off + (size_t)i * ufp.h->setting_size;
	return ((const struct uf_shm_setting *)s)->text;
}

/* One line the pytest side parses: guard mechanism and every applied setting. */
static inline void ufpool_describe(void)
{
	printf("engine: pool=%#lx-%#lx slots=%lu guard=%lu\n", (unsigned long)ufp.base, (unsigned long)ufp.end,
	       (unsigned long)ufp.h->pool_reserved_slots, (unsigned long)ufstat(UF_STAT_guard_mechanism));
	for (unsigned i = 0; i < ufp.h->settings_count; i++)
		printf("setting %u=%s\n", i, ufsetting(i));
	fflush(stdout);
}

/* Stderr marker written with write(2), so it is ordered against engine reports. */
static inline void checkpoint(const char *what)
{
	char buf[128];
	int n = snprintf(buf, sizeof buf, "checkpoint: %s\n", what);
	if (write(2, buf, (size_t)n) < 0)
		_exit(UFP_EXIT_CHECK);
}

#endif

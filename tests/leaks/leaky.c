/*
 * A program that leaks from known call sites among normal traffic.
 *
 *   leaky count READY ITERS     every iteration allocates and frees a few
 *                               buffers; leak_site_a keeps 1 in 10 iterations'
 *                               object, leak_site_b 1 in 40. Then it sleeps
 *                               (so the leaks age past --min-age), writes
 *                               "a=N b=M" to READY and waits to be killed.
 *   leaky grow READY            forever: grow_site keeps one object per tick
 *                               (a leak); cache_site holds a fixed-size cache,
 *                               replacing one entry per tick (steady state).
 *                               READY is written once the cache is full.
 *
 * Sizes differ per site so bytes can be checked too. Pointers are kept in
 * globals so the leaks are reachable and the compiler cannot drop them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SIZE_A 24
#define SIZE_B 200
#define CACHE 300

static void **kept;
static size_t nkept, capkept;
static void *cache[CACHE];

static void keep(void *p)
{
	if (nkept == capkept) {
		capkept = capkept ? capkept * 2 : 1024;
		/* one realloc'd block: a single live object, never a top site */
		kept = realloc(kept, capkept * sizeof *kept);
		if (!kept)
			abort();
	}
	kept[nkept++] = p;
}

__attribute__((noinline)) static void leak_site_a(void)
{
	char *p = malloc(SIZE_A);
	if (!p)
		abort();
	memset(p, 'a', SIZE_A);
	keep(p);
}

__attribute__((noinline)) static void leak_site_b(void)
{
	char *p = malloc(SIZE_B);
	if (!p)
		abort();
	memset(p, 'b', SIZE_B);
	keep(p);
}

__attribute__((noinline)) static void grow_site(void)
{
	char *p = malloc(48);
	if (!p)
		abort();
	memset(p, 'g', 48);
	keep(p);
}

__attribute__((noinline)) static void cache_site(size_t slot)
{
	free(cache[slot]);
	cache[slot] = malloc(64);
	if (!cache[slot])
		abort();
	memset(cache[slot], 'c', 64);
}

/* Normal traffic: allocate, use and free; never live for long. */
__attribute__((noinline)) static void work(unsigned i)
{
	void *tmp[4];
	for (int k = 0; k < 4; k++) {
		size_t n = 8 + (i * 7u + (unsigned)k * 13u) % 500;
		tmp[k] = malloc(n);
		if (!tmp[k])
			abort();
		memset(tmp[k], k, n);
	}
	for (int k = 3; k >= 0; k--)
		free(tmp[k]);
}

static void ready(const char *path, const char *text)
{
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0 || rename(tmp, path) != 0) {
		perror(path);
		exit(1);
	}
}

static void nap_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

_Noreturn static void run_count(const char *path, unsigned iters)
{
	unsigned a = 0, b = 0;
	for (unsigned i = 1; i <= iters; i++) {
		work(i);
		if (i % 10 == 0) {
			leak_site_a();
			a++;
		}
		if (i % 40 == 0) {
			leak_site_b();
			b++;
		}
	}
	nap_ms(1500); /* older than the default --min-age of 1 s */
	char text[64];
	snprintf(text, sizeof text, "a=%u b=%u\n", a, b);
	ready(path, text);
	for (;;)
		pause();
}

_Noreturn static void run_grow(const char *path)
{
	for (size_t i = 0; i < CACHE; i++)
		cache_site(i);
	ready(path, "ready\n");
	for (unsigned t = 0;; t++) {
		for (unsigned k = 0; k < 20; k++)
			work(t * 20 + k);
		grow_site();
		cache_site(t % CACHE);
		nap_ms(10);
	}
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "count") == 0)
		run_count(argv[2], (unsigned)strtoul(argv[3], NULL, 10));
	if (argc == 3 && strcmp(argv[1], "grow") == 0)
		run_grow(argv[2]);
	fprintf(stderr, "usage: leaky count READY ITERS | leaky grow READY\n");
	return 2;
}

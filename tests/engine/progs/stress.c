/*
 * No-false-positive stress: 8 threads allocate with every function of the
 * malloc family, random sizes (some beyond a page, so both the pool and the
 * next allocator are used), fill the whole usable size, and trade blocks
 * through a shared table so most frees happen on another thread. Every block
 * is verified before it is freed: a lost byte or a wrong alignment fails the
 * program; any engine report fails the test.
 */
#include "ufpool.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>

#define THREADS 8
#define TABLE 2048

struct hdr {
	uint32_t size;  /* bytes the program may use (malloc_usable_size at fill time) */
	uint8_t pattern;
};

static _Atomic(struct hdr *) table[TABLE];
static _Atomic long guarded, total;
static long iterations = 20000;

#define FAIL(...)                                  \
	do {                                       \
		printf("check failed: " __VA_ARGS__); \
		printf("\n");                      \
		fflush(stdout);                    \
		_exit(UFP_EXIT_CHECK);             \
	} while (0)

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void fill(struct hdr *h, uint64_t *s)
{
	size_t n = malloc_usable_size(h);
	if (n < sizeof *h)
		FAIL("usable size %zu < %zu", n, sizeof *h);
	h->size = (uint32_t)n;
	h->pattern = (uint8_t)rnd(s);
	memset((char *)h + sizeof *h, h->pattern, n - sizeof *h);
}

static void verify(const struct hdr *h, size_t upto)
{
	const unsigned char *p = (const unsigned char *)h;
	size_t n = h->size < upto ? h->size : upto;
	for (size_t i = sizeof *h; i < n; i++)
		if (p[i] != h->pattern)
			FAIL("block %p byte %zu is %#x, want %#x", (const void *)h, i, p[i], h->pattern);
}

static size_t pick_size(uint64_t *s)
{
	uint64_t r = rnd(s) % 100;
	if (r < 70)
		return sizeof(struct hdr) + rnd(s) % 256;
	if (r < 95)
		return sizeof(struct hdr) + rnd(s) % 4096;
	return 4096 + rnd(s) % 16384;
}

static struct hdr *alloc_one(uint64_t *s)
{
	size_t size = pick_size(s), align = (size_t)16 << (rnd(s) % 9); /* 16 .. 4096 */
	void *p = NULL;
	switch (rnd(s) % 8) {
	case 0:
		p = calloc(1, size);
		if (p)
			for (size_t i = 0; i < size; i++)
				if (((unsigned char *)p)[i])
					FAIL("calloc byte %zu not zero", i);
		break;
	case 1:
		p = memalign(align, size);
		break;
	case 2:
		if (posix_memalign(&p, align, size) != 0)
			p = NULL;
		break;
	case 3:
		p = aligned_alloc(align, (size + align - 1) / align * align);
		break;
	case 4:
		p = reallocarray(NULL, size, 1);
		break;
	case 5:
		p = rnd(s) % 16 ? malloc(size) : valloc(size);
		break;
	default:
		p = malloc(size);
		break;
	}
	if (!p)
		FAIL("allocation of %zu failed", size);
	total++;
	if (in_pool(p))
		guarded++;
	return p;
}

static void *worker(void *arg)
{
	uint64_t s = 0x9e3779b97f4a7c15ull * ((uintptr_t)arg + 1);
	for (long it = 0; it < iterations; it++) {
		unsigned i = (unsigned)(rnd(&s) % TABLE);
		if (rnd(&s) % 4 == 0) { /* realloc a block in place in the table */
			struct hdr *h = atomic_exchange(&table[i], NULL);
			if (h) {
				verify(h, SIZE_MAX);
				uint32_t old = h->size;
				uint8_t pat = h->pattern;
				struct hdr *n = realloc(h, pick_size(&s));
				if (!n)
					FAIL("realloc failed");
				n->size = old;
				n->pattern = pat;
				verify(n, malloc_usable_size(n));
				fill(n, &s);
				h = atomic_exchange(&table[i], n);
				if (h) {
					verify(h, SIZE_MAX);
					free(h);
				}
			}
			continue;
		}
		struct hdr *h = alloc_one(&s);
		fill(h, &s);
		struct hdr *old = atomic_exchange(&table[i], h); /* often another thread's block */
		if (old) {
			verify(old, SIZE_MAX);
			free(old);
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc > 1)
		iterations = atol(argv[1]);
	ufpool_require();
	printf("pid=%d\n", (int)getpid());
	ufpool_describe();

	/* overflow checks of calloc and reallocarray */
	volatile size_t huge = SIZE_MAX / 2; /* volatile: keep the compiler from judging the call */
	errno = 0;
	if (calloc(huge, 4) != NULL || errno != ENOMEM)
		FAIL("calloc overflow not refused");
	errno = 0;
	if (reallocarray(NULL, huge, 4) != NULL || errno != ENOMEM)
		FAIL("reallocarray overflow not refused");

	pthread_t t[THREADS];
	for (long i = 0; i < THREADS; i++)
		pthread_create(&t[i], NULL, worker, (void *)i);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < TABLE; i++) {
		struct hdr *h = atomic_exchange(&table[i], NULL);
		if (h) {
			verify(h, SIZE_MAX);
			free(h);
		}
	}
	printf("guarded=%ld total=%ld live=%lu allocs=%lu\n", (long)guarded, (long)total,
	       (unsigned long)ufstat(UF_STAT_currently_allocated), (unsigned long)ufstat(UF_STAT_total_allocations));
	printf("done\n");
	return 0;
}

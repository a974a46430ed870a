/*
 * KFENCE's KUnit detection cases (mm/kfence/kfence_test.c) as one user-space
 * program: `kunit CASE` runs one case. Each case prints the addresses it is
 * about to misuse ("buf=0x... size=N"), so the test can assert exact report
 * addresses and distances, then performs exactly one bug (or none), then
 * prints "done" and returns 0: under the default on-bug=report the program
 * must continue after the report.
 *
 * test_alloc() mirrors KUnit's: allocate until a guarded object placed on the
 * wanted side comes back (LEFT = page aligned, RIGHT = not), freeing the
 * others, so the cases work in full mode and in sample mode alike.
 */
#include "ufpool.h"

#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>

/* The bugs are the point: keep the compiler from warning about them. */
#pragma GCC diagnostic ignored "-Wuse-after-free"
#pragma GCC diagnostic ignored "-Wfree-nonheap-object"

enum side { ANY, LEFT, RIGHT };

static volatile char sink;

#define CHECK(cond, ...)                                                     \
	do {                                                                 \
		if (!(cond)) {                                               \
			printf("check failed: " __VA_ARGS__);                \
			printf("\n");                                        \
			fflush(stdout);                                      \
			exit(UFP_EXIT_CHECK);                                \
		}                                                            \
	} while (0)

__attribute__((noinline)) char *test_alloc(size_t size, enum side want, int zeroed)
{
	double t0 = ufp_now();
	for (long tries = 1;; tries++) {
		char *p = zeroed ? calloc(1, size) : malloc(size);
		CHECK(p != NULL, "allocation of %zu failed", size);
		uintptr_t off = (uintptr_t)p & (ufp.page - 1);
		if (in_pool(p) && (want == ANY || (want == LEFT) == (off == 0)))
			return p;
		free(p);
		if (ufp_now() - t0 > 20.0) {
			printf("test_alloc: no guarded %s object of size %zu after %ld tries\n",
			       want == LEFT ? "left" : want == RIGHT ? "right" : "any", size, tries);
			fflush(stdout);
			exit(UFP_EXIT_TIMEOUT);
		}
	}
}

static void show(const char *name, const char *buf, size_t size)
{
	printf("%s=%#lx size=%zu\n", name, (unsigned long)(uintptr_t)buf, size);
	fflush(stdout);
}

/* A right-placed object of an aligned size must end exactly at the guard page. */
static void check_right_edge(const char *buf, size_t size)
{
	CHECK((((uintptr_t)buf + size) & (ufp.page - 1)) == 0, "right object %p+%zu does not end at its page end",
	      (const void *)buf, size);
}

__attribute__((noinline)) void test_out_of_bounds_read_left(void)
{
	char *buf = test_alloc(32, LEFT, 0);
	show("buf", buf, 32);
	sink = buf[-1];
}

__attribute__((noinline)) void test_out_of_bounds_read_right(void)
{
	char *buf = test_alloc(32, RIGHT, 0);
	check_right_edge(buf, 32);
	show("buf", buf, 32);
	sink = buf[32];
}

__attribute__((noinline)) void test_out_of_bounds_write_left(void)
{
	char *buf = test_alloc(32, LEFT, 0);
	show("buf", buf, 32);
	((volatile char *)buf)[-1] = 0x42;
}

__attribute__((noinline)) void test_out_of_bounds_write_right(void)
{
	char *buf = test_alloc(32, RIGHT, 0);
	check_right_edge(buf, 32);
	show("buf", buf, 32);
	((volatile char *)buf)[32 + 8] = 0x42;
}

__attribute__((noinline)) void test_use_after_free_read(void)
{
	char *buf = test_alloc(32, ANY, 0);
	show("buf", buf, 32);
	free(buf);
	sink = ((volatile char *)buf)[5];
}

__attribute__((noinline)) void test_use_after_free_write(void)
{
	char *buf = test_alloc(32, ANY, 0);
	show("buf", buf, 32);
	free(buf);
	((volatile char *)buf)[7] = 0x42;
}

__attribute__((noinline)) void test_double_free(void)
{
	char *buf = test_alloc(32, ANY, 0);
	show("buf", buf, 32);
	free(buf);
	free(buf);
}

__attribute__((noinline)) void test_invalid_addr_free(void)
{
	char *buf = test_alloc(32, ANY, 0);
	show("buf", buf, 32);
	free(buf + 1);
	checkpoint("freeing the real pointer");
	free(buf); /* must succeed silently */
}

__attribute__((noinline)) void test_corruption_left(void)
{
	char *buf = test_alloc(32, LEFT, 0);
	show("buf", buf, 32);
	buf[32] = 0x42; /* the canary right of a left-placed object: no fault */
	checkpoint("free");
	free(buf);
}

__attribute__((noinline)) void test_corruption_right(void)
{
	char *buf = test_alloc(32, RIGHT, 0);
	check_right_edge(buf, 32);
	show("buf", buf, 32);
	buf[-1] = 0x42; /* the canary left of a right-placed object: no fault */
	checkpoint("free");
	free(buf);
}

/* Both canaries of one object corrupted: still one report per object, the left side first (as KFENCE checks). */
__attribute__((noinline)) void test_corruption_both_sides(void)
{
	char *buf = test_alloc(24, RIGHT, 0); /* default 16-byte alignment leaves an 8-byte gap on the right */
	show("buf", buf, 24);
	buf[-1] = 0x42;
	buf[24] = 0x43;
	checkpoint("free");
	free(buf);
}

/* KUnit test_kmalloc_aligned_oob_read: size 73 ends in a 16-byte alignment gap. */
__attribute__((noinline)) void test_aligned_oob_read(void)
{
	char *buf = test_alloc(73, RIGHT, 0);
	show("buf", buf, 73);
	sink = buf[-1]; /* canary left of a right object: no report */
	sink = buf[73]; /* alignment gap, same page: no report */
	checkpoint("past alignment gap");
	sink = buf[73 + 16];
}

/* With align=precise an odd size ends exactly at the guard page: caught at once. */
__attribute__((noinline)) void test_out_of_bounds_read_right_odd(void)
{
	char *buf = test_alloc(73, RIGHT, 0);
	show("buf", buf, 73);
	sink = buf[73];
}

/* KUnit test_kmalloc_aligned_oob_write: the gap write is found at free. */
__attribute__((noinline)) void test_aligned_oob_write(void)
{
	char *buf = test_alloc(73, RIGHT, 0);
	show("buf", buf, 73);
	buf[73] = 0x42;
	checkpoint("free");
	free(buf);
}

/* KUnit test_krealloc. */
__attribute__((noinline)) void test_realloc(void)
{
	const size_t size = 32;
	char *orig = test_alloc(size, ANY, 0);
	char *buf = orig;
	show("buf", buf, size);
	CHECK(malloc_usable_size(buf) == size, "malloc_usable_size=%zu, want %zu (precise size of a guarded object)",
	      malloc_usable_size(buf), size);
	for (size_t i = 0; i < size; i++)
		buf[i] = (char)(i + 1);

	buf = realloc(buf, size * 3); /* grow: might no longer be guarded */
	CHECK(buf != NULL, "realloc grow failed");
	CHECK(malloc_usable_size(buf) >= size * 3, "grown usable size %zu", malloc_usable_size(buf));
	for (size_t i = 0; i < size; i++)
		CHECK(buf[i] == (char)(i + 1), "grow lost byte %zu", i);
	for (size_t i = size; i < size * 3; i++)
		buf[i] = (char)(i + 1);

	buf = realloc(buf, size * 2); /* shrink */
	CHECK(buf != NULL, "realloc shrink failed");
	CHECK(malloc_usable_size(buf) >= size * 2, "shrunk usable size %zu", malloc_usable_size(buf));
	for (size_t i = 0; i < size * 2; i++)
		CHECK(buf[i] == (char)(i + 1), "shrink lost byte %zu", i);

	buf = realloc(buf, 0); /* free (glibc semantics: returns NULL) */
	CHECK(buf == NULL, "realloc(p, 0) returned %p", (void *)buf);
	checkpoint("read original");
	sink = ((volatile char *)orig)[0]; /* the original guarded object was freed by the grow */
}

/* realloc within and across the pool keeps contents, no report (no KUnit twin). */
__attribute__((noinline)) void test_realloc_moves(void)
{
	char *buf = realloc(NULL, 24);
	CHECK(buf != NULL, "realloc(NULL) failed");
	memset(buf, 0x5a, 24);
	size_t last = 24;
	for (size_t n = 24; n <= 3 * 4096; last = n, n = n * 2 + 1) { /* crosses the page size: leaves the pool */
		buf = realloc(buf, n);
		CHECK(buf != NULL, "realloc %zu failed", n);
		for (size_t i = 0; i < 24; i++)
			CHECK(buf[i] == 0x5a, "realloc to %zu lost byte %zu", n, i);
		memset(buf, 0x5a, n);
	}
	for (size_t n = last; n >= 8; n /= 3) { /* and back into it */
		buf = realloc(buf, n);
		CHECK(buf != NULL, "realloc %zu failed", n);
		for (size_t i = 0; i < n; i++)
			CHECK(buf[i] == 0x5a, "shrink to %zu lost byte %zu", n, i);
	}
	free(buf);
}

/* KUnit test_gfpzero: a reused slot comes back zeroed from calloc. */
static void calloc_zero(size_t size)
{
	char *buf = test_alloc(size, ANY, 0);
	uintptr_t page = (uintptr_t)buf & ~(ufp.page - 1);
	show("buf", buf, size);
	memset(buf, 0xff, size);
	free(buf);
	for (long i = 0;; i++) {
		char *buf2 = test_alloc(size, ANY, 1);
		if (((uintptr_t)buf2 & ~(ufp.page - 1)) == page) {
			printf("reused after %ld allocations at %p\n", i, (void *)buf2);
			for (size_t j = 0; j < size; j++)
				CHECK(buf2[j] == 0, "calloc byte %zu of a reused slot is %#x", j, (unsigned char)buf2[j]);
			free(buf2);
			return;
		}
		free(buf2);
		CHECK(i < 100000, "slot never reused");
	}
}

__attribute__((noinline)) void test_calloc_zero(void)
{
	calloc_zero(128);
}

__attribute__((noinline)) void test_calloc_zero_page(void)
{
	calloc_zero(4096);
}

/* KUnit test_invalid_access: page 0 of the pool holds no object. */
__attribute__((noinline)) void test_invalid_access(void)
{
	volatile char *p = (volatile char *)ufp.base + 10;
	show("addr", (const char *)p, 0);
	sink = *p;
}

__attribute__((noinline)) void test_invalid_access_write(void)
{
	volatile char *p = (volatile char *)ufp.base + 10;
	show("addr", (const char *)p, 0);
	*p = 1;
}

/* A slot's object page that no object has used yet: under guard=uffd it has
 * neither a page nor a marker (taken off in a batch when its chunk came into
 * use), so only the userfaultfd makes the access fault. */
__attribute__((noinline)) void test_invalid_access_unused(void)
{
	char *keep = test_alloc(32, ANY, 0);
	volatile char *p = (volatile char *)ufp.base + (2 * 100 + 2) * ufp.page + 40;
	show("addr", (const char *)p, 0);
	*p = 1;
	free(keep);
}

/*
 * KUnit test_use_after_free_read_nofault: the kernel touching a freed guarded
 * object on the program's behalf (a syscall buffer) fails with EFAULT and is
 * not a report: no instruction of the program faulted.
 */
__attribute__((noinline)) void test_use_after_free_nofault(void)
{
	char *buf = test_alloc(32, ANY, 0);
	show("buf", buf, 32);
	free(buf);
	int fds[2];
	CHECK(pipe(fds) == 0, "pipe");
	errno = 0;
	ssize_t n = write(fds[1], buf, 8); /* a pipe copies the bytes (unlike /dev/null) */
	CHECK(n == -1 && errno == EFAULT, "write from a freed guarded object returned %zd errno %d", n, errno);
	close(fds[0]);
	close(fds[1]);
	printf("efault=1\n");
}

/* C23 free_sized / free_aligned_sized free guarded objects too (looked up: glibc 2.36 lacks them). */
__attribute__((noinline)) void test_free_sized(void)
{
	void (*fs)(void *, size_t) = (void (*)(void *, size_t))dlsym(RTLD_DEFAULT, "free_sized");
	CHECK(fs != NULL, "free_sized not found");
	char *buf = test_alloc(32, ANY, 0);
	show("buf", buf, 32);
	fs(buf, 32);
	sink = ((volatile char *)buf)[3];
}

__attribute__((noinline)) void test_free_aligned_sized(void)
{
	void (*fas)(void *, size_t, size_t) = (void (*)(void *, size_t, size_t))dlsym(RTLD_DEFAULT,
										     "free_aligned_sized");
	CHECK(fas != NULL, "free_aligned_sized not found");
	char *buf = NULL;
	double t0 = ufp_now();
	while (!buf) {
		buf = aligned_alloc(64, 64);
		CHECK(((uintptr_t)buf & 63) == 0, "aligned_alloc(64) returned %p", (void *)buf);
		if (!in_pool(buf)) {
			free(buf);
			buf = NULL;
			CHECK(ufp_now() - t0 < 20.0, "no guarded aligned object");
		}
	}
	show("buf", buf, 64);
	fas(buf, 64, 64);
	((volatile char *)buf)[9] = 1;
}

/* After the first report the object is not reported again (KFENCE: one per object). */
__attribute__((noinline)) void test_one_report_per_object(void)
{
	char *buf = test_alloc(32, RIGHT, 0);
	check_right_edge(buf, 32);
	show("buf", buf, 32);
	sink = buf[32];
	sink = buf[200];
	((volatile char *)buf)[33] = 1;
	free(buf);
}

/* A correct program: every allocation function, guarded, in bounds. No report. */
__attribute__((noinline)) void test_clean(void)
{
	char *a = test_alloc(32, LEFT, 0);
	char *b = test_alloc(32, RIGHT, 0);
	memset(a, 1, 32);
	memset(b, 1, 32);
	sink = a[0] + a[31] + b[0] + b[31];
	free(a);
	free(b);
}

struct test_case {
	const char *name;
	void (*fn)(void);
};

static const struct test_case cases[] = {
	{"oob_read_left", test_out_of_bounds_read_left},
	{"oob_read_right", test_out_of_bounds_read_right},
	{"oob_write_left", test_out_of_bounds_write_left},
	{"oob_write_right", test_out_of_bounds_write_right},
	{"uaf_read", test_use_after_free_read},
	{"uaf_write", test_use_after_free_write},
	{"double_free", test_double_free},
	{"invalid_free", test_invalid_addr_free},
	{"corruption_left", test_corruption_left},
	{"corruption_right", test_corruption_right},
	{"corruption_both", test_corruption_both_sides},
	{"aligned_oob_read", test_aligned_oob_read},
	{"aligned_oob_write", test_aligned_oob_write},
	{"oob_read_right_odd", test_out_of_bounds_read_right_odd},
	{"realloc", test_realloc},
	{"realloc_moves", test_realloc_moves},
	{"calloc_zero", test_calloc_zero},
	{"calloc_zero_page", test_calloc_zero_page},
	{"invalid_access", test_invalid_access},
	{"invalid_access_write", test_invalid_access_write},
	{"invalid_access_unused", test_invalid_access_unused},
	{"one_report", test_one_report_per_object},
	{"uaf_nofault", test_use_after_free_nofault},
	{"free_sized", test_free_sized},
	{"free_aligned_sized", test_free_aligned_sized},
	{"clean", test_clean},
};

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s CASE\n", argv[0]);
		return 2;
	}
	ufpool_require();
	printf("pid=%d\n", (int)getpid());
	ufpool_describe();
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		if (strcmp(cases[i].name, argv[1]) == 0) {
			cases[i].fn();
			printf("done\n");
			return 0;
		}
	}
	fprintf(stderr, "unknown case %s\n", argv[1]);
	return 2;
}

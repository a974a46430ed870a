/*
 * Allocation-heavy microbenchmark for bench/run.
 *
 *   alloc THREADS LIVE SECONDS [MAXSIZE]
 *
 * Each thread first fills its share of a live set of LIVE objects (the
 * "fill" phase: what kills Electric Fence and DUMA near 32,000 live objects),
 * then for SECONDS replaces random live objects: free one, malloc a new one of
 * a random size (8 B .. MAXSIZE, log-uniform so small sizes dominate as in
 * real programs), touching its first and last byte so every byte range is
 * really used. The result is one JSON line on stdout; progress lines
 * "filled N" go to stderr every 1024 objects so the harness can say how far
 * a dying configuration got.
 *
 * It is deliberately free of bugs: any ufence report while it runs is a
 * false positive.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct worker {
	pthread_t thread;
	size_t live;          /* objects this thread keeps live */
	double seconds;       /* length of the steady phase */
	size_t maxsize;
	uint64_t rng;
	uint64_t fill_allocs;
	double fill_seconds;
	uint64_t steady_pairs; /* free + malloc pairs in the steady phase */
	double steady_seconds;
	double steady_cpu;    /* this thread's CPU time in the steady phase */
	int failed;           /* malloc returned NULL */
	void **objs;          /* the live set, freed by main after the snapshot */
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/*
 * CPU time of the calling thread: on a shared machine a thread can be
 * preempted for long stretches, so pairs per CPU-second is the cost measure
 * that the neighbours' load disturbs least.
 */
static double thread_cpu(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t next(uint64_t *s)
{
	/* xorshift64*: cheap and good enough to spread sizes and victims */
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 2685821657736338717ULL;
}

static size_t pick_size(struct worker *w)
{
	/* log-uniform in [8, maxsize]: pick a power-of-two band, then a size in it */
	unsigned bands = 0;
	while ((8u << bands) < w->maxsize)
		bands++;
	unsigned band = (unsigned)(next(&w->rng) % (bands + 1));
	size_t lo = (size_t)8 << band;
	size_t hi = lo * 2 > w->maxsize ? w->maxsize : lo * 2;
	return lo + (size_t)(next(&w->rng) % (hi - lo + 1));
}

static void *touch(void *p, size_t n)
{
	if (p) {
		volatile unsigned char *c = p;
		c[0] = 1;
		c[n - 1] = 2;
	}
	return p;
}

static void *run(void *arg)
{
	struct worker *w = arg;
	void **objs = calloc(w->live ? w->live : 1, sizeof(void *));
	size_t *sizes = calloc(w->live ? w->live : 1, sizeof(size_t));
	if (!objs || !sizes) {
		w->failed = 1;
		return NULL;
	}
	double t0 = now();
	for (size_t i = 0; i < w->live; i++) {
		sizes[i] = pick_size(w);
		objs[i] = touch(malloc(sizes[i]), sizes[i]);
		if (!objs[i]) {
			w->failed = 1;
			return NULL;
		}
		w->fill_allocs++;
		if ((w->fill_allocs & 1023) == 0)
			fprintf(stderr, "filled %llu\n", (unsigned long long)w->fill_allocs);
	}
	double t1 = now();
	w->fill_seconds = t1 - t0;
	double c1 = thread_cpu();
	double end = t1 + w->seconds;
	double t = t1;
	while (t < end) {
		/* check the clock every 64 pairs: cheap next to malloc+free */
		for (int k = 0; k < 64; k++) {
			size_t i = w->live ? (size_t)(next(&w->rng) % w->live) : 0;
			size_t n = pick_size(w);
			if (w->live) {
				free(objs[i]);
				objs[i] = touch(malloc(n), n);
				sizes[i] = n;
				if (!objs[i]) {
					w->failed = 1;
					return NULL;
				}
			} else {
				free(touch(malloc(n), n));
			}
			w->steady_pairs++;
		}
		t = now();
	}
	w->steady_seconds = t - t1;
	w->steady_cpu = thread_cpu() - c1;
	w->objs = objs;
	free(sizes);
	return NULL;
}

/*
 * Peak RSS of this address space (VmHWM). Not getrusage's ru_maxrss: that
 * survives execve, so it would report the harness's own Python when larger.
 */
static long peak_rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kib = -1;
	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, "VmHWM:", 6) == 0)
			kib = atol(line + 6);
	if (f)
		fclose(f);
	return kib;
}

/*
 * With BENCH_SHM_COPY=path, copy ufence's shared-memory file
 * ($UFENCE_RUN_DIR/<pid>.shm) while the live set is still allocated, so the
 * harness can read the pool's footprint after this process is gone.
 */
static long shm_resident_kib = -1; /* tmpfs pages of the shm file, not its apparent size */

static void snapshot_shm(void)
{
	const char *dst = getenv("BENCH_SHM_COPY");
	const char *dir = getenv("UFENCE_RUN_DIR");
	if (!dst || !dir)
		return;
	char src[4096];
	snprintf(src, sizeof(src), "%s/%d.shm", dir, (int)getpid());
	FILE *in = fopen(src, "rb");
	if (!in)
		return;
	struct stat st;
	if (fstat(fileno(in), &st) == 0)
		shm_resident_kib = (long)st.st_blocks / 2;
	FILE *out = fopen(dst, "wb");
	if (out) {
		/*
		 * Only the head: header, settings and statistics. The file is
		 * sparse and sized for the largest pool (over 1 GiB), so a whole
		 * copy would cost seconds of writing zeros.
		 */
		char buf[65536];
		size_t n, left = (size_t)1 << 20;
		while (left > 0 && (n = fread(buf, 1, sizeof(buf) < left ? sizeof(buf) : left, in)) > 0) {
			fwrite(buf, 1, n, out);
			left -= n;
		}
		fclose(out);
	}
	fclose(in);
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: %s THREADS LIVE SECONDS [MAXSIZE]\n", argv[0]);
		return 2;
	}
	int threads = atoi(argv[1]);
	long live = atol(argv[2]);
	double seconds = atof(argv[3]);
	long maxsize = argc > 4 ? atol(argv[4]) : 4096;
	if (threads < 1 || threads > 64 || live < 0 || seconds < 0 || maxsize < 8) {
		fprintf(stderr, "alloc: bad arguments\n");
		return 2;
	}
	struct worker w[64];
	memset(w, 0, sizeof(w));
	for (int i = 0; i < threads; i++) {
		w[i].live = (size_t)live / (size_t)threads;
		w[i].seconds = seconds;
		w[i].maxsize = (size_t)maxsize;
		w[i].rng = 0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1);
	}
	if (threads == 1) {
		run(&w[0]);
	} else {
		for (int i = 0; i < threads; i++)
			if (pthread_create(&w[i].thread, NULL, run, &w[i]) != 0) {
				fprintf(stderr, "alloc: pthread_create failed\n");
				return 1;
			}
		for (int i = 0; i < threads; i++)
			pthread_join(w[i].thread, NULL);
	}
	snapshot_shm();
	for (int i = 0; i < threads; i++) {
		for (size_t j = 0; w[i].objs && j < w[i].live; j++)
			free(w[i].objs[j]);
		free(w[i].objs);
	}
	uint64_t fill = 0, pairs = 0;
	double fill_s = 0, steady_s = 0, cpu_s = 0;
	int failed = 0;
	for (int i = 0; i < threads; i++) {
		fill += w[i].fill_allocs;
		pairs += w[i].steady_pairs;
		/* threads run side by side: the slowest one sets the wall time */
		if (w[i].fill_seconds > fill_s)
			fill_s = w[i].fill_seconds;
		if (w[i].steady_seconds > steady_s)
			steady_s = w[i].steady_seconds;
		cpu_s += w[i].steady_cpu;
		failed |= w[i].failed;
	}
	long hwm = peak_rss_kib();
	printf("{\"threads\": %d, \"live\": %ld, \"fill_allocs\": %llu, \"fill_seconds\": %.6f, "
	       "\"pairs\": %llu, \"steady_seconds\": %.6f, \"allocs_per_sec\": %.1f, "
	       "\"fill_allocs_per_sec\": %.1f, \"steady_cpu_seconds\": %.6f, \"max_rss_kib\": %ld, "
	       "\"shm_resident_kib\": %ld, \"failed\": %d}\n",
	       threads, live, (unsigned long long)fill, fill_s, (unsigned long long)pairs, steady_s,
	       steady_s > 0 ? (double)pairs / steady_s : 0.0, fill_s > 0 ? (double)fill / fill_s : 0.0,
	       cpu_s, hwm, shm_resident_kib, failed);
	return failed ? 1 : 0;
}

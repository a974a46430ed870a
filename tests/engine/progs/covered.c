/*
 * Skip-covered (KFENCE's heuristic, a sampling device): once the pool is
 * skip_covered_thresh% full, an allocation whose stack already has a live
 * object in the pool is not guarded. Full mode guards everything and keeps
 * its objects out of the filter. `covered FILL SET-COMMAND...`, started
 * sampling 1 in 1 with a pool of 100 slots:
 *   1. sampling: one object from site A, kept
 *   2. SET-COMMAND switches to full mode: FILL objects from site F, kept;
 *      one from site A, freed at once (a full-mode object never counted in
 *      the filter: its free must not take A's sampled object out of it)
 *   3. back to sampling 1 in 1, the pool past the threshold: one more from
 *      A (covered: skipped), one from F (full mode's objects are not in the
 *      filter: guarded), two from a new site B (the first guarded, the
 *      second covered by it)
 * Every allocation goes through one call chain (main -> probe -> take ->
 * site), so a site's stacks are identical in their first frames, the
 * filter's key.
 */
#include <pthread.h>

#include "ufpool.h"

static char *cmd_prefix;

static void set_mode(const char *settings)
{
	char cmd[4096];
	snprintf(cmd, sizeof cmd, "%s %d %s >/dev/null", cmd_prefix, (int)getpid(), settings);
	fflush(stdout);
	if (system(cmd) != 0) {
		printf("set failed: %s\n", cmd);
		exit(UFP_EXIT_CHECK);
	}
}

/* one malloc call site per letter; the barrier keeps each call from
 * becoming a tail call (the caller would then be take, the same for all) */
#define SITE(name, size)                                     \
	static __attribute__((noinline)) void *name(void)            \
	{                                                            \
		void *p = malloc(size);                              \
		__asm__ volatile("" : : "r"(p) : "memory");          \
		return p;                                            \
	}
SITE(site_a, 24) /* sizes differ so GCC does not fold them into one */
SITE(site_f, 32)
SITE(site_b, 40)

static __attribute__((noinline)) void *take(char site)
{
	void *p = site == 'A' ? site_a() : site == 'F' ? site_f() : site_b();
	__asm__ volatile("" : : "r"(p) : "memory");
	if (!p)
		exit(UFP_EXIT_CHECK);
	return p;
}

/* One allocation from a site, as the engine decided it: "guarded",
 * "covered" (skip-covered said no) or, after a few tries that the sampling
 * countdown passed over (it may skip one after a mode switch), "unsampled".
 * An unguarded object is freed at once. */
static const char *probe(char site, int keep)
{
	for (int tries = 0; tries < 5; tries++) {
		uint64_t covered = ufstat(UF_STAT_skipped_covered);
		void *p = take(site);
		if (in_pool(p)) {
			if (!keep)
				free(p);
			return "guarded";
		}
		free(p);
		if (ufstat(UF_STAT_skipped_covered) > covered)
			return "covered";
	}
	return "unsampled";
}

static void *idle(void *arg)
{
	(void)arg;
	pause();   /* a second thread, so the engine runs its control thread */
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return UFP_EXIT_CHECK;
	int fill = atoi(argv[1]);
	char prefix[2048];
	size_t k = 0;
	for (int a = 2; a < argc && k < sizeof prefix - 2; a++)
		k += (size_t)snprintf(prefix + k, sizeof prefix - k, "%s ", argv[a]);
	cmd_prefix = prefix;
	ufpool_require();
	pthread_t t;
	if (pthread_create(&t, NULL, idle, NULL))
		return UFP_EXIT_CHECK;

	/* the plan: a site, whether to keep what it gets, what to print;
	 * '1' and '2' switch modes */
	static const struct { char site; int keep; const char *name; } plan[] = {
		{'A', 1, "a_sampled"},
		{'1', 0, NULL},
		{'F', 1, NULL},
		{'A', 0, "a_full_freed"},
		{'2', 0, NULL},
		{'A', 1, "a_again"},
		{'F', 1, "f_again"},
		{'B', 1, "b_first"},
		{'B', 1, "b_second"},
	};
	int filled = 0;
	for (size_t i = 0; i < sizeof plan / sizeof plan[0]; i++) {
		if (plan[i].site == '1') {
			set_mode("sample_rate=0 sample_interval=-1");
			continue;
		}
		if (plan[i].site == '2') {
			set_mode("sample_rate=1 sample_interval=0");
			printf("live_at_switch=%lu\n", (unsigned long)ufstat(UF_STAT_currently_allocated));
			continue;
		}
		/* one call of probe for all, so the stacks of a site match */
		int reps = plan[i].name ? 1 : fill;
		for (int r = 0; r < reps; r++) {
			const char *got = probe(plan[i].site, plan[i].keep);
			if (plan[i].name)
				printf("%s=%s\n", plan[i].name, got);
			else
				filled += !strcmp(got, "guarded");
		}
	}
	printf("filled=%d\n", filled);
	printf("skipped_covered=%lu\n", (unsigned long)ufstat(UF_STAT_skipped_covered));
	return 0;
}

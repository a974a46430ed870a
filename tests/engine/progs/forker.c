/*
 * fork under the engine: a guarded object allocated before fork is used and
 * freed in each child (the child's own copy of the engine state), children
 * allocate and exit normally (exit: atexit checks run), the parent keeps using
 * and finally frees its copy. Churn threads run in the parent meanwhile, so a
 * fork can land while another thread holds an engine lock.
 * `forker clean` must produce no report; `forker child_bug` makes each child
 * read one byte past a right-placed guarded object: one report per child,
 * with the child's pid. `forker parent_first` has the parent make the same
 * bug (same code address) before it forks: the children report theirs all
 * the same, each process reporting a bug site once for itself.
 */
#include "ufpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>

#define CHILDREN 8

static atomic_int stop;
static volatile char sink;

static void *churn(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop)) {
		void *p[16];
		for (int i = 0; i < 16; i++)
			p[i] = malloc(16 + 24 * (size_t)i);
		for (int i = 0; i < 16; i++)
			free(p[i]);
	}
	return NULL;
}

static char *guarded(size_t size, int right)
{
	for (;;) {
		char *p = malloc(size);
		if (in_pool(p) && (!right || (((uintptr_t)p + size) & (ufp.page - 1)) == 0))
			return p;
		free(p);
	}
}

__attribute__((noinline)) void child_oob(void)
{
	char *p = guarded(32, 1);
	printf("child pid=%d buf=%#lx\n", (int)getpid(), (unsigned long)(uintptr_t)p);
	fflush(stdout);
	sink = p[32];
	free(p);
}

static int child(char *shared, int bug)
{
	for (int i = 0; i < 64; i++)
		if (shared[i] != (char)i)
			return 3;
	free(shared); /* guarded, allocated before fork */
	char *mine[200];
	for (int i = 0; i < 200; i++) {
		mine[i] = calloc(1, 8 + (size_t)i * 7);
		memset(mine[i], 1, 8 + (size_t)i * 7);
	}
	for (int i = 0; i < 200; i++)
		free(mine[i]);
	if (bug)
		child_oob();
	exit(0);
}

int main(int argc, char **argv)
{
	int parent_first = argc > 1 && strcmp(argv[1], "parent_first") == 0;
	int bug = parent_first || (argc > 1 && strcmp(argv[1], "child_bug") == 0);
	ufpool_require();
	printf("pid=%d\n", (int)getpid());
	ufpool_describe();
	char *shared = guarded(64, 0);
	for (int i = 0; i < 64; i++)
		shared[i] = (char)i;

	if (parent_first)
		child_oob();
	pthread_t t[3];
	for (int i = 0; i < 3; i++)
		pthread_create(&t[i], NULL, churn, NULL);
	int ok = 0;
	for (int c = 0; c < CHILDREN; c++) {
		fflush(stdout);
		pid_t pid = fork();
		if (pid == 0)
			child(shared, bug);
		int st = 0;
		if (pid < 0 || waitpid(pid, &st, 0) != pid) {
			printf("fork/wait failed\n");
			return UFP_EXIT_CHECK;
		}
		if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
			ok++;
		else
			printf("child %d status %#x\n", (int)pid, st);
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < 64; i++)
		if (shared[i] != (char)i) {
			printf("parent copy changed at %d\n", i);
			return UFP_EXIT_CHECK;
		}
	free(shared);
	printf("children_ok=%d\n", ok);
	printf("done\n");
	return 0;
}

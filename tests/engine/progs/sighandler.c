/*
 * A program with its own SIGSEGV handler, installed after the engine's:
 * its own faults (a NULL write, a PROT_NONE page of its own) must reach its
 * handler with the right si_addr, while a ufence bug is still reported by
 * the engine and never reaches the program's handler. `sighandler signal`
 * installs the handler with signal() instead of sigaction().
 */
#include "ufpool.h"

#include <setjmp.h>
#include <signal.h>

static sigjmp_buf env;
static volatile sig_atomic_t own_faults, pool_faults;
static void *volatile expected;
static volatile char sink;

static void on_segv(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	if (si && in_pool(si->si_addr))
		pool_faults++;
	else if (!si || si->si_addr == expected)
		own_faults++;
	siglongjmp(env, 1);
}

static void on_segv_plain(int sig)
{
	(void)sig;
	own_faults++;
	siglongjmp(env, 1);
}

static void own_fault(volatile char *where)
{
	expected = (void *)where;
	if (sigsetjmp(env, 1) == 0)
		*where = 1;
}

__attribute__((noinline)) void ufence_bug(void)
{
	char *p;
	for (;;) {
		p = malloc(32);
		if (in_pool(p) && (((uintptr_t)p + 32) & (ufp.page - 1)) == 0)
			break;
		free(p);
	}
	printf("buf=%#lx size=32\n", (unsigned long)(uintptr_t)p);
	fflush(stdout);
	if (sigsetjmp(env, 1) == 0)
		sink = p[32];
	free(p);
}

int main(int argc, char **argv)
{
	int plain = argc > 1 && strcmp(argv[1], "signal") == 0;
	ufpool_require();
	printf("pid=%d\n", (int)getpid());
	ufpool_describe();
	if (plain) {
		signal(SIGSEGV, on_segv_plain);
	} else {
		struct sigaction sa;
		memset(&sa, 0, sizeof sa);
		sa.sa_sigaction = on_segv;
		sa.sa_flags = SA_SIGINFO | SA_NODEFER;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGSEGV, &sa, NULL);
	}
	char *none = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	own_fault((volatile char *)8);
	if (plain)
		signal(SIGSEGV, on_segv_plain); /* SysV semantics may have reset it */
	own_fault(none + 100);
	ufence_bug();
	if (plain)
		signal(SIGSEGV, on_segv_plain);
	own_fault(none + 200);
	printf("own_faults=%d pool_faults=%d\n", (int)own_faults, (int)pool_faults);
	printf("done\n");
	return 0;
}

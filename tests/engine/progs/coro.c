/*
 * Allocations on stacks the engine does not know: a ucontext coroutine on a
 * heap stack, and a signal handler on a sigaltstack. Each frame record there
 * is read without trusting it (unwind.c). The coroutine frees an object and
 * reads it again: one use-after-free report whose stacks start in the
 * coroutine's own functions; the handler's allocations are clean.
 */
#include "ufpool.h"

#include <signal.h>
#include <ucontext.h>

#define NOINLINE __attribute__((noipa))

static ucontext_t main_ctx, coro_ctx;
static volatile long sink;
static char *stale;
static volatile long handler_guarded;

NOINLINE static char *coro_alloc(size_t n)
{
	char *p = malloc(n);
	memset(p, 1, n);
	sink += p[0];
	return p;
}

NOINLINE static void coro_read(const char *p)
{
	sink += ((volatile const char *)p)[0];
}

static void coro_entry(void)
{
	stale = coro_alloc(40);
	free(stale);
	coro_read(stale);
	swapcontext(&coro_ctx, &main_ctx);
}

static void on_usr1(int sig)
{
	(void)sig;
	for (int i = 0; i < 64; i++) {
		char *p = malloc(16 + (size_t)i);
		handler_guarded += in_pool(p);
		p[0] = (char)i;
		sink += p[0];
		free(p);
	}
}

int main(void)
{
	ufpool_require();
	printf("pid=%d\n", (int)getpid());
	fflush(stdout);
	size_t size = 256 * 1024;
	char *stack = malloc(size);
	getcontext(&coro_ctx);
	coro_ctx.uc_stack.ss_sp = stack;
	coro_ctx.uc_stack.ss_size = size;
	coro_ctx.uc_link = &main_ctx;
	makecontext(&coro_ctx, coro_entry, 0);
	swapcontext(&main_ctx, &coro_ctx);
	printf("buf=%#lx\n", (unsigned long)stale);

	stack_t ss = {.ss_sp = malloc(SIGSTKSZ * 4), .ss_size = SIGSTKSZ * 4, .ss_flags = 0};
	sigaltstack(&ss, NULL);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_ONSTACK;
	sigaction(SIGUSR1, &sa, NULL);
	for (int i = 0; i < 10; i++)
		raise(SIGUSR1);
	printf("handler_guarded=%ld\n", handler_guarded);
	puts("done");
	return 0;
}

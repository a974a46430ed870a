/*
 * Allocations from JIT code: a function copied into an anonymous executable
 * mapping (no module, no call-frame information, a frame pointer) calls
 * malloc; the object is read after free. The allocation stack must go from
 * the JIT frame (an address of no module) on to main by its frame pointer,
 * and the walks of many such allocations must not make the engine look the
 * addresses up again and again: nothing is loaded, so the module table is
 * never rebuilt (the engine's count of rebuilds is printed around the loop).
 */
#include <pthread.h>
#include <sys/mman.h>

#include "ufpool.h"

static void *idle(void *a)
{
	(void)a;
	return NULL;
}

int main(void)
{
	pthread_t t;               /* a second thread: the engine's control thread runs, as in servers */
	pthread_create(&t, NULL, idle, NULL);
	pthread_join(t, NULL);
	printf("pid=%d\n", (int)getpid());
	ufpool_require();
	unsigned char *code = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (code == MAP_FAILED)
		return 3;
	/* push %rbp; mov %rsp,%rbp; movabs $malloc,%rax; call *%rax; pop %rbp; ret */
	unsigned char fn[] = {0x55, 0x48, 0x89, 0xe5, 0x48, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xd0, 0x5d, 0xc3};
	void *(*m)(size_t) = malloc;
	memcpy(fn + 6, &m, sizeof m);
	for (int k = 0; k < 16; k++)
		memcpy(code + 32 * k, fn, sizeof fn);
	uint64_t rebuilt = ufstat(UF_STAT_modules_rebuilt);
	double t0 = ufp_now();
	for (int i = 0; i < 20000 || ufp_now() - t0 < 0.3; i++) {
		void *p = ((void *(*)(size_t))(code + 32 * (i % 16)))(40);
		free(p);
	}
	printf("rebuilt_in_loop=%llu\n", (unsigned long long)(ufstat(UF_STAT_modules_rebuilt) - rebuilt));
	char *p = ((char *(*)(size_t))(code + 32 * 3))(40);
	printf("jit=%#lx\n", (unsigned long)(uintptr_t)(code + 32 * 3));
	free(p);
	printf("buf=%#lx\n", (unsigned long)(uintptr_t)p);
	fflush(stdout);
	printf("read=%d\n", ((volatile char *)p)[1]);
	printf("done\n");
	return 0;
}

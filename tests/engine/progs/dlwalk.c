/*
 * dlwalk LIB: load LIB (dlframeless.c), allocate through it, unload, twice;
 * the third time read an object it allocated after freeing it. The report's
 * allocation stack must name the library's frameless functions, found by
 * their .eh_frame, after the module table and the rule cache have seen the
 * library come and go. The engine's count of module-table rebuilds is
 * printed before the first load and after the last.
 */
#include <dlfcn.h>

#include "ufpool.h"

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	printf("pid=%d\n", (int)getpid());
	ufpool_require();
	printf("rebuilt_before=%llu\n", (unsigned long long)ufstat(UF_STAT_modules_rebuilt));
	for (int round = 0; round < 3; round++) {
		void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
		if (!h) {
			printf("dlopen: %s\n", dlerror());
			return 3;
		}
		char *(*outer)(size_t) = (char *(*)(size_t))dlsym(h, "dl_outer");
		char *p = outer(31);
		if (round < 2) {
			free(p);
			dlclose(h);
			usleep(150 * 1000);    /* the control thread's refresh sees it go */
			continue;
		}
		free(p);
		printf("buf=%#lx\n", (unsigned long)(uintptr_t)p);
		fflush(stdout);
		printf("read=%d\n", ((volatile char *)p)[3]);
		printf("rebuilt_after=%llu\n", (unsigned long long)ufstat(UF_STAT_modules_rebuilt));
	}
	printf("done\n");
	return 0;
}

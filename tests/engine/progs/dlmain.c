/*
 * dlopen under the engine: load LIB, let it allocate (and free memory
 * allocated in the main program), unload, load again. `dlmain LIB clean`: no
 * report. `dlmain LIB bug`: the library reads one byte past a right-placed
 * guarded object it allocated; the report names its functions and module.
 */
#include "ufpool.h"

#include <dlfcn.h>

int main(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	ufpool_require();
	printf("pid=%d\n", (int)getpid());
	ufpool_describe();
	for (int round = 0; round < 3; round++) {
		void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
		if (!h) {
			printf("dlopen: %s\n", dlerror());
			return UFP_EXIT_CHECK;
		}
		char *(*churn)(int) = (char *(*)(int))dlsym(h, "lib_churn");
		char *(*lalloc)(size_t) = (char *(*)(size_t))dlsym(h, "lib_alloc");
		char (*lread)(const char *, size_t) = (char (*)(const char *, size_t))dlsym(h, "lib_read");
		free(churn(500));
		if (round == 2 && strcmp(argv[2], "bug") == 0) {
			char *p;
			for (;;) {
				p = lalloc(32);
				if (in_pool(p) && (((uintptr_t)p + 32) & (ufp.page - 1)) == 0)
					break;
				free(p);
			}
			printf("buf=%#lx size=32\n", (unsigned long)(uintptr_t)p);
			fflush(stdout);
			(void)lread(p, 32);
			free(p);
		}
		if (round < 2)
			dlclose(h);
	}
	printf("done\n");
	return 0;
}

/*
 * dlwalk LIB: load LIB (dlframeless.c), allocate through it, unload, twice;
 * the third time read an object it allocated after freeing it. The report's
 * allocation stack must name the library's frameless functions, found by
 * their .eh_frame, after the module table and the rule cache have seen the
 * library come and go.
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	printf("pid=%d\n", (int)getpid());
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
	}
	printf("done\n");
	return 0;
}

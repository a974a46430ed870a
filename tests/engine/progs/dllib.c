/* A library loaded with dlopen: it allocates on its own and has a bug entry point. */
#include <stdlib.h>
#include <string.h>

char *lib_churn(int n)
{
	char *keep = NULL;
	for (int i = 0; i < n; i++) {
		char *s = strdup("a string from a dlopen'ed library");
		char *t = realloc(s, 64 + (size_t)i % 100);
		free(keep);
		keep = t;
	}
	return keep;
}

__attribute__((noinline)) char *lib_alloc(size_t n)
{
	return malloc(n);
}

__attribute__((noinline)) char lib_read(const char *p, size_t i)
{
	return ((const volatile char *)p)[i];
}

/* One deliberate heap bug per argv[1], for the engine smoke tests. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) void write_past(char *p, size_t n) { p[n] = 1; }
__attribute__((noinline)) char read_before(const char *p) { return p[-1]; }

int main(int argc, char **argv)
{
	const char *what = argc > 1 ? argv[1] : "";
	if (!strcmp(what, "oob-right")) {
		/* right placement is random: repeat until one touches the guard */
		for (int i = 0; i < 64; i++) {
			char *p = malloc(32);
			write_past(p, 32);
			free(p);
		}
	} else if (!strcmp(what, "oob-left")) {
		for (int i = 0; i < 64; i++) {
			char *p = malloc(32);
			if (read_before(p) == 42)
				puts("?");
			free(p);
		}
	} else if (!strcmp(what, "uaf-write")) {
		char *p = malloc(40);
		free(p);
		p[3] = 5;
	} else if (!strcmp(what, "double-free")) {
		char *p = malloc(40);
		free(p);
		free(p);
	} else if (!strcmp(what, "invalid-free")) {
		char *p = malloc(40);
		free(p + 1);
		free(p);
	} else if (!strcmp(what, "off-by-one-13")) {
		char *p = malloc(13);
		p[13] = 'x';
		if (argc > 2)
			free(p);
	}
	return 0;
}

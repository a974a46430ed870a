/*
 * The engine's demangler (engine/src/demangle.c) on its own: one mangled
 * name a line in, its demangled form out, or "!" and the input when it
 * gives up.
 */
#include <stdio.h>
#include <string.h>

int uf_demangle(const char *mangled, char *out, size_t outlen);

int main(void)
{
	static char line[16384], out[4096];
	while (fgets(line, sizeof line, stdin)) {
		line[strcspn(line, "\n")] = 0;
		if (uf_demangle(line, out, sizeof out) == 0)
			printf("%s\n", out);
		else
			printf("!%s\n", line);
	}
	return 0;
}

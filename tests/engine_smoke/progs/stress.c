#include <stdint.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/wait.h>
static void *worker(void *arg) {
	unsigned s = (unsigned)(uintptr_t)arg;
	void *keep[64] = {0};
	for (int i = 0; i < 20000; i++) {
		s = s * 1103515245 + 12345;
		int k = (s >> 8) & 63;
		size_t n = (s >> 16) % 600 + 1;
		if (keep[k]) { free(keep[k]); keep[k] = NULL; }
		switch (i % 4) {
		case 0: keep[k] = malloc(n); memset(keep[k], 1, n); break;
		case 1: keep[k] = calloc(1, n); for (size_t j = 0; j < n; j++) if (((char*)keep[k])[j]) abort(); break;
		case 2: keep[k] = realloc(malloc(n), n * 2); memset(keep[k], 2, n*2); break;
		case 3: { void *p; if (posix_memalign(&p, 64, n)) abort(); if ((uintptr_t)p & 63) abort(); keep[k] = p; memset(p, 3, n); } break;
		}
	}
	for (int k = 0; k < 64; k++) free(keep[k]);
	return NULL;
}
int main(int argc, char **argv) {
	int nt = argc > 1 ? atoi(argv[1]) : 8;
	pthread_t t[64];
	for (int i = 0; i < nt; i++) pthread_create(&t[i], NULL, worker, (void*)(uintptr_t)(i+1));
	for (int i = 0; i < nt; i++) pthread_join(t[i], NULL);
	char *x = malloc(100);
	pid_t pid = fork();
	if (pid == 0) { free(x); char *y = malloc(50); free(y); worker((void*)99); _exit(0); }
	int st; waitpid(pid, &st, 0);
	free(x);
	printf("done child=%d\n", WEXITSTATUS(st));
	return 0;
}

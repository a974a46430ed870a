/*
 * exec under the engine: allocate, then fork and exec CHILD ARGS...; report
 * the child's exit status. The child (e.g. kunit) shows whether the engine
 * followed it (its own shm file, its own report) or not (exit 77).
 * With argv[1] == "--direct" the program execs without forking.
 */
#include "ufpool.h"

#include <sys/wait.h>

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	ufpool_require();
	printf("pid=%d\n", (int)getpid());
	char *keep = strdup("allocated before exec");
	for (int i = 0; i < 100; i++)
		free(malloc(24));
	fflush(stdout);
	if (strcmp(argv[1], "--direct") == 0) {
		execv(argv[2], argv + 2);
		return 126;
	}
	pid_t pid = fork();
	if (pid == 0) {
		execv(argv[1], argv + 1);
		_exit(126);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	printf("child_pid=%d child_exit=%d\n", (int)pid, WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st));
	free(keep);
	printf("done\n");
	return 0;
}

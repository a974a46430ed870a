/* A daemon-style program closes every fd, then opens its own file (which
 * takes the engine's old number) and forks: the engine must neither use nor
 * close that descriptor, and the child still gets its state file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/wait.h>
int main(void) {
	for (int fd = 3; fd < 1024; fd++) close(fd);
	int mine = open("/etc/hostname", O_RDONLY);   /* likely reuses the engine's number */
	char *p = malloc(30); strcpy(p, "x");
	pid_t c = fork();
	if (c == 0) { free(p); char b[4]; if (read(mine, b, 1) != 1) _exit(9); char path[4096]; snprintf(path, sizeof path, "%s/%d.shm", getenv("UFENCE_RUN_DIR"), getpid()); _exit(access(path, F_OK) ? 8 : 0); }
	int st; waitpid(c, &st, 0);
	char b[4]; lseek(mine, 0, SEEK_SET);
	printf("child %d, parent fd %s\n", WEXITSTATUS(st), read(mine, b, 1) == 1 ? "intact" : "BROKEN");
	free(p);
	return 0;
}

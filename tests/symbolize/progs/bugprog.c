/*
 * A use-after-free through three functions of the program's own, so a
 * report names them with their lines ("LINE:" markers, found by the tests).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rec {
	int id;
	char name[20];
};

__attribute__((noinline)) struct rec *make_rec(int id)
{
	struct rec *r = malloc(sizeof *r); /* LINE:alloc */
	r->id = id;
	strcpy(r->name, "record");
	return r;
}

__attribute__((noinline)) void drop_rec(struct rec *r)
{
	free(r); /* LINE:free */
}

__attribute__((noinline)) int read_id(volatile struct rec *r)
{
	return r->id; /* LINE:access */
}

int main(void)
{
	struct rec *r = make_rec(7); /* LINE:make_call */
	drop_rec(r); /* LINE:drop_call */
	int id = read_id(r); /* LINE:read_call */
	printf("id=%d\n", id);
	return 0;
}

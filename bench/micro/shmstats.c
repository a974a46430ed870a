/*
 * shmstats FILE: print the statistics block of a ufence shared-memory file as
 * one JSON object, using the engine's own header (offsets come from the file's
 * header, names from UF_STATS), so the harness never hard-codes the layout.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ufence/shm.h"

static const char *const names[] = {
#define UF_STAT_NAME(name) #name,
	UF_STATS(UF_STAT_NAME)
#undef UF_STAT_NAME
};

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: shmstats FILE\n");
		return 2;
	}
	FILE *f = fopen(argv[1], "rb");
	if (!f) {
		perror(argv[1]);
		return 1;
	}
	struct uf_shm_header h;
	if (fread(&h, sizeof(h), 1, f) != 1 || memcmp(h.magic, UF_SHM_MAGIC, 8) != 0) {
		fprintf(stderr, "shmstats: %s: not a ufence shm file\n", argv[1]);
		return 1;
	}
	uint32_t n = h.stats_count < UF_STAT_COUNT ? h.stats_count : UF_STAT_COUNT;
	uint64_t v[UF_MAX_STATS];
	if (n > UF_MAX_STATS || fseek(f, (long)h.stats_off, SEEK_SET) != 0 ||
	    fread(v, sizeof(uint64_t), n, f) != n) {
		fprintf(stderr, "shmstats: %s: truncated\n", argv[1]);
		return 1;
	}
	printf("{\"file_size\": %llu", (unsigned long long)h.file_size);
	for (uint32_t i = 0; i < n; i++)
		printf(", \"%s\": %llu", names[i], (unsigned long long)v[i]);
	printf("}\n");
	fclose(f);
	return 0;
}

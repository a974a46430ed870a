/*
 * Prints every shm.h struct's sizeof and field offsets as JSON, so the
 * Python mirror (src/ufence/backends/process/layout.py) can be checked
 * against the compiler's view of the ABI:
 *   cc -I engine/include engine/tools/layout_dump.c -o layout_dump && ./layout_dump
 */
#include <stddef.h>
#include <stdio.h>

#include "ufence/shm.h"

static int first_struct = 1, first_field;

static void begin(const char *name, size_t size)
{
	printf("%s\n  \"%s\": {\"size\": %zu, \"fields\": {", first_struct ? "" : ",", name, size);
	first_struct = 0;
	first_field = 1;
}

static void field(const char *name, size_t off, size_t size)
{
	printf("%s\n    \"%s\": {\"offset\": %zu, \"size\": %zu}", first_field ? "" : ",", name, off, size);
	first_field = 0;
}

static void end(void)
{
	printf("\n  }}");
}

#define F(type, f) field(#f, offsetof(struct type, f), sizeof(((struct type *)0)->f))

int main(void)
{
	printf("{");
	begin("uf_shm_setting", sizeof(struct uf_shm_setting));
	F(uf_shm_setting, value);
	F(uf_shm_setting, text);
	end();

	begin("uf_shm_slot", sizeof(struct uf_shm_slot));
	F(uf_shm_slot, seq);
	F(uf_shm_slot, state);
	F(uf_shm_slot, flags);
	F(uf_shm_slot, alloc_stack);
	F(uf_shm_slot, addr);
	F(uf_shm_slot, size);
	F(uf_shm_slot, alloc_tid);
	F(uf_shm_slot, free_tid);
	F(uf_shm_slot, free_stack);
	F(uf_shm_slot, alloc_cpu);
	F(uf_shm_slot, alloc_ns);
	F(uf_shm_slot, free_ns);
	end();

	begin("uf_depot_rec", sizeof(struct uf_depot_rec));
	F(uf_depot_rec, hash);
	F(uf_depot_rec, nframes);
	F(uf_depot_rec, reserved);
	field("frames", offsetof(struct uf_depot_rec, frames), 8);
	end();

	begin("uf_shm_module", sizeof(struct uf_shm_module));
	F(uf_shm_module, base);
	F(uf_shm_module, start);
	F(uf_shm_module, end);
	F(uf_shm_module, build_id_len);
	F(uf_shm_module, build_id);
	F(uf_shm_module, reserved);
	F(uf_shm_module, path);
	end();

	begin("uf_shm_header", sizeof(struct uf_shm_header));
	F(uf_shm_header, magic);
	F(uf_shm_header, version);
	F(uf_shm_header, header_size);
	F(uf_shm_header, file_size);
	F(uf_shm_header, pid);
	F(uf_shm_header, ppid);
	F(uf_shm_header, uid);
	F(uf_shm_header, page_size);
	F(uf_shm_header, proc_starttime);
	F(uf_shm_header, start_realtime_ns);
	F(uf_shm_header, start_monotonic_ns);
	F(uf_shm_header, heartbeat_ns);
	F(uf_shm_header, comm);
	F(uf_shm_header, exe);
	F(uf_shm_header, cmdline);
	F(uf_shm_header, engine_version);
	F(uf_shm_header, pool_base);
	F(uf_shm_header, pool_reserved_slots);
	F(uf_shm_header, settings_count);
	F(uf_shm_header, setting_size);
	F(uf_shm_header, settings_off);
	F(uf_shm_header, request_off);
	F(uf_shm_header, request_mask);
	F(uf_shm_header, request_seq);
	F(uf_shm_header, ack_seq);
	F(uf_shm_header, response_status);
	F(uf_shm_header, reserved0);
	F(uf_shm_header, response_msg);
	F(uf_shm_header, stats_count);
	F(uf_shm_header, reserved1);
	F(uf_shm_header, stats_off);
	F(uf_shm_header, slot_size);
	F(uf_shm_header, reserved2);
	F(uf_shm_header, slots_off);
	F(uf_shm_header, slots_capacity);
	F(uf_shm_header, depot_table_off);
	F(uf_shm_header, depot_table_len);
	F(uf_shm_header, depot_arena_off);
	F(uf_shm_header, depot_arena_size);
	F(uf_shm_header, depot_arena_used);
	F(uf_shm_header, module_size);
	F(uf_shm_header, modules_count);
	F(uf_shm_header, modules_off);
	F(uf_shm_header, modules_capacity);
	F(uf_shm_header, modules_seq);
	F(uf_shm_header, bugs_seen);
	F(uf_shm_header, report_dir);
	F(uf_shm_header, hot_off);
	F(uf_shm_header, hot_size);
	F(uf_shm_header, control_thread);
	end();

	printf(",\n  \"stats\": [");
	const char *names[] = {
#define UF_STAT_NAME(n) #n,
		UF_STATS(UF_STAT_NAME)
#undef UF_STAT_NAME
	};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		printf("%s\"%s\"", i ? ", " : "", names[i]);
	printf("],\n  \"constants\": {\"UF_SHM_VERSION\": %u, \"UF_SETTING_TEXT\": %d, \"UF_MAX_SETTINGS\": %d, "
	       "\"UF_MSG_LEN\": %d, \"UF_PATH_LEN\": %d, \"UF_COMM_LEN\": %d, \"UF_BUILD_ID_MAX\": %d, "
	       "\"UF_MAX_STATS\": %d}\n}\n",
	       UF_SHM_VERSION, UF_SETTING_TEXT, UF_MAX_SETTINGS, UF_MSG_LEN, UF_PATH_LEN, UF_COMM_LEN,
	       UF_BUILD_ID_MAX, UF_MAX_STATS);
	return 0;
}

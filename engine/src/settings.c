/*
 * The settings table is settings.def, expanded here as an X-macro. One
 * validator serves UFENCE_OPTIONS at start-up and live change requests, and
 * a whole request is applied or refused as one.
 */
#include <errno.h>
#include <string.h>

#include "uf.h"

const struct uf_setting_def uf_setting_defs[UF_SET_COUNT] = {
#define UF_SETTING(name, kind, def, mn, mx, choices, flags, help) {#name, kind, def, mn, mx, choices, flags},
#include "settings.def"
#undef UF_SETTING
};

struct uf_value uf_cur[UF_SET_COUNT];

int uf_setting_find(const char *name, size_t len)
{
	for (int i = 0; i < UF_SET_COUNT; i++)
		if (strlen(uf_setting_defs[i].name) == len && memcmp(uf_setting_defs[i].name, name, len) == 0)
			return i;
	return -1;
}

static void errf(char *err, size_t errlen, const char *name, const char *what)
{
	struct uf_buf b = {err, 0, errlen};
	uf_put(&b, name);
	uf_put(&b, ": ");
	uf_put(&b, what);
}

static int parse_int(const char *s, int64_t *out)
{
	int neg = 0;
	uint64_t v = 0;
	if (*s == '-' || *s == '+')
		neg = *s++ == '-';
	if (!*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > (1ull << 62))
			return -1;
	}
	*out = neg ? -(int64_t)v : (int64_t)v;
	return 0;
}

/* callers: comma-separated module names; no ':' (the option separator) */
static int check_callers(const char *s)
{
	size_t n = 0;
	for (const char *p = s; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == ',') {
			if (n == 0)
				return -1;
			n = 0;
			continue;
		}
		if (c <= ' ' || c == ':' || c >= 0x7f)
			return -1;
		n++;
	}
	return *s && n == 0 ? -1 : 0;
}

int uf_setting_parse(int id, const char *text, struct uf_value *out, char *err, size_t errlen)
{
	const struct uf_setting_def *d = &uf_setting_defs[id];
	memset(out, 0, sizeof *out);
	if (strlen(text) >= UF_SETTING_TEXT) {
		errf(err, errlen, d->name, "value too long");
		return EINVAL;
	}
	switch (d->kind) {
	case UF_INT: {
		int64_t v;
		if (parse_int(text, &v)) {
			errf(err, errlen, d->name, "not an integer");
			return EINVAL;
		}
		if (v < d->min || v > d->max) {
			struct uf_buf b = {err, 0, errlen};
			uf_put(&b, d->name);
			uf_put(&b, ": out of range ");
			uf_put_sdec(&b, d->min);
			uf_put(&b, "..");
			uf_put_sdec(&b, d->max);
			return ERANGE;
		}
		out->v = v;
		struct uf_buf b = {out->text, 0, sizeof out->text};
		uf_put_sdec(&b, v);
		return 0;
	}
	case UF_BOOL: {
		static const char *const t[] = {"1", "true", "yes", "on"}, *const f[] = {"0", "false", "no", "off"};
		for (int i = 0; i < 4; i++) {
			if (uf_streq(text, t[i]) || uf_streq(text, f[i])) {
				out->v = uf_streq(text, t[i]);
				out->text[0] = out->v ? '1' : '0';
				return 0;
			}
		}
		errf(err, errlen, d->name, "expected 0 or 1");
		return EINVAL;
	}
	case UF_ENUM: {
		const char *c = d->choices;
		for (int64_t i = 0; *c; i++) {
			const char *e = strchr(c, '|');
			size_t n = e ? (size_t)(e - c) : strlen(c);
			if (strlen(text) == n && memcmp(text, c, n) == 0) {
				out->v = i;
				memcpy(out->text, c, n);
				return 0;
			}
			c += n + (e ? 1 : 0);
		}
		struct uf_buf b = {err, 0, errlen};
		uf_put(&b, d->name);
		uf_put(&b, ": expected one of ");
		uf_put(&b, d->choices);
		return EINVAL;
	}
	default:
		if (id == UF_SET_size_classes) {
			uint32_t mask;
			if (uf_parse_size_classes(text, &mask, err, errlen))
				return EINVAL;
			out->v = mask;
		} else if (id == UF_SET_callers) {
			if (check_callers(text)) {
				errf(err, errlen, d->name, "expected module names separated by commas");
				return EINVAL;
			}
		}
		uf_strlcpy(out->text, text, sizeof out->text);
		return 0;
	}
}

void uf_settings_defaults(void)
{
	char err[UF_MSG_LEN];
	for (int i = 0; i < UF_SET_COUNT; i++)
		uf_setting_parse(i, uf_setting_defs[i].def, &uf_cur[i], err, sizeof err);
}

static void bad_option(const char *kv, size_t n, const char *why)
{
	char t[600];
	struct uf_buf b = {t, 0, sizeof t};
	uf_put(&b, "ufence: bad option ");
	uf_putn(&b, kv, n > 200 ? 200 : n);
	uf_put(&b, ": ");
	uf_put(&b, why);
	uf_put(&b, " (default kept)\n");
	uf_write_all(uf_proc.log_fd, t, b.len);
}

/* "k=v:k=v"; each bad entry is reported and skipped, the rest applies */
void uf_options_parse(const char *opts)
{
	if (!opts)
		return;
	const char *p = opts;
	while (*p) {
		const char *e = strchr(p, ':');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n) {
			const char *eq = memchr(p, '=', n);
			char err[UF_MSG_LEN] = "";
			if (!eq) {
				bad_option(p, n, "expected key=value");
			} else {
				int id = uf_setting_find(p, (size_t)(eq - p));
				char val[UF_SETTING_TEXT + 1];
				size_t vl = n - (size_t)(eq - p) - 1;
				if (id < 0) {
					bad_option(p, n, "unknown setting");
				} else if (vl >= sizeof val) {
					bad_option(p, n, "value too long");
				} else {
					struct uf_value v;
					memcpy(val, eq + 1, vl);
					val[vl] = 0;
					if (uf_setting_parse(id, val, &v, err, sizeof err))
						bad_option(p, n, err);
					else
						uf_cur[id] = v;
				}
			}
		}
		p += n + (e ? 1 : 0);
	}
}

int uf_settings_apply(const struct uf_value *next, char *err, size_t errlen)
{
	for (int i = 0; i < UF_SET_COUNT; i++) {
		if ((uf_setting_defs[i].flags & UF_BOOT) && atomic_load(&uf_proc.ready) &&
		    !uf_streq(next[i].text, uf_cur[i].text)) {
			errf(err, errlen, uf_setting_defs[i].name, "can only be set at start-up");
			return EPERM;
		}
	}
	/* the one change that can fail goes first, so refusal leaves all as is */
	if (next[UF_SET_num_objects].v != (int64_t)uf_pool.limit || !uf_pool.initialized) {
		int rc = uf_pool_resize((uint32_t)next[UF_SET_num_objects].v, err, errlen);
		if (rc)
			return rc;
	}
	for (int i = 0; i < UF_SET_COUNT; i++)
		uf_cur[i] = next[i];
	uf_class_mask = (uint32_t)uf_cur[UF_SET_size_classes].v;
	extern void uf_callers_update(void);
	uf_callers_update();
	uf_sample_configure();
	uf_settings_publish();
	return 0;
}

void uf_settings_publish(void)
{
	if (!uf_shm.hdr)
		return;
	struct uf_shm_setting *s = (void *)(uf_shm.map + uf_shm.settings_off);
	for (int i = 0; i < UF_SET_COUNT; i++) {
		s[i].value = uf_cur[i].v;
		memcpy(s[i].text, uf_cur[i].text, sizeof s[i].text);
	}
}

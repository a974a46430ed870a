/*
 * Rust's v0 symbol mangling (RFC 2603: `_R...`), for the text report, as
 * demangle.c does Itanium names: in the signal handler's terms (no
 * allocation, fixed buffers, under the report lock). The standard library
 * ships v0-mangled, so allocation stacks through Vec and Box are v0 even in
 * a crate built with the legacy scheme. Printed as gdb and c++filt print
 * them, without the crates' hash disambiguators (`alloc::raw_vec::...`).
 * Punycode identifiers make it give up (the report keeps the symbol).
 */
#include <stddef.h>
#include <string.h>

#include "uf.h"

#define V0_OUT 4096
#define V0_DEPTH 64
#define V0_STEPS 20000  /* backrefs to backrefs can re-read the same text without end */

struct v0 {
	const char *s;           /* the symbol after "_R": backrefs count from here */
	size_t n, pos;
	char out[V0_OUT];
	struct uf_buf b;         /* over out; filling it up means giving up */
	int bad, depth, steps;
	uint64_t bound;          /* lifetimes bound by enclosing binders */
};

static void out_dec(struct v0 *v, uint64_t x);

/* A full buffer ends the demangling (a name too long to show). */
static void out(struct v0 *v, const char *s, size_t n)
{
	if (v->b.len + n + 1 >= v->b.cap)
		v->bad = 1;
	else
		uf_putn(&v->b, s, n);
}

static void outs(struct v0 *v, const char *s)
{
	out(v, s, strlen(s));
}

static void out_dec(struct v0 *v, uint64_t x)
{
	if (v->b.len + 22 >= v->b.cap)
		v->bad = 1;
	else
		uf_put_dec(&v->b, x);
}

static char peek(const struct v0 *v)
{
	return v->pos < v->n ? v->s[v->pos] : 0;
}

static int eat(struct v0 *v, char c)
{
	if (peek(v) != c)
		return 0;
	v->pos++;
	return 1;
}

static char next(struct v0 *v)
{
	char c = peek(v);
	if (!c)
		v->bad = 1;
	else
		v->pos++;
	return c;
}

/* base-62 number: "_" is 0, digits then "_" are their value + 1 */
static uint64_t base62(struct v0 *v)
{
	if (eat(v, '_'))
		return 0;
	uint64_t x = 0;
	for (;;) {
		char c = next(v);
		if (c == '_')
			break;
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'z' ? c - 'a' + 10 :
			c >= 'A' && c <= 'Z' ? c - 'A' + 36 : -1;
		if (d < 0 || x > (UINT64_MAX - 61) / 62) {
			v->bad = 1;
			return 0;
		}
		x = x * 62 + (uint64_t)d;
	}
	return x + 1;
}

/* tag <base-62>, or 0 without the tag */
static uint64_t opt_base62(struct v0 *v, char tag)
{
	return eat(v, tag) ? base62(v) + 1 : 0;
}

struct ident {
	const char *p;
	size_t n;
};

static struct ident identifier(struct v0 *v, uint64_t *dis)
{
	struct ident id = {"", 0};
	uint64_t d = opt_base62(v, 's');
	if (dis)
		*dis = d;
	if (eat(v, 'u')) {           /* punycode: not read here */
		v->bad = 1;
		return id;
	}
	size_t len = 0;
	char c = peek(v);
	if (c < '0' || c > '9') {
		v->bad = 1;
		return id;
	}
	if (c == '0')
		v->pos++;
	else
		while ((c = peek(v)) >= '0' && c <= '9') {
			len = len * 10 + (size_t)(c - '0');
			v->pos++;
			if (len > V0_OUT) {
				v->bad = 1;
				return id;
			}
		}
	eat(v, '_');                 /* separates a name that starts with a digit or '_' */
	if (len > v->n - v->pos) {
		v->bad = 1;
		return id;
	}
	id.p = v->s + v->pos;
	id.n = len;
	v->pos += len;
	return id;
}

static void path(struct v0 *v, int in_value);
static void type(struct v0 *v);

/* B <base-62>: what starts at that earlier offset, printed by fn */
static void backref(struct v0 *v, void (*fn)(struct v0 *, int), int arg)
{
	size_t at = v->pos - 1;               /* the B */
	uint64_t off = base62(v);
	if (v->bad || off >= at) {
		v->bad = 1;
		return;
	}
	size_t back = v->pos;
	v->pos = (size_t)off;
	fn(v, arg);
	v->pos = back;
}

static void lifetime(struct v0 *v, uint64_t lt)
{
	if (lt == 0) {
		outs(v, "'_");
		return;
	}
	if (lt > v->bound) {
		v->bad = 1;
		return;
	}
	uint64_t depth = v->bound - lt;
	if (depth < 26) {
		char b[2] = {'\'', (char)('a' + depth)};
		out(v, b, 2);
	} else {
		outs(v, "'_");
		out_dec(v, depth);
	}
}

/* G <base-62>: lifetimes bound here ("for<'a, 'b> "); returns how many */
static uint64_t binder(struct v0 *v)
{
	uint64_t k = opt_base62(v, 'G');
	if (!k)
		return 0;
	outs(v, "for<");
	for (uint64_t i = 0; i < k && !v->bad; i++) {
		if (i)
			outs(v, ", ");
		v->bound++;
		lifetime(v, 1);
	}
	outs(v, "> ");
	return k;
}

static const char *basic(char c)
{
	switch (c) {
	case 'a': return "i8";
	case 'b': return "bool";
	case 'c': return "char";
	case 'd': return "f64";
	case 'e': return "str";
	case 'f': return "f32";
	case 'h': return "u8";
	case 'i': return "isize";
	case 'j': return "usize";
	case 'l': return "i32";
	case 'm': return "u32";
	case 'n': return "i128";
	case 'o': return "u128";
	case 's': return "i16";
	case 't': return "u16";
	case 'u': return "()";
	case 'v': return "...";
	case 'x': return "i64";
	case 'y': return "u64";
	case 'z': return "!";
	case 'p': return "_";
	default: return NULL;
	}
}

/* a const generic argument: an integer, bool or ASCII char, or _ */
static void constant(struct v0 *v, int unused)
{
	(void)unused;
	if (++v->depth > V0_DEPTH || ++v->steps > V0_STEPS) {
		v->bad = 1;
		return;
	}
	char t = next(v);
	if (t == 'B') {
		backref(v, constant, 0);
	} else if (t == 'p') {
		outs(v, "_");
	} else if (t && strchr("hmtyojaslxnibc", t)) {
		int neg = eat(v, 'n');
		uint64_t x = 0;
		int digits = 0;
		char c;
		while ((c = next(v)) != '_' && !v->bad) {
			int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
			if (d < 0 || ++digits > 16) {
				v->bad = 1;
				break;
			}
			x = x << 4 | (uint64_t)d;
		}
		if (t == 'b') {
			outs(v, x ? "true" : "false");
		} else if (t == 'c') {
			if (x < 0x20 || x > 0x7e || x == '\'' || x == '\\')
				v->bad = 1;
			char b[3] = {'\'', (char)x, '\''};
			out(v, b, 3);
		} else {
			if (neg)
				outs(v, "-");
			out_dec(v, x);          /* as gdb: [u8; 4] */
		}
	} else {
		v->bad = 1;
	}
	v->depth--;
}

static void generic_arg(struct v0 *v)
{
	if (eat(v, 'L'))
		lifetime(v, base62(v));
	else if (eat(v, 'K'))
		constant(v, 0);
	else
		type(v);
}

/* A trait's path with its generic arguments left open, so associated-type
 * bindings can join them (dyn FnMut<(), Output = u8>): 1 if left open. */
static int path_open(struct v0 *v)
{
	if (++v->depth > V0_DEPTH || ++v->steps > V0_STEPS) {
		v->bad = 1;
		return 0;
	}
	int open = 0;
	if (eat(v, 'B')) {
		size_t at = v->pos - 1;
		uint64_t off = base62(v);
		if (v->bad || off >= at) {
			v->bad = 1;
		} else {
			size_t back = v->pos;
			v->pos = (size_t)off;
			open = path_open(v);
			v->pos = back;
		}
	} else if (eat(v, 'I')) {
		path(v, 0);
		outs(v, "<");
		for (int i = 0; !v->bad && !eat(v, 'E'); i++) {
			if (i)
				outs(v, ", ");
			generic_arg(v);
		}
		open = 1;
	} else {
		path(v, 0);
	}
	v->depth--;
	return open;
}

static void dyn_trait(struct v0 *v)
{
	int open = path_open(v);
	while (!v->bad && eat(v, 'p')) {
		outs(v, open ? ", " : "<");
		open = 1;
		struct ident id = identifier(v, NULL);
		out(v, id.p, id.n);
		outs(v, " = ");
		type(v);
	}
	if (open)
		outs(v, ">");
}

static void type_of(struct v0 *v, int unused)
{
	(void)unused;
	type(v);
}

static void type(struct v0 *v)
{
	if (++v->depth > V0_DEPTH || ++v->steps > V0_STEPS) {
		v->bad = 1;
		return;
	}
	char c = next(v);
	const char *b = basic(c);
	if (b) {
		outs(v, b);
	} else if (c == 'R' || c == 'Q') {
		outs(v, c == 'R' ? "&" : "&mut ");
		if (eat(v, 'L')) {
			uint64_t lt = base62(v);
			if (lt) {
				lifetime(v, lt);
				outs(v, " ");
			}
		}
		type(v);
	} else if (c == 'P' || c == 'O') {
		outs(v, c == 'P' ? "*const " : "*mut ");
		type(v);
	} else if (c == 'A' || c == 'S') {
		outs(v, "[");
		type(v);
		if (c == 'A') {
			outs(v, "; ");
			constant(v, 0);
		}
		outs(v, "]");
	} else if (c == 'T') {
		outs(v, "(");
		int k = 0;
		for (; !v->bad && !eat(v, 'E'); k++) {
			if (k)
				outs(v, ", ");
			type(v);
		}
		outs(v, k == 1 ? ",)" : ")");
	} else if (c == 'F') {
		uint64_t bound = v->bound, k = binder(v);
		if (eat(v, 'U'))
			outs(v, "unsafe ");
		if (eat(v, 'K')) {
			outs(v, "extern \"");
			if (eat(v, 'C')) {
				outs(v, "C");
			} else {
				struct ident abi = identifier(v, NULL);
				for (size_t i = 0; i < abi.n; i++)
					out(v, abi.p[i] == '_' ? "-" : abi.p + i, 1);
			}
			outs(v, "\" ");
		}
		outs(v, "fn(");
		for (int i = 0; !v->bad && !eat(v, 'E'); i++) {
			if (i)
				outs(v, ", ");
			type(v);
		}
		outs(v, ")");
		if (eat(v, 'u')) {
			/* returns (): nothing printed */
		} else {
			outs(v, " -> ");
			type(v);
		}
		v->bound = bound;
		(void)k;
	} else if (c == 'D') {
		uint64_t bound = v->bound;
		outs(v, "dyn ");
		binder(v);
		for (int i = 0; !v->bad && !eat(v, 'E'); i++) {
			if (i)
				outs(v, " + ");
			dyn_trait(v);
		}
		if (eat(v, 'L')) {
			uint64_t lt = base62(v);
			if (lt) {
				outs(v, " + ");
				lifetime(v, lt);
			}
		}
		v->bound = bound;
	} else if (c == 'B') {
		backref(v, type_of, 0);
	} else {
		v->pos--;                     /* a named type: a path */
		path(v, 0);
	}
	v->depth--;
}

/* parse a path but print nothing (impl paths, the instantiating crate) */
static void skip_path(struct v0 *v)
{
	size_t at = v->b.len;
	path(v, 0);
	v->b.len = at;
}

static void path(struct v0 *v, int in_value)
{
	if (++v->depth > V0_DEPTH || ++v->steps > V0_STEPS) {
		v->bad = 1;
		return;
	}
	char c = next(v);
	if (c == 'C') {                       /* crate root */
		struct ident id = identifier(v, NULL);
		out(v, id.p, id.n);
	} else if (c == 'N') {
		char ns = next(v);
		path(v, in_value);
		uint64_t dis;
		struct ident id = identifier(v, &dis);
		if (ns >= 'A' && ns <= 'Z') {     /* closures, shims: {closure#0} */
			outs(v, "::{");
			outs(v, ns == 'C' ? "closure" : ns == 'S' ? "shim" : (char[2]){ns, 0});
			if (id.n) {
				outs(v, ":");
				out(v, id.p, id.n);
			}
			outs(v, "#");
			out_dec(v, dis);
			outs(v, "}");
		} else if (ns >= 'a' && ns <= 'z') {
			if (id.n) {
				outs(v, "::");
				out(v, id.p, id.n);
			}
		} else {
			v->bad = 1;
		}
	} else if (c == 'M' || c == 'X') {    /* <T>, <T as Trait>: the impl's own path unprinted */
		opt_base62(v, 's');
		skip_path(v);
		outs(v, "<");
		type(v);
		if (c == 'X') {
			outs(v, " as ");
			path(v, 0);
		}
		outs(v, ">");
	} else if (c == 'Y') {
		outs(v, "<");
		type(v);
		outs(v, " as ");
		path(v, 0);
		outs(v, ">");
	} else if (c == 'I') {
		path(v, in_value);
		outs(v, in_value ? "::<" : "<");
		for (int i = 0; !v->bad && !eat(v, 'E'); i++) {
			if (i)
				outs(v, ", ");
			generic_arg(v);
		}
		outs(v, ">");
	} else if (c == 'B') {
		backref(v, path, in_value);
	} else {
		v->bad = 1;
	}
	v->depth--;
}

/* Under the report lock, as uf_demangle: one state serves */
int uf_demangle_rust_v0(const char *mangled, char *outbuf, size_t outlen)
{
	static struct v0 state;
	struct v0 *v = &state;
	memset(v, 0, offsetof(struct v0, out));
	v->b = (struct uf_buf){v->out, 0, sizeof v->out};
	v->bad = 0;
	v->depth = v->steps = 0;
	v->bound = 0;
	if (!mangled || mangled[0] != '_' || mangled[1] != 'R' || outlen < 2)
		return -1;
	v->s = mangled + 2;
	v->n = strcspn(v->s, ".");            /* .llvm.NNN and other suffixes: not shown */
	if (v->n && v->s[0] >= '0' && v->s[0] <= '9')
		return -1;                    /* an encoding version after 0: unknown */
	path(v, 1);
	if (!v->bad && v->pos < v->n)
		skip_path(v);                 /* the instantiating crate */
	if (v->bad || v->pos != v->n || v->b.len + 1 >= sizeof v->out)
		return -1;
	struct uf_buf o = {outbuf, 0, outlen};
	if (v->b.len < outlen) {
		uf_putn(&o, v->out, v->b.len);
	} else {
		uf_putn(&o, v->out, outlen - 4);
		uf_put(&o, "...");
	}
	return 0;
}

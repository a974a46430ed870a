/*
 * Demangling for the text report, inside the signal handler: Itanium C++
 * names (`_ZN5Store6insertERKS_` -> `Store::insert(Store const&)`) and Rust's
 * legacy scheme (`_ZN4core3ptr13drop_in_place17h0123456789abcdefE` ->
 * `core::ptr::drop_in_place`), the names C++ and Rust services allocate
 * under. No allocation and no locale: fixed buffers only, as the handler
 * needs. It covers what allocation and free stacks are made of (nested
 * names, templates, operators, constructors, std:: abbreviations,
 * substitutions, builtin, qualified and class parameter types, argument
 * packs and their expansions: emplace_back<Args...>, lambdas and other
 * local names, function types, pointers to them and to members); anything
 * else (expressions in template arguments, cv-qualified function types)
 * makes it give up, and the report keeps the mangled name, which the JSON
 * keeps anyway for tools and `ufence report` renders with a full demangler.
 */
#include <string.h>

#include "uf.h"

#define DM_OUT 4096
#define DM_SUBS 64
#define DM_SUBCHARS 8192
#define DM_DEPTH 32
#define NOFN ((size_t)-1)

struct dm {
	const char *p;
	char out[DM_OUT];
	size_t len;
	int bad, depth;
	/* substitution candidates, in order, as printed */
	uint16_t sub_off[DM_SUBS], sub_len[DM_SUBS];
	int nsubs;
	char subchars[DM_SUBCHARS];
	size_t subused;
	/* the last template arguments of the name: what T_, T0_ ... mean */
	uint16_t targ_off[DM_SUBS], targ_len[DM_SUBS];
	int ntargs;
	char targchars[DM_SUBCHARS];
	size_t targused;
	const char *last_source;       /* a constructor's or destructor's class name */
	size_t last_source_len;
	int ctor;                      /* the last name was a constructor or destructor */
	const char *refq;              /* a method's ref-qualifier: "", " &", " &&" */
	int template_name;             /* the function's name ends in template arguments */
	/* packs: a template argument that is one has its elements here */
	int8_t targ_pack[DM_SUBS];     /* -1, or how many elements */
	uint16_t targ_first[DM_SUBS];  /* its first element in elem_off/elem_len */
	uint16_t elem_off[DM_SUBS], elem_len[DM_SUBS];
	int nelems;
	int expanding, elem, seen;     /* inside Dp: the element printed, the pack's size */
	int no_cand;                   /* a pack expansion's later elements: no candidates */
	/* function types: where a pointer's or reference's declarator goes in
	 * the type just printed ("void |(int)", then "void (*|)(int)"), as an
	 * offset in out, or NOFN; for a candidate, from its start, plus one */
	size_t fn_at;
	int fn_wrapped;
	uint16_t sub_fn[DM_SUBS];
	uint8_t sub_wrapped[DM_SUBS];
	size_t last_sub_fn;            /* the substitution just printed, from its start, or NOFN */
	int last_sub_wrapped;
};

/* A substituted class's own name, for its constructor: the text after the
 * last "::" outside template arguments, without them. */
static void class_from_text(struct dm *d, const char *s, size_t n)
{
	size_t end = n, start = 0;
	int angle = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '<' && angle++ == 0 && end == n)
			end = i;
		else if (s[i] == '>')
			angle--;
		else if (!angle && end == n && s[i] == ':' && i + 1 < n && s[i + 1] == ':')
			start = i + 2;
	}
	d->last_source = s + start;
	d->last_source_len = end - start;
}

static void put(struct dm *d, const char *s, size_t n)
{
	if (d->len + n >= DM_OUT) {
		d->bad = 1;
		return;
	}
	memcpy(d->out + d->len, s, n);
	d->len += n;
}

static void puts_(struct dm *d, const char *s)
{
	put(d, s, strlen(s));
}

/* record out[from, len) as the next substitution candidate */
static void candidate_fn(struct dm *d, size_t from, size_t fn, int wrapped)
{
	size_t n = d->len - from;
	if (d->no_cand)
		return;
	if (d->bad || d->nsubs >= DM_SUBS || d->subused + n > DM_SUBCHARS) {
		d->bad |= d->nsubs >= DM_SUBS || d->subused + n > DM_SUBCHARS;
		return;
	}
	memcpy(d->subchars + d->subused, d->out + from, n);
	d->sub_off[d->nsubs] = (uint16_t)d->subused;
	d->sub_fn[d->nsubs] = (uint16_t)(fn == NOFN || fn < from ? 0 : fn - from + 1);
	d->sub_wrapped[d->nsubs] = (uint8_t)wrapped;
	d->sub_len[d->nsubs++] = (uint16_t)n;
	d->subused += n;
}

static void candidate(struct dm *d, size_t from)
{
	candidate_fn(d, from, NOFN, 0);
}

/* insert s at out[at] */
static void insert(struct dm *d, size_t at, const char *s)
{
	size_t n = strlen(s);
	if (d->len + n >= DM_OUT || at > d->len) {
		d->bad = 1;
		return;
	}
	memmove(d->out + at + n, d->out + at, d->len - at);
	memcpy(d->out + at, s, n);
	d->len += n;
}

static int number(struct dm *d, size_t *v)
{
	if (*d->p < '0' || *d->p > '9')
		return -1;
	size_t n = 0;
	while (*d->p >= '0' && *d->p <= '9') {
		n = n * 10 + (size_t)(*d->p++ - '0');
		if (n > 4096)
			return -1;
	}
	*v = n;
	return 0;
}

/* seq-id of S<seq>_ / T<seq>_: empty = 0, base 36 + 1 otherwise */
static int seq_id(struct dm *d, int *idx)
{
	int n = 0;
	if (*d->p == '_') {
		d->p++;
		*idx = 0;
		return 0;
	}
	while ((*d->p >= '0' && *d->p <= '9') || (*d->p >= 'A' && *d->p <= 'Z')) {
		n = n * 36 + (*d->p <= '9' ? *d->p - '0' : *d->p - 'A' + 10);
		d->p++;
		if (n > DM_SUBS)
			return -1;
	}
	if (*d->p++ != '_')
		return -1;
	*idx = n + 1;
	return 0;
}

/* Rust legacy escapes in one path component: $LT$ < ... and ".." -> "::" */
static void put_rust_ident(struct dm *d, const char *s, size_t n)
{
	static const struct { const char *code, *text; } esc[] = {
		{"$LT$", "<"}, {"$GT$", ">"}, {"$C$", ","}, {"$RF$", "&"}, {"$BP$", "*"},
		{"$SP$", "@"}, {"$LP$", "("}, {"$RP$", ")"},
	};
	size_t i = 0;
	if (n > 1 && s[0] == '_' && s[1] == '$')
		i = 1;
	while (i < n) {
		if (s[i] == '.' && i + 1 < n && s[i + 1] == '.') {
			put(d, "::", 2);
			i += 2;
			continue;
		}
		if (s[i] == '$') {
			size_t k = 0;
			for (; k < sizeof esc / sizeof esc[0]; k++) {
				size_t l = strlen(esc[k].code);
				if (l <= n - i && memcmp(s + i, esc[k].code, l) == 0) {
					puts_(d, esc[k].text);
					i += l;
					break;
				}
			}
			if (k < sizeof esc / sizeof esc[0])
				continue;
			/* $u<hex>$: a code point, written as UTF-8 */
			uint32_t cp = 0;
			size_t j = i + 2;
			for (; j < n && j < i + 8 && s[j] != '$'; j++) {
				char h = s[j];
				int v = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : -1;
				if (v < 0)
					break;
				cp = cp << 4 | (uint32_t)v;
			}
			if (i + 1 < n && s[i + 1] == 'u' && j < n && s[j] == '$' && j > i + 2 && cp && cp < 0x110000) {
				char u[4];
				size_t un = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
				if (un == 1)
					u[0] = (char)cp;
				else {
					for (size_t b = un - 1; b > 0; b--, cp >>= 6)
						u[b] = (char)(0x80 | (cp & 0x3f));
					u[0] = (char)((0xf00u >> un) | cp);
				}
				put(d, u, un);
				i = j + 1;
				continue;
			}
		}
		put(d, s + i++, 1);
	}
}

static int is_rust_hash(const char *s, size_t n)
{
	if (n != 17 || s[0] != 'h')
		return 0;
	for (size_t i = 1; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

static int type(struct dm *d);

static int source_name(struct dm *d)
{
	size_t n;
	if (number(d, &n) || strnlen(d->p, n) < n)
		return -1;
	d->last_source = d->p;
	d->last_source_len = n;
	put(d, d->p, n);
	d->p += n;
	return 0;
}

static void put_num(struct dm *d, size_t v);

static const char *const operators[][2] = {
	{"nw", "operator new"}, {"na", "operator new[]"}, {"dl", "operator delete"},
	{"da", "operator delete[]"}, {"ps", "operator+"}, {"ng", "operator-"}, {"ad", "operator&"},
	{"de", "operator*"}, {"co", "operator~"}, {"pl", "operator+"}, {"mi", "operator-"},
	{"ml", "operator*"}, {"dv", "operator/"}, {"rm", "operator%"}, {"an", "operator&"},
	{"or", "operator|"}, {"eo", "operator^"}, {"aS", "operator="}, {"pL", "operator+="},
	{"mI", "operator-="}, {"mL", "operator*="}, {"dV", "operator/="}, {"rM", "operator%="},
	{"aN", "operator&="}, {"oR", "operator|="}, {"eO", "operator^="}, {"ls", "operator<<"},
	{"rs", "operator>>"}, {"lS", "operator<<="}, {"rS", "operator>>="}, {"eq", "operator=="},
	{"ne", "operator!="}, {"lt", "operator<"}, {"gt", "operator>"}, {"le", "operator<="},
	{"ge", "operator>="}, {"ss", "operator<=>"}, {"nt", "operator!"}, {"aa", "operator&&"},
	{"oo", "operator||"}, {"pp", "operator++"}, {"mm", "operator--"}, {"cm", "operator,"},
	{"pm", "operator->*"}, {"pt", "operator->"}, {"cl", "operator()"}, {"ix", "operator[]"},
};

/* an unqualified name: source name, operator, constructor or destructor,
 * with any ABI tags */
static int unqualified(struct dm *d)
{
	const char *c = d->p;
	if (c[0] == 'L')
		c = ++d->p;                        /* internal linkage */
	d->ctor = 0;
	if (c[0] >= '0' && c[0] <= '9') {
		if (source_name(d))
			return -1;
	} else if (c[0] == 'C' && c[1] >= '1' && c[1] <= '3') {
		if (!d->last_source)
			return -1;
		put(d, d->last_source, d->last_source_len);
		d->p += 2;
		d->ctor = 1;
	} else if (c[0] == 'D' && c[1] >= '0' && c[1] <= '2') {
		if (!d->last_source)
			return -1;
		put(d, "~", 1);
		put(d, d->last_source, d->last_source_len);
		d->p += 2;
		d->ctor = 1;
	} else if (c[0] == 'U' && (c[1] == 'l' || c[1] == 't')) {
		/* a lambda's closure type, Ul <params> E [<n>] _: {lambda(int)#1};
		 * an unnamed type, Ut [<n>] _: {unnamed type#1} */
		int lambda = c[1] == 'l';
		d->p += 2;
		puts_(d, lambda ? "{lambda(" : "{unnamed type#");
		if (lambda) {
			if (d->p[0] == 'v' && d->p[1] == 'E')
				d->p++;
			for (int n = 0; *d->p != 'E'; n++) {
				if (!*d->p)
					return -1;
				if (n)
					put(d, ", ", 2);
				if (type(d))
					return -1;
			}
			d->p++;
			puts_(d, ")#");
		}
		size_t n = 1;
		if (*d->p >= '0' && *d->p <= '9') {
			if (number(d, &n))
				return -1;
			n += 2;
		}
		if (*d->p++ != '_')
			return -1;
		put_num(d, n);
		put(d, "}", 1);
	} else {
		size_t k = 0;
		for (; k < sizeof operators / sizeof operators[0]; k++)
			if (c[0] && c[0] == operators[k][0][0] && c[1] == operators[k][0][1])
				break;
		if (k == sizeof operators / sizeof operators[0])
			return -1;                 /* conversion operators, lambdas, unnamed types */
		puts_(d, operators[k][1]);
		d->p += 2;
	}
	while (*d->p == 'B') {                     /* ABI tag: [abi:cxx11] */
		d->p++;
		puts_(d, "[abi:");
		const char *ls = d->last_source;
		size_t ll = d->last_source_len;
		if (source_name(d))
			return -1;
		d->last_source = ls;
		d->last_source_len = ll;
		put(d, "]", 1);
	}
	return 0;
}

struct span16 {
	uint16_t off, len;
};

/* one template argument: a type, a literal (L <type> <value> E) or a pack
 * (J <args> E, printed inline); a pack's element spans go to elems and
 * their count to *nelems (-1: not a pack) */
static int template_arg(struct dm *d, struct span16 *elems, int *nelems)
{
	if (nelems)
		*nelems = -1;
	if (*d->p == 'J') {
		d->p++;
		int k = 0;
		while (*d->p != 'E') {
			if (!*d->p || k >= DM_SUBS)
				return -1;
			if (k)
				put(d, ", ", 2);
			size_t from = d->len;
			if (template_arg(d, NULL, NULL))
				return -1;
			if (elems)
				elems[k] = (struct span16){(uint16_t)from, (uint16_t)(d->len - from)};
			k++;
		}
		d->p++;
		if (nelems)
			*nelems = k;
		return 0;
	}
	if (*d->p != 'L')
		return type(d);
	d->p++;
	if (*d->p == '_' || *d->p == 'Z')
		return -1;
	/* as libiberty prints them: 5, true, 5u, 5l, 5ul, 5ll, 5ull, else (type)5 */
	static const char *const suffix[26] = {
		['i' - 'a'] = "", ['j' - 'a'] = "u", ['l' - 'a'] = "l", ['m' - 'a'] = "ul",
		['x' - 'a'] = "ll", ['y' - 'a'] = "ull", ['b' - 'a'] = "",
	};
	char code = *d->p;
	const char *suf = code >= 'a' && code <= 'z' ? suffix[code - 'a'] : NULL;
	size_t tfrom = d->len;
	if (suf) {
		d->p++;
	} else {
		put(d, "(", 1);
		if (type(d))
			return -1;
		put(d, ")", 1);
	}
	int neg = *d->p == 'n';
	d->p += neg;
	const char *v = d->p;
	while (*d->p >= '0' && *d->p <= '9')
		d->p++;
	if (d->p == v || *d->p++ != 'E')
		return -1;
	size_t vn = (size_t)(d->p - 1 - v);
	if (code == 'b' && vn == 1) {
		d->len = tfrom;
		puts_(d, *v == '0' ? "false" : "true");
	} else {
		if (neg)
			put(d, "-", 1);
		put(d, v, vn);
		if (suf)
			puts_(d, suf);
	}
	return 0;
}

/* copy out[off, off+len) into the template-argument store */
static int keep_text(struct dm *d, struct span16 sp, uint16_t *off)
{
	if (d->targused + sp.len > DM_SUBCHARS)
		return -1;
	memcpy(d->targchars + d->targused, d->out + sp.off, sp.len);
	*off = (uint16_t)d->targused;
	d->targused += sp.len;
	return 0;
}

/* I <args> E; at top level (keep) they become what T_ refers to */
static int template_args(struct dm *d, int keep)
{
	if (*d->p++ != 'I')
		return -1;
	int n = 0, ne = 0;
	struct span16 arg[DM_SUBS], elems[DM_SUBS];
	int8_t pack[DM_SUBS];
	uint16_t first[DM_SUBS];
	const char *cls = d->last_source;          /* a constructor names the class, not an argument */
	size_t cls_len = d->last_source_len;
	int ctor = d->ctor;
	if (d->len && d->out[d->len - 1] == '<')
		put(d, " ", 1);                      /* operator<< <char> */
	put(d, "<", 1);
	while (*d->p != 'E') {
		if (!*d->p || n >= DM_SUBS)
			return -1;
		if (n)
			put(d, ", ", 2);
		size_t from = d->len;
		int k;
		if (template_arg(d, elems + ne, &k) || (k > 0 && ne + k > DM_SUBS))
			return -1;
		pack[n] = (int8_t)k;
		first[n] = (uint16_t)ne;
		ne += k > 0 ? k : 0;
		arg[n++] = (struct span16){(uint16_t)from, (uint16_t)(d->len - from)};
	}
	d->p++;
	d->last_source = cls;
	d->last_source_len = cls_len;
	d->ctor = ctor;
	if (keep && !d->bad) {
		d->targused = 0;
		for (int i = 0; i < n; i++)
			if (keep_text(d, arg[i], &d->targ_off[i]))
				return -1;
		for (int i = 0; i < ne; i++)
			if (keep_text(d, elems[i], &d->elem_off[i]))
				return -1;
		for (int i = 0; i < n; i++) {
			d->targ_len[i] = arg[i].len;
			d->targ_pack[i] = pack[i];
			d->targ_first[i] = first[i];
		}
		for (int i = 0; i < ne; i++)
			d->elem_len[i] = elems[i].len;
		d->ntargs = n;
		d->nelems = ne;
	}
	put(d, d->out[d->len - 1] == '>' ? " >" : ">", d->out[d->len - 1] == '>' ? 2 : 1);
	return 0;
}

/* S_, S<n>_ and the std abbreviations; a trailing template-args list
 * makes a new candidate */
static int substitution(struct dm *d, int *std_prefix)
{
	/* code, short form, the form a constructor's class takes, its name */
	static const char *const abbrev[][4] = {
		{"a", "std::allocator", "std::allocator", "allocator"},
		{"b", "std::basic_string", "std::basic_string", "basic_string"},
		{"s", "std::string", "std::basic_string<char, std::char_traits<char>, std::allocator<char> >",
		 "basic_string"},
		{"i", "std::istream", "std::basic_istream<char, std::char_traits<char> >", "basic_istream"},
		{"o", "std::ostream", "std::basic_ostream<char, std::char_traits<char> >", "basic_ostream"},
		{"d", "std::iostream", "std::basic_iostream<char, std::char_traits<char> >", "basic_iostream"},
	};
	d->p++;                                      /* S */
	*std_prefix = 0;
	d->last_sub_fn = NOFN;
	if (*d->p == 't') {
		d->p++;
		puts_(d, "std::");
		*std_prefix = 1;
		return 0;
	}
	for (size_t k = 0; k < sizeof abbrev / sizeof abbrev[0]; k++)
		if (*d->p == abbrev[k][0][0]) {
			d->p++;
			/* as gdb: the short form, but for a constructor or destructor */
			puts_(d, abbrev[k][*d->p == 'C' || *d->p == 'D' ? 2 : 1]);
			d->last_source = abbrev[k][3];
			d->last_source_len = strlen(d->last_source);
			return 0;
		}
	int idx;
	if (seq_id(d, &idx) || idx >= d->nsubs)
		return -1;
	put(d, d->subchars + d->sub_off[idx], d->sub_len[idx]);
	class_from_text(d, d->subchars + d->sub_off[idx], d->sub_len[idx]);
	d->last_sub_fn = d->sub_fn[idx] ? (size_t)d->sub_fn[idx] - 1 : NOFN;
	d->last_sub_wrapped = d->sub_wrapped[idx];
	return 0;
}

/* N [K] [V] [r] [R|O] <prefix components> E; is_type: the whole name is a
 * candidate too. *cv gets the method's const/volatile. */
static int nested(struct dm *d, int is_type, const char **cv, int keep_targs, int *rust)
{
	d->p++;                                      /* N */
	*cv = "";
	if (!is_type)
		d->refq = "";
	if (*d->p == 'r')
		d->p++;
	if (*d->p == 'V' || *d->p == 'K') {
		*cv = d->p[0] == 'K' && d->p[1] == 'V' ? " const volatile" : *d->p == 'K' ? " const" : " volatile";
		d->p += (d->p[0] == 'K' && d->p[1] == 'V') ? 2 : 1;
	}
	if (*d->p == 'R' || *d->p == 'O')
		d->refq = *d->p++ == 'R' ? " &" : " &&";    /* a type's nested name has none */
	size_t from = d->len;
	int first = 1;
	while (*d->p != 'E') {
		if (!*d->p || d->bad)
			return -1;
		int substituted = 0;
		if (!is_type)
			d->template_name = *d->p == 'I';   /* so far: the last component decides */
		if (*d->p == 'I') {
			if (first || template_args(d, keep_targs))
				return -1;
		} else if (*d->p == 'S' && first) {
			int std_prefix;
			if (substitution(d, &std_prefix))
				return -1;
			if (std_prefix)
				continue;          /* "std::" is no component: no candidate, no "::" */
			substituted = 1;           /* already a candidate */
		} else {
			if (!first)
				put(d, "::", 2);
			if (*rust) {
				size_t at = d->len, n;
				if (number(d, &n) || strnlen(d->p, n) < n)
					return -1;
				if (d->p[n] == 'E' && is_rust_hash(d->p, n)) {
					d->len = at - 2;   /* the hash: no part of the name */
					d->p += n;
					break;
				}
				put_rust_ident(d, d->p, n);
				d->p += n;
			} else if (unqualified(d)) {
				return -1;
			}
		}
		first = 0;
		if (!substituted && (*d->p != 'E' || is_type))
			candidate(d, from);
	}
	d->p++;
	return d->len > from ? 0 : -1;
}

static int builtin(struct dm *d)
{
	static const char *const names[26] = {
		['a' - 'a'] = "signed char", ['b' - 'a'] = "bool", ['c' - 'a'] = "char", ['d' - 'a'] = "double",
		['e' - 'a'] = "long double", ['f' - 'a'] = "float", ['g' - 'a'] = "__float128",
		['h' - 'a'] = "unsigned char", ['i' - 'a'] = "int", ['j' - 'a'] = "unsigned int",
		['l' - 'a'] = "long", ['m' - 'a'] = "unsigned long", ['n' - 'a'] = "__int128",
		['o' - 'a'] = "unsigned __int128", ['s' - 'a'] = "short", ['t' - 'a'] = "unsigned short",
		['v' - 'a'] = "void", ['w' - 'a'] = "wchar_t", ['x' - 'a'] = "long long",
		['y' - 'a'] = "unsigned long long", ['z' - 'a'] = "...",
	};
	char c = *d->p;
	if (c >= 'a' && c <= 'z' && names[c - 'a']) {
		d->p++;
		puts_(d, names[c - 'a']);
		return 0;
	}
	if (c == 'D') {
		static const char *const dn[][2] = {
			{"n", "decltype(nullptr)"}, {"i", "char32_t"}, {"s", "char16_t"}, {"u", "char8_t"},
			{"a", "auto"},
		};
		for (size_t k = 0; k < sizeof dn / sizeof dn[0]; k++)
			if (d->p[1] == dn[k][0][0]) {
				d->p += 2;
				puts_(d, dn[k][1]);
				return 0;
			}
	}
	return 1;                                    /* not a builtin */
}

static int type(struct dm *d)
{
	if (++d->depth > DM_DEPTH) {
		d->depth--;
		return -1;
	}
	int r = -1;
	size_t from = d->len, fn = NOFN;
	int wrapped = 0;
	char c = *d->p;
	const char *suffix = NULL;
	if (c == 'P' || c == 'R' || c == 'O' || c == 'K' || c == 'V' || c == 'r') {
		static const char *const text[] = {"*", "&", "&&", " const", " volatile", " restrict"};
		suffix = text[c == 'P' ? 0 : c == 'R' ? 1 : c == 'O' ? 2 : c == 'K' ? 3 : c == 'V' ? 4 : 5];
		d->p++;
		int inner = type(d);
		if (inner) {
			r = -1;
		} else if (d->fn_at != NOFN) {
			/* a pointer or reference to a function: "void (*)(int)" */
			fn = d->fn_at;
			if (!d->fn_wrapped && (c == 'K' || c == 'V' || c == 'r')) {
				r = -1;                  /* a cv-qualified function type: not read here */
			} else if (!d->fn_wrapped) {
				insert(d, fn, "()");
				fn++;
				insert(d, fn, suffix);
				fn += strlen(suffix);
				wrapped = 1;
				r = 0;
			} else {
				insert(d, fn, suffix);
				fn += strlen(suffix);
				wrapped = 1;
				r = 0;
			}
		} else {
			int ref = c == 'R' || c == 'O';
			size_t n = d->len - from;
			/* references collapse (T = X&, then T&& is X&) */
			if (ref && n >= 2 && d->out[d->len - 1] == '&' && d->out[d->len - 2] == '&')
				d->len -= c == 'R';
			else if (!(ref && n >= 1 && d->out[d->len - 1] == '&'))
				puts_(d, suffix);
			r = d->bad ? -1 : 0;
		}
	} else if (c == 'F') {
		/* a function type: F [Y] <return type> <parameters> E, "void (int)" */
		d->p++;
		if (*d->p == 'Y')
			d->p++;                          /* extern "C": not printed, as c++filt */
		r = type(d);
		if (!r && d->fn_at != NOFN)
			r = -1;                          /* returning a function pointer: not read here */
		if (!r) {
			put(d, " ", 1);
			fn = d->len;
			put(d, "(", 1);
			if (d->p[0] == 'v' && d->p[1] == 'E')
				d->p++;
			for (int n = 0; !r && *d->p != 'E'; n++) {
				if (!*d->p || ((*d->p == 'R' || *d->p == 'O') && d->p[1] == 'E')) {
					r = -1;                  /* the end, or a ref-qualified function type */
					break;
				}
				if (n)
					put(d, ", ", 2);
				r = type(d);
			}
			if (!r) {
				d->p++;
				put(d, ")", 1);
			}
		}
	} else if (c == 'M') {
		/* a pointer to member: M <class> <member type>, "int Foo::*",
		 * "void (Foo::*)(int) const" */
		d->p++;
		char cls[256];
		size_t at = d->len;
		r = type(d);
		size_t cn = d->len - at;
		if (!r && cn + 4 < sizeof cls) {
			memcpy(cls, d->out + at, cn);
			d->len = at;
			const char *cv = "";
			if (d->p[0] == 'K' && d->p[1] == 'F')
				cv = " const", d->p++;
			else if (d->p[0] == 'V' && d->p[1] == 'F')
				cv = " volatile", d->p++;
			size_t mfrom = d->len;
			r = type(d);
			memcpy(cls + cn, "::*", 4);
			if (!r && d->fn_at != NOFN && !d->fn_wrapped) {
				insert(d, d->fn_at, ")");
				insert(d, d->fn_at, cls);
				insert(d, d->fn_at, "(");
				puts_(d, cv);
			} else if (!r && d->fn_at == NOFN && !*cv && d->len > mfrom) {
				put(d, " ", 1);
				puts_(d, cls);
			} else {
				r = -1;
			}
			r = r || d->bad ? -1 : 0;
		} else {
			r = -1;
		}
	} else if ((r = builtin(d)) <= 0) {
		d->fn_at = NOFN;
		d->depth--;
		return r;                            /* builtins are never candidates */
	} else if (c == 'N') {
		const char *cv;
		int rust = 0;
		r = nested(d, 1, &cv, 0, &rust);
		d->fn_at = NOFN;
		d->depth--;
		return r;                            /* its candidates are made inside */
	} else if (c >= '0' && c <= '9') {
		r = source_name(d);
		if (!r && *d->p == 'I') {
			candidate(d, from);
			r = template_args(d, 0);
		}
	} else if (c == 'S') {
		int std_prefix;
		r = substitution(d, &std_prefix);
		/* a substituted function type keeps its declarator's place */
		d->fn_at = !r && !std_prefix && d->last_sub_fn != NOFN && *d->p != 'I' ? from + d->last_sub_fn : NOFN;
		d->fn_wrapped = d->last_sub_wrapped;
		if (!r && std_prefix) {
			r = unqualified(d);            /* std::name: a new candidate */
			if (!r)
				candidate(d, from);
		}
		if (!r && *d->p == 'I') {
			r = template_args(d, 0);       /* the template-id is one */
			if (!r)
				candidate(d, from);
			d->fn_at = NOFN;
		}
		d->depth--;
		return r;
	} else if (c == 'T') {
		d->p++;
		int idx;
		r = seq_id(d, &idx) || idx >= d->ntargs ? -1 : 0;
		if (!r && d->expanding && d->targ_pack[idx] >= 0) {
			d->seen = d->targ_pack[idx];      /* one element of the pack, in Dp */
			int e = d->targ_first[idx] + d->elem;
			if (d->elem < d->seen)
				put(d, d->targchars + d->elem_off[e], d->elem_len[e]);
		} else if (!r) {
			put(d, d->targchars + d->targ_off[idx], d->targ_len[idx]);
		}
	} else if (c == 'D' && d->p[1] == 'p' && !d->expanding) {
		/* a pack expansion: the pattern once per element, ", " between */
		d->p += 2;
		const char *pattern = d->p;
		d->expanding = 1;
		d->elem = 0;
		d->seen = -1;
		r = type(d);
		for (int e = 1; !r && e < d->seen; e++) {
			d->p = pattern;
			d->elem = e;
			put(d, ", ", 2);
			d->no_cand++;
			r = type(d);
			d->no_cand--;
		}
		if (!r && d->seen == 0)
			d->len = from;                   /* an empty pack prints nothing */
		r = r || d->seen < 0 ? -1 : 0;       /* a pattern with no pack in it */
		d->expanding = 0;
	}
	if (!r)
		candidate_fn(d, from, fn, wrapped);
	d->fn_at = fn;
	d->fn_wrapped = wrapped;
	d->depth--;
	return r;
}

static void put_num(struct dm *d, size_t v)
{
	char b[24];
	int i = 24;
	do
		b[--i] = (char)('0' + v % 10);
	while ((v /= 10) && i > 0);
	put(d, b + i, (size_t)(24 - i));
}

/* _ <digit> or __ <number> _ after a local entity: not printed (as c++filt) */
static void discriminator(struct dm *d)
{
	if (d->p[0] != '_')
		return;
	if (d->p[1] >= '0' && d->p[1] <= '9') {
		d->p += 2;
	} else if (d->p[1] == '_') {
		const char *q = d->p + 2;
		while (*q >= '0' && *q <= '9')
			q++;
		if (*q == '_' && q > d->p + 2)
			d->p = q + 1;
	}
}

static int encoding(struct dm *d, int *rust, int show_ret);

/* Z <function encoding> E <entity> [<discriminator>]: a name local to a
 * function (a lambda, a local class, a local static), "f(int)::entity" */
static int local_name(struct dm *d, int *template_fn, const char **cv)
{
	d->p++;                                      /* Z */
	int no_rust = 0;
	if (encoding(d, &no_rust, 0) || *d->p++ != 'E')      /* as c++filt: no return type there */
		return -1;
	*template_fn = 0;
	d->ctor = 0;
	d->refq = "";
	d->template_name = 0;
	if (*d->p == 's') {                          /* a string literal's */
		d->p++;
		puts_(d, "::string literal");
		discriminator(d);
		return 0;
	}
	put(d, "::", 2);
	if (*d->p == 'N') {
		if (nested(d, 0, cv, 1, &no_rust))
			return -1;
		*template_fn = d->template_name;
	} else {
		size_t from = d->len;
		if (unqualified(d))
			return -1;
		if (*d->p == 'I') {
			candidate(d, from);
			*template_fn = 1;
			if (template_args(d, 1))
				return -1;
		}
	}
	discriminator(d);
	return 0;
}

/* <encoding>: a name and, for a function, its parameters, to the end of
 * the symbol or to the E that closes a local name; printed from d->len
 * (a template's return type first, if show_ret) */
static int encoding(struct dm *d, int *rust, int show_ret)
{
	if (++d->depth > DM_DEPTH)
		return -1;
	size_t start = d->len;
	const char *cv = "";
	int template_fn = 0;
	if (*d->p == 'N') {
		if (nested(d, 0, &cv, 1, rust))
			return -1;
		template_fn = !*rust && d->template_name;
	} else if (*d->p == 'S' && d->p[1] == 't') {
		d->p += 2;
		puts_(d, "std::");
		if (unqualified(d))
			return -1;
		if (*d->p == 'I') {
			candidate(d, start);         /* an unscoped template name is one */
			template_fn = 1;
			if (template_args(d, 1))
				return -1;
		}
	} else if (*d->p == 'Z') {
		if (local_name(d, &template_fn, &cv))
			return -1;
	} else {
		if (unqualified(d))
			return -1;
		if (*d->p == 'I') {
			candidate(d, start);
			template_fn = 1;
			if (template_args(d, 1))
				return -1;
		}
	}
	const char *refq = d->refq;
	int ctor = d->ctor;
	if (!*rust && *d->p && *d->p != 'E' && *d->p != '.') {
		if (template_fn && !ctor) {          /* a template's return type: printed first */
			size_t at = d->len;
			if (type(d))
				return -1;
			size_t rn = d->len - at, nn = at - start;
			if (!show_ret)
				rn = 0, d->len = at;
			/* "name" "ret" -> "ret name": through the unused tail */
			if (d->len + rn + 1 >= DM_OUT)
				return -1;
			if (rn) {
				memcpy(d->out + DM_OUT - rn, d->out + at, rn);
				memmove(d->out + start + rn + 1, d->out + start, nn);
				memcpy(d->out + start, d->out + DM_OUT - rn, rn);
				d->out[start + rn] = ' ';
				d->len = start + rn + 1 + nn;
			}
		}
		put(d, "(", 1);
		if (d->p[0] == 'v' && (!d->p[1] || d->p[1] == '.' || d->p[1] == 'E')) {
			d->p++;
		} else {
			for (int n = 0; *d->p && *d->p != 'E';) {
				if (*d->p == '.')
					break;               /* a clone suffix: .constprop.0, .cold */
				size_t before = d->len;
				if (n)
					put(d, ", ", 2);
				size_t at = d->len;
				if (type(d))
					return -1;
				if (d->len == at)
					d->len = before;     /* an empty pack: no parameter */
				else
					n++;
			}
		}
		put(d, ")", 1);
		puts_(d, cv);
		if (refq)
			puts_(d, refq);
	}
	d->depth--;
	return 0;
}

/* Called under the report lock (report.c), so one state serves: 21 KiB is
 * too much for a signal handler's stack. */
int uf_demangle(const char *mangled, char *out, size_t outlen)
{
	static struct dm state;
	struct dm *d = &state;
	if (mangled && mangled[0] == '_' && mangled[1] == 'R')
		return uf_demangle_rust_v0(mangled, out, outlen);
	memset(d, 0, sizeof *d);
	d->fn_at = d->last_sub_fn = NOFN;
	if (!mangled || mangled[0] != '_' || mangled[1] != 'Z' || outlen < 2)
		return -1;
	d->p = mangled + 2;
	int rust = 0;
	if (*d->p == 'N') {
		/* Rust legacy: a nested name whose last component is the hash,
		 * then the end or a suffix of LLVM's (.llvm.NNN) */
		for (const char *h = strstr(d->p, "17h"); h && !rust; h = strstr(h + 1, "17h"))
			rust = strnlen(h + 2, 18) == 18 && is_rust_hash(h + 2, 17) && h[19] == 'E' &&
			       (h[20] == 0 || h[20] == '.');
	}
	if (encoding(d, &rust, 1))
		return -1;
	if (rust && *d->p == '.')
		d->p += strlen(d->p);                /* as rustc-demangle: no LLVM suffix */
	if (*d->p == '.') {                          /* GCC's clones keep their suffix */
		puts_(d, " [clone ");
		puts_(d, d->p);
		put(d, "]", 1);
		d->p += strlen(d->p);
	}
	if (d->bad || *d->p)
		return -1;
	if (d->len < outlen) {
		memcpy(out, d->out, d->len);
		out[d->len] = 0;
	} else {                                     /* too long: cut, and say so */
		size_t n = outlen > 4 ? outlen - 4 : 0;
		memcpy(out, d->out, n);
		memcpy(out + n, "...", outlen - 1 - n);
		out[outlen - 1] = 0;
	}
	return 0;
}

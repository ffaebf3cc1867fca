/*
 * The vectors tool (format in klvectors.h): read a JSON line, check it
 * strictly, run one instruction through a kl_backend, answer one JSON line.
 *
 * The JSON reader takes only what the format needs - one flat object whose
 * values are strings, numbers or arrays of strings - and rejects everything
 * else with a message, so a typo in a hand-written vector is an error line
 * rather than a silently different test.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "klvectors.h"

#define MAX_LINE (64 * 1024)
#define MAX_FIELDS 16
#define MAX_ITEMS 8
#define MAX_KEY 32
#define ERR_SIZE 200

/* ---- a strict reader for one flat JSON object ---------------------------- */

enum jtype { J_STRING, J_NUMBER, J_ARRAY };

struct jfield {
	char key[MAX_KEY];
	enum jtype type;
	const char *text; /* J_STRING: decoded; J_NUMBER: the raw token */
	const char *items[MAX_ITEMS]; /* J_ARRAY: decoded strings */
	size_t nitems;
};

struct jobject {
	struct jfield fields[MAX_FIELDS];
	size_t n;
};

struct reader {
	const char *p;
	char *arena; /* decoded strings; never longer than the line */
	char err[ERR_SIZE];
};

static int fail(struct reader *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int fail(struct reader *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->err, sizeof(r->err), fmt, ap);
	va_end(ap);
	return -1;
}

static void skip_ws(struct reader *r)
{
	while (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')
		r->p++;
}

static int hex_digit(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* A JSON string at r->p, decoded into the arena (UTF-8, no NUL). */
static int read_string(struct reader *r, const char **out)
{
	char *dst = r->arena;

	if (*r->p != '"')
		return fail(r, "expected a string");
	r->p++;
	*out = dst;
	for (;;) {
		unsigned char c = (unsigned char)*r->p++;

		if (c == '"')
			break;
		if (c == '\0')
			return fail(r, "unterminated string");
		if (c < 0x20)
			return fail(r, "control character in a string");
		if (c != '\\') {
			*dst++ = (char)c;
			continue;
		}
		c = (unsigned char)*r->p++;
		switch (c) {
		case '"': case '\\': case '/':
			*dst++ = (char)c;
			break;
		case 'b': *dst++ = '\b'; break;
		case 'f': *dst++ = '\f'; break;
		case 'n': *dst++ = '\n'; break;
		case 'r': *dst++ = '\r'; break;
		case 't': *dst++ = '\t'; break;
		case 'u': {
			unsigned cp = 0;

			for (int i = 0; i < 4; i++) {
				int d = hex_digit(*r->p);

				if (d < 0)
					return fail(r, "bad \\u escape");
				cp = cp << 4 | (unsigned)d;
				r->p++;
			}
			if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF))
				return fail(r, "\\u%04x is not supported", cp);
			/* UTF-8 of a BMP code point; at most 3 bytes for the
			 * 6 we consumed, so the arena cannot overflow. */
			if (cp < 0x80) {
				*dst++ = (char)cp;
			} else if (cp < 0x800) {
				*dst++ = (char)(0xC0 | cp >> 6);
				*dst++ = (char)(0x80 | (cp & 0x3F));
			} else {
				*dst++ = (char)(0xE0 | cp >> 12);
				*dst++ = (char)(0x80 | ((cp >> 6) & 0x3F));
				*dst++ = (char)(0x80 | (cp & 0x3F));
			}
			break;
		}
		default:
			return fail(r, "bad escape \\%c", c ? c : '0');
		}
	}
	*dst++ = '\0';
	r->arena = dst;
	return 0;
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* A JSON number, kept as its raw text (the caller decides what it means). */
static int read_number(struct reader *r, const char **out)
{
	const char *start = r->p;
	size_t len;

	if (*r->p == '-')
		r->p++;
	if (*r->p == '0')
		r->p++;
	else if (is_digit(*r->p))
		while (is_digit(*r->p))
			r->p++;
	else
		return fail(r, "bad number");
	if (*r->p == '.') {
		r->p++;
		if (!is_digit(*r->p))
			return fail(r, "bad number");
		while (is_digit(*r->p))
			r->p++;
	}
	if (*r->p == 'e' || *r->p == 'E') {
		r->p++;
		if (*r->p == '+' || *r->p == '-')
			r->p++;
		if (!is_digit(*r->p))
			return fail(r, "bad number");
		while (is_digit(*r->p))
			r->p++;
	}
	len = (size_t)(r->p - start);
	memcpy(r->arena, start, len);
	r->arena[len] = '\0';
	*out = r->arena;
	r->arena += len + 1;
	return 0;
}

static int read_value(struct reader *r, struct jfield *f)
{
	if (*r->p == '"') {
		f->type = J_STRING;
		return read_string(r, &f->text);
	}
	if (*r->p == '-' || is_digit(*r->p)) {
		f->type = J_NUMBER;
		return read_number(r, &f->text);
	}
	if (*r->p != '[')
		return fail(r, "key \"%s\": only strings, numbers and arrays of "
			       "strings are accepted", f->key);
	f->type = J_ARRAY;
	f->nitems = 0;
	r->p++;
	skip_ws(r);
	if (*r->p == ']') {
		r->p++;
		return 0;
	}
	for (;;) {
		if (f->nitems == MAX_ITEMS)
			return fail(r, "key \"%s\": more than %d items", f->key,
				    MAX_ITEMS);
		if (*r->p != '"')
			return fail(r, "key \"%s\": arrays may hold only strings",
				    f->key);
		if (read_string(r, &f->items[f->nitems++]) < 0)
			return -1;
		skip_ws(r);
		if (*r->p == ']') {
			r->p++;
			return 0;
		}
		if (*r->p != ',')
			return fail(r, "key \"%s\": expected ',' or ']'", f->key);
		r->p++;
		skip_ws(r);
	}
}

static const struct jfield *find(const struct jobject *o, const char *key)
{
	for (size_t i = 0; i < o->n; i++)
		if (strcmp(o->fields[i].key, key) == 0)
			return &o->fields[i];
	return NULL;
}

static int read_object(struct reader *r, struct jobject *o)
{
	o->n = 0;
	skip_ws(r);
	if (*r->p != '{')
		return fail(r, "expected a JSON object");
	r->p++;
	skip_ws(r);
	if (*r->p == '}') {
		r->p++;
	} else {
		for (;;) {
			struct jfield *f = &o->fields[o->n];
			const char *key;

			if (o->n == MAX_FIELDS)
				return fail(r, "more than %d keys", MAX_FIELDS);
			if (*r->p != '"')
				return fail(r, "expected a string key");
			if (read_string(r, &key) < 0)
				return -1;
			if (strlen(key) >= MAX_KEY)
				return fail(r, "key too long");
			if (find(o, key))
				return fail(r, "duplicate key \"%s\"", key);
			strcpy(f->key, key);
			skip_ws(r);
			if (*r->p != ':')
				return fail(r, "expected ':' after \"%s\"", key);
			r->p++;
			skip_ws(r);
			if (read_value(r, f) < 0)
				return -1;
			o->n++;
			skip_ws(r);
			if (*r->p == '}') {
				r->p++;
				break;
			}
			if (*r->p != ',')
				return fail(r, "expected ',' or '}'");
			r->p++;
			skip_ws(r);
		}
	}
	skip_ws(r);
	if (*r->p != '\0')
		return fail(r, "trailing characters after the object");
	return 0;
}

/* ---- typed field access ------------------------------------------------ */

/* A non-negative integer no larger than max; absent is an error only when
 * required (then *v is left alone). */
static int get_uint(struct reader *r, const struct jobject *o, const char *key,
		    uint32_t max, int required, uint32_t *v)
{
	const struct jfield *f = find(o, key);
	uint64_t x = 0;

	if (!f)
		return required ? fail(r, "missing key \"%s\"", key) : 0;
	if (f->type != J_NUMBER)
		return fail(r, "key \"%s\" must be a number", key);
	for (const char *p = f->text; *p; p++) {
		if (!is_digit(*p))
			return fail(r, "key \"%s\" must be an integer 0..%u",
				    key, max);
		x = x * 10 + (uint64_t)(*p - '0');
		if (x > max)
			return fail(r, "key \"%s\" must be an integer 0..%u",
				    key, max);
	}
	*v = (uint32_t)x;
	return 0;
}

static int parse_hex(const char *s, uint8_t *out, size_t nbytes)
{
	if (strlen(s) != 2 * nbytes)
		return -1;
	for (size_t i = 0; i < nbytes; i++) {
		int hi = hex_digit(s[2 * i]), lo = hex_digit(s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

static int get_hex(struct reader *r, const struct jobject *o, const char *key,
		   uint8_t *out, size_t nbytes)
{
	const struct jfield *f = find(o, key);

	if (!f)
		return fail(r, "missing key \"%s\"", key);
	if (f->type != J_STRING || parse_hex(f->text, out, nbytes) < 0)
		return fail(r, "key \"%s\" must be %zu hex digits", key,
			    2 * nbytes);
	return 0;
}

/* Every key of the object must be "op", "id" or one of allowed. */
static int check_keys(struct reader *r, const struct jobject *o,
		      const char *op, const char *const *allowed)
{
	for (size_t i = 0; i < o->n; i++) {
		const char *key = o->fields[i].key;
		int ok = strcmp(key, "op") == 0 || strcmp(key, "id") == 0;

		for (const char *const *a = allowed; !ok && *a; a++)
			ok = strcmp(key, *a) == 0;
		if (!ok)
			return fail(r, "unknown key \"%s\" for op \"%s\"", key, op);
	}
	return 0;
}

/* ---- output ------------------------------------------------------------ */

static void put_json_string(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(out, "\\%c", c);
		else if (c < 0x20)
			fprintf(out, "\\u%04x", c);
		else
			fputc(c, out);
	}
	fputc('"', out);
}

static void put_hex(FILE *out, const uint8_t *p, size_t n)
{
	fputc('"', out);
	for (size_t i = 0; i < n; i++)
		fprintf(out, "%02x", p[i]);
	fputc('"', out);
}

/* ,"id":<as given> when the line had a usable id. */
static void put_id(FILE *out, const struct jobject *o)
{
	const struct jfield *id = find(o, "id");

	if (!id || id->type == J_ARRAY)
		return;
	fputs(",\"id\":", out);
	if (id->type == J_NUMBER)
		fputs(id->text, out); /* the raw token: echoed exactly */
	else
		put_json_string(out, id->text);
}

/* {"op":"x","id":.. - the caller continues with ,"key":value pairs. */
static void put_head(FILE *out, const char *op, const struct jobject *o)
{
	fputs("{\"op\":", out);
	put_json_string(out, op);
	put_id(out, o);
}

/* SIGILL is how Linux reports #UD and SIGSEGV #GP(0); anything else is
 * named as the signal. */
static void put_fault_name(FILE *out, int sig)
{
	switch (sig) {
	case SIGILL:
		fputs("\"UD\"", out);
		break;
	case SIGSEGV:
		fputs("\"GP\"", out);
		break;
	case SIGBUS:
		fputs("\"SIGBUS\"", out);
		break;
	case SIGFPE:
		fputs("\"SIGFPE\"", out);
		break;
	default:
		fprintf(out, "\"SIG%d\"", sig);
		break;
	}
}

/* Writes the head and the fault; returns 1 when the instruction faulted
 * (the answer is then complete). */
static int put_fault(FILE *out, const char *op, const struct jobject *o,
		     const struct kl_outcome *res)
{
	put_head(out, op, o);
	if (res->signal) {
		fputs(",\"fault\":", out);
		put_fault_name(out, res->signal);
		fputs("}\n", out);
		return 1;
	}
	fputs(",\"fault\":null", out);
	return 0;
}

/* ---- the ops ----------------------------------------------------------- */

struct session {
	const struct kl_backend *be;
	struct klemu_ctx *emu;
	FILE *out;
};

/* Registers as every instruction finds them: zero, with all arithmetic
 * flags set so that "cleared" is observable. */
static void fresh_regs(struct klemu_regs *regs)
{
	memset(regs, 0, sizeof(*regs));
	regs->rflags = 0x2 | KLEMU_ARITH_FLAGS;
}

static int op_cpu(struct session *s, struct reader *r, const struct jobject *o)
{
	static const char *const keys[] = {"kl", "cr4_kl", "aeskle", "cpl",
		"leaf19_eax", "leaf19_ebx", "leaf19_ecx", NULL};
	struct klemu_cpu cpu;
	uint32_t kl, cr4, aeskle, cpl;

	if (!s->emu)
		return fail(r, "op \"cpu\" shapes the emulated CPU; a native CPU "
			       "(silicon or a VMM) is what it is: choose its "
			       "CPUID when the guest is started");
	if (check_keys(r, o, "cpu", keys) < 0)
		return -1;
	cpu = s->emu->cpu;
	kl = (uint32_t)cpu.kl_present;
	cr4 = (uint32_t)cpu.cr4_kl;
	aeskle = (uint32_t)cpu.aeskle_enabled;
	cpl = (uint32_t)cpu.cpl;
	if (get_uint(r, o, "kl", 1, 0, &kl) < 0 ||
	    get_uint(r, o, "cr4_kl", 1, 0, &cr4) < 0 ||
	    get_uint(r, o, "aeskle", 1, 0, &aeskle) < 0 ||
	    get_uint(r, o, "cpl", 3, 0, &cpl) < 0 ||
	    get_uint(r, o, "leaf19_eax", UINT32_MAX, 0, &cpu.leaf19_eax) < 0 ||
	    get_uint(r, o, "leaf19_ebx", UINT32_MAX, 0, &cpu.leaf19_ebx) < 0 ||
	    get_uint(r, o, "leaf19_ecx", UINT32_MAX, 0, &cpu.leaf19_ecx) < 0)
		return -1;
	cpu.kl_present = (int)kl;
	cpu.cr4_kl = (int)cr4;
	cpu.aeskle_enabled = (int)aeskle;
	cpu.cpl = (int)cpl;
	s->emu->cpu = cpu;
	put_head(s->out, "cpu", o);
	fputs(",\"ok\":true}\n", s->out);
	return 0;
}

/* The native IWKey is loaded at ring 0: by the helper klhelper, which runs
 * LOADIWKEY (KeySource as given) on every CPU.  Same byte order as here. */
#define KLHELPER_IWKEY "/sys/kernel/debug/klhelper/iwkey"

static int native_setiwkey(struct reader *r, const struct klemu_iwkey *key)
{
	char line[160];
	size_t n = 0;
	FILE *f;
	int bad;

	for (int i = 0; i < 16; i++)
		n += (size_t)snprintf(line + n, sizeof(line) - n, "%02x", key->integrity[i]);
	for (int i = 0; i < 32; i++)
		n += (size_t)snprintf(line + n, sizeof(line) - n, "%02x", key->enc[i]);
	snprintf(line + n, sizeof(line) - n, "%s keysource=%d\n", key->nobackup ? " nobackup" : "",
		 key->keysource);
	f = fopen(KLHELPER_IWKEY, "w");
	if (!f)
		return fail(r, "op \"setiwkey\" on the native backend goes through the ring-0 "
			       "helper: %s: %s (insmod klhelper.ko, mount debugfs)",
			    KLHELPER_IWKEY, strerror(errno));
	bad = fputs(line, f) < 0;
	bad |= fclose(f) != 0;
	if (bad)
		return fail(r, "op \"setiwkey\": klhelper refused the key: %s", strerror(errno));
	return 0;
}

static int op_setiwkey(struct session *s, struct reader *r,
		       const struct jobject *o)
{
	static const char *const keys[] = {"integrity", "enc", "nobackup",
		"keysource", NULL};
	struct klemu_iwkey key;
	uint32_t nobackup = 0, keysource = 0;

	memset(&key, 0, sizeof(key));
	if (check_keys(r, o, "setiwkey", keys) < 0 ||
	    get_hex(r, o, "integrity", key.integrity, 16) < 0 ||
	    get_hex(r, o, "enc", key.enc, 32) < 0 ||
	    get_uint(r, o, "nobackup", 1, 0, &nobackup) < 0 ||
	    get_uint(r, o, "keysource", 15, 0, &keysource) < 0)
		return -1;
	key.nobackup = (int)nobackup;
	key.keysource = (int)keysource;
	if (s->emu)
		klemu_set_iwkey(s->emu, &key);
	else if (native_setiwkey(r, &key) < 0)
		return -1;
	put_head(s->out, "setiwkey", o);
	fputs(",\"ok\":true}\n", s->out);
	return 0;
}

static int op_loadiwkey(struct session *s, struct reader *r,
			const struct jobject *o)
{
	static const char *const keys[] = {"integrity", "enc", "eax", NULL};
	struct klemu_regs regs;
	struct kl_outcome res;
	uint8_t enc[32];
	uint32_t dest = 0;

	fresh_regs(&regs);
	if (check_keys(r, o, "loadiwkey", keys) < 0 ||
	    get_hex(r, o, "integrity", regs.xmm[0], 16) < 0 ||
	    get_hex(r, o, "enc", enc, 32) < 0 ||
	    get_uint(r, o, "eax", UINT32_MAX, 1, &regs.eax) < 0)
		return -1;
	memcpy(regs.xmm[KL_LOADIWKEY_LO_XMM], enc, 16);
	memcpy(regs.xmm[KL_LOADIWKEY_HI_XMM], enc + 16, 16);
	res = s->be->exec(s->be->self, KLEMU_LOADIWKEY, &regs, 0, &dest, NULL);
	if (put_fault(s->out, "loadiwkey", o, &res))
		return 0;
	fprintf(s->out, ",\"zf\":%d}\n", res.zf);
	return 0;
}

static int op_encodekey(struct session *s, struct reader *r,
			const struct jobject *o, enum klemu_op op)
{
	static const char *const keys[] = {"src", "key", NULL};
	const char *name = klemu_op_name(op);
	int key_blocks = op == KLEMU_ENCODEKEY256 ? 2 : 1;
	struct klemu_regs regs;
	struct kl_outcome res;
	uint8_t key[32], handle[KLEMU_HANDLE256_SIZE];
	uint32_t src = 0, dest = 0;

	fresh_regs(&regs);
	if (check_keys(r, o, name, keys) < 0 ||
	    get_uint(r, o, "src", UINT32_MAX, 1, &src) < 0 ||
	    get_hex(r, o, "key", key, (size_t)(16 * key_blocks)) < 0)
		return -1;
	for (int i = 0; i < key_blocks; i++)
		memcpy(regs.xmm[i], key + 16 * i, 16);
	res = s->be->exec(s->be->self, op, &regs, src, &dest, NULL);
	if (put_fault(s->out, name, o, &res))
		return 0;
	for (int i = 0; i < 2 + key_blocks; i++)
		memcpy(handle + 16 * i, regs.xmm[i], 16);
	fputs(",\"handle\":", s->out);
	put_hex(s->out, handle, (size_t)(16 * (2 + key_blocks)));
	fprintf(s->out, ",\"dest\":%u,\"zf\":%d,\"rflags\":%llu}\n", dest,
		res.zf, (unsigned long long)res.rflags);
	return 0;
}

static int op_aeskl(struct session *s, struct reader *r,
		    const struct jobject *o, enum klemu_op op)
{
	static const char *const keys[] = {"handle", "data", NULL};
	const char *name = klemu_op_name(op);
	int wide = op >= KLEMU_AESENCWIDE128KL;
	int is256 = op == KLEMU_AESENC256KL || op == KLEMU_AESDEC256KL ||
		    op == KLEMU_AESENCWIDE256KL || op == KLEMU_AESDECWIDE256KL;
	size_t handle_size = is256 ? KLEMU_HANDLE256_SIZE : KLEMU_HANDLE128_SIZE;
	size_t nblocks = wide ? 8 : 1;
	const struct jfield *data = find(o, "data");
	uint8_t handle[KLEMU_HANDLE256_SIZE];
	struct klemu_regs regs;
	struct kl_outcome res;

	fresh_regs(&regs);
	if (check_keys(r, o, name, keys) < 0 ||
	    get_hex(r, o, "handle", handle, handle_size) < 0)
		return -1;
	if (!data)
		return fail(r, "missing key \"data\"");
	if (!wide) {
		if (get_hex(r, o, "data", regs.xmm[KL_DATA_XMM], 16) < 0)
			return -1;
	} else {
		if (data->type != J_ARRAY || data->nitems != 8)
			return fail(r, "key \"data\" must be an array of 8 "
				       "blocks for %s", name);
		for (size_t i = 0; i < 8; i++)
			if (parse_hex(data->items[i], regs.xmm[i], 16) < 0)
				return fail(r, "data[%zu] must be 32 hex digits",
					    i);
	}
	res = s->be->exec(s->be->self, op, &regs, 0, NULL, handle);
	if (put_fault(s->out, name, o, &res))
		return 0;
	fprintf(s->out, ",\"zf\":%d,\"out\":", res.zf);
	if (!wide) {
		put_hex(s->out, regs.xmm[KL_DATA_XMM], 16);
	} else {
		fputc('[', s->out);
		for (size_t i = 0; i < nblocks; i++) {
			if (i)
				fputc(',', s->out);
			put_hex(s->out, regs.xmm[i], 16);
		}
		fputc(']', s->out);
	}
	fputs("}\n", s->out);
	return 0;
}

/* One input line; returns 0 when answered, -1 when r->err says why not. */
static int handle_line(struct session *s, struct reader *r,
		       struct jobject *o, const char *line)
{
	const struct jfield *op, *id;
	int known;

	r->p = line;
	if (read_object(r, o) < 0)
		return -1;
	id = find(o, "id");
	if (id && id->type == J_ARRAY)
		return fail(r, "\"id\" must be a string or a number");
	op = find(o, "op");
	if (!op || op->type != J_STRING)
		return fail(r, "missing string key \"op\"");
	if (strcmp(op->text, "cpu") == 0)
		return op_cpu(s, r, o);
	if (strcmp(op->text, "setiwkey") == 0)
		return op_setiwkey(s, r, o);
	known = klemu_op_from_name(op->text);
	switch (known) {
	case -1:
		return fail(r, "unknown op \"%s\"", op->text);
	case KLEMU_LOADIWKEY:
		return op_loadiwkey(s, r, o);
	case KLEMU_ENCODEKEY128:
	case KLEMU_ENCODEKEY256:
		return op_encodekey(s, r, o, (enum klemu_op)known);
	default:
		return op_aeskl(s, r, o, (enum klemu_op)known);
	}
}

static void put_error(FILE *out, unsigned long lineno, const struct jobject *o,
		      const char *msg)
{
	fprintf(out, "{\"line\":%lu", lineno);
	put_id(out, o);
	fputs(",\"error\":", out);
	put_json_string(out, msg);
	fputs("}\n", out);
}

int kl_vectors_run(FILE *in, FILE *out, const struct kl_backend *be,
		   struct klemu_ctx *emu)
{
	struct session s = {be, emu, out};
	struct jobject *obj = malloc(sizeof(*obj));
	char *line = NULL, *arena = NULL;
	size_t cap = 0, arena_cap = 0;
	unsigned long lineno = 0;
	int any_error = 0;
	ssize_t len;

	if (!obj)
		return -1;
	while ((len = getline(&line, &cap, in)) >= 0) {
		struct reader r;
		int rc;

		lineno++;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		obj->n = 0;
		r.err[0] = '\0';
		if ((size_t)len > MAX_LINE) {
			rc = fail(&r, "line longer than %d bytes", MAX_LINE);
		} else if (strlen(line) != (size_t)len) {
			rc = fail(&r, "NUL byte in the line");
		} else {
			if (arena_cap < (size_t)len + 1) {
				free(arena);
				arena_cap = (size_t)len + 1;
				arena = malloc(arena_cap);
				if (!arena)
					break;
			}
			r.arena = arena;
			rc = handle_line(&s, &r, obj, line);
		}
		if (rc < 0) {
			put_error(out, lineno, obj, r.err);
			any_error = 1;
		}
		fflush(out);
	}
	free(line);
	free(arena);
	free(obj);
	if (ferror(in) || ferror(out) || (arena_cap && !arena))
		return -1;
	return any_error;
}

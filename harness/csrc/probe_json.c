#include "probe_json.h"

#include <math.h>

void json_init(struct json_writer *w, FILE *out)
{
	w->out = out;
	w->depth = 0;
	w->need_comma[0] = 0;
	w->after_key = 0;
}

/* Emit the separator a value needs at the current position. */
static void before_value(struct json_writer *w)
{
	if (w->after_key) {
		w->after_key = 0;
		return;
	}
	if (w->need_comma[w->depth])
		fputc(',', w->out);
	w->need_comma[w->depth] = 1;
}

static void open_(struct json_writer *w, char c)
{
	before_value(w);
	fputc(c, w->out);
	if (w->depth + 1 < JSON_MAX_DEPTH)
		w->depth++;
	w->need_comma[w->depth] = 0;
}

static void close_(struct json_writer *w, char c)
{
	fputc(c, w->out);
	if (w->depth > 0)
		w->depth--;
	if (w->depth == 0)
		fputc('\n', w->out);
}

void json_begin_object(struct json_writer *w) { open_(w, '{'); }
void json_end_object(struct json_writer *w) { close_(w, '}'); }
void json_begin_array(struct json_writer *w) { open_(w, '['); }
void json_end_array(struct json_writer *w) { close_(w, ']'); }

static void write_escaped(FILE *out, const char *s)
{
	fputc('"', out);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(out, "\\%c", *p);
		else if (*p < 0x20 || *p >= 0x7f)
			fprintf(out, "\\u%04x", *p);
		else
			fputc(*p, out);
	}
	fputc('"', out);
}

void json_key(struct json_writer *w, const char *key)
{
	before_value(w);
	write_escaped(w->out, key);
	fputc(':', w->out);
	w->after_key = 1;
}

void json_str(struct json_writer *w, const char *s)
{
	before_value(w);
	if (s)
		write_escaped(w->out, s);
	else
		fputs("null", w->out);
}

void json_int(struct json_writer *w, long long v)
{
	before_value(w);
	fprintf(w->out, "%lld", v);
}

void json_uint(struct json_writer *w, unsigned long long v)
{
	before_value(w);
	fprintf(w->out, "%llu", v);
}

void json_double(struct json_writer *w, double v)
{
	before_value(w);
	if (isfinite(v))
		fprintf(w->out, "%.6g", v);
	else
		fputs("null", w->out);
}

void json_bool(struct json_writer *w, int v)
{
	before_value(w);
	fputs(v ? "true" : "false", w->out);
}

void json_null(struct json_writer *w)
{
	before_value(w);
	fputs("null", w->out);
}

void json_hex(struct json_writer *w, const void *bytes, size_t n)
{
	const unsigned char *b = bytes;
	before_value(w);
	fputc('"', w->out);
	for (size_t i = 0; i < n; i++)
		fprintf(w->out, "%02x", b[i]);
	fputc('"', w->out);
}

void json_kstr(struct json_writer *w, const char *k, const char *s) { json_key(w, k); json_str(w, s); }
void json_kint(struct json_writer *w, const char *k, long long v) { json_key(w, k); json_int(w, v); }
void json_kuint(struct json_writer *w, const char *k, unsigned long long v) { json_key(w, k); json_uint(w, v); }
void json_kbool(struct json_writer *w, const char *k, int v) { json_key(w, k); json_bool(w, v); }
void json_khex(struct json_writer *w, const char *k, const void *b, size_t n) { json_key(w, k); json_hex(w, b, n); }
void json_kdouble(struct json_writer *w, const char *k, double v) { json_key(w, k); json_double(w, v); }

/*
 * A tiny streaming JSON writer for the probe's one output document.
 * Why not a library: the probe is a static binary that must run in a
 * busybox guest; this is 100 lines and always produces valid JSON (commas
 * are tracked per nesting level, strings are escaped).
 */
#ifndef PROBE_JSON_H
#define PROBE_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define JSON_MAX_DEPTH 16

struct json_writer {
	FILE *out;
	int depth;
	int need_comma[JSON_MAX_DEPTH];
	int after_key;
};

void json_init(struct json_writer *w, FILE *out);
void json_begin_object(struct json_writer *w);
void json_end_object(struct json_writer *w);
void json_begin_array(struct json_writer *w);
void json_end_array(struct json_writer *w);
void json_key(struct json_writer *w, const char *key);
void json_str(struct json_writer *w, const char *s);
void json_int(struct json_writer *w, long long v);
void json_uint(struct json_writer *w, unsigned long long v);
void json_double(struct json_writer *w, double v);
void json_bool(struct json_writer *w, int v);
void json_null(struct json_writer *w);
void json_hex(struct json_writer *w, const void *bytes, size_t n);

/* key + value shorthands */
void json_kstr(struct json_writer *w, const char *k, const char *s);
void json_kint(struct json_writer *w, const char *k, long long v);
void json_kuint(struct json_writer *w, const char *k, unsigned long long v);
void json_kbool(struct json_writer *w, const char *k, int v);
void json_khex(struct json_writer *w, const char *k, const void *b, size_t n);
void json_kdouble(struct json_writer *w, const char *k, double v);

#endif

/*
 * diff.c - normalization and first-divergence search for replay (diff.h).
 * Owns nothing beyond the objects it returns.  Pure; any thread.
 */
#include "diff.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/alloc.h"

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && strcmp(s + n - m, suffix) == 0;
}

bool kh_diff_volatile_key(const char *key)
{
	static const char *const keys[] = { "ts", "mono_ns", "seq", "node", "port", "host",
					    "address", "pid", "tid" };
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (strcmp(key, keys[i]) == 0)
			return true;
	}
	return ends_with(key, "_ns") || ends_with(key, "_ms") || ends_with(key, "-ms") ||
	       ends_with(key, "-ns") || ends_with(key, "-bytes");
}

static json_t *norm_string(const char *s, const char *data_dir)
{
	size_t dl = data_dir ? strlen(data_dir) : 0;
	const char *hit = dl ? strstr(s, data_dir) : NULL;
	if (hit == NULL)
		return json_string(s);
	size_t cap = strlen(s) + 16;
	char *buf = keel_malloc(cap * 2);
	if (buf == NULL)
		return NULL;
	size_t o = 0;
	while (hit) {
		size_t pre = (size_t)(hit - s);
		if (o + pre + 7 >= cap * 2)
			break;
		memcpy(buf + o, s, pre);
		o += pre;
		memcpy(buf + o, "<data>", 6);
		o += 6;
		s = hit + dl;
		hit = strstr(s, data_dir);
	}
	snprintf(buf + o, cap * 2 - o, "%s", s);
	json_t *r = json_string(buf);
	keel_free(buf);
	return r;
}

json_t *kh_diff_normalize(json_t *ev, const char *data_dir)
{
	if (json_is_object(ev)) {
		json_t *o = json_object();
		const char *k;
		json_t *v;
		if (o == NULL)
			return NULL;
		json_object_foreach(ev, k, v) {
			if (kh_diff_volatile_key(k))
				continue;
			json_t *n = kh_diff_normalize(v, data_dir);
			if (n == NULL || json_object_set_new(o, k, n) != 0) {
				json_decref(o);
				return NULL;
			}
		}
		return o;
	}
	if (json_is_array(ev)) {
		json_t *a = json_array();
		size_t i;
		json_t *v;
		if (a == NULL)
			return NULL;
		json_array_foreach(ev, i, v) {
			json_t *n = kh_diff_normalize(v, data_dir);
			if (n == NULL || json_array_append_new(a, n) != 0) {
				json_decref(a);
				return NULL;
			}
		}
		return a;
	}
	if (json_is_string(ev))
		return norm_string(json_string_value(ev), data_dir);
	return json_deep_copy(ev);
}

static void describe(json_t *ev, char *buf, size_t len)
{
	char *s = json_dumps(ev, JSON_COMPACT | JSON_SORT_KEYS);
	snprintf(buf, len, "%s", s ? s : "?");
	free(s);
}

long kh_diff_events(json_t *recorded, json_t *replayed, char *msg, size_t msglen)
{
	size_t n = json_array_size(recorded), m = json_array_size(replayed);
	size_t i;
	char a[512], b[512];
	for (i = 0; i < n && i < m; i++) {
		json_t *x = json_array_get(recorded, i), *y = json_array_get(replayed, i);
		if (!json_equal(x, y)) {
			describe(x, a, sizeof(a));
			describe(y, b, sizeof(b));
			snprintf(msg, msglen, "event %zu: recorded %s, replay %s", i + 1, a, b);
			return (long)i;
		}
	}
	if (n == m) {
		msg[0] = '\0';
		return -1;
	}
	if (n > m) {
		describe(json_array_get(recorded, i), a, sizeof(a));
		snprintf(msg, msglen, "event %zu: recorded %s, replay ended (%zu events vs %zu)",
			 i + 1, a, n, m);
	} else {
		describe(json_array_get(replayed, i), b, sizeof(b));
		snprintf(msg, msglen, "event %zu: recording ended, replay has %s (%zu events vs %zu)",
			 i + 1, b, n, m);
	}
	return (long)i;
}

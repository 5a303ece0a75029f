/*
 * kv.h - a header: a name and a value, both borrowed byte strings.
 *
 * Shared by the STOMP codec, the core (user headers of a message) and the
 * client library.  Strings are NUL-terminated *and* carry their length
 * (values may contain NUL only in theory; lengths are what the codec uses).
 */
#ifndef KEEL_KV_H
#define KEEL_KV_H

#include <stddef.h>
#include <string.h>

typedef struct keel_kv {
	const char *name;
	size_t name_len;
	const char *value;
	size_t value_len;
} keel_kv;

#define KEEL_KV(n, v) ((keel_kv){ (n), sizeof(n) - 1, (v), strlen(v) })

/* First header named `name` (exact, case-sensitive) or NULL. */
static inline const keel_kv *keel_kv_find(const keel_kv *h, size_t n, const char *name)
{
	size_t len = strlen(name);
	for (size_t i = 0; i < n; i++)
		if (h[i].name_len == len && memcmp(h[i].name, name, len) == 0)
			return &h[i];
	return NULL;
}

static inline const char *keel_kv_get(const keel_kv *h, size_t n, const char *name)
{
	const keel_kv *kv = keel_kv_find(h, n, name);
	return kv ? kv->value : NULL;
}

#endif

/*
 * mgmt.c - management operations (see mgmt.h; protocol in broker/README.md).
 *
 * One table of operations, each with the arguments it accepts; one entry
 * point (keel_mgmt_execute) that checks the permission, rejects unknown
 * operations and arguments, runs the operation and turns every failure
 * into {"status":"error","message":...}.  Owns nothing between calls:
 * each reply is a new JSON object the caller releases.  Names go into
 * JSON through text_json(): one that is not UTF-8 (journaled before the
 * edge refused such names) is shown with its bad bytes as "\xHH" and
 * can be named that way (find_queue, find_address), so one bad name
 * never fails a whole listing.  Loop thread only.
 */
#include "mgmt.h"

#include <assert.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keel/alloc.h"
#include "lc.h"
#include "limits.h"
#include "log.h"
#include "utf8.h"

/* One operation's state: its arguments in, its result (or error) out. */
typedef struct op_ctx {
	const keel_mgmt_env *env;
	json_t *args;       /* borrowed object */
	json_t *result;     /* owned; members are added to the reply */
	char err[512];
} op_ctx;

/* An operation: 0 (c->result filled), or -errno with c->err saying why. */
typedef int (*op_fn)(op_ctx *c);

typedef struct op_def {
	const char *name;
	op_fn run;
	const char *args[8]; /* accepted arguments, NULL-terminated */
} op_def;

static int fail(op_ctx *c, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Record the error message; returns err (a negative errno) so operations
 * can `return fail()`.  The reply carries the message, not the code. */
static int fail(op_ctx *c, int err, const char *fmt, ...)
{
	assert(err < 0);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
	return err;
}

/* Adds key to the result (takes v): 0 or -ENOMEM. */
static int set(op_ctx *c, const char *key, json_t *v)
{
	if (v == NULL || json_object_set_new(c->result, key, v) != 0)
		return fail(c, -ENOMEM, "out of memory");
	return 0;
}

/* ---- names ------------------------------------------------------------- */

/* s as a JSON string: as it is when it is UTF-8, else with every byte
 * that is not part of a UTF-8 sequence written "\xHH" (jansson refuses
 * invalid UTF-8).  NULL only when out of memory. */
static json_t *text_json(const char *s)
{
	size_t n = strlen(s);
	if (keel_utf8_valid(s, n))
		return json_stringn(s, n);
	size_t len = keel_utf8_escape(s, n, NULL, 0);
	char *esc = keel_malloc(len + 1);
	if (esc == NULL)
		return NULL;
	keel_utf8_escape(s, n, esc, len + 1);
	json_t *j = json_stringn(esc, len);
	keel_free(esc);
	return j;
}

/* Does `shown` name the object called `name`: the same bytes, or, for a
 * name that is not UTF-8, its escaped form as text_json shows it? */
static bool name_shown_as(const char *name, const char *shown)
{
	size_t n = strlen(name);
	if (keel_utf8_valid(name, n))
		return false; /* an exact match would have been found */
	char esc[4 * KEEL_MAX_NAME_LEN + 1];
	size_t len = keel_utf8_escape(name, n, esc, sizeof(esc));
	return len < sizeof(esc) && strcmp(esc, shown) == 0;
}

/* The queue / address a management argument names (see name_shown_as). */
static keel_queue *find_queue(const keel_core *core, const char *name)
{
	keel_queue *q = keel_queue_find(core, name);
	keel_address *a;
	for (size_t i = 0; q == NULL && (a = keel_core_address_at(core, i)); i++)
		for (size_t j = 0; q == NULL && keel_address_queue_at(a, j); j++)
			if (name_shown_as(keel_queue_name(keel_address_queue_at(a, j)), name))
				q = keel_address_queue_at(a, j);
	return q;
}

static keel_address *find_address(const keel_core *core, const char *name)
{
	keel_address *a = keel_address_find(core, name);
	for (size_t i = 0; a == NULL && keel_core_address_at(core, i); i++)
		if (name_shown_as(keel_address_name(keel_core_address_at(core, i)), name))
			a = keel_core_address_at(core, i);
	return a;
}

/* ---- arguments ---------------------------------------------------------- */

static int arg_str(op_ctx *c, const char *key, bool required, const char **out)
{
	json_t *v = json_object_get(c->args, key);
	*out = NULL; /* written on every path: callers may read it after a failure */
	if (v == NULL) {
		if (required)
			return fail(c, -EINVAL, "missing argument '%s'", key);
		*out = NULL;
		return 0;
	}
	if (!json_is_string(v))
		return fail(c, -EINVAL, "argument '%s' must be a string", key);
	*out = json_string_value(v);
	if (required && **out == '\0')
		return fail(c, -EINVAL, "argument '%s' is empty", key);
	return 0;
}

static int arg_bool(op_ctx *c, const char *key, bool dflt, bool *out)
{
	json_t *v = json_object_get(c->args, key);
	*out = dflt;
	if (v == NULL)
		return 0;
	if (json_is_boolean(v)) {
		*out = json_is_true(v);
		return 0;
	}
	const char *s = json_is_string(v) ? json_string_value(v) : "";
	if (strcmp(s, "true") == 0 || strcmp(s, "yes") == 0 || strcmp(s, "1") == 0)
		*out = true;
	else if (strcmp(s, "false") == 0 || strcmp(s, "no") == 0 || strcmp(s, "0") == 0)
		*out = false;
	else
		return fail(c, -EINVAL, "argument '%s' must be true or false", key);
	return 0;
}

/* Decimal int64 (with an optional '-'); false on anything else. */
static bool parse_i64(const char *s, int64_t *out)
{
	char *end;
	if (s == NULL || *s == '\0' || isspace((unsigned char)*s))
		return false;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *end != '\0')
		return false;
	*out = v;
	return true;
}

static int arg_int(op_ctx *c, const char *key, int64_t dflt, int64_t min, int64_t max,
		   int64_t *out)
{
	json_t *v = json_object_get(c->args, key);
	int64_t n = dflt;
	if (v != NULL) {
		if (json_is_integer(v))
			n = json_integer_value(v);
		else if (!json_is_string(v) || !parse_i64(json_string_value(v), &n))
			return fail(c, -EINVAL, "argument '%s' must be an integer", key);
		if (n < min || n > max)
			return fail(c, -EINVAL,
				    "argument '%s' must be between %" PRId64 " and %" PRId64, key,
				    min, max);
	}
	*out = n;
	return 0;
}

/* "ANYCAST", "MULTICAST" or both ("ANYCAST,MULTICAST") -> mask. */
static int arg_routing(op_ctx *c, const char *key, unsigned dflt, bool allow_both,
		       unsigned *out)
{
	const char *s;
	int rc = arg_str(c, key, false, &s);
	if (rc)
		return rc;
	if (s == NULL) {
		*out = dflt;
		return 0;
	}
	unsigned mask = 0;
	char tmp[64];
	snprintf(tmp, sizeof(tmp), "%s", s);
	char *save = NULL;
	for (char *tok = strtok_r(tmp, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
		keel_routing rt = keel_routing_parse(tok);
		if (rt == 0) {
			mask = 0;
			break;
		}
		mask |= rt;
	}
	if (mask == 0 || (!allow_both && mask != KEEL_ANYCAST && mask != KEEL_MULTICAST))
		return fail(c, -EINVAL, "argument '%s' must be %s, got '%s'", key,
			    allow_both ? "ANYCAST, MULTICAST or ANYCAST,MULTICAST"
				       : "ANYCAST or MULTICAST",
			    s);
	*out = mask;
	return 0;
}

static int arg_queue(op_ctx *c, keel_queue **out)
{
	const char *name;
	int rc = arg_str(c, "name", true, &name);
	if (rc)
		return rc;
	*out = find_queue(c->env->core, name);
	if (*out == NULL)
		return fail(c, -ENOENT, "queue '%s' does not exist", name);
	return 0;
}

/* ---- JSON views ---------------------------------------------------------- */

static json_t *routing_json(unsigned mask)
{
	json_t *a = json_array();
	if (a && (mask & KEEL_ANYCAST))
		json_array_append_new(a, json_string("ANYCAST"));
	if (a && (mask & KEEL_MULTICAST))
		json_array_append_new(a, json_string("MULTICAST"));
	return a;
}

/* NULL only when out of memory. */
static json_t *address_json(const keel_address *a)
{
	json_t *queues = json_array();
	for (size_t i = 0; queues && keel_address_queue_at(a, i); i++) {
		if (json_array_append_new(queues,
					  text_json(keel_queue_name(keel_address_queue_at(a, i))))) {
			json_decref(queues);
			return NULL;
		}
	}
	return json_pack("{s:o, s:o, s:I, s:o}", "name", text_json(keel_address_name(a)),
			 "routing-types", routing_json(keel_address_routing(a)), "queue-count",
			 (json_int_t)keel_address_queue_count(a), "queues", queues);
}

/* Queue stat fields, in the order of the reply; `type` drives filters. */
typedef enum field_type { F_STR, F_BOOL, F_INT } field_type;
static const struct {
	const char *name;
	field_type type;
} queue_fields[] = {
	{ "name", F_STR },
	{ "address", F_STR },
	{ "routing-type", F_STR },
	{ "durable", F_BOOL },
	{ "temporary", F_BOOL },
	{ "paused", F_BOOL },
	{ "consumer-count", F_INT },
	{ "message-count", F_INT },
	{ "delivering-count", F_INT },
	{ "messages-added", F_INT },
	{ "messages-acked", F_INT },
	{ "messages-expired", F_INT },
	{ "dead-lettered", F_INT },
	{ "scheduled-count", F_INT },
	{ "bytes-in-memory", F_INT },
	{ "paged-count", F_INT },
};
#define QUEUE_FIELD_COUNT (sizeof(queue_fields) / sizeof(queue_fields[0]))

/* NULL only when out of memory. */
static json_t *queue_json(const keel_queue *q)
{
	keel_queue_stats st;
	keel_queue_get_stats(q, &st);
	return json_pack("{s:o, s:o, s:s, s:b, s:b, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I,"
			 " s:I, s:I}",
			 "name", text_json(st.name), "address", text_json(st.address),
			 "routing-type",
			 keel_routing_name(st.routing), "durable", st.durable, "temporary",
			 st.temporary, "paused", st.paused, "consumer-count",
			 (json_int_t)st.consumer_count, "message-count",
			 (json_int_t)st.message_count, "delivering-count",
			 (json_int_t)st.delivering_count, "messages-added",
			 (json_int_t)st.messages_added, "messages-acked",
			 (json_int_t)st.messages_acked, "messages-expired",
			 (json_int_t)st.messages_expired, "dead-lettered",
			 (json_int_t)st.messages_killed, "scheduled-count",
			 (json_int_t)st.scheduled_count, "bytes-in-memory",
			 (json_int_t)st.bytes_in_memory, "paged-count",
			 (json_int_t)st.paged_count);
}

/* ---- queue filters (list-queues) ---------------------------------------- */

typedef enum cmp_op { CMP_NONE = 0, CMP_EQUALS, CMP_CONTAINS, CMP_GREATER, CMP_LESS } cmp_op;

typedef struct queue_filter {
	const char *name_contains;  /* NULL: any */
	char field[64];             /* normalized: lower case, '-' */
	field_type type;
	cmp_op cmp;
	const char *value;
	int64_t num;                /* value as a number (F_INT, F_BOOL) */
} queue_filter;

static int parse_filter(op_ctx *c, queue_filter *flt)
{
	const char *field = NULL, *cmp = NULL, *value = NULL;
	int rc;
	memset(flt, 0, sizeof(*flt));
	if ((rc = arg_str(c, "queue-name", false, &flt->name_contains)) ||
	    (rc = arg_str(c, "field", false, &field)) || (rc = arg_str(c, "compare", false, &cmp)) ||
	    (rc = arg_str(c, "value", false, &value)))
		return rc;
	if (field == NULL && cmp == NULL && value == NULL)
		return 0;
	if (field == NULL || cmp == NULL || value == NULL)
		return fail(c, -EINVAL, "a filter needs 'field', 'compare' and 'value' together");
	/* MESSAGE_COUNT, messageCount-less forms: upper case and '_' allowed. */
	size_t n = strlen(field);
	if (n >= sizeof(flt->field))
		return fail(c, -EINVAL, "unknown field '%s'", field);
	for (size_t i = 0; i <= n; i++)
		flt->field[i] = field[i] == '_' ? '-' : (char)tolower((unsigned char)field[i]);
	size_t k;
	for (k = 0; k < QUEUE_FIELD_COUNT; k++)
		if (strcmp(queue_fields[k].name, flt->field) == 0)
			break;
	if (k == QUEUE_FIELD_COUNT) {
		char list[512] = "";
		for (size_t i = 0; i < QUEUE_FIELD_COUNT; i++)
			snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
				 i ? ", " : "", queue_fields[i].name);
		return fail(c, -EINVAL, "unknown field '%s' (fields: %s)", field, list);
	}
	flt->type = queue_fields[k].type;
	if (strcasecmp(cmp, "EQUALS") == 0)
		flt->cmp = CMP_EQUALS;
	else if (strcasecmp(cmp, "CONTAINS") == 0)
		flt->cmp = CMP_CONTAINS;
	else if (strcasecmp(cmp, "GREATER_THAN") == 0)
		flt->cmp = CMP_GREATER;
	else if (strcasecmp(cmp, "LESS_THAN") == 0)
		flt->cmp = CMP_LESS;
	else
		return fail(c, -EINVAL,
			    "unknown compare '%s' (EQUALS, CONTAINS, GREATER_THAN, LESS_THAN)", cmp);
	flt->value = value;
	if ((flt->cmp == CMP_GREATER || flt->cmp == CMP_LESS) && flt->type != F_INT)
		return fail(c, -EINVAL, "%s needs a numeric field; '%s' is not one", cmp, field);
	if (flt->type == F_INT && flt->cmp != CMP_CONTAINS && !parse_i64(value, &flt->num))
		return fail(c, -EINVAL, "field '%s' is a number; '%s' is not", field, value);
	if (flt->type == F_BOOL && flt->cmp == CMP_EQUALS) {
		if (strcmp(value, "true") && strcmp(value, "false"))
			return fail(c, -EINVAL, "field '%s' is true or false; '%s' is neither",
				    field, value);
		flt->num = strcmp(value, "true") == 0;
	}
	return 0;
}

static bool filter_match(const queue_filter *flt, json_t *q)
{
	if (flt->name_contains &&
	    strstr(json_string_value(json_object_get(q, "name")), flt->name_contains) == NULL)
		return false;
	if (flt->cmp == CMP_NONE)
		return true;
	json_t *v = json_object_get(q, flt->field);
	assert(v != NULL);
	char text[32];
	const char *s = text;
	if (flt->type == F_STR)
		s = json_string_value(v);
	else if (flt->type == F_BOOL)
		s = json_is_true(v) ? "true" : "false";
	else
		snprintf(text, sizeof(text), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	switch (flt->cmp) {
	case CMP_EQUALS:
		if (flt->type == F_INT)
			return json_integer_value(v) == flt->num;
		return strcmp(s, flt->value) == 0;
	case CMP_CONTAINS:
		return strstr(s, flt->value) != NULL;
	case CMP_GREATER:
		return json_integer_value(v) > flt->num;
	case CMP_LESS:
		return json_integer_value(v) < flt->num;
	case CMP_NONE:
		break;
	}
	return true;
}

/* ---- operations ---------------------------------------------------------- */

static int max_rows(op_ctx *c, int64_t *out)
{
	return arg_int(c, "max-rows", KEEL_MGMT_DEFAULT_MAX_ROWS, 1, KEEL_MGMT_MAX_ROWS, out);
}

static int op_list_addresses(op_ctx *c)
{
	int64_t rows;
	int rc = max_rows(c, &rows);
	if (rc)
		return rc;
	json_t *list = json_array();
	if ((rc = set(c, "addresses", list)))
		return rc;
	size_t total = 0;
	keel_address *a;
	for (size_t i = 0; (a = keel_core_address_at(c->env->core, i)); i++, total++)
		if ((int64_t)json_array_size(list) < rows &&
		    json_array_append_new(list, address_json(a)))
			return fail(c, -ENOMEM, "out of memory");
	if ((rc = set(c, "count", json_integer((json_int_t)json_array_size(list)))))
		return rc;
	return set(c, "total", json_integer((json_int_t)total));
}

static int op_show_address(op_ctx *c)
{
	const char *name;
	int rc = arg_str(c, "name", true, &name);
	if (rc)
		return rc;
	keel_address *a = find_address(c->env->core, name);
	if (a == NULL)
		return fail(c, -ENOENT, "address '%s' does not exist", name);
	return set(c, "address", address_json(a));
}

static int op_create_address(op_ctx *c)
{
	const char *name;
	unsigned mask;
	int rc;
	if ((rc = arg_str(c, "name", true, &name)) ||
	    (rc = arg_routing(c, "routing-type", KEEL_ANYCAST, true, &mask)))
		return rc;
	if (keel_mgmt_is_address(name))
		return fail(c, -EPERM, "'%s' is reserved for management", name);
	keel_address *a;
	rc = keel_address_create(c->env->core, name, mask, false, &a);
	if (rc == -EEXIST)
		return fail(c, -EEXIST, "address '%s' already exists", name);
	if (rc == -EINVAL)
		return fail(c, -EINVAL,
			    "invalid address name '%s' (1 to %d bytes, no control characters)", name,
			    KEEL_MAX_NAME_LEN - 1);
	if (rc)
		return fail(c, rc, "cannot create address '%s': %s", name, strerror(-rc));
	return set(c, "address", address_json(a));
}

static int op_delete_address(op_ctx *c)
{
	const char *name;
	bool force, remove_consumers;
	int rc;
	if ((rc = arg_str(c, "name", true, &name)) || (rc = arg_bool(c, "force", false, &force)) ||
	    (rc = arg_bool(c, "remove-consumers", false, &remove_consumers)))
		return rc;
	keel_address *a = find_address(c->env->core, name);
	if (a == NULL)
		return fail(c, -ENOENT, "address '%s' does not exist", name);
	char real[KEEL_MAX_NAME_LEN + 1]; /* find_address may have matched its shown form */
	snprintf(real, sizeof(real), "%s", keel_address_name(a));
	name = real;
	size_t nq = keel_address_queue_count(a);
	if (nq && !force)
		return fail(c, -ENOTEMPTY,
			    "address '%s' still has %zu queue(s) (first: '%s'); use force to "
			    "delete them with it",
			    name, nq, keel_queue_name(keel_address_queue_at(a, 0)));
	keel_queue *q;
	for (size_t i = 0; !remove_consumers && (q = keel_address_queue_at(a, i)); i++) {
		keel_queue_stats st;
		keel_queue_get_stats(q, &st);
		if (st.consumer_count)
			return fail(c, -EBUSY,
				    "queue '%s' of address '%s' has %" PRIu32 " consumer(s); "
				    "use remove-consumers to close them",
				    st.name, name, st.consumer_count);
	}
	rc = keel_address_delete(c->env->core, name, force);
	if (rc)
		return fail(c, rc, "cannot delete address '%s': %s", name, strerror(-rc));
	return set(c, "deleted-queues", json_integer((json_int_t)nq));
}

static int op_list_queues(op_ctx *c)
{
	int64_t rows;
	queue_filter flt;
	int rc;
	if ((rc = max_rows(c, &rows)) || (rc = parse_filter(c, &flt)))
		return rc;
	json_t *list = json_array();
	if ((rc = set(c, "queues", list)))
		return rc;
	size_t total = 0;
	keel_address *a;
	keel_queue *q;
	for (size_t i = 0; (a = keel_core_address_at(c->env->core, i)); i++) {
		for (size_t j = 0; (q = keel_address_queue_at(a, j)); j++) {
			json_t *v = queue_json(q);
			if (v == NULL)
				return fail(c, -ENOMEM, "out of memory");
			if (!filter_match(&flt, v)) {
				json_decref(v);
				continue;
			}
			total++;
			if ((int64_t)json_array_size(list) >= rows) {
				json_decref(v);
				continue;
			}
			if (json_array_append_new(list, v))
				return fail(c, -ENOMEM, "out of memory");
		}
	}
	if ((rc = set(c, "count", json_integer((json_int_t)json_array_size(list)))))
		return rc;
	return set(c, "total", json_integer((json_int_t)total));
}

static int op_queue_stat(op_ctx *c)
{
	keel_queue *q;
	int rc = arg_queue(c, &q);
	if (rc)
		return rc;
	return set(c, "queue", queue_json(q));
}

static int op_create_queue(op_ctx *c)
{
	const char *name, *addr;
	bool durable, purge;
	int64_t maxc;
	unsigned mask;
	int rc;
	if ((rc = arg_str(c, "name", true, &name)) || (rc = arg_str(c, "address", false, &addr)) ||
	    (rc = arg_bool(c, "durable", true, &durable)) ||
	    (rc = arg_bool(c, "purge-on-no-consumers", false, &purge)) ||
	    (rc = arg_int(c, "max-consumers", -1, -1, INT32_MAX, &maxc)))
		return rc;
	if (addr == NULL || *addr == '\0')
		addr = name;
	if (keel_mgmt_is_address(addr))
		return fail(c, -EPERM, "'%s' is reserved for management", addr);
	keel_address *a = keel_address_find(c->env->core, addr);
	/* Default routing: the address's, when it has exactly one. */
	unsigned dflt = a && keel_address_routing(a) == KEEL_MULTICAST ? KEEL_MULTICAST
								       : KEEL_ANYCAST;
	if ((rc = arg_routing(c, "routing-type", dflt, false, &mask)))
		return rc;
	if (a && !(keel_address_routing(a) & mask))
		return fail(c, -EINVAL, "address '%s' does not support routing type %s", addr,
			    keel_routing_name(mask));
	if (keel_queue_find(c->env->core, name))
		return fail(c, -EEXIST, "queue '%s' already exists", name);
	if (maxc == 0)
		return fail(c, -EINVAL,
			    "argument 'max-consumers' must be -1 (unlimited) or positive");
	keel_queue_options qo = {
		.name = name,
		.address = addr,
		.routing = (keel_routing)mask,
		.durable = durable,
		.max_consumers = (int32_t)maxc,
		.purge_on_no_consumers = purge,
	};
	keel_queue *q;
	rc = keel_queue_create(c->env->core, &qo, &q);
	if (rc == -EINVAL)
		return fail(c, -EINVAL,
			    "invalid queue or address name '%s' (1 to %d bytes, no control "
			    "characters)",
			    name, KEEL_MAX_NAME_LEN - 1);
	if (rc)
		return fail(c, rc, "cannot create queue '%s': %s", name, strerror(-rc));
	return set(c, "queue", queue_json(q));
}

static int op_delete_queue(op_ctx *c)
{
	keel_queue *q;
	bool remove_consumers;
	int rc;
	if ((rc = arg_queue(c, &q)) ||
	    (rc = arg_bool(c, "remove-consumers", false, &remove_consumers)))
		return rc;
	keel_queue_stats st;
	keel_queue_get_stats(q, &st);
	if (st.consumer_count && !remove_consumers)
		return fail(c, -EBUSY,
			    "queue '%s' has %" PRIu32 " consumer(s); use remove-consumers to "
			    "close them",
			    st.name, st.consumer_count);
	char name[KEEL_MAX_NAME_LEN + 1];
	snprintf(name, sizeof(name), "%s", st.name);
	rc = keel_queue_delete(c->env->core, name, remove_consumers);
	if (rc)
		return fail(c, rc, "cannot delete queue '%s': %s", name, strerror(-rc));
	if ((rc = set(c, "removed-consumers", json_integer((json_int_t)st.consumer_count))))
		return rc;
	return set(c, "dropped-messages", json_integer((json_int_t)st.message_count));
}

static int op_purge_queue(op_ctx *c)
{
	keel_queue *q;
	int rc = arg_queue(c, &q);
	if (rc)
		return rc;
	uint64_t n = keel_queue_purge(q);
	return set(c, "purged", json_integer((json_int_t)n));
}

static int pause_resume(op_ctx *c, bool paused)
{
	keel_queue *q;
	int rc = arg_queue(c, &q);
	if (rc)
		return rc;
	keel_queue_pause(q, paused);
	return set(c, "queue", queue_json(q));
}

static int op_pause_queue(op_ctx *c)
{
	return pause_resume(c, true);
}

static int op_resume_queue(op_ctx *c)
{
	return pause_resume(c, false);
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Resident set size from /proc/self/statm; 0 when unreadable. */
static uint64_t rss_bytes(void)
{
	unsigned long long size = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f == NULL)
		return 0;
	if (fscanf(f, "%llu %llu", &size, &resident) != 2)
		resident = 0;
	fclose(f);
	return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

static int op_broker_status(op_ctx *c)
{
	const keel_mgmt_env *e = c->env;
	size_t naddr = 0, nq = 0;
	keel_address *a;
	for (; (a = keel_core_address_at(e->core, naddr)); naddr++)
		nq += keel_address_queue_count(a);
	uint64_t now = mono_ms();
	const char *state = e->state ? e->state(e->ud) : "unknown";
	json_t *ha = e->ha_status ? e->ha_status(e->ud) : NULL;
	if (ha == NULL)
		ha = json_pack("{s:s, s:s}", "role", "none", "state", "standalone");
	const char *rs = ha ? json_string_value(json_object_get(ha, "replication")) : NULL;
	json_t *repl = json_pack("{s:s}", "state", rs ? rs : "none");
	json_t *mem = json_pack("{s:I, s:I}", "messages-bytes",
				(json_int_t)keel_core_memory_used(e->core), "rss-bytes",
				(json_int_t)rss_bytes());
	if (set(c, "node", json_string(e->node ? e->node : "keel")) ||
	    set(c, "version", json_string(KEEL_VERSION)) || set(c, "state", json_string(state)) ||
	    set(c, "ha", ha) || set(c, "replication", repl) ||
	    set(c, "uptime-ms",
		 json_integer((json_int_t)(e->start_mono_ms && now > e->start_mono_ms
						   ? now - e->start_mono_ms
						   : 0))) ||
	    set(c, "connections",
		 json_integer((json_int_t)(e->connection_count ? e->connection_count(e->ud)
							      : 0))) ||
	    set(c, "addresses", json_integer((json_int_t)naddr)) ||
	    set(c, "queues", json_integer((json_int_t)nq)) || set(c, "memory", mem))
		return -ENOMEM; /* what set() fails with */
	return 0;
}

static int op_bridge_status(op_ctx *c)
{
	/* No bridges configured: the list is empty, never an error. */
	const keel_mgmt_env *e = c->env;
	json_t *list = e->bridge_status ? e->bridge_status(e->ud) : json_array();
	return set(c, "bridges", list);
}

static int bridge_start_stop(op_ctx *c, bool start)
{
	const keel_mgmt_env *e = c->env;
	const char *name;
	int rc = arg_str(c, "name", true, &name);
	if (rc)
		return rc;
	rc = e->bridge_control ? e->bridge_control(e->ud, name, start) : -ENOENT;
	if (rc == -ENOENT)
		return fail(c, -ENOENT, "bridge '%s' not found", name);
	if (rc == -EALREADY)
		return fail(c, -EALREADY, "bridge '%s' is already %s", name,
			    start ? "running" : "stopped");
	if (rc < 0)
		return fail(c, rc, "bridge '%s': %s", name, strerror(-rc));
	if ((rc = set(c, "name", json_string(name))))
		return rc;
	return set(c, "state", json_string(start ? "started" : "stopped"));
}

static int op_start_bridge(op_ctx *c)
{
	return bridge_start_stop(c, true);
}

static int op_stop_bridge(op_ctx *c)
{
	return bridge_start_stop(c, false);
}

static void thread_cb(const lc_thread_info *info, void *ud)
{
	json_t *list = ud;
	char site[256];
	snprintf(site, sizeof(site), "%s (%s:%d)", info->func ? info->func : "?",
		 info->file ? info->file : "?", info->line);
	json_array_append_new(list, json_pack("{s:s, s:i, s:s?, s:s}", "name", info->name,
					      "tid", (int)info->tid, "owner", info->owner,
					      "creation-site", site));
}

static bool tid_listed(json_t *list, long tid)
{
	size_t i;
	json_t *t;
	json_array_foreach(list, i, t)
		if (json_integer_value(json_object_get(t, "tid")) == tid)
			return true;
	return false;
}

/* Threads started through lc_thread_start (with their creation site),
 * then every other thread of the process from /proc/self/task (the loop
 * thread, libuv's pool) with a null creation site. */
static int op_list_threads(op_ctx *c)
{
	json_t *list = json_array();
	int rc = set(c, "threads", list);
	if (rc)
		return rc;
	lc_thread_foreach(thread_cb, list);
	DIR *d = opendir("/proc/self/task");
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL) {
		char *end;
		long tid = strtol(de->d_name, &end, 10);
		if (*end != '\0' || tid <= 0 || tid_listed(list, tid))
			continue;
		char path[64], name[32] = "";
		snprintf(path, sizeof(path), "/proc/self/task/%ld/comm", tid);
		FILE *f = fopen(path, "r");
		if (f) {
			if (fgets(name, sizeof(name), f) == NULL)
				name[0] = '\0';
			fclose(f);
		}
		name[strcspn(name, "\n")] = '\0';
		json_array_append_new(list, json_pack("{s:s, s:I, s:n, s:n}", "name", name, "tid",
						      (json_int_t)tid, "owner", "creation-site"));
	}
	if (d)
		closedir(d);
	return set(c, "count", json_integer((json_int_t)json_array_size(list)));
}

#define FILTER_ARGS "queue-name", "field", "compare", "value"

static const op_def ops[] = {
	{ "list-addresses", op_list_addresses, { "max-rows", NULL } },
	{ "show-address", op_show_address, { "name", NULL } },
	{ "create-address", op_create_address, { "name", "routing-type", NULL } },
	{ "delete-address", op_delete_address, { "name", "force", "remove-consumers", NULL } },
	{ "list-queues", op_list_queues, { "max-rows", FILTER_ARGS, NULL } },
	{ "queue-stat", op_queue_stat, { "name", NULL } },
	{ "create-queue", op_create_queue,
	  { "name", "address", "routing-type", "durable", "max-consumers",
	    "purge-on-no-consumers", NULL } },
	{ "delete-queue", op_delete_queue, { "name", "remove-consumers", NULL } },
	{ "purge-queue", op_purge_queue, { "name", NULL } },
	{ "pause-queue", op_pause_queue, { "name", NULL } },
	{ "resume-queue", op_resume_queue, { "name", NULL } },
	{ "broker-status", op_broker_status, { NULL } },
	{ "bridge-status", op_bridge_status, { NULL } },
	{ "start-bridge", op_start_bridge, { "name", NULL } },
	{ "stop-bridge", op_stop_bridge, { "name", NULL } },
	{ "list-threads", op_list_threads, { NULL } },
};
#define OP_COUNT (sizeof(ops) / sizeof(ops[0]))

/* ---- the one handler ----------------------------------------------------- */

/* The message may quote names: text_json keeps the reply valid JSON. */
static json_t *error_reply(const char *op, const char *msg)
{
	keel_log_debug("management %s: error: %s", op ? op : "?", msg);
	return json_pack("{s:s, s:o*, s:o}", "status", "error", "operation",
			 op ? text_json(op) : NULL, "message", text_json(msg));
}

bool keel_mgmt_is_address(const char *address)
{
	return address && strcmp(address, KEEL_MGMT_ADDRESS) == 0;
}

static int check_args(op_ctx *c, const op_def *d)
{
	const char *key;
	json_t *v;
	json_object_foreach(c->args, key, v) {
		bool ok = strcmp(key, "operation") == 0;
		for (size_t i = 0; !ok && d->args[i]; i++)
			ok = strcmp(key, d->args[i]) == 0;
		if (ok)
			continue;
		char list[256] = "";
		for (size_t i = 0; d->args[i]; i++)
			snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
				 i ? ", " : "", d->args[i]);
		return fail(c, -EINVAL, "unknown argument '%s' for operation '%s' (accepted: %s)",
			    key, d->name, list[0] ? list : "none");
	}
	return 0;
}

json_t *keel_mgmt_execute(const keel_mgmt_env *env, const char *op, json_t *args, bool allowed)
{
	assert(env && env->core);
	if (op == NULL || *op == '\0')
		return error_reply(op, "missing operation (an 'operation' header or body member)");
	if (!allowed) {
		char msg[KEEL_MAX_NAME_LEN + 128];
		snprintf(msg, sizeof(msg),
			 "permission denied: operation '%s' needs the manage permission on '%s'", op,
			 KEEL_MGMT_ADDRESS);
		return error_reply(op, msg);
	}
	const op_def *d = NULL;
	for (size_t i = 0; i < OP_COUNT && d == NULL; i++)
		if (strcmp(ops[i].name, op) == 0)
			d = &ops[i];
	if (d == NULL) {
		char msg[2048];
		int n = snprintf(msg, sizeof(msg), "unknown operation '%.*s' (operations:", 256, op);
		for (size_t i = 0; i < OP_COUNT && n > 0 && (size_t)n < sizeof(msg); i++)
			n += snprintf(msg + n, sizeof(msg) - (size_t)n, " %s", ops[i].name);
		if (n > 0 && (size_t)n < sizeof(msg) - 1)
			snprintf(msg + n, sizeof(msg) - (size_t)n, ")");
		return error_reply(op, msg);
	}
	json_t *empty = NULL;
	if (args == NULL)
		args = empty = json_object();
	op_ctx c = { .env = env, .args = args, .result = json_object() };
	int rc = args == NULL || c.result == NULL ? fail(&c, -ENOMEM, "out of memory")
						  : check_args(&c, d);
	rc = rc ? rc : d->run(&c);
	json_t *reply;
	if (rc) {
		reply = error_reply(op, c.err);
	} else {
		reply = json_pack("{s:s, s:s}", "status", "ok", "operation", op);
		if (reply && json_object_update(reply, c.result) != 0) {
			json_decref(reply);
			reply = error_reply(op, "out of memory");
		}
	}
	json_decref(c.result);
	json_decref(empty);
	return reply;
}

/* ---- requests as STOMP frames -------------------------------------------- */

/* Headers that STOMP or the broker interpret: never arguments. */
static bool reserved_header(const keel_kv *kv)
{
	static const char *const names[] = {
		"destination", "reply-to", "correlation-id", "receipt", "content-type",
		"content-length", "transaction", "persistent", "priority", "expires",
		"destination-type", "message-id", "subscription", "ack", "redelivered",
		"timestamp", "keel-delivery-count",
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == kv->name_len && memcmp(names[i], kv->name, kv->name_len) == 0)
			return true;
	return false;
}

/* Arguments from headers and body into *args (new object) and the
 * operation name into *op (borrowed from the frame or args).  0, or with
 * a message in err: -ENAMETOOLONG (an argument header's name), -ENOTSUP
 * (inside a transaction), -EMSGSIZE (body over the limit), -EBADMSG (body
 * not a JSON object), -EINVAL (operation or arguments that contradict),
 * -ENOMEM. */
static int parse_request(const keel_kv *h, size_t n, const void *body, size_t body_len,
			 json_t **args, const char **op, char *err, size_t errlen)
{
	*op = NULL;
	*args = json_object();
	if (*args == NULL)
		goto oom;
	for (size_t i = 0; i < n; i++) {
		if (reserved_header(&h[i]))
			continue;
		char name[KEEL_MAX_NAME_LEN + 1];
		if (h[i].name_len >= sizeof(name)) {
			snprintf(err, errlen, "header name too long for an argument");
			return -ENAMETOOLONG;
		}
		memcpy(name, h[i].name, h[i].name_len);
		name[h[i].name_len] = '\0';
		if (strcmp(name, "operation") == 0) {
			if (*op == NULL)
				*op = h[i].value;
			continue;
		}
		if (json_object_get(*args, name))
			continue; /* repeated header: the first wins (STOMP 1.2) */
		if (json_object_set_new(*args, name, json_stringn(h[i].value, h[i].value_len)))
			goto oom;
	}
	if (keel_kv_get(h, n, "transaction")) {
		snprintf(err, errlen, "management requests cannot be part of a transaction");
		return -ENOTSUP;
	}
	if (body_len == 0)
		return 0;
	if (body_len > KEEL_MGMT_MAX_REQUEST_BYTES) {
		snprintf(err, errlen, "request body of %zu bytes is over the limit of %d", body_len,
			 KEEL_MGMT_MAX_REQUEST_BYTES);
		return -EMSGSIZE;
	}
	json_error_t jerr;
	json_t *b = json_loadb(body, body_len, JSON_REJECT_DUPLICATES, &jerr);
	if (b == NULL || !json_is_object(b)) {
		snprintf(err, errlen, "request body is not a JSON object: %s",
			 b ? "another JSON value" : jerr.text);
		json_decref(b);
		return -EBADMSG;
	}
	const char *key;
	json_t *v;
	int rc = 0;
	json_object_foreach(b, key, v) {
		if (strcmp(key, "operation") == 0) {
			if (!json_is_string(v)) {
				snprintf(err, errlen, "body member 'operation' must be a string");
				rc = -EINVAL;
				break;
			}
			if (*op && strcmp(*op, json_string_value(v)) != 0) {
				snprintf(err, errlen,
					 "operation '%s' in the headers but '%s' in the body", *op,
					 json_string_value(v));
				rc = -EINVAL;
				break;
			}
		} else if (json_object_get(*args, key)) {
			snprintf(err, errlen, "argument '%s' given both as a header and in the body",
				 key);
			rc = -EINVAL;
			break;
		}
		if (json_object_set(*args, key, v)) {
			json_decref(b);
			goto oom;
		}
	}
	json_decref(b);
	if (rc == 0 && *op == NULL) {
		json_t *o = json_object_get(*args, "operation");
		*op = o ? json_string_value(o) : NULL;
	}
	return rc;
oom:
	snprintf(err, errlen, "out of memory");
	return -ENOMEM;
}

int keel_mgmt_parse_destination(const char *dest, const char **address, keel_routing *rt)
{
	if (dest == NULL)
		return -EINVAL;
	*rt = KEEL_ANYCAST;
	if (strncmp(dest, "/queue/", 7) == 0) {
		dest += 7;
	} else if (strncmp(dest, "/topic/", 7) == 0) {
		dest += 7;
		*rt = KEEL_MULTICAST;
	}
	size_t len = strlen(dest);
	if (len == 0 || len > KEEL_MAX_NAME_LEN)
		return -EINVAL;
	*address = dest;
	return 0;
}

/* The reply message: JSON body plus status, content-type, operation and
 * correlation-id headers.  NULL on out of memory. */
static keel_msg *reply_msg(const keel_mgmt_env *env, json_t *reply, const char *op,
			   const char *cid, const char *reply_address)
{
	keel_msg *m = NULL;
	char *text = json_dumps(reply, JSON_COMPACT);
	if (text == NULL)
		return NULL;
	const char *status = json_string_value(json_object_get(reply, "status"));
	keel_kv h[4];
	size_t n = 0;
	h[n++] = KEEL_KV("status", status ? status : "error");
	h[n++] = KEEL_KV("content-type", "application/json");
	if (op)
		h[n++] = KEEL_KV("operation", op);
	if (cid)
		h[n++] = KEEL_KV("correlation-id", cid);
	keel_msg_init init = {
		.address = reply_address,
		.headers = h,
		.header_count = n,
		.body = text,
		.body_len = strlen(text),
		.priority = 4,
	};
	m = keel_msg_create(env->core, &init);
	free(text); /* json_dumps allocates with jansson's malloc */
	return m;
}

int keel_mgmt_build(const keel_mgmt_env *env, bool allowed, const keel_kv *headers,
		    size_t header_count, const void *body, size_t body_len,
		    const char *reply_address, keel_msg **ok_out, keel_msg **storage_err_out)
{
	json_t *args = NULL, *reply, *serr = NULL;
	const char *op = keel_kv_get(headers, header_count, "operation");
	const char *cid = keel_kv_get(headers, header_count, "correlation-id");
	char err[512];
	int rc = -ENOMEM;

	if (!allowed)
		reply = keel_mgmt_execute(env, op ? op : "?", NULL, false);
	else if (parse_request(headers, header_count, body, body_len, &args, &op, err,
			       sizeof(err)))
		reply = error_reply(op, err);
	else
		reply = keel_mgmt_execute(env, op, args, true);
	if (reply == NULL)
		goto out;
	keel_msg *ok = reply_msg(env, reply, op, cid, reply_address);
	if (ok == NULL)
		goto out;
	if (storage_err_out) {
		snprintf(err, sizeof(err),
			 "Storage error: the journal could not write the changes of '%s'; "
			 "they may not survive a restart", op ? op : "?");
		serr = error_reply(op, err);
		keel_msg *em = serr ? reply_msg(env, serr, op, cid, reply_address) : NULL;
		if (em == NULL) {
			keel_msg_unref(ok);
			goto out;
		}
		*storage_err_out = em;
	}
	*ok_out = ok;
	rc = 0;
out:
	json_decref(serr);
	json_decref(reply);
	json_decref(args);
	return rc;
}

int keel_mgmt_request(const keel_mgmt_env *env, bool allowed, const keel_kv *headers,
		      size_t header_count, const void *body, size_t body_len,
		      const char *reply_address, keel_routing reply_rt)
{
	keel_msg *m = NULL;
	int rc = keel_mgmt_build(env, allowed, headers, header_count, body, body_len,
				 reply_address, &m, NULL);
	if (rc)
		return rc;
	rc = allowed ? keel_core_send_internal(env->core, m, reply_rt)
		     : keel_core_send(env->core, m, reply_rt, NULL);
	keel_msg_unref(m);
	return rc > 0 ? 0 : rc;
}

/*
 * scenario.c - scenario files (scenario.h): libcyaml schema, a libyaml scan
 * that maps key paths to lines ("steps[3].await.within" -> 17), defaults
 * and semantic checks.  Every error is "FILE:LINE: KEY: problem".  The
 * loaded scenario and everything in it come from one allocator (keel_*),
 * so cyaml_free frees loaded values and defaults alike.  Any thread.
 */
#include "scenario.h"

#include <assert.h>
#include <ctype.h>
#include <cyaml/cyaml.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#include "alloc.h"
#include "config.h"
#include "kh_limits.h"

/* ---- schema ------------------------------------------------------------ */

#define OPT CYAML_FLAG_OPTIONAL
#define STR(key, st, m) CYAML_FIELD_STRING_PTR(key, CYAML_FLAG_POINTER, st, m, 1, 4096)
#define STR_OPT(key, st, m) CYAML_FIELD_STRING_PTR(key, CYAML_FLAG_POINTER | OPT, st, m, 0, \
						   CYAML_UNLIMITED)
#define WITHIN(st) CYAML_FIELD_FLOAT("within", OPT, st, within_s)

static const cyaml_schema_field_t nodeop_fields[] = {
	STR("node", kh_node_op, node),
	CYAML_FIELD_END,
};
static const cyaml_schema_field_t stop_fields[] = {
	STR("node", kh_node_op, node),
	WITHIN(kh_node_op),
	CYAML_FIELD_END,
};
static const cyaml_schema_field_t restart_fields[] = {
	STR("node", kh_node_op, node),
	WITHIN(kh_node_op),
	CYAML_FIELD_BOOL("kill", OPT, kh_node_op, kill),
	CYAML_FIELD_END,
};
static const cyaml_schema_field_t refused_fields[] = {
	CYAML_FIELD_UINT("min", OPT, kh_refused, min),
	CYAML_FIELD_INT("max", OPT, kh_refused, max),
	STR_OPT("message-contains", kh_refused, message_contains),
	CYAML_FIELD_BOOL("closes", OPT, kh_refused, closes),
	CYAML_FIELD_END,
};
static const cyaml_schema_field_t produce_fields[] = {
	STR("node", kh_produce, node),
	STR("destination", kh_produce, destination),
	CYAML_FIELD_UINT("count", CYAML_FLAG_DEFAULT, kh_produce, count),
	CYAML_FIELD_UINT("size", OPT, kh_produce, size),
	CYAML_FIELD_BOOL("persistent", OPT, kh_produce, persistent),
	CYAML_FIELD_BOOL("receipts", OPT, kh_produce, receipts),
	CYAML_FIELD_UINT("priority", OPT, kh_produce, priority),
	WITHIN(kh_produce),
	CYAML_FIELD_MAPPING_PTR("refused", OPT, kh_produce, refused, refused_fields),
	CYAML_FIELD_BOOL("allow-dropped", OPT, kh_produce, allow_dropped),
	CYAML_FIELD_BOOL("background", OPT, kh_produce, background),
	CYAML_FIELD_END,
};
static const cyaml_schema_field_t join_fields[] = {
	WITHIN(kh_join),
	CYAML_FIELD_END,
};
static const cyaml_schema_field_t consume_fields[] = {
	STR("node", kh_consume, node),
	STR("destination", kh_consume, destination),
	CYAML_FIELD_UINT("count", OPT, kh_consume, count),
	CYAML_FIELD_BOOL("until-empty", OPT, kh_consume, until_empty),
	STR_OPT("count-of", kh_consume, count_of),
	STR_OPT("ack", kh_consume, ack),
	WITHIN(kh_consume),
	CYAML_FIELD_END,
};
static const cyaml_schema_field_t expect_fields[] = {
	STR_OPT("destination", kh_expect, destination),
	CYAML_FIELD_BOOL("no-loss", OPT, kh_expect, no_loss),
	CYAML_FIELD_BOOL("no-duplicates", OPT, kh_expect, no_duplicates),
	CYAML_FIELD_INT("produced", OPT, kh_expect, produced),
	CYAML_FIELD_INT("receipted", OPT, kh_expect, receipted),
	CYAML_FIELD_INT("consumed", OPT, kh_expect, consumed),
	CYAML_FIELD_END,
};
static const cyaml_schema_field_t fault_fields[] = {
	STR("node", kh_fault, node),
	STR("name", kh_fault, name),
	CYAML_FIELD_BOOL("enable", CYAML_FLAG_DEFAULT, kh_fault, enable),
	CYAML_FIELD_INT("failinfo", OPT, kh_fault, failinfo),
	CYAML_FIELD_FLOAT("probability", OPT, kh_fault, probability),
	CYAML_FIELD_END,
};
static const cyaml_schema_value_t where_schema = {
	CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 1, 1024),
};
static const cyaml_schema_field_t await_fields[] = {
	STR("node", kh_await_step, node),
	STR("type", kh_await_step, type),
	CYAML_FIELD_SEQUENCE("where", CYAML_FLAG_POINTER | OPT, kh_await_step, where,
			     &where_schema, 0, KH_MAX_PREDICATES),
	WITHIN(kh_await_step),
	STR_OPT("since", kh_await_step, since),
	CYAML_FIELD_END,
};
/* manage: args and expect.fields have free keys, read from the scan
 * (collect_kvs), so libcyaml only skips them. */
static const cyaml_schema_field_t manage_expect_fields[] = {
	STR_OPT("status", kh_manage_expect, status),
	STR_OPT("message-contains", kh_manage_expect, message_contains),
	CYAML_FIELD_IGNORE("fields", OPT),
	CYAML_FIELD_SEQUENCE("where", CYAML_FLAG_POINTER | OPT, kh_manage_expect, where,
			     &where_schema, 0, KH_MAX_PREDICATES),
	CYAML_FIELD_END,
};
static const cyaml_schema_field_t manage_fields[] = {
	STR("node", kh_manage, node),
	STR("operation", kh_manage, operation),
	CYAML_FIELD_IGNORE("args", OPT),
	CYAML_FIELD_MAPPING_PTR("expect", OPT, kh_manage, expect, manage_expect_fields),
	CYAML_FIELD_IGNORE("save", OPT), /* free keys: collect_kvs */
	WITHIN(kh_manage),
	CYAML_FIELD_END,
};

#define STEP_OP(key, member, fields) \
	CYAML_FIELD_MAPPING_PTR(key, OPT, kh_step, member, fields)
static const cyaml_schema_field_t step_fields[] = {
	STEP_OP("start", start, nodeop_fields),
	STEP_OP("stop", stop, stop_fields),
	STEP_OP("kill", kill, stop_fields),
	STEP_OP("pause", pause, nodeop_fields),
	STEP_OP("resume", resume, nodeop_fields),
	STEP_OP("restart", restart, restart_fields),
	STEP_OP("produce", produce, produce_fields),
	STEP_OP("consume", consume, consume_fields),
	STEP_OP("expect", expect, expect_fields),
	STEP_OP("fault", fault, fault_fields),
	STEP_OP("await", await, await_fields),
	STR_OPT("crash", kh_step, crash),
	STEP_OP("manage", manage, manage_fields),
	STEP_OP("join", join, join_fields),
	CYAML_FIELD_END,
};
static const cyaml_schema_value_t step_schema = {
	CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, kh_step, step_fields),
};
static const cyaml_schema_field_t node_fields[] = {
	CYAML_FIELD_STRING_PTR("name", CYAML_FLAG_POINTER, kh_node_spec, name, 1, 64),
	STR_OPT("role", kh_node_spec, role),
	STR_OPT("config", kh_node_spec, config),
	CYAML_FIELD_IGNORE("env", OPT), /* free keys: collect_kvs */
	CYAML_FIELD_END,
};
static const cyaml_schema_value_t node_schema = {
	CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, kh_node_spec, node_fields),
};
static const cyaml_schema_field_t scenario_fields[] = {
	CYAML_FIELD_STRING_PTR("name", CYAML_FLAG_POINTER | OPT, kh_scenario, name, 1, 128),
	STR_OPT("description", kh_scenario, description),
	CYAML_FIELD_FLOAT("timeout", OPT, kh_scenario, timeout_s),
	CYAML_FIELD_SEQUENCE("nodes", CYAML_FLAG_POINTER, kh_scenario, nodes, &node_schema, 0,
			     KH_MAX_NODES),
	CYAML_FIELD_SEQUENCE("steps", CYAML_FLAG_POINTER, kh_scenario, steps, &step_schema, 0,
			     KH_MAX_STEPS),
	CYAML_FIELD_END,
};
static const cyaml_schema_value_t scenario_schema = {
	CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, kh_scenario, scenario_fields),
};

static const char *const kind_names[KH_STEP__COUNT] = {
	"start", "stop", "kill", "pause", "resume", "restart", "produce",
	"consume", "expect", "fault", "await", "crash", "manage", "join",
};

/* Keys whose values libcyaml reads as booleans: libcyaml 1.3 reads any
 * word that is not a "false" word as true, so the scan checks them. */
static const char *const bool_keys[] = {
	"kill", "persistent", "receipts", "until-empty", "no-loss", "no-duplicates", "enable",
	"closes", "allow-dropped", "background",
};

const char *kh_step_kind_name(kh_step_kind k)
{
	return (unsigned)k < KH_STEP__COUNT ? kind_names[k] : NULL;
}

/* ---- allocation and libcyaml's log ------------------------------------- */

static void *sc_mem(void *ctx, void *ptr, size_t size)
{
	(void)ctx;
	if (size == 0) {
		keel_free(ptr);
		return NULL;
	}
	return keel_realloc(ptr, size);
}

typedef struct sc_frame {
	char field[64];
	unsigned entry;         /* 1-based sequence entry */
	bool is_entry;
	unsigned line;
} sc_frame;

typedef struct sc_log {
	char msg[256];
	sc_frame frames[KH_MAX_YAML_DEPTH * 2]; /* innermost first */
	unsigned nframes;
} sc_log;

static void sc_log_fn(cyaml_log_t level, void *ctx, const char *fmt, va_list args)
{
	sc_log *log = ctx;
	char line[320];
	if (level < CYAML_LOG_ERROR)
		return;
	vsnprintf(line, sizeof(line), fmt, args);
	line[strcspn(line, "\n")] = '\0';

	sc_frame f = { 0 };
	if (strncmp(line, "  in mapping field '", 20) == 0) {
		const char *name = line + 20;
		const char *end = strstr(name, "' (line: ");
		if (end == NULL)
			return;
		size_t n = (size_t)(end - name);
		if (n >= sizeof(f.field))
			n = sizeof(f.field) - 1;
		memcpy(f.field, name, n);
		f.line = (unsigned)strtoul(end + 9, NULL, 10);
	} else if (strncmp(line, "  in mapping (line: ", 20) == 0) {
		f.line = (unsigned)strtoul(line + 20, NULL, 10);
	} else if (strncmp(line, "  in sequence entry '", 21) == 0) {
		char *end;
		f.is_entry = true;
		f.entry = (unsigned)strtoul(line + 21, &end, 10);
		const char *l = strstr(end, "(line: ");
		f.line = l ? (unsigned)strtoul(l + 7, NULL, 10) : 0;
	} else {
		const char *m = strncmp(line, "Load: ", 6) == 0 ? line + 6 : line;
		if (log->msg[0] == '\0' && strcmp(m, "Backtrace:") != 0)
			snprintf(log->msg, sizeof(log->msg), "%.*s", (int)sizeof(log->msg) - 1, m);
		return;
	}
	if (log->nframes < sizeof(log->frames) / sizeof(log->frames[0]))
		log->frames[log->nframes++] = f;
}

/* ---- the libyaml scan: key paths and their lines ----------------------- */

typedef struct sc_key {
	char *path;
	unsigned line;
	char *value;            /* the scalar value of this path, NULL for containers */
	bool plain;             /* value was an unquoted scalar */
} sc_key;

typedef struct sc_scan {
	sc_key *keys;
	size_t count;
	size_t cap;
} sc_scan;

typedef struct scan_frame {
	bool is_map;
	bool want_key;
	bool bool_value;
	size_t base_len;
	unsigned index;
} scan_frame;

static void scan_free(sc_scan *s)
{
	for (size_t i = 0; i < s->count; i++) {
		keel_free(s->keys[i].path);
		keel_free(s->keys[i].value);
	}
	keel_free(s->keys);
	memset(s, 0, sizeof(*s));
}

static int scan_add(sc_scan *s, const char *path, unsigned line)
{
	if (s->count == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		sc_key *k = keel_realloc(s->keys, cap * sizeof(*k));
		if (k == NULL)
			return -ENOMEM;
		s->keys = k;
		s->cap = cap;
	}
	char *p = keel_strdup(path);
	if (p == NULL)
		return -ENOMEM;
	s->keys[s->count].path = p;
	s->keys[s->count].line = line;
	s->keys[s->count].value = NULL;
	s->keys[s->count].plain = false;
	s->count++;
	return 0;
}

/* Line of `path` (the last occurrence), or 0. */
static unsigned scan_line(const sc_scan *s, const char *path)
{
	for (size_t i = s->count; i-- > 0;) {
		if (strcmp(s->keys[i].path, path) == 0)
			return s->keys[i].line;
	}
	return 0;
}

static unsigned scan_linef(const sc_scan *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static unsigned scan_linef(const sc_scan *s, const char *fmt, ...)
{
	char path[KH_PATH_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(path, sizeof(path), fmt, ap);
	va_end(ap);
	return scan_line(s, path);
}

static bool bool_word_valid(const char *v)
{
	static const char *const words[] = { "true", "false", "yes", "no", "on",
					     "off", "enable", "disable", "1", "0" };
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		if (strcasecmp(v, words[i]) == 0)
			return true;
	}
	return false;
}

static bool is_bool_key(const char *key)
{
	for (size_t i = 0; i < sizeof(bool_keys) / sizeof(bool_keys[0]); i++) {
		if (strcmp(key, bool_keys[i]) == 0)
			return true;
	}
	return false;
}

static void path_append(char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void path_append(char *path, const char *fmt, ...)
{
	size_t len = strlen(path);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(path + len, KH_PATH_MAX - len, fmt, ap);
	va_end(ap);
}

static int scan_yaml(sc_scan *s, const char *name, const char *yaml, size_t len, char *err,
		     size_t errlen)
{
	yaml_parser_t parser;
	yaml_event_t ev;
	scan_frame stack[KH_MAX_YAML_DEPTH];
	unsigned depth = 0, docs = 0;
	char path[KH_PATH_MAX] = "";
	int rc = 0;
	bool done = false;

	if (!yaml_parser_initialize(&parser))
		return -ENOMEM;
	yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
	while (!done) {
		if (!yaml_parser_parse(&parser, &ev)) {
			unsigned line = (unsigned)parser.problem_mark.line + 1;
			const char *problem = parser.problem ? parser.problem : "invalid YAML";
			snprintf(err, errlen, "%s:%u: %s%ssyntax error: %s", name, line, path,
				 path[0] ? ": " : "", problem);
			rc = parser.error == YAML_MEMORY_ERROR ? -ENOMEM : -EINVAL;
			goto out;
		}
		unsigned line = (unsigned)ev.start_mark.line + 1;
		scan_frame *top = depth ? &stack[depth - 1] : NULL;
		bool node = ev.type == YAML_SCALAR_EVENT || ev.type == YAML_SEQUENCE_START_EVENT ||
			    ev.type == YAML_MAPPING_START_EVENT || ev.type == YAML_ALIAS_EVENT;
		bool complete = false;

		if (ev.type == YAML_STREAM_END_EVENT)
			done = true;
		if (ev.type == YAML_DOCUMENT_START_EVENT && ++docs > 1) {
			snprintf(err, errlen, "%s:%u: only one YAML document is allowed", name,
				 line);
			rc = -EINVAL;
			goto out_event;
		}
		if (ev.type == YAML_ALIAS_EVENT) {
			snprintf(err, errlen, "%s:%u: %s%saliases are not supported", name, line,
				 path, path[0] ? ": " : "");
			rc = -EINVAL;
			goto out_event;
		}
		if (node && top && top->is_map && top->want_key) {
			if (ev.type != YAML_SCALAR_EVENT) {
				snprintf(err, errlen, "%s:%u: %s%skeys must be plain words", name,
					 line, path, path[0] ? ": " : "");
				rc = -EINVAL;
				goto out_event;
			}
			const char *key = (const char *)ev.data.scalar.value;
			path_append(path, "%s%s", path[0] ? "." : "", key);
			rc = scan_add(s, path, line);
			if (rc)
				goto out_event;
			top->want_key = false;
			top->bool_value = is_bool_key(key);
			yaml_event_delete(&ev);
			continue;
		}
		if (node && top && !top->is_map) {
			path_append(path, "[%u]", top->index);
			rc = scan_add(s, path, line);
			if (rc)
				goto out_event;
		}
		switch (ev.type) {
		case YAML_SCALAR_EVENT:
			if (top && top->is_map && top->bool_value &&
			    !bool_word_valid((const char *)ev.data.scalar.value)) {
				snprintf(err, errlen, "%s:%u: %s: invalid boolean \"%s\"", name,
					 line, path, (const char *)ev.data.scalar.value);
				rc = -EINVAL;
				goto out_event;
			}
			/* Keep the value of the key (or entry) just added. */
			if (s->count > 0 && strcmp(s->keys[s->count - 1].path, path) == 0 &&
			    s->keys[s->count - 1].value == NULL) {
				sc_key *k = &s->keys[s->count - 1];
				k->value = keel_strdup((const char *)ev.data.scalar.value);
				if (k->value == NULL) {
					rc = -ENOMEM;
					goto out_event;
				}
				k->plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
			}
			complete = true;
			break;
		case YAML_SEQUENCE_START_EVENT:
		case YAML_MAPPING_START_EVENT:
			if (depth == KH_MAX_YAML_DEPTH) {
				snprintf(err, errlen, "%s:%u: %s%snested deeper than %d levels",
					 name, line, path, path[0] ? ": " : "", KH_MAX_YAML_DEPTH);
				rc = -EINVAL;
				goto out_event;
			}
			stack[depth++] = (scan_frame){
				.is_map = ev.type == YAML_MAPPING_START_EVENT,
				.want_key = true,
				.base_len = strlen(path),
			};
			break;
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT:
			assert(depth > 0);
			depth--;
			complete = true;
			break;
		default:
			break;
		}
		if (complete && depth > 0) {
			scan_frame *parent = &stack[depth - 1];
			assert(parent->base_len < KH_PATH_MAX);
			path[parent->base_len] = '\0';
			if (parent->is_map) {
				parent->want_key = true;
				parent->bool_value = false;
			} else {
				parent->index++;
			}
		}
		yaml_event_delete(&ev);
	}
	goto out;

out_event:
	yaml_event_delete(&ev);
out:
	yaml_parser_delete(&parser);
	return rc;
}

/* ---- libcyaml errors -> "file:line: key: message" ---------------------- */

static const char *event_word(const char *ev)
{
	if (strncmp(ev, "SCALAR", 6) == 0)
		return "a single value";
	if (strncmp(ev, "SEQUENCE_START", 14) == 0)
		return "a list";
	if (strncmp(ev, "MAPPING_START", 13) == 0)
		return "a mapping";
	return ev;
}

static const char *type_word(const char *t)
{
	static const char *const words[][2] = {
		{ "STRING", "a string" }, { "MAPPING", "a mapping" },
		{ "SEQUENCE", "a list" }, { "INT", "an integer" },
		{ "UINT", "an unsigned integer" }, { "BOOLEAN", "a boolean" },
		{ "FLOAT", "a number" },
	};
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		if (strcmp(t, words[i][0]) == 0)
			return words[i][1];
	}
	return t;
}

static void cyaml_msg_words(const char *msg, char *out, size_t outlen, char *key, size_t keylen)
{
	char a[128], b[128];
	unsigned u;
	key[0] = '\0';
	if (sscanf(msg, "Invalid INT value: '%127[^']'", a) == 1 ||
	    sscanf(msg, "Invalid int64_t value: '%127[^']'", a) == 1) {
		snprintf(out, outlen, "invalid integer \"%s\"", a);
	} else if (sscanf(msg, "Invalid UINT value: '%127[^']'", a) == 1 ||
		   sscanf(msg, "Invalid uint64_t value: '%127[^']'", a) == 1) {
		snprintf(out, outlen, "invalid unsigned integer \"%s\"", a);
	} else if (sscanf(msg, "Invalid FLOAT value: '%127[^']'", a) == 1 ||
		   sscanf(msg, "Invalid FLOAT value: %127s", a) == 1) {
		snprintf(out, outlen, "invalid number \"%s\"", a);
	} else if (sscanf(msg, "Unexpected key: %127s", a) == 1) {
		snprintf(key, keylen, "%s", a);
		snprintf(out, outlen, "unknown key");
	} else if (sscanf(msg, "Missing required mapping field: %127s", a) == 1) {
		snprintf(key, keylen, "%s", a);
		snprintf(out, outlen, "missing required key");
	} else if (sscanf(msg, "Mapping field already seen: %127s", a) == 1) {
		snprintf(key, keylen, "%s", a);
		snprintf(out, outlen, "key given twice");
	} else if (sscanf(msg, "Expecting %127s got event: %127s", a, b) == 2) {
		a[strcspn(a, ",")] = '\0';
		snprintf(out, outlen, "expected %s, got %s", type_word(a), event_word(b));
	} else if (sscanf(msg, "STRING length < %u:", &u) == 1) {
		snprintf(out, outlen, u == 1 ? "must not be empty" : "too short");
	} else if (sscanf(msg, "STRING length > %u:", &u) == 1) {
		snprintf(out, outlen, "longer than %u characters", u);
	} else if (strncmp(msg, "Excessive entries", 17) == 0) {
		snprintf(out, outlen, "too many entries");
	} else {
		snprintf(out, outlen, "%s", msg);
		if (out[0])
			out[0] = (char)tolower((unsigned char)out[0]);
	}
}

static void cyaml_error(const sc_log *log, const sc_scan *scan, const char *name,
			cyaml_err_t cerr, char *err, size_t errlen)
{
	char path[KH_PATH_MAX] = "", words[320], key[128];
	unsigned first = 0, line = 0;
	cyaml_msg_words(log->msg[0] ? log->msg : cyaml_strerror(cerr), words, sizeof(words), key,
			sizeof(key));
	if (key[0] && log->nframes > 0 && !log->frames[0].is_entry)
		first = 1;
	for (unsigned i = log->nframes; i-- > first;) {
		const sc_frame *f = &log->frames[i];
		if (f->is_entry)
			path_append(path, "[%u]", f->entry ? f->entry - 1 : 0);
		else if (f->field[0])
			path_append(path, "%s%s", path[0] ? "." : "", f->field);
	}
	if (key[0]) {
		size_t parent_len = strlen(path);
		path_append(path, "%s%s", path[0] ? "." : "", key);
		line = scan_line(scan, path);
		if (line == 0) {
			char parent[KH_PATH_MAX];
			snprintf(parent, sizeof(parent), "%.*s", (int)parent_len, path);
			line = parent_len ? scan_line(scan, parent) : 1;
		}
	} else {
		line = path[0] ? scan_line(scan, path) : 1;
	}
	if (line == 0 && log->nframes > 0)
		line = log->frames[0].line;
	if (line == 0)
		line = 1;
	if (path[0])
		snprintf(err, errlen, "%s:%u: %s: %s", name, line, path, words);
	else
		snprintf(err, errlen, "%s:%u: %s", name, line, words);
}

/* ---- checks ------------------------------------------------------------ */

typedef struct sc_check {
	const sc_scan *scan;
	const char *name;
	char *err;
	size_t errlen;
} sc_check;

/* "file:line: path: message"; the line is the path's, else its nearest
 * parent's that has one.  Returns -EINVAL. */
static int fail_at(sc_check *c, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail_at(sc_check *c, const char *path, const char *fmt, ...)
{
	char msg[512], p[KH_PATH_MAX];
	unsigned line = 0;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(p, sizeof(p), "%s", path);
	while (p[0] && (line = scan_line(c->scan, p)) == 0) {
		char *cut = strrchr(p, '.');
		char *br = strrchr(p, '[');
		if (br && (!cut || br > cut))
			cut = br;
		if (cut == NULL)
			break;
		*cut = '\0';
	}
	if (line == 0)
		line = 1;
	snprintf(c->err, c->errlen, "%s:%u: %s%s%s", c->name, line, path, path[0] ? ": " : "",
		 msg);
	return -EINVAL;
}

static bool name_ok(const char *s)
{
	if (!isalnum((unsigned char)*s))
		return false;
	for (; *s; s++) {
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.')
			return false;
	}
	return true;
}

static void kvs_free(kh_kv *kv, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		keel_free(kv[i].key);
		keel_free(kv[i].value);
	}
	keel_free(kv);
}

/* The entries below `prefix`, a mapping with free keys (manage args and
 * expect.fields, node env), as key/value pairs in file order.  With
 * `nested`, sub-mappings give dotted keys ({queue: {message-count: 3}} is
 * queue.message-count); without, every value must be a single value.
 * Lists are refused.  0 and *out (NULL when empty), -EINVAL or -ENOMEM. */
static int collect_kvs(sc_check *c, const char *prefix, bool nested, kh_kv **out,
		       unsigned *count)
{
	const sc_scan *scan = c->scan;
	size_t plen = strlen(prefix);
	kh_kv *kv = NULL;
	unsigned n = 0;
	int rc = 0;
	for (size_t i = 0; i < scan->count; i++) {
		const sc_key *k = &scan->keys[i];
		if (strcmp(k->path, prefix) == 0) {
			if (k->value && k->value[0]) {
				rc = fail_at(c, prefix, "expected a mapping");
				goto fail;
			}
			continue;
		}
		if (strncmp(k->path, prefix, plen) != 0 ||
		    (k->path[plen] != '.' && k->path[plen] != '['))
			continue;
		const char *key = k->path + plen + 1;
		if (k->path[plen] == '[' || strchr(key, '[')) {
			rc = fail_at(c, k->path, "lists are not supported here");
			goto fail;
		}
		if (k->value == NULL) {
			if (nested)
				continue;
			rc = fail_at(c, k->path, "expected a single value");
			goto fail;
		}
		for (unsigned j = 0; j < n; j++) {
			if (strcmp(kv[j].key, key) == 0) {
				rc = fail_at(c, k->path, "key given twice");
				goto fail;
			}
		}
		kh_kv *g = keel_realloc(kv, (n + 1) * sizeof(*kv));
		if (g == NULL) {
			rc = -ENOMEM;
			goto fail;
		}
		kv = g;
		kv[n].key = keel_strdup(key);
		kv[n].value = keel_strdup(k->value);
		kv[n].plain = k->plain;
		n++;
		if (kv[n - 1].key == NULL || kv[n - 1].value == NULL) {
			rc = -ENOMEM;
			goto fail;
		}
	}
	*out = kv;
	*count = n;
	return 0;
fail:
	kvs_free(kv, n);
	return rc;
}

static bool env_name_ok(const char *s)
{
	if (!isalpha((unsigned char)*s) && *s != '_')
		return false;
	for (; *s; s++) {
		if (!isalnum((unsigned char)*s) && *s != '_')
			return false;
	}
	return true;
}

static int check_within(sc_check *c, const char *path, double v);

static int check_manage(sc_check *c, kh_manage *m, unsigned i, const char *p)
{
	char path[KH_PATH_MAX + 64];
	int rc;
	kh_manage_expect *ex = m->expect;
	for (const char *q = m->operation; *q; q++) {
		if (isspace((unsigned char)*q)) {
			snprintf(path, sizeof(path), "%s.operation", p);
			return fail_at(c, path, "\"%s\" is not an operation name", m->operation);
		}
	}
	if (ex && ex->status && strcmp(ex->status, "ok") != 0 && strcmp(ex->status, "error") != 0) {
		snprintf(path, sizeof(path), "%s.expect.status", p);
		return fail_at(c, path, "\"%s\": expected ok or error", ex->status);
	}
	m->expect_error = ex && ex->status && strcmp(ex->status, "error") == 0;
	if (ex && ex->message_contains && !m->expect_error) {
		snprintf(path, sizeof(path), "%s.expect.message-contains", p);
		return fail_at(c, path, "only with status: error (an ok reply has no message)");
	}
	snprintf(path, sizeof(path), "steps[%u].manage.args", i);
	if ((rc = collect_kvs(c, path, false, &m->args, &m->args_count)))
		return rc;
	for (unsigned k = 0; k < m->args_count; k++) {
		if (strcmp(m->args[k].key, "operation") == 0) {
			snprintf(path, sizeof(path), "steps[%u].manage.args.operation", i);
			return fail_at(c, path, "give the operation as manage.operation");
		}
	}
	snprintf(path, sizeof(path), "steps[%u].manage.expect.fields", i);
	if ((rc = collect_kvs(c, path, true, &m->fields, &m->fields_count)))
		return rc;
	if (m->fields_count && m->expect_error)
		return fail_at(c, path, "fields are checked on ok replies only");
	snprintf(path, sizeof(path), "steps[%u].manage.save", i);
	if ((rc = collect_kvs(c, path, false, &m->saves, &m->saves_count)))
		return rc;
	if (m->saves_count && m->expect_error)
		return fail_at(c, path, "values are saved from ok replies only");
	for (unsigned k = 0; k < m->saves_count; k++) {
		if (!name_ok(m->saves[k].key)) {
			snprintf(path, sizeof(path), "steps[%u].manage.save.%s", i, m->saves[k].key);
			return fail_at(c, path, "use letters, digits, '-', '_' and '.'");
		}
	}
	if (ex && ex->where_count) {
		snprintf(path, sizeof(path), "%s.expect.where", p);
		if (m->expect_error)
			return fail_at(c, path, "where is checked on ok replies only");
		ex->preds = keel_calloc(ex->where_count, sizeof(*ex->preds));
		if (ex->preds == NULL)
			return -ENOMEM;
		for (unsigned k = 0; k < ex->where_count; k++) {
			char why[256];
			rc = kh_pred_parse(&ex->preds[k], ex->where[k], why, sizeof(why));
			if (rc == -ENOMEM)
				return rc;
			if (rc) {
				snprintf(path, sizeof(path), "%s.expect.where[%u]", p, k);
				return fail_at(c, path, "%s", why);
			}
		}
	}
	snprintf(path, sizeof(path), "%s.within", p);
	return check_within(c, path, m->within_s);
}

static int check_within(sc_check *c, const char *path, double v)
{
	if (v < 0 || v > KH_MAX_SECONDS)
		return fail_at(c, path, "must be between 0 and %.0f seconds", KH_MAX_SECONDS);
	return 0;
}

static int check_node_ref(sc_check *c, const kh_scenario *s, const char *path, const char *node)
{
	if (kh_scenario_node_index(s, node) < 0)
		return fail_at(c, path, "unknown node \"%s\"", node);
	return 0;
}

static int check_step(sc_check *c, kh_scenario *s, unsigned i, bool allow_test_steps)
{
	kh_step *st = &s->steps[i];
	char p[KH_PATH_MAX];
	const void *kinds[KH_STEP__COUNT] = {
		st->start, st->stop, st->kill, st->pause, st->resume, st->restart,
		st->produce, st->consume, st->expect, st->fault, st->await, st->crash,
		st->manage, st->join,
	};
	int found = -1, rc;
	for (int k = 0; k < KH_STEP__COUNT; k++) {
		if (kinds[k] == NULL)
			continue;
		if (found >= 0) {
			snprintf(p, sizeof(p), "steps[%u].%s", i, kind_names[k]);
			return fail_at(c, p, "a step has one kind (this one is already \"%s\")",
				       kind_names[found]);
		}
		found = k;
	}
	snprintf(p, sizeof(p), "steps[%u]", i);
	if (found < 0)
		return fail_at(c, p, "empty step (one of start, stop, kill, pause, resume, "
				     "restart, produce, consume, expect, fault, await, manage, "
				     "join)");
	st->kind = (kh_step_kind)found;
	st->line = scan_line(c->scan, p);
	snprintf(p, sizeof(p), "steps[%u].%s", i, kind_names[found]);
	char sub[KH_PATH_MAX + 64];
#define SUB(key) (snprintf(sub, sizeof(sub), "%s.%s", p, key), sub)

	const char *node = kh_step_node(st);
	if (node && (rc = check_node_ref(c, s, SUB("node"), node)))
		return rc;
	switch (st->kind) {
	case KH_STEP_STOP:
	case KH_STEP_KILL:
	case KH_STEP_RESTART: {
		const kh_node_op *op = st->stop ? st->stop : st->kill ? st->kill : st->restart;
		return check_within(c, SUB("within"), op->within_s);
	}
	case KH_STEP_PRODUCE: {
		const kh_produce *pr = st->produce;
		if (pr->count == 0 || pr->count > KH_MAX_PRODUCE_COUNT)
			return fail_at(c, SUB("count"), "must be 1..%d", KH_MAX_PRODUCE_COUNT);
		if (pr->size > KH_MAX_BODY_BYTES)
			return fail_at(c, SUB("size"), "at most %d bytes", KH_MAX_BODY_BYTES);
		if (scan_linef(c->scan, "steps[%u].produce.priority", i) == 0)
			st->produce->priority = 4;
		else if (pr->priority > 9)
			return fail_at(c, SUB("priority"), "must be 0..9");
		if (pr->refused) {
			kh_refused *rf = pr->refused;
			if (!pr->receipts)
				return fail_at(c, SUB("refused"), "needs receipts: true (a refusal "
					       "names its SEND by the receipt-id)");
			if (scan_linef(c->scan, "steps[%u].produce.refused.min", i) == 0)
				rf->min = 1;
			if (scan_linef(c->scan, "steps[%u].produce.refused.max", i) == 0)
				rf->max = -1;
			else if (rf->max < 0 || (uint64_t)rf->max < rf->min)
				return fail_at(c, SUB("refused.max"), "must be at least min (%u)",
					       rf->min);
			if (rf->min > pr->count)
				return fail_at(c, SUB("refused.min"), "more than count (%u)",
					       pr->count);
		}
		if (pr->background) {
			bool joined = false;
			for (unsigned k = i + 1; k < s->steps_count && !joined; k++)
				joined = s->steps[k].join != NULL;
			if (!joined)
				return fail_at(c, SUB("background"), "needs a join step after it");
		}
		if (pr->allow_dropped && !pr->receipts)
			return fail_at(c, SUB("allow-dropped"), "needs receipts: true (it is about "
				       "receipted messages)");
		return check_within(c, SUB("within"), pr->within_s);
	}
	case KH_STEP_JOIN:
		return check_within(c, SUB("within"), st->join->within_s);
	case KH_STEP_CONSUME: {
		kh_consume *co = st->consume;
		bool has_count = scan_linef(c->scan, "steps[%u].consume.count", i) != 0;
		if ((unsigned)has_count + (unsigned)co->until_empty + (co->count_of != NULL) != 1)
			return fail_at(c, p, "give exactly one of count, until-empty: true and "
					     "count-of");
		if (co->count_of) {
			bool saved = false;
			for (unsigned k = 0; k < i && !saved; k++) {
				const kh_manage *m = s->steps[k].manage;
				for (unsigned v = 0; m && v < m->saves_count && !saved; v++)
					saved = strcmp(m->saves[v].key, co->count_of) == 0;
			}
			if (!saved)
				return fail_at(c, SUB("count-of"), "\"%s\" is not saved by a manage "
					       "step before this one", co->count_of);
		}
		if (has_count && (co->count == 0 || co->count > KH_MAX_PRODUCE_COUNT))
			return fail_at(c, SUB("count"), "must be 1..%d", KH_MAX_PRODUCE_COUNT);
		if (co->ack && strcmp(co->ack, "auto") != 0 && strcmp(co->ack, "client") != 0 &&
		    strcmp(co->ack, "client-individual") != 0)
			return fail_at(c, SUB("ack"),
				       "\"%s\": expected auto, client or client-individual",
				       co->ack);
		return check_within(c, SUB("within"), co->within_s);
	}
	case KH_STEP_EXPECT: {
		kh_expect *ex = st->expect;
		static const char *const keys[] = { "produced", "receipted", "consumed" };
		int64_t *vals[] = { &ex->produced, &ex->receipted, &ex->consumed };
		bool any = ex->no_loss || ex->no_duplicates;
		for (unsigned k = 0; k < 3; k++) {
			if (scan_linef(c->scan, "steps[%u].expect.%s", i, keys[k]) == 0) {
				*vals[k] = -1;
				continue;
			}
			any = true;
			if (*vals[k] < 0)
				return fail_at(c, SUB(keys[k]), "must not be negative");
		}
		if (!any)
			return fail_at(c, p, "expects nothing (no-loss, no-duplicates, produced, "
					     "receipted, consumed)");
		return 0;
	}
	case KH_STEP_FAULT: {
		const kh_fault *f = st->fault;
		if (f->probability < 0 || f->probability > 1)
			return fail_at(c, SUB("probability"), "must be between 0 and 1");
		for (const char *q = f->name; *q; q++) {
			if (isspace((unsigned char)*q) || *q == ',' || *q == '=')
				return fail_at(c, SUB("name"), "\"%s\" is not a fault point name",
					       f->name);
		}
		s->uses_faults = true;
		return 0;
	}
	case KH_STEP_AWAIT: {
		kh_await_step *aw = st->await;
		if (aw->since == NULL || strcmp(aw->since, "last-step") == 0)
			st->since = KH_SINCE_LAST_STEP;
		else if (strcmp(aw->since, "start") == 0)
			st->since = KH_SINCE_START;
		else if (strcmp(aw->since, "now") == 0)
			st->since = KH_SINCE_NOW;
		else
			return fail_at(c, SUB("since"),
				       "\"%s\": expected start, last-step or now", aw->since);
		if ((rc = check_within(c, SUB("within"), aw->within_s)))
			return rc;
		if (aw->where_count == 0)
			return 0;
		aw->preds = keel_calloc(aw->where_count, sizeof(*aw->preds));
		if (aw->preds == NULL)
			return -ENOMEM;
		for (unsigned k = 0; k < aw->where_count; k++) {
			char why[256];
			rc = kh_pred_parse(&aw->preds[k], aw->where[k], why, sizeof(why));
			if (rc == -ENOMEM)
				return rc;
			if (rc) {
				char wp[KH_PATH_MAX + 32];
				snprintf(wp, sizeof(wp), "%s.where[%u]", p, k);
				return fail_at(c, wp, "%s", why);
			}
		}
		return 0;
	}
	case KH_STEP_MANAGE:
		return check_manage(c, st->manage, i, p);
	case KH_STEP_CRASH:
		if (!allow_test_steps)
			return fail_at(c, p, "test-only step (needs --allow-test-steps or "
					     "KH_ALLOW_TEST_STEPS=1)");
		if (strcmp(st->crash, "abort") != 0 && strcmp(st->crash, "segv") != 0)
			return fail_at(c, p, "\"%s\": expected abort or segv", st->crash);
		return 0;
	default:
		return 0;
	}
#undef SUB
}

static int check_scenario(sc_check *c, kh_scenario *s, bool allow_test_steps)
{
	int rc;
	char p[KH_PATH_MAX];
	if (scan_line(c->scan, "timeout") == 0)
		s->timeout_s = KH_DEFAULT_SCENARIO_TIMEOUT_S;
	else if (s->timeout_s <= 0 || s->timeout_s > KH_MAX_SECONDS)
		return fail_at(c, "timeout", "must be between 0 and %.0f seconds",
			       KH_MAX_SECONDS);
	if (s->nodes_count == 0)
		return fail_at(c, "nodes", "at least one node");
	if (s->steps_count == 0)
		return fail_at(c, "steps", "at least one step");
	if (s->name && !name_ok(s->name))
		return fail_at(c, "name", "\"%s\": use letters, digits, '-', '_' and '.'",
			       s->name);
	for (unsigned i = 0; i < s->nodes_count; i++) {
		kh_node_spec *n = &s->nodes[i];
		snprintf(p, sizeof(p), "nodes[%u].name", i);
		if (!name_ok(n->name))
			return fail_at(c, p, "\"%s\": use letters, digits, '-', '_' and '.'",
				       n->name);
		for (unsigned j = 0; j < i; j++) {
			if (strcmp(s->nodes[j].name, n->name) == 0)
				return fail_at(c, p, "node \"%s\" is already defined", n->name);
		}
		snprintf(p, sizeof(p), "nodes[%u].env", i);
		if ((rc = collect_kvs(c, p, false, &n->env, &n->env_count)))
			return rc;
		for (unsigned k = 0; k < n->env_count; k++) {
			if (!env_name_ok(n->env[k].key)) {
				snprintf(p, sizeof(p), "nodes[%u].env.%s", i, n->env[k].key);
				return fail_at(c, p, "not an environment variable name");
			}
		}
		snprintf(p, sizeof(p), "nodes[%u].role", i);
		if (n->role && strcmp(n->role, "standalone") != 0 && strcmp(n->role, "live") != 0 &&
		    strcmp(n->role, "backup") != 0)
			return fail_at(c, p, "\"%s\": expected standalone, live or backup",
				       n->role);
		if (n->config) {
			/* The node's config must be one keel-broker accepts. */
			keel_config *cfg = NULL;
			char why[512], nm[KH_PATH_MAX];
			snprintf(nm, sizeof(nm), "config");
			rc = keel_config_load_data(nm, n->config, strlen(n->config), &cfg, why,
						   sizeof(why));
			keel_config_free(cfg);
			if (rc == -ENOMEM)
				return rc;
			if (rc) {
				snprintf(p, sizeof(p), "nodes[%u].config", i);
				return fail_at(c, p, "%s (line numbers inside the block)", why);
			}
		}
	}
	for (unsigned i = 0; i < s->steps_count; i++) {
		if ((rc = check_step(c, s, i, allow_test_steps)))
			return rc;
	}
	return 0;
}

/* ---- load -------------------------------------------------------------- */

static char *base_name(const char *path)
{
	const char *b = strrchr(path, '/');
	b = b ? b + 1 : path;
	size_t n = strlen(b);
	if (n > 5 && strcmp(b + n - 5, ".yaml") == 0)
		n -= 5;
	else if (n > 4 && strcmp(b + n - 4, ".yml") == 0)
		n -= 4;
	return keel_strndup(b, n);
}

int kh_scenario_load_data(const char *name, const char *yaml, size_t len, bool allow_test_steps,
			  kh_scenario **out, char *err, size_t errlen)
{
	sc_scan scan = { 0 };
	sc_log log = { 0 };
	kh_scenario *s = NULL;
	int rc;
	const cyaml_config_t cfg = {
		.log_fn = sc_log_fn,
		.log_ctx = &log,
		.mem_fn = sc_mem,
		.log_level = CYAML_LOG_ERROR,
		.flags = CYAML_CFG_NO_ALIAS,
	};

	err[0] = '\0';
	if (len > KH_MAX_SCENARIO_BYTES) {
		snprintf(err, errlen, "%s: larger than %d bytes", name, KH_MAX_SCENARIO_BYTES);
		return -EINVAL;
	}
	rc = scan_yaml(&scan, name, yaml, len, err, errlen);
	if (rc)
		goto out;
	cyaml_err_t cerr = cyaml_load_data((const uint8_t *)yaml, len, &cfg, &scenario_schema,
					   (cyaml_data_t **)&s, NULL);
	if (cerr != CYAML_OK) {
		if (cerr == CYAML_ERR_OOM) {
			rc = -ENOMEM;
			snprintf(err, errlen, "%s: out of memory", name);
		} else {
			rc = -EINVAL;
			cyaml_error(&log, &scan, name, cerr, err, errlen);
		}
		s = NULL;
		goto out;
	}
	if (s == NULL) {
		snprintf(err, errlen, "%s:1: empty scenario (needs nodes and steps)", name);
		rc = -EINVAL;
		goto out;
	}
	sc_check c = { .scan = &scan, .name = name, .err = err, .errlen = errlen };
	rc = check_scenario(&c, s, allow_test_steps);
	if (rc == -ENOMEM)
		snprintf(err, errlen, "%s: out of memory", name);
	if (rc)
		goto out;
	s->file = keel_strdup(name);
	if (s->file == NULL || (s->name == NULL && (s->name = base_name(name)) == NULL)) {
		rc = -ENOMEM;
		snprintf(err, errlen, "%s: out of memory", name);
		goto out;
	}
	*out = s;
	s = NULL;
out:
	kh_scenario_free(s);
	scan_free(&scan);
	return rc;
}

int kh_scenario_load(const char *path, bool allow_test_steps, kh_scenario **out, char *err,
		     size_t errlen)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t n;
	int rc;
	struct stat st;

	if (f == NULL) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return rc;
	}
	if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		rc = -EINVAL;
		goto out;
	}
	if (st.st_size > KH_MAX_SCENARIO_BYTES) {
		snprintf(err, errlen, "%s: larger than %d bytes", path, KH_MAX_SCENARIO_BYTES);
		rc = -EINVAL;
		goto out;
	}
	buf = keel_malloc((size_t)st.st_size + 1);
	if (buf == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	n = fread(buf, 1, (size_t)st.st_size, f);
	if (ferror(f)) {
		snprintf(err, errlen, "%s: read error", path);
		rc = -EIO;
		goto out;
	}
	buf[n] = '\0';
	rc = kh_scenario_load_data(path, buf, n, allow_test_steps, out, err, errlen);
out:
	keel_free(buf);
	fclose(f);
	return rc;
}

void kh_scenario_free(kh_scenario *s)
{
	if (s == NULL)
		return;
	const cyaml_config_t cfg = { .mem_fn = sc_mem, .log_level = CYAML_LOG_ERROR };
	for (unsigned i = 0; s->steps && i < s->steps_count; i++) {
		kh_await_step *aw = s->steps[i].await;
		kh_manage *m = s->steps[i].manage;
		if (m) {
			kvs_free(m->args, m->args_count);
			kvs_free(m->fields, m->fields_count);
			kvs_free(m->saves, m->saves_count);
			m->args = m->fields = m->saves = NULL;
			if (m->expect && m->expect->preds) {
				for (unsigned k = 0; k < m->expect->where_count; k++)
					kh_pred_clear(&m->expect->preds[k]);
				keel_free(m->expect->preds);
				m->expect->preds = NULL;
			}
		}
		if (aw && aw->preds) {
			for (unsigned k = 0; k < aw->where_count; k++)
				kh_pred_clear(&aw->preds[k]);
			keel_free(aw->preds);
			aw->preds = NULL;
		}
	}
	for (unsigned i = 0; s->nodes && i < s->nodes_count; i++) {
		kvs_free(s->nodes[i].env, s->nodes[i].env_count);
		s->nodes[i].env = NULL;
	}
	keel_free(s->file);
	s->file = NULL;
	cyaml_free(&cfg, &scenario_schema, s, 0);
}

int kh_scenario_node_index(const kh_scenario *s, const char *name)
{
	for (unsigned i = 0; i < s->nodes_count; i++) {
		if (strcmp(s->nodes[i].name, name) == 0)
			return (int)i;
	}
	return -1;
}

const char *kh_step_node(const kh_step *st)
{
	const kh_node_op *ops[] = { st->start, st->stop, st->kill, st->pause, st->resume,
				    st->restart };
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		if (ops[i])
			return ops[i]->node;
	}
	if (st->produce)
		return st->produce->node;
	if (st->consume)
		return st->consume->node;
	if (st->fault)
		return st->fault->node;
	if (st->await)
		return st->await->node;
	if (st->manage)
		return st->manage->node;
	return NULL;
}

json_t *kh_kv_json(const kh_kv *kv)
{
	const char *v = kv->value;
	if (!kv->plain)
		return json_string(v);
	if (strcmp(v, "true") == 0)
		return json_true();
	if (strcmp(v, "false") == 0)
		return json_false();
	if (v[0] == '\0' || strcmp(v, "null") == 0 || strcmp(v, "~") == 0)
		return json_null();
	char *end;
	errno = 0;
	long long ll = strtoll(v, &end, 10);
	if (*end == '\0' && errno == 0)
		return json_integer(ll);
	double d = strtod(v, &end);
	if (*end == '\0' && errno == 0)
		return json_real(d);
	return json_string(v);
}

static void set_str(json_t *o, const char *k, const char *v)
{
	if (v)
		json_object_set_new(o, k, json_string(v));
}

char *kh_step_params_json(const kh_step *st)
{
	json_t *o = json_object(), *root = json_object();
	char *text = NULL;
	if (o == NULL || root == NULL)
		goto out;
	switch (st->kind) {
	case KH_STEP_START: case KH_STEP_STOP: case KH_STEP_KILL:
	case KH_STEP_PAUSE: case KH_STEP_RESUME: case KH_STEP_RESTART: {
		const kh_node_op *ops[] = { st->start, st->stop, st->kill, st->pause, st->resume,
					    st->restart };
		const kh_node_op *op = ops[st->kind];
		set_str(o, "node", op->node);
		if (op->within_s > 0)
			json_object_set_new(o, "within", json_real(op->within_s));
		if (st->kind == KH_STEP_RESTART)
			json_object_set_new(o, "kill", json_boolean(op->kill));
		break;
	}
	case KH_STEP_PRODUCE: {
		const kh_produce *p = st->produce;
		set_str(o, "node", p->node);
		set_str(o, "destination", p->destination);
		json_object_set_new(o, "count", json_integer(p->count));
		json_object_set_new(o, "size", json_integer(p->size));
		json_object_set_new(o, "persistent", json_boolean(p->persistent));
		json_object_set_new(o, "receipts", json_boolean(p->receipts));
		json_object_set_new(o, "priority", json_integer(p->priority));
		if (p->within_s > 0)
			json_object_set_new(o, "within", json_real(p->within_s));
		if (p->refused) {
			json_t *r = json_object();
			json_object_set_new(r, "min", json_integer(p->refused->min));
			if (p->refused->max >= 0)
				json_object_set_new(r, "max", json_integer(p->refused->max));
			set_str(r, "message-contains", p->refused->message_contains);
			json_object_set_new(r, "closes", json_boolean(p->refused->closes));
			json_object_set_new(o, "refused", r);
		}
		if (p->allow_dropped)
			json_object_set_new(o, "allow-dropped", json_true());
		if (p->background)
			json_object_set_new(o, "background", json_true());
		break;
	}
	case KH_STEP_JOIN:
		if (st->join->within_s > 0)
			json_object_set_new(o, "within", json_real(st->join->within_s));
		break;
	case KH_STEP_CONSUME: {
		const kh_consume *p = st->consume;
		set_str(o, "node", p->node);
		set_str(o, "destination", p->destination);
		if (p->until_empty)
			json_object_set_new(o, "until-empty", json_true());
		else if (p->count_of)
			set_str(o, "count-of", p->count_of);
		else
			json_object_set_new(o, "count", json_integer(p->count));
		set_str(o, "ack", p->ack ? p->ack : "auto");
		if (p->within_s > 0)
			json_object_set_new(o, "within", json_real(p->within_s));
		break;
	}
	case KH_STEP_EXPECT: {
		const kh_expect *e = st->expect;
		set_str(o, "destination", e->destination);
		if (e->no_loss)
			json_object_set_new(o, "no-loss", json_true());
		if (e->no_duplicates)
			json_object_set_new(o, "no-duplicates", json_true());
		if (e->produced >= 0)
			json_object_set_new(o, "produced", json_integer(e->produced));
		if (e->receipted >= 0)
			json_object_set_new(o, "receipted", json_integer(e->receipted));
		if (e->consumed >= 0)
			json_object_set_new(o, "consumed", json_integer(e->consumed));
		break;
	}
	case KH_STEP_FAULT: {
		const kh_fault *f = st->fault;
		set_str(o, "node", f->node);
		set_str(o, "name", f->name);
		json_object_set_new(o, "enable", json_boolean(f->enable));
		json_object_set_new(o, "failinfo", json_integer(f->failinfo));
		if (f->probability > 0)
			json_object_set_new(o, "probability", json_real(f->probability));
		break;
	}
	case KH_STEP_AWAIT: {
		const kh_await_step *a = st->await;
		set_str(o, "node", a->node);
		set_str(o, "type", a->type);
		json_t *w = json_array();
		for (unsigned i = 0; i < a->where_count; i++)
			json_array_append_new(w, json_string(a->where[i]));
		json_object_set_new(o, "where", w);
		if (a->within_s > 0)
			json_object_set_new(o, "within", json_real(a->within_s));
		set_str(o, "since", a->since ? a->since : "last-step");
		break;
	}
	case KH_STEP_MANAGE: {
		const kh_manage *m = st->manage;
		set_str(o, "node", m->node);
		set_str(o, "operation", m->operation);
		json_t *a = json_object(), *x = json_object(), *fl = json_object();
		for (unsigned i = 0; i < m->args_count; i++)
			json_object_set_new(a, m->args[i].key, kh_kv_json(&m->args[i]));
		json_object_set_new(o, "args", a);
		set_str(x, "status", m->expect_error ? "error" : "ok");
		if (m->expect && m->expect->message_contains)
			set_str(x, "message-contains", m->expect->message_contains);
		for (unsigned i = 0; i < m->fields_count; i++)
			json_object_set_new(fl, m->fields[i].key, kh_kv_json(&m->fields[i]));
		json_object_set_new(x, "fields", fl);
		if (m->saves_count) {
			json_t *sv = json_object();
			for (unsigned i = 0; i < m->saves_count; i++)
				set_str(sv, m->saves[i].key, m->saves[i].value);
			json_object_set_new(o, "save", sv);
		}
		if (m->expect && m->expect->where_count) {
			json_t *w = json_array();
			for (unsigned i = 0; i < m->expect->where_count; i++)
				json_array_append_new(w, json_string(m->expect->where[i]));
			json_object_set_new(x, "where", w);
		}
		json_object_set_new(o, "expect", x);
		if (m->within_s > 0)
			json_object_set_new(o, "within", json_real(m->within_s));
		break;
	}
	case KH_STEP_CRASH:
		json_decref(o);
		o = json_string(st->crash);
		break;
	default:
		break;
	}
	json_object_set_new(root, kind_names[st->kind], o);
	o = NULL;
	text = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
out:
	json_decref(o);
	json_decref(root);
	return text;
}

/*
 * scenario.c - scenario files (scenario.h): libcyaml schema, a libyaml scan
 * (yamlscan.h) that maps key paths to lines ("steps[3].await.within" ->
 * 17), defaults and semantic checks.  Every error is "FILE:LINE: KEY: problem".  The
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
#include <strings.h>
#include <sys/stat.h>

#include "keel/alloc.h"
#include "keel/config.h"
#include "kh_limits.h"
#include "keel/yamlscan.h"
#include "scenario_net.h"
#include "yaml_schema.h"

/* ---- schema ------------------------------------------------------------ */

#define OPT CYAML_FLAG_OPTIONAL
#define STR(key, st, m) CYAML_FIELD_STRING_PTR(key, CYAML_FLAG_POINTER, st, m, 1, \
					       KH_MAX_STRING_LEN)
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
/* produce and consume: `node: a` or `nodes: [a, b]` (exactly one; checked). */
static const cyaml_schema_value_t step_node_schema = {
	CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 1, 64),
};
#define STEP_NODES(st)                                                                    \
	STR_OPT("node", st, node),                                                        \
	CYAML_FIELD_SEQUENCE("nodes", CYAML_FLAG_POINTER | OPT, st, nodes,                \
			     &step_node_schema, 0, KH_MAX_STEP_NODES)
static const cyaml_schema_field_t produce_fields[] = {
	STEP_NODES(kh_produce),
	STR("destination", kh_produce, destination),
	CYAML_FIELD_UINT("count", OPT, kh_produce, count),
	CYAML_FIELD_UINT("size", OPT, kh_produce, size),
	CYAML_FIELD_FLOAT("rate", OPT, kh_produce, rate),
	CYAML_FIELD_FLOAT("duration", OPT, kh_produce, duration_s),
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
	STEP_NODES(kh_consume),
	STR("destination", kh_consume, destination),
	CYAML_FIELD_UINT("count", OPT, kh_consume, count),
	CYAML_FIELD_BOOL("until-empty", OPT, kh_consume, until_empty),
	STR_OPT("count-of", kh_consume, count_of),
	STR_OPT("ack", kh_consume, ack),
	WITHIN(kh_consume),
	CYAML_FIELD_BOOL("distinct", OPT, kh_consume, distinct),
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
	CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 1, KH_MAX_PREDICATE_LEN),
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
/* repeat: {count: N, steps: [...]} (scenario_repeat.h) holds steps. */
static const cyaml_schema_value_t step_schema;
static const cyaml_schema_field_t repeat_fields[] = {
	CYAML_FIELD_UINT("count", CYAML_FLAG_DEFAULT, kh_repeat, count),
	CYAML_FIELD_SEQUENCE("steps", CYAML_FLAG_POINTER, kh_repeat, steps, &step_schema, 0,
			     KH_MAX_STEPS),
	CYAML_FIELD_END,
};
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
	STEP_OP("partition", partition, kh__partition_fields),
	STEP_OP("heal", heal, kh__heal_fields),
	STEP_OP("net", net, kh__net_fields),
	STEP_OP("chaos", chaos, kh__chaos_fields),
	STEP_OP("await-liveness", liveness, kh__liveness_fields),
	STEP_OP("clock", clock, kh__clock_fields),
	STEP_OP("disk", disk, kh__disk_fields),
	STEP_OP("repeat", repeat, repeat_fields),
	CYAML_FIELD_END,
};
static const cyaml_schema_value_t step_schema = {
	CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, kh_step, step_fields),
};
static const cyaml_schema_field_t node_fields[] = {
	CYAML_FIELD_STRING_PTR("name", CYAML_FLAG_POINTER, kh_node_spec, name, 1, 64),
	STR_OPT("role", kh_node_spec, role),
	STR_OPT("kind", kh_node_spec, kind),
	CYAML_FIELD_SEQUENCE("ensemble", CYAML_FLAG_POINTER | OPT, kh_node_spec, ensemble,
			     &step_node_schema, 0, KH_MAX_ZK_ENSEMBLE),
	STR_OPT("config", kh_node_spec, config),
	CYAML_FIELD_IGNORE("env", OPT), /* free keys: collect_kvs */
	STR_OPT("disk-size", kh_node_spec, disk_size),
	CYAML_FIELD_END,
};
static const cyaml_schema_value_t node_schema = {
	CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, kh_node_spec, node_fields),
};
static const cyaml_schema_field_t scenario_fields[] = {
	CYAML_FIELD_STRING_PTR("name", CYAML_FLAG_POINTER | OPT, kh_scenario, name, 1,
			       KH_MAX_SCENARIO_NAME_LEN),
	STR_OPT("description", kh_scenario, description),
	CYAML_FIELD_FLOAT("timeout", OPT, kh_scenario, timeout_s),
	STR_OPT("network", kh_scenario, network),
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
	"partition", "heal", "net", "chaos", "await-liveness", "clock", "disk",
};

/* Keys whose values libcyaml reads as booleans: libcyaml 1.3 reads any
 * word that is not a "false" word as true, so the scan checks them.
 * (restart's `kill` and partition's `one-way` are checked by check_step:
 * chaos's `mix` has `kill` and `one-way` weights.) */
static const char *const bool_keys[] = {
	"persistent", "receipts", "until-empty", "no-loss", "no-duplicates", "enable",
	"closes", "allow-dropped", "background", "distinct",
	"clients", "blackhole", "refuse", "reset", "off",
};

const char *kh_step_kind_name(kh_step_kind k)
{
	return (unsigned)k < KH_STEP__COUNT ? kind_names[k] : NULL;
}

static const keel_yaml_opts sc_yaml_opts = {
	.bool_keys = bool_keys,
	.nbool_keys = sizeof(bool_keys) / sizeof(bool_keys[0]),
	.max_depth = KH_MAX_YAML_DEPTH,
	.keep_values = true,
	.excess_words = true,
};

/* ---- checks ------------------------------------------------------------ */

/* A file being checked: every error is appended to err (one line each, at
 * most KH_LINT_MAX_ERRORS, the rest counted), warnings to `warnings`. */
typedef struct sc_check {
	const keel_yaml_scan *scan;
	const char *name;
	char *err;
	size_t errlen;
	unsigned nerr;
	char *warnings;         /* keel_malloc'd lines, or NULL */
	double timeout_s;       /* the scenario's, once known (0 before) */
	kh_flat_step *flat;     /* per step that runs: its key path, its first copy */
	unsigned nflat;
} sc_check;

static void add_line(sc_check *c, unsigned line, const char *path, const char *msg)
{
	size_t used = strlen(c->err);
	if (c->nerr++ >= KH_LINT_MAX_ERRORS || used + 2 >= c->errlen)
		return;
	snprintf(c->err + used, c->errlen - used, "%s%s:%u: %s%s%s", used ? "\n" : "", c->name,
		 line ? line : 1, path, path[0] ? ": " : "", msg);
}

/* "file:line: path: message"; the line is the path's, else its nearest
 * parent's that has one.  Returns -EINVAL. */
static int fail_at(sc_check *c, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail_at(sc_check *c, const char *path, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	add_line(c, keel_yaml_line_near(c->scan, path), path, msg);
	return -EINVAL;
}

/* The same as a warning ("file:line: path: warning: message"): kept with
 * the scenario (kh_scenario_warnings), nothing fails. */
static void warn_at(sc_check *c, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void warn_at(sc_check *c, const char *path, const char *fmt, ...)
{
	char msg[512], line[KH_PATH_MAX + 700];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	unsigned ln = keel_yaml_line_near(c->scan, path);
	int n = snprintf(line, sizeof(line), "%s:%u: %s: warning: %s\n", c->name, ln ? ln : 1,
			 path, msg);
	size_t old = c->warnings ? strlen(c->warnings) : 0;
	char *w = keel_realloc(c->warnings, old + (size_t)n + 1);
	if (w == NULL)
		return;
	memcpy(w + old, line, (size_t)n + 1);
	c->warnings = w;
}

static void schema_error(void *ud, const char *path, const char *problem)
{
	sc_check *c = ud;
	fail_at(c, path, "%s", problem);
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
	const keel_yaml_scan *scan = c->scan;
	size_t plen = strlen(prefix);
	kh_kv *kv = NULL;
	unsigned n = 0;
	int rc = 0;
	for (size_t i = 0; i < scan->count; i++) {
		const keel_yaml_key *k = &scan->keys[i];
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
	(void)i;
	snprintf(path, sizeof(path), "%s.args", p);
	if ((rc = collect_kvs(c, path, false, &m->args, &m->args_count)))
		return rc;
	for (unsigned k = 0; k < m->args_count; k++) {
		if (strcmp(m->args[k].key, "operation") == 0) {
			snprintf(path, sizeof(path), "%s.args.operation", p);
			return fail_at(c, path, "give the operation as manage.operation");
		}
	}
	snprintf(path, sizeof(path), "%s.expect.fields", p);
	if ((rc = collect_kvs(c, path, true, &m->fields, &m->fields_count)))
		return rc;
	if (m->fields_count && m->expect_error)
		return fail_at(c, path, "fields are checked on ok replies only");
	snprintf(path, sizeof(path), "%s.save", p);
	if ((rc = collect_kvs(c, path, false, &m->saves, &m->saves_count)))
		return rc;
	if (m->saves_count && m->expect_error)
		return fail_at(c, path, "values are saved from ok replies only");
	for (unsigned k = 0; k < m->saves_count; k++) {
		if (!name_ok(m->saves[k].key)) {
			snprintf(path, sizeof(path), "%s.save.%s", p, m->saves[k].key);
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
	if (c->timeout_s > 0 && v > c->timeout_s)
		warn_at(c, path, "within %g s is longer than the scenario's timeout (%g s): the "
			"scenario times out first", v, c->timeout_s);
	return 0;
}

/* produce's rate and duration: count defaults to rate x duration (a
 * cap when given), and the default `within` covers the duration. */
static int check_produce_rate(sc_check *c, const char *p, kh_produce *pr)
{
	char path[KH_PATH_MAX];
	bool has_count = keel_yaml_linef(c->scan, "%s.count", p) != 0;
	snprintf(path, sizeof(path), "%s", p);
	if (pr->rate < 0 || pr->rate > KH_MAX_PRODUCE_RATE)
		return fail_at(c, strcat(path, ".rate"), "must be between 0 and %d messages/s",
			       KH_MAX_PRODUCE_RATE);
	if (pr->duration_s < 0 || pr->duration_s > KH_MAX_SECONDS)
		return fail_at(c, strcat(path, ".duration"), "must be between 0 and %.0f seconds",
			       KH_MAX_SECONDS);
	if (pr->duration_s > 0 && !(pr->rate > 0))
		return fail_at(c, strcat(path, ".duration"), "needs rate (messages/s)");
	if (!has_count && !(pr->duration_s > 0))
		return fail_at(c, path, "needs count (or rate and duration)");
	if (!has_count && pr->rate * pr->duration_s > KH_MAX_PRODUCE_COUNT)
		return fail_at(c, strcat(path, ".duration"), "rate x duration is more than %d "
			       "messages", KH_MAX_PRODUCE_COUNT);
	if (!has_count) {
		double n = pr->rate * pr->duration_s;
		pr->count = (unsigned)n + ((double)(unsigned)n < n);
	}
	double span = pr->duration_s > 0 ? pr->duration_s : pr->rate > 0 ? pr->count / pr->rate : 0;
	if (pr->within_s == 0 && span > 0)
		pr->within_s = span + KH_DEFAULT_WITHIN_S;
	else if (span > 0 && pr->within_s < span)
		return fail_at(c, strcat(path, ".within"), "%g s is shorter than the %g s the rate "
			       "takes", pr->within_s, span);
	return 0;
}

/* A boolean key that is not in bool_keys (a word that is a weight
 * elsewhere): its value must be one of the boolean words. */
static int check_bool_word(sc_check *c, const char *path)
{
	static const char *const words[] = { "true", "false", "yes", "no", "on",
					     "off", "enable", "disable", "1", "0" };
	for (size_t k = 0; k < c->scan->count; k++) {
		const keel_yaml_key *key = &c->scan->keys[k];
		if (strcmp(key->path, path) != 0 || key->value == NULL)
			continue;
		for (size_t w = 0; w < sizeof(words) / sizeof(words[0]); w++)
			if (strcasecmp(key->value, words[w]) == 0)
				return 0;
		return fail_at(c, path, "invalid boolean \"%s\"", key->value);
	}
	return 0;
}

static int check_node_ref(sc_check *c, const kh_scenario *s, const char *path, const char *node)
{
	if (kh_scenario_node_index(s, node) < 0)
		return fail_at(c, path, "unknown node \"%s\"", node);
	return 0;
}

/* produce/consume at `p` ("steps[3].produce"): exactly one of `node` and
 * `nodes`; a list of 1..KH_MAX_STEP_NODES known, distinct nodes. */
static int check_step_nodes(sc_check *c, const kh_scenario *s, const char *p, const char *node,
			    char *const *nodes, unsigned count)
{
	char path[KH_PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s.nodes", p);
	bool has_nodes = keel_yaml_line(c->scan, path) != 0;
	if (node && has_nodes)
		return fail_at(c, path, "give either node or nodes, not both");
	if (node == NULL && !has_nodes)
		return fail_at(c, p, "needs node (one node) or nodes (a list: the client "
			       "follows whichever is live)");
	if (node)
		return 0;
	if (count == 0)
		return fail_at(c, path, "an empty list (give at least one node)");
	for (unsigned k = 0; k < count; k++) {
		snprintf(path, sizeof(path), "%s.nodes[%u]", p, k);
		if (check_node_ref(c, s, path, nodes[k]))
			return -EINVAL;
		for (unsigned j = 0; j < k; j++) {
			if (strcmp(nodes[j], nodes[k]) == 0)
				return fail_at(c, path, "node \"%s\" is listed twice", nodes[k]);
		}
	}
	return 0;
}

static bool net_known(void *ud, const char *node)
{
	return kh_scenario_node_index(ud, node) >= 0;
}

/* What scenario_net.c's checks need. */
static void net_fail(void *ud, unsigned line, const char *path, const char *msg)
{
	add_line(ud, line, path, msg);
}

static const kh_net_lint *net_lint(sc_check *c, kh_scenario *s, kh_net_lint *nl)
{
	*nl = (kh_net_lint){ .scan = c->scan, .name = c->name, .known = net_known, .ud = s,
			     .err = c->err, .errlen = c->errlen, .fail = net_fail, .fail_ud = c };
	return nl;
}

static int check_step(sc_check *c, kh_scenario *s, unsigned i, bool allow_test_steps)
{
	kh_step *st = &s->steps[i];
	kh_net_lint nl;
	char p[KH_PATH_MAX];
	const void *kinds[KH_STEP__COUNT] = {
		st->start, st->stop, st->kill, st->pause, st->resume, st->restart,
		st->produce, st->consume, st->expect, st->fault, st->await, st->crash,
		st->manage, st->join, st->partition, st->heal, st->net, st->chaos,
		st->liveness, st->clock, st->disk,
	};
	int found = -1, rc;
	const char *at = c->flat[i].path; /* steps[3], steps[3].repeat.steps[1] */
	for (int k = 0; k < KH_STEP__COUNT; k++) {
		if (kinds[k] == NULL)
			continue;
		if (found >= 0) {
			snprintf(p, sizeof(p), "%s.%s", at, kind_names[k]);
			return fail_at(c, p, "a step has one kind (this one is already \"%s\")",
				       kind_names[found]);
		}
		found = k;
	}
	snprintf(p, sizeof(p), "%s", at);
	if (found < 0)
		return fail_at(c, p, "empty step (one of start, stop, kill, pause, resume, "
				     "restart, produce, consume, expect, fault, await, manage, "
				     "join, partition, heal, net, chaos, await-liveness, clock, disk, repeat)");
	st->kind = (kh_step_kind)found;
	st->line = keel_yaml_line(c->scan, p);
	snprintf(p, sizeof(p), "%s.%s", at, kind_names[found]);
	char sub[KH_PATH_MAX + 64];
#define SUB(key) (snprintf(sub, sizeof(sub), "%s.%s", p, key), sub)

	const char *node = kh_step_node(st);
	bool harness_await = st->await && strcmp(node, KH_HARNESS_NODE) == 0;
	if (node && !harness_await && (rc = check_node_ref(c, s, SUB("node"), node)))
		return rc;
	if (st->produce && (rc = check_step_nodes(c, s, p, st->produce->node, st->produce->nodes,
						  st->produce->nodes_count)))
		return rc;
	if (st->consume && (rc = check_step_nodes(c, s, p, st->consume->node, st->consume->nodes,
						  st->consume->nodes_count)))
		return rc;
	switch (st->kind) {
	case KH_STEP_STOP:
	case KH_STEP_KILL:
	case KH_STEP_RESTART: {
		const kh_node_op *op = st->stop ? st->stop : st->kill ? st->kill : st->restart;
		if (st->restart && (rc = check_bool_word(c, SUB("kill"))) != 0)
			return rc;
		return check_within(c, SUB("within"), op->within_s);
	}
	case KH_STEP_PRODUCE: {
		kh_produce *pr = st->produce;
		if ((rc = check_produce_rate(c, p, pr)) != 0)
			return rc;
		if (pr->count == 0 || pr->count > KH_MAX_PRODUCE_COUNT)
			return fail_at(c, SUB("count"), "must be 1..%d", KH_MAX_PRODUCE_COUNT);
		if (pr->size > KH_MAX_BODY_BYTES)
			return fail_at(c, SUB("size"), "at most %d bytes", KH_MAX_BODY_BYTES);
		if (keel_yaml_linef(c->scan, "%s.priority", p) == 0)
			st->produce->priority = 4;
		else if (pr->priority > 9)
			return fail_at(c, SUB("priority"), "must be 0..9");
		if (pr->refused) {
			kh_refused *rf = pr->refused;
			if (!pr->receipts)
				return fail_at(c, SUB("refused"), "needs receipts: true (a refusal "
					       "names its SEND by the receipt-id)");
			if (keel_yaml_linef(c->scan, "%s.refused.min", p) == 0)
				rf->min = 1;
			if (keel_yaml_linef(c->scan, "%s.refused.max", p) == 0)
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
		if (pr->node == NULL && !pr->receipts)
			return fail_at(c, SUB("nodes"), "needs receipts: true (a message whose "
				       "receipt never came is sent again after a reconnect)");
		if (pr->node == NULL && pr->refused)
			return fail_at(c, SUB("refused"), "not with nodes (a refusal that closes "
				       "the connection would be a reconnect)");
		return check_within(c, SUB("within"), pr->within_s);
	}
	case KH_STEP_JOIN:
		return check_within(c, SUB("within"), st->join->within_s);
	case KH_STEP_CONSUME: {
		kh_consume *co = st->consume;
		bool has_count = keel_yaml_linef(c->scan, "%s.count", p) != 0;
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
		if (co->distinct && co->until_empty)
			return fail_at(c, SUB("distinct"), "needs count or count-of (until-empty "
				       "takes everything)");
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
			if (keel_yaml_linef(c->scan, "%s.%s", p, keys[k]) == 0) {
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
		else if (strcmp(aw->since, "last-match") == 0)
			st->since = KH_SINCE_LAST_MATCH;
		else
			return fail_at(c, SUB("since"),
				       "\"%s\": expected start, last-step, last-match or now",
				       aw->since);
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
	case KH_STEP_PARTITION:
		if ((rc = check_bool_word(c, SUB("one-way"))) != 0)
			return rc;
		return kh__net_check_partition(net_lint(c, s, &nl), p, st->partition);
	case KH_STEP_HEAL:
		return kh__net_check_heal(net_lint(c, s, &nl), p, st->heal);
	case KH_STEP_NET:
		return kh__net_check_net(net_lint(c, s, &nl), p, st->net);
	case KH_STEP_CHAOS:
		rc = kh__chaos_check(net_lint(c, s, &nl), p, st->chaos, allow_test_steps);
		/* its clock faults need libfaketime, its disk faults fiu-run */
		s->uses_clock |= rc == 0 && st->chaos->uses_clock;
		s->uses_faults |= rc == 0 && st->chaos->uses_disk;
		return rc;
	case KH_STEP_LIVENESS:
		return check_within(c, SUB("within"), st->liveness->within_s);
	case KH_STEP_CLOCK:
		s->uses_clock = true;
		return kh__fault_check_clock(net_lint(c, s, &nl), p, st->clock);
	case KH_STEP_DISK:
		s->uses_faults = true; /* libfiu points: the nodes run under fiu-run */
		return kh__fault_check_disk(net_lint(c, s, &nl), p, st->disk);
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

/* A bad ${nodes...} at byte `off` of the text at `path`: the error names
 * the line it is on (inside a literal block, counted from its first line),
 * else the key's line. */
static int fail_subst(sc_check *c, const char *path, const char *text, size_t off,
		      const char *why)
{
	unsigned line = keel_yaml_line(c->scan, path);
	for (size_t i = c->scan->count; i-- > 0;) {
		const keel_yaml_key *k = &c->scan->keys[i];
		if (strcmp(k->path, path) != 0)
			continue;
		if (k->literal) {
			line = k->value_line + 1;
			for (size_t j = 0; j < off && text[j]; j++)
				line += text[j] == '\n';
		}
		break;
	}
	add_line(c, line, path, why);
	return -EINVAL;
}

bool kh_node_is_zookeeper(const kh_scenario *s, unsigned i)
{
	return i < s->nodes_count && s->nodes[i].kind != NULL &&
	       strcmp(s->nodes[i].kind, "zookeeper") == 0;
}

/* kind, and for a ZooKeeper node its ensemble: existing ZooKeeper nodes,
 * itself among them, each once; no broker config, no role. */
static int check_zookeeper(sc_check *c, kh_scenario *s, unsigned i)
{
	kh_node_spec *n = &s->nodes[i];
	char p[KH_PATH_MAX];
	snprintf(p, sizeof(p), "nodes[%u].kind", i);
	if (n->kind && strcmp(n->kind, "broker") != 0 && strcmp(n->kind, "zookeeper") != 0)
		return fail_at(c, p, "\"%s\": expected broker or zookeeper", n->kind);
	bool zk = kh_node_is_zookeeper(s, i);
	snprintf(p, sizeof(p), "nodes[%u].ensemble", i);
	if (!zk && n->ensemble)
		return fail_at(c, p, "only a node of kind zookeeper has an ensemble");
	if (!zk)
		return 0;
	if (n->role && strcmp(n->role, "standalone") != 0) {
		snprintf(p, sizeof(p), "nodes[%u].role", i);
		return fail_at(c, p, "a zookeeper node has no role in the pair");
	}
	if (n->config) {
		snprintf(p, sizeof(p), "nodes[%u].config", i);
		return fail_at(c, p, "a zookeeper node takes no config (the harness writes "
			       "its zoo.cfg)");
	}
	bool self = n->ensemble == NULL;
	for (unsigned k = 0; k < n->ensemble_count; k++) {
		int j = kh_scenario_node_index(s, n->ensemble[k]);
		if (j < 0 || !kh_node_is_zookeeper(s, (unsigned)j))
			return fail_at(c, p, "\"%s\" is not a zookeeper node of this scenario",
				       n->ensemble[k]);
		for (unsigned m = 0; m < k; m++)
			if (strcmp(n->ensemble[m], n->ensemble[k]) == 0)
				return fail_at(c, p, "\"%s\" is listed twice", n->ensemble[k]);
		self |= (unsigned)j == i;
	}
	if (!self)
		return fail_at(c, p, "the ensemble must list the node itself (\"%s\")", n->name);
	return 0;
}

static int check_node(sc_check *c, kh_scenario *s, unsigned i)
{
	kh_node_spec *n = &s->nodes[i];
	char p[KH_PATH_MAX];
	int rc;
	snprintf(p, sizeof(p), "nodes[%u].name", i);
	if (!name_ok(n->name))
		return fail_at(c, p, "\"%s\": use letters, digits, '-', '_' and '.'", n->name);
	for (unsigned j = 0; j < i; j++) {
		if (strcmp(s->nodes[j].name, n->name) == 0)
			return fail_at(c, p, "node \"%s\" is already defined", n->name);
	}
	if (strcmp(n->name, KH_HARNESS_NODE) == 0)
		return fail_at(c, p, "\"%s\" is the harness's own name (its events)", n->name);
	snprintf(p, sizeof(p), "nodes[%u].env", i);
	if ((rc = collect_kvs(c, p, false, &n->env, &n->env_count)))
		return rc;
	for (unsigned k = 0; k < n->env_count; k++) {
		if (!env_name_ok(n->env[k].key)) {
			snprintf(p, sizeof(p), "nodes[%u].env.%s", i, n->env[k].key);
			return fail_at(c, p, "not an environment variable name");
		}
	}
	if (n->disk_size) {
		kh_net_lint nl;
		snprintf(p, sizeof(p), "nodes[%u].disk-size", i);
		if ((rc = kh__fault_check_disk_size(net_lint(c, s, &nl), p, n->disk_size,
						    &n->disk_size_bytes)))
			return rc;
	}
	snprintf(p, sizeof(p), "nodes[%u].role", i);
	if (n->role && strcmp(n->role, "standalone") != 0 && strcmp(n->role, "live") != 0 &&
	    strcmp(n->role, "backup") != 0)
		return fail_at(c, p, "\"%s\": expected standalone, live or backup", n->role);
	if ((rc = check_zookeeper(c, s, i)) != 0)
		return rc;
	if (n->config) {
		/* The node's config must be one keel-broker accepts, once
		 * ${nodes.NAME.*} are replaced (with any slot: 1). */
		keel_config *cfg = NULL;
		char why[512], nm[KH_PATH_MAX], *text = NULL;
		size_t off = 0;
		snprintf(p, sizeof(p), "nodes[%u].config", i);
		rc = kh_subst_nodes(s, 1, n->config, &text, &off, why, sizeof(why));
		if (rc == -EINVAL)
			return fail_subst(c, p, n->config, off, why);
		if (rc)
			return rc;
		snprintf(nm, sizeof(nm), "config");
		rc = keel_config_load_data(nm, text, strlen(text), &cfg, why, sizeof(why));
		keel_free(text);
		keel_config_free(cfg);
		if (rc == -ENOMEM)
			return rc;
		if (rc)
			return fail_at(c, p, "%s (line numbers inside the block)", why);
	}
	return 0;
}

static void repeat_fail(void *ud, const char *path, const char *msg)
{
	fail_at(ud, path, "%s", msg);
}

/* How many kinds a step names besides repeat. */
static unsigned other_kinds(const kh_step *st)
{
	const void *kinds[] = {
		st->start, st->stop, st->kill, st->pause, st->resume, st->restart,
		st->produce, st->consume, st->expect, st->fault, st->await, st->crash,
		st->manage, st->join, st->partition, st->heal, st->net, st->clock, st->disk,
	};
	unsigned n = 0;
	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++)
		n += kinds[k] != NULL;
	return n;
}

/* The steps that run: repeat blocks unrolled (scenario_repeat.c); the
 * file's steps stay in s->loaded_steps. */
static int unroll(sc_check *c, kh_scenario *s)
{
	kh_repeat_lint rl = { .fail = repeat_fail, .kinds = other_kinds, .ud = c };
	kh_step *flat = NULL;
	unsigned n = 0;
	int rc = kh__repeat_flatten(&rl, s->steps, s->steps_count, &flat, &c->flat, &n);
	if (rc)
		return rc;
	c->nflat = n;
	s->loaded_steps = s->steps;
	s->loaded_steps_count = s->steps_count;
	s->steps = flat;
	s->steps_count = n;
	return 0;
}

/* Every node and every step is checked (the first problem of each), so
 * that lint names them all; -EINVAL when any had one, -ENOMEM. */
static int check_scenario(sc_check *c, kh_scenario *s, bool allow_test_steps)
{
	int rc;
	if (keel_yaml_line(c->scan, "timeout") == 0)
		s->timeout_s = KH_DEFAULT_SCENARIO_TIMEOUT_S;
	else if (s->timeout_s <= 0 || s->timeout_s > KH_MAX_SECONDS)
		fail_at(c, "timeout", "must be between 0 and %.0f seconds", KH_MAX_SECONDS);
	else
		c->timeout_s = s->timeout_s;
	if (s->nodes_count == 0)
		fail_at(c, "nodes", "at least one node");
	if (s->steps_count == 0)
		fail_at(c, "steps", "at least one step");
	if (s->name && !name_ok(s->name))
		fail_at(c, "name", "\"%s\": use letters, digits, '-', '_' and '.'", s->name);
	for (unsigned i = 0; i < s->nodes_count; i++) {
		if ((rc = check_node(c, s, i)) == -ENOMEM)
			return rc;
	}
	if ((rc = unroll(c, s)) != 0)
		return rc;
	int first_net = -1, first_netns = -1;
	for (unsigned i = 0; i < s->steps_count; i++) {
		/* a repeated step is checked once, at its first copy */
		if (c->flat[i].first == i && (rc = check_step(c, s, i, allow_test_steps)) == -ENOMEM)
			return rc;
		if (first_net < 0 && (s->steps[i].partition || s->steps[i].heal || s->steps[i].net ||
				      (s->steps[i].chaos && s->steps[i].chaos->uses_net)))
			first_net = (int)i;
		if (first_netns < 0 && s->steps[i].net && kh__net_netns_only(s->steps[i].net))
			first_netns = (int)i;
	}
	for (unsigned i = 0; i < s->steps_count; i++) {
		const kh_step *f = &s->steps[c->flat[i].first];
		s->steps[i].kind = f->kind;
		s->steps[i].line = f->line;
		s->steps[i].since = f->since;
	}
	kh_net_lint nl;
	s->uses_net = first_net >= 0;
	rc = kh__net_check_network(net_lint(c, s, &nl), s->network, first_net, first_netns,
				   s->nodes_count, &s->proxied);
	if (rc == -ENOMEM)
		return rc;
	return c->nerr || rc ? -EINVAL : 0;
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
	keel_yaml_scan scan = { 0 };
	keel_yaml_log log = { 0 };
	kh_scenario *s = NULL;
	int rc;
	const cyaml_config_t cfg = {
		.log_fn = keel_yaml_log_fn,
		.log_ctx = &log,
		.mem_fn = keel_yaml_mem,
		.log_level = CYAML_LOG_ERROR,
		.flags = CYAML_CFG_NO_ALIAS,
	};

	sc_check c = { .scan = &scan, .name = name, .err = err, .errlen = errlen };
	err[0] = '\0';
	if (len > KH_MAX_SCENARIO_BYTES) {
		snprintf(err, errlen, "%s: larger than %d bytes", name, KH_MAX_SCENARIO_BYTES);
		return -EINVAL;
	}
	rc = keel_yaml_scan_run(&scan, &sc_yaml_opts, name, yaml, len, err, errlen);
	if (rc)
		goto out;
	/* Every schema error of the file first (libcyaml stops at one). */
	if (kh_yschema_check(&scenario_schema, &scan, schema_error, &c) > 0) {
		rc = -EINVAL;
		goto out;
	}
	cyaml_err_t cerr = cyaml_load_data((const uint8_t *)yaml, len, &cfg, &scenario_schema,
					   (cyaml_data_t **)&s, NULL);
	if (cerr != CYAML_OK) {
		if (cerr == CYAML_ERR_OOM) {
			rc = -ENOMEM;
			snprintf(err, errlen, "%s: out of memory", name);
		} else {
			rc = -EINVAL;
			keel_yaml_cyaml_error(&log, &scan, &sc_yaml_opts, name, cerr, err, errlen);
		}
		s = NULL;
		goto out;
	}
	if (s == NULL) {
		snprintf(err, errlen, "%s:1: empty scenario (needs nodes and steps)", name);
		rc = -EINVAL;
		goto out;
	}
	rc = check_scenario(&c, s, allow_test_steps);
	if (rc == -ENOMEM)
		snprintf(err, errlen, "%s: out of memory", name);
	if (rc)
		goto out;
	s->warnings = c.warnings;
	c.warnings = NULL;
	s->file = keel_strdup(name);
	if (s->file == NULL || (s->name == NULL && (s->name = base_name(name)) == NULL)) {
		rc = -ENOMEM;
		snprintf(err, errlen, "%s: out of memory", name);
		goto out;
	}
	*out = s;
	s = NULL;
out:
	if (c.nerr > KH_LINT_MAX_ERRORS) {
		size_t used = strlen(err);
		snprintf(err + used, errlen - used, "\n%s: ... and %u more errors", name,
			 c.nerr - KH_LINT_MAX_ERRORS);
	}
	keel_free(c.warnings);
	kh__repeat_info_free(c.flat, c.nflat);
	kh_scenario_free(s);
	keel_yaml_scan_free(&scan);
	return rc;
}

int kh_scenario_read_file(const char *path, char **text, size_t *len, char *err, size_t errlen)
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
		snprintf(err, errlen, "%s: out of memory", path);
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
	*text = buf;
	*len = n;
	buf = NULL;
	rc = 0;
out:
	keel_free(buf);
	fclose(f);
	return rc;
}

int kh_scenario_load(const char *path, bool allow_test_steps, kh_scenario **out, char *err,
		     size_t errlen)
{
	char *buf = NULL;
	size_t n = 0;
	int rc = kh_scenario_read_file(path, &buf, &n, err, errlen);
	if (rc == 0)
		rc = kh_scenario_load_data(path, buf, n, allow_test_steps, out, err, errlen);
	keel_free(buf);
	return rc;
}

void kh_scenario_free(kh_scenario *s)
{
	if (s == NULL)
		return;
	const cyaml_config_t cfg = { .mem_fn = keel_yaml_mem, .log_level = CYAML_LOG_ERROR };
	for (unsigned i = 0; s->steps && i < s->steps_count; i++) {
		/* a later copy of a repeated step shares its first copy's */
		if (s->loaded_steps && s->steps[i].flat_first != i + 1)
			continue;
		kh_await_step *aw = s->steps[i].await;
		kh_manage *m = s->steps[i].manage;
		kh__net_partition_free(s->steps[i].partition);
		kh__chaos_free(s->steps[i].chaos);
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
	if (s->loaded_steps) {
		keel_free(s->steps);
		s->steps = s->loaded_steps;
		s->steps_count = s->loaded_steps_count;
		s->loaded_steps = NULL;
	}
	keel_free(s->file);
	keel_free(s->warnings);
	s->file = NULL;
	s->warnings = NULL;
	cyaml_free(&cfg, &scenario_schema, s, 0);
}

const char *kh_scenario_warnings(const kh_scenario *s)
{
	return s->warnings;
}

int kh_scenario_node_index(const kh_scenario *s, const char *name)
{
	for (unsigned i = 0; i < s->nodes_count; i++) {
		if (strcmp(s->nodes[i].name, name) == 0)
			return (int)i;
	}
	return -1;
}

void kh_slot_host(unsigned slot, unsigned index, char *buf, size_t len)
{
	snprintf(buf, len, "127.77.%u.%u", slot, index + 1);
}

#define SUBST_OPEN "${nodes."

/* Append `n` bytes of `p` to the growing buffer *b (size *len, cap *cap). */
static int subst_put(char **b, size_t *len, size_t *cap, const char *p, size_t n)
{
	if (*len + n + 1 > *cap) {
		size_t c = (*len + n + 1) * 2;
		char *nb = keel_realloc(*b, c);
		if (nb == NULL)
			return -ENOMEM;
		*b = nb;
		*cap = c;
	}
	memcpy(*b + *len, p, n);
	*len += n;
	(*b)[*len] = '\0';
	return 0;
}

int kh_subst_nodes(const kh_scenario *s, unsigned slot, const char *text, char **out,
		   size_t *bad_off, char *err, size_t errlen)
{
	return kh_subst_nodes_via(s, slot, -1, NULL, NULL, text, out, bad_off, err, errlen);
}

int kh_subst_nodes_via(const kh_scenario *s, unsigned slot, int self, kh_link_host_fn host_of,
		       void *ud, const char *text, char **out, size_t *bad_off, char *err,
		       size_t errlen)
{
	size_t len = 0, cap = 0;
	char *b = NULL;
	const char *p = text;
	int rc = 0;

	if ((rc = subst_put(&b, &len, &cap, "", 0)) != 0)
		return rc;
	for (;;) {
		const char *ref = strstr(p, SUBST_OPEN);
		if ((rc = subst_put(&b, &len, &cap, p, ref ? (size_t)(ref - p) : strlen(p))))
			goto fail;
		if (ref == NULL)
			break;
		const char *name = ref + strlen(SUBST_OPEN);
		const char *end = strchr(name, '}');
		const char *nl = strchr(name, '\n');
		if (end == NULL || (nl && nl < end)) {
			snprintf(err, errlen, "unterminated \"%.*s\"", (int)strcspn(ref, "\n"), ref);
			rc = -EINVAL;
			goto bad;
		}
		const char *dot = NULL;
		for (const char *q = name; q < end; q++)
			dot = *q == '.' ? q : dot;
		char node[KH_PATH_MAX], field[16], val[64];
		int ref_len = (int)(end + 1 - ref);
		if (dot == NULL || dot == name || (size_t)(dot - name) >= sizeof(node)) {
			snprintf(err, errlen, "\"%.*s\": expected ${nodes.NAME.host|port|listen}",
				 ref_len, ref);
			rc = -EINVAL;
			goto bad;
		}
		snprintf(node, sizeof(node), "%.*s", (int)(dot - name), name);
		snprintf(field, sizeof(field), "%.*s", (int)(end - dot - 1), dot + 1);
		int idx = kh_scenario_node_index(s, node);
		if (idx < 0) {
			snprintf(err, errlen, "\"%.*s\": unknown node \"%s\"", ref_len, ref, node);
			rc = -EINVAL;
			goto bad;
		}
		char host[32];
		if (host_of && idx != self)
			host_of(ud, self, idx, host, sizeof(host));
		else
			kh_slot_host(slot, (unsigned)idx, host, sizeof(host));
		if (strcmp(field, "host") == 0)
			snprintf(val, sizeof(val), "%s", host);
		else if (strcmp(field, "port") == 0)
			snprintf(val, sizeof(val), "%u", KH_NODE_PORT);
		else if (strcmp(field, "listen") == 0)
			snprintf(val, sizeof(val), "%s:%u", host, KH_NODE_PORT);
		else {
			snprintf(err, errlen, "\"%.*s\": unknown field \"%.*s\" (host, port or listen)",
				 ref_len, ref, (int)(end - dot - 1), dot + 1);
			rc = -EINVAL;
			goto bad;
		}
		if ((rc = subst_put(&b, &len, &cap, val, strlen(val))))
			goto fail;
		p = end + 1;
	}
	*out = b;
	return 0;

bad:
	if (bad_off)
		*bad_off = (size_t)(strstr(p, SUBST_OPEN) - text);
fail:
	keel_free(b);
	return rc;
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
	if (st->clock)
		return st->clock->node;
	if (st->disk)
		return st->disk->node;
	return NULL;
}

const char *const *kh_step_nodes(const kh_step *st, unsigned *count)
{
	char *const *nodes = NULL;
	char *const *one = NULL;
	unsigned n = 0;
	if (st->produce) {
		one = &st->produce->node;
		nodes = st->produce->nodes;
		n = st->produce->nodes_count;
	} else if (st->consume) {
		one = &st->consume->node;
		nodes = st->consume->nodes;
		n = st->consume->nodes_count;
	}
	if (one && *one) {
		*count = 1;
		return (const char *const *)one;
	}
	*count = nodes ? n : 0;
	return (const char *const *)nodes;
}

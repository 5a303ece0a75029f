/*
 * yaml_schema.c - a scan checked against a libcyaml schema
 * (yaml_schema.h).  Each key path of the scan is resolved component by
 * component through the schema's mapping fields and sequence entries; a
 * key under a key that already failed is skipped (its parent is the
 * error).  Owns nothing.  Pure; any thread.
 */
#include "yaml_schema.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kh_limits.h"

/* What a path resolved to. */
typedef enum resolved {
	R_OK,         /* *out is its schema */
	R_IGNORED,    /* below a field whose keys are free (CYAML_IGNORE) */
	R_UNKNOWN,    /* its last component is no field of its mapping */
	R_SKIP,       /* an ancestor is the error */
} resolved;

static const cyaml_schema_field_t *field_of(const cyaml_schema_value_t *map, const char *key,
					    size_t len)
{
	for (const cyaml_schema_field_t *f = map->mapping.fields; f && f->key; f++) {
		if (strlen(f->key) == len && strncmp(f->key, key, len) == 0)
			return f;
	}
	return NULL;
}

static bool is_seq(const cyaml_schema_value_t *v)
{
	return v->type == CYAML_SEQUENCE || v->type == CYAML_SEQUENCE_FIXED;
}

/* Resolves `path` ("a.b[2].c") from `top`; *index is the last entry
 * index when the path ends with [N] (else -1), *seq its sequence. */
static resolved resolve(const cyaml_schema_value_t *top, const char *path,
			const cyaml_schema_value_t **out, long *index,
			const cyaml_schema_value_t **seq)
{
	const cyaml_schema_value_t *cur = top;
	const char *p = path;
	*index = -1;
	while (*p) {
		if (*p == '[') {
			char *end;
			long i = strtol(p + 1, &end, 10);
			if (*end != ']' || !is_seq(cur))
				return R_SKIP;
			*seq = cur;
			*index = i;
			cur = cur->sequence.entry;
			p = end + 1;
			continue;
		}
		if (*p == '.')
			p++;
		size_t n = strcspn(p, ".[");
		*index = -1;
		if (cur->type != CYAML_MAPPING)
			return R_SKIP;
		const cyaml_schema_field_t *f = field_of(cur, p, n);
		if (f == NULL)
			return p[n] == '\0' ? R_UNKNOWN : R_SKIP;
		if (f->value.type == CYAML_IGNORE)
			return R_IGNORED;
		cur = &f->value;
		p += n;
	}
	*out = cur;
	return R_OK;
}

static const char *type_words(const cyaml_schema_value_t *v)
{
	switch (v->type) {
	case CYAML_INT: return "an integer";
	case CYAML_UINT: return "an unsigned integer";
	case CYAML_BOOL: return "a boolean";
	case CYAML_FLOAT: return "a number";
	case CYAML_STRING: return "a string";
	case CYAML_MAPPING: return "a mapping";
	case CYAML_SEQUENCE: case CYAML_SEQUENCE_FIXED: return "a list";
	default: return "a value";
	}
}

/* A scalar value against a scalar type: the problem, or NULL. */
static const char *check_scalar(const cyaml_schema_value_t *v, const char *value, char *buf,
				size_t len)
{
	char *end;
	errno = 0;
	switch (v->type) {
	case CYAML_INT:
		(void)strtoll(value, &end, 0);
		if (*value == '\0' || *end || errno)
			return snprintf(buf, len, "invalid integer \"%s\"", value), buf;
		return NULL;
	case CYAML_UINT:
		(void)strtoull(value, &end, 0);
		if (*value == '\0' || *end || errno || strchr(value, '-'))
			return snprintf(buf, len, "invalid unsigned integer \"%s\"", value), buf;
		return NULL;
	case CYAML_FLOAT:
		(void)strtod(value, &end);
		if (*value == '\0' || *end || errno)
			return snprintf(buf, len, "invalid number \"%s\"", value), buf;
		return NULL;
	case CYAML_STRING:
		if (strlen(value) < v->string.min)
			return v->string.min == 1 ? "must not be empty" :
			       (snprintf(buf, len, "shorter than %u characters", v->string.min), buf);
		if (v->string.max != CYAML_UNLIMITED && strlen(value) > v->string.max)
			return snprintf(buf, len, "longer than %u characters", v->string.max), buf;
		return NULL;
	case CYAML_MAPPING: case CYAML_SEQUENCE: case CYAML_SEQUENCE_FIXED:
		return snprintf(buf, len, "expected %s, got a single value", type_words(v)), buf;
	default:
		return NULL; /* booleans: the scan checks them */
	}
}

/* What container key i is: 's' a list, 'm' a mapping, '?' empty. */
static char container_kind(const keel_yaml_scan *scan, size_t i)
{
	size_t n = strlen(scan->keys[i].path);
	for (size_t j = i + 1; j < scan->count; j++) {
		const char *q = scan->keys[j].path;
		if (strncmp(q, scan->keys[i].path, n) != 0)
			continue;
		if (q[n] == '[')
			return 's';
		if (q[n] == '.' || (n == 0 && q[0]))
			return 'm';
	}
	return '?';
}

static bool has_path(const keel_yaml_scan *scan, const char *path)
{
	for (size_t j = 0; j < scan->count; j++) {
		if (strcmp(scan->keys[j].path, path) == 0)
			return true;
	}
	return false;
}

/* The required fields of the mapping at `path` that the file lacks. */
static unsigned check_required(const cyaml_schema_value_t *map, const keel_yaml_scan *scan,
			       const char *path, kh_yschema_report_fn report, void *ud)
{
	unsigned errors = 0;
	for (const cyaml_schema_field_t *f = map->mapping.fields; f && f->key; f++) {
		char p[KEEL_YAML_PATH_MAX];
		if ((f->value.flags & CYAML_FLAG_OPTIONAL) || f->value.type == CYAML_IGNORE)
			continue;
		snprintf(p, sizeof(p), "%s%s%s", path, path[0] ? "." : "", f->key);
		if (!has_path(scan, p)) {
			report(ud, p, "missing required key");
			errors++;
		}
	}
	return errors;
}

unsigned kh_yschema_check(const cyaml_schema_value_t *top, const keel_yaml_scan *scan,
			  kh_yschema_report_fn report, void *ud)
{
	unsigned errors = 0;
	char buf[256];
	if (scan->count > 0)
		errors += check_required(top, scan, "", report, ud);
	for (size_t i = 0; i < scan->count; i++) {
		const keel_yaml_key *k = &scan->keys[i];
		const cyaml_schema_value_t *v = NULL, *seq = NULL;
		long index;
		resolved r = resolve(top, k->path, &v, &index, &seq);
		if (r == R_UNKNOWN) {
			report(ud, k->path, "unknown key");
			errors++;
			continue;
		}
		if (r != R_OK)
			continue;
		if (index < 0) {
			bool twice = false;
			for (size_t j = 0; j < i && !twice; j++)
				twice = strcmp(scan->keys[j].path, k->path) == 0;
			if (twice) {
				report(ud, k->path, "key given twice");
				errors++;
				continue;
			}
		} else if (seq && seq->sequence.max != CYAML_UNLIMITED &&
			   (unsigned long)index == seq->sequence.max) {
			/* named like libcyaml names it: at the last entry it takes */
			char last[KEEL_YAML_PATH_MAX];
			snprintf(last, sizeof(last), "%s", k->path);
			char *bracket = strrchr(last, '[');
			if (bracket)
				snprintf(bracket, sizeof(last) - (size_t)(bracket - last), "[%lu]",
					 (unsigned long)index - 1);
			report(ud, last, "too many entries");
			errors++;
			continue;
		}
		const char *problem = NULL;
		if (k->value != NULL) {
			/* an empty value: libcyaml decides (null, or an error) */
			if (k->value[0])
				problem = check_scalar(v, k->value, buf, sizeof(buf));
		} else {
			char kind = container_kind(scan, i);
			bool want_map = v->type == CYAML_MAPPING, want_seq = is_seq(v);
			if ((kind == 'm' && !want_map) || (kind == 's' && !want_seq))
				snprintf(buf, sizeof(buf), "expected %s, got %s", type_words(v),
					 kind == 'm' ? "a mapping" : "a list"), problem = buf;
			else if (want_map && kind != 's')
				errors += check_required(v, scan, k->path, report, ud);
		}
		if (problem) {
			report(ud, k->path, problem);
			errors++;
		}
	}
	return errors;
}

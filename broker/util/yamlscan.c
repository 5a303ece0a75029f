/*
 * yamlscan.c - the YAML key-path scan and libcyaml error wording shared by
 * the broker's config (config.c) and the harness's scenarios (scenario.c);
 * see yamlscan.h.  A scan owns the strings of its keys; every allocation
 * goes through alloc.h.  No global state; any thread.
 */
#include "keel/yamlscan.h"
#include "limits.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "keel/alloc.h"

/* ---- allocation and logging hooks -------------------------------------- */

void *keel_yaml_mem(void *ctx, void *ptr, size_t size)
{
	(void)ctx;
	if (size == 0) {
		keel_free(ptr);
		return NULL;
	}
	return keel_realloc(ptr, size);
}

void keel_yaml_log_fn(cyaml_log_t level, void *ctx, const char *fmt, va_list args)
{
	keel_yaml_log *log = ctx;
	char line[320];
	if (level < CYAML_LOG_ERROR)
		return;
	vsnprintf(line, sizeof(line), fmt, args);
	line[strcspn(line, "\n")] = '\0';

	keel_yaml_frame f = { 0 };
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
			snprintf(log->msg, sizeof(log->msg), "%.*s",
				 (int)sizeof(log->msg) - 1, m);
		return;
	}
	if (log->nframes < sizeof(log->frames) / sizeof(log->frames[0]))
		log->frames[log->nframes++] = f;
}

/* ---- the scan's keys --------------------------------------------------- */

void keel_yaml_scan_free(keel_yaml_scan *s)
{
	for (size_t i = 0; i < s->count; i++) {
		keel_free(s->keys[i].path);
		keel_free(s->keys[i].value);
	}
	keel_free(s->keys);
	memset(s, 0, sizeof(*s));
}

static int scan_add(keel_yaml_scan *s, const char *path, unsigned line)
{
	if (s->count == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 32;
		keel_yaml_key *k = keel_realloc(s->keys, cap * sizeof(*k));
		if (k == NULL)
			return -ENOMEM;
		s->keys = k;
		s->cap = cap;
	}
	char *p = keel_strdup(path);
	if (p == NULL)
		return -ENOMEM;
	s->keys[s->count] = (keel_yaml_key){ .path = p, .line = line, .value_line = line };
	s->count++;
	return 0;
}

unsigned keel_yaml_line(const keel_yaml_scan *s, const char *path)
{
	for (size_t i = s->count; i-- > 0;) {
		if (strcmp(s->keys[i].path, path) == 0)
			return s->keys[i].line;
	}
	return 0;
}

unsigned keel_yaml_linef(const keel_yaml_scan *s, const char *fmt, ...)
{
	char path[KEEL_YAML_PATH_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(path, sizeof(path), fmt, ap);
	va_end(ap);
	return keel_yaml_line(s, path);
}

unsigned keel_yaml_line_near(const keel_yaml_scan *s, const char *path)
{
	char p[KEEL_YAML_PATH_MAX];
	unsigned line = 0;
	snprintf(p, sizeof(p), "%.*s", (int)sizeof(p) - 1, path);
	while (p[0] && (line = keel_yaml_line(s, p)) == 0) {
		char *cut = p + strlen(p);
		while (cut > p && *cut != '.' && *cut != '[')
			cut--;
		*cut = '\0';
	}
	return line;
}

/* ---- the libyaml scan -------------------------------------------------- */

typedef struct scan_frame {
	bool is_map;
	bool want_key;           /* map: next node is a key */
	bool bool_value;         /* map: current key takes a boolean */
	size_t base_len;         /* path length of this node itself */
	unsigned index;          /* seq: next entry's index */
} scan_frame;

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

static bool is_bool_key(const keel_yaml_opts *o, const char *key)
{
	for (size_t i = 0; i < o->nbool_keys; i++) {
		if (strcmp(key, o->bool_keys[i]) == 0)
			return true;
	}
	return false;
}

static void path_append(char *path, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void path_append(char *path, const char *fmt, ...)
{
	size_t len = strlen(path);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(path + len, KEEL_YAML_PATH_MAX - len, fmt, ap);
	va_end(ap);
}

/* Keep the scalar value of the key (or entry) just added at `path`. */
static int keep_value(keel_yaml_scan *s, const char *path, const yaml_event_t *ev,
		      unsigned line)
{
	if (s->count == 0 || strcmp(s->keys[s->count - 1].path, path) != 0 ||
	    s->keys[s->count - 1].value != NULL)
		return 0;
	keel_yaml_key *k = &s->keys[s->count - 1];
	k->value = keel_strdup((const char *)ev->data.scalar.value);
	if (k->value == NULL)
		return -ENOMEM;
	k->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
	k->literal = ev->data.scalar.style == YAML_LITERAL_SCALAR_STYLE;
	k->value_line = line;
	return 0;
}

/*
 * Walk the events of `yaml` once: record every key and sequence entry with
 * its line, and refuse what libcyaml would not report well (syntax errors,
 * several documents, aliases, too deep nesting, booleans it would misread).
 */
int keel_yaml_scan_run(keel_yaml_scan *s, const keel_yaml_opts *o, const char *name,
		       const char *yaml, size_t len, char *err, size_t errlen)
{
	yaml_parser_t parser;
	yaml_event_t ev;
	scan_frame stack[KEEL_YAML_MAX_DEPTH];
	unsigned depth = 0, docs = 0;
	char path[KEEL_YAML_PATH_MAX] = "";
	int rc = 0;
	bool done = false;

	assert(o->max_depth > 0 && o->max_depth <= KEEL_YAML_MAX_DEPTH);
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
			top->bool_value = is_bool_key(o, key);
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
			if (o->keep_values) {
				rc = keep_value(s, path, &ev, line);
				if (rc)
					goto out_event;
			}
			complete = true;
			break;
		case YAML_SEQUENCE_START_EVENT:
		case YAML_MAPPING_START_EVENT:
			if (depth == o->max_depth) {
				snprintf(err, errlen, "%s:%u: %s%snested deeper than %u levels%s%s%s",
					 name, line, path, path[0] ? ": " : "", o->max_depth,
					 o->depth_name ? " (" : "",
					 o->depth_name ? o->depth_name : "",
					 o->depth_name ? ")" : "");
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
		/* A node ended: the parent moves on to its next key or entry. */
		if (complete && depth > 0) {
			scan_frame *parent = &stack[depth - 1];
			assert(parent->base_len < KEEL_YAML_PATH_MAX);
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

/* Rewrite libcyaml's message for people; `key` gets the key the message is
 * about when it names one (unknown, missing and repeated keys). */
static void cyaml_msg_words(const keel_yaml_opts *o, const char *msg, char *out,
			    size_t outlen, char *key, size_t keylen)
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
		if (u == 1)
			snprintf(out, outlen, "must not be empty");
		else
			snprintf(out, outlen, "shorter than %u characters", u);
	} else if (sscanf(msg, "STRING length > %u:", &u) == 1) {
		snprintf(out, outlen, "longer than %u characters%s", u,
			 u == KEEL_MAX_NAME_LEN ? " (KEEL_MAX_NAME_LEN)" : "");
	} else if (o->excess_words && strncmp(msg, "Excessive entries", 17) == 0) {
		snprintf(out, outlen, "too many entries");
	} else {
		snprintf(out, outlen, "%s", msg);
		if (out[0])
			out[0] = (char)tolower((unsigned char)out[0]);
	}
}

void keel_yaml_cyaml_error(const keel_yaml_log *log, const keel_yaml_scan *scan,
			   const keel_yaml_opts *o, const char *name, cyaml_err_t cerr,
			   char *err, size_t errlen)
{
	char path[KEEL_YAML_PATH_MAX] = "", words[320], key[128];
	unsigned first = 0, line = 0;
	cyaml_msg_words(o, log->msg[0] ? log->msg : cyaml_strerror(cerr), words,
			sizeof(words), key, sizeof(key));
	/* A message about a key of a mapping: the innermost frame is the
	 * mapping (or its last field), the key is the one in the message. */
	if (key[0] && log->nframes > 0 && !log->frames[0].is_entry)
		first = 1;
	for (unsigned i = log->nframes; i-- > first;) {
		const keel_yaml_frame *f = &log->frames[i];
		if (f->is_entry)
			path_append(path, "[%u]", f->entry ? f->entry - 1 : 0);
		else if (f->field[0])
			path_append(path, "%s%s", path[0] ? "." : "", f->field);
	}
	if (key[0]) {
		size_t parent_len = strlen(path);
		path_append(path, "%s%s", path[0] ? "." : "", key);
		line = keel_yaml_line(scan, path);
		if (line == 0) { /* missing key: name its mapping's line */
			char parent[KEEL_YAML_PATH_MAX];
			snprintf(parent, sizeof(parent), "%.*s", (int)parent_len, path);
			line = parent_len ? keel_yaml_line(scan, parent) : 1;
		}
	} else {
		line = path[0] ? keel_yaml_line(scan, path) : 1;
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

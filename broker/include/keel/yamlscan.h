/*
 * yamlscan.h - what the broker's config and the harness's scenario files
 * share about YAML: a libyaml pass that records every key path
 * ("addresses[0].queues[1].durable") with its line (and, on request, its
 * scalar value), refusing what libcyaml would report badly; and the
 * translation of libcyaml's error log into one "FILE:LINE: key.path:
 * message" string.  A scan owns its keys (keel_yaml_scan_free).  No global
 * state; any thread.
 */
#ifndef KEEL_YAMLSCAN_H
#define KEEL_YAMLSCAN_H

#include <cyaml/cyaml.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>


/* Deepest nesting any caller may ask for, and longest key path kept for
 * messages ("addresses[12].queues[3].durable"). */
#define KEEL_YAML_MAX_DEPTH 16
#define KEEL_YAML_PATH_MAX 512

/* One key or sequence entry of the file. */
typedef struct keel_yaml_key {
	char *path;              /* "steps[3].await.within" */
	unsigned line;           /* 1-based line of the key (entry) */
	char *value;             /* scalar value, NULL for containers or
				  * when the scan does not keep values */
	bool plain;              /* value was an unquoted scalar */
	bool literal;            /* value was a literal block scalar (`|`) */
	unsigned value_line;     /* where the value starts */
} keel_yaml_key;

/* Keys in file order. */
typedef struct keel_yaml_scan {
	keel_yaml_key *keys;
	size_t count;
	size_t cap;
} keel_yaml_scan;

/* How a caller's files are scanned and reported. */
typedef struct keel_yaml_opts {
	/* Keys whose values libcyaml reads as booleans: libcyaml 1.3 takes
	 * any word that is not a "false" word as true, so the scan checks. */
	const char *const *bool_keys;
	size_t nbool_keys;
	unsigned max_depth;      /* 1..KEEL_YAML_MAX_DEPTH */
	const char *depth_name;  /* limit named in the nesting error, or NULL */
	bool keep_values;        /* record scalar values in the keys */
	bool excess_words;       /* "too many entries" for libcyaml's
				  * "Excessive entries" (else its own words) */
} keel_yaml_opts;

/* Scan `yaml` once into *s (zeroed by the caller).  0; -EINVAL with "FILE:
 * LINE: [path: ]problem" in err (syntax error, several documents, aliases,
 * non-scalar keys, too deep nesting, invalid booleans); -ENOMEM.  *s is to
 * be freed whatever the result. */
int keel_yaml_scan_run(keel_yaml_scan *s, const keel_yaml_opts *o, const char *name,
		       const char *yaml, size_t len, char *err, size_t errlen);
void keel_yaml_scan_free(keel_yaml_scan *s);

/* Line of `path` (the last occurrence: a duplicate key is the one to
 * name), or 0 when the file does not have it. */
unsigned keel_yaml_line(const keel_yaml_scan *s, const char *path);
unsigned keel_yaml_linef(const keel_yaml_scan *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Line of `path`, else of its nearest enclosing key or entry that has
 * one; 0 when none has. */
unsigned keel_yaml_line_near(const keel_yaml_scan *s, const char *path);

/* libcyaml's allocator hook: everything through keel_realloc/keel_free. */
void *keel_yaml_mem(void *ctx, void *ptr, size_t size);

/* One line of libcyaml's error backtrace: where the loader was. */
typedef struct keel_yaml_frame {
	char field[64];          /* mapping field, "" for a mapping or entry */
	unsigned entry;          /* 1-based sequence entry, 0 if a mapping */
	bool is_entry;
	unsigned line;
} keel_yaml_frame;

/* What libcyaml logged at error level for one load (zero it first). */
typedef struct keel_yaml_log {
	char msg[256];           /* first message, without "Load: " */
	keel_yaml_frame frames[KEEL_YAML_MAX_DEPTH * 2]; /* innermost first */
	unsigned nframes;
} keel_yaml_log;

/* libcyaml's log hook; ctx is a keel_yaml_log. */
void keel_yaml_log_fn(cyaml_log_t level, void *ctx, const char *fmt, va_list args);

/* The load error `cerr` with what `log` caught, as "FILE:LINE: path:
 * message" (lines from `scan`). */
void keel_yaml_cyaml_error(const keel_yaml_log *log, const keel_yaml_scan *scan,
			   const keel_yaml_opts *o, const char *name, cyaml_err_t cerr,
			   char *err, size_t errlen);

#endif

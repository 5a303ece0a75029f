/*
 * yaml_schema.h - every schema error of a YAML file at once: its scan
 * (keel/yamlscan.h: every key path, line and scalar value) checked against
 * a libcyaml schema (the tables libcyaml loads with), so that lint names
 * all unknown keys, missing required keys, values of the wrong type and
 * repeated keys of a file, where libcyaml stops at the first.  Pure; any
 * thread.
 */
#ifndef KH_YAML_SCHEMA_H
#define KH_YAML_SCHEMA_H

#include <cyaml/cyaml.h>

#include "keel/yamlscan.h"

/* Called once per error: the key path ("steps[3].await.colour", "" for
 * the top) and the problem in libcyaml's words as keel_yaml_cyaml_error
 * gives them ("unknown key", "missing required key", "invalid number
 * \"soon\"", "expected a mapping, got a single value", "key given twice",
 * "too many entries"). */
typedef void (*kh_yschema_report_fn)(void *ud, const char *path, const char *problem);

/* Walks `scan` against `top` (a mapping).  Returns the number of errors
 * reported.  What it accepts libcyaml may still refuse (it is lenient
 * where unsure: empty values, empty containers); what it refuses
 * libcyaml refuses too. */
unsigned kh_yschema_check(const cyaml_schema_value_t *top, const keel_yaml_scan *scan,
			  kh_yschema_report_fn report, void *ud);

#endif

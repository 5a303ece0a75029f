/*
 * scenario_net.h - the network steps of the scenario format (partition,
 * heal, net) and the scenario's `network` key, for scenario.c: their
 * libcyaml fields, their checks (errors "FILE:LINE: KEY: problem", like
 * scenario.c's), their params JSON and what the scan gave them that
 * libcyaml does not free.  Internal to kh_core; any thread.
 */
#ifndef KH_SCENARIO_NET_H
#define KH_SCENARIO_NET_H

#include <cyaml/cyaml.h>
#include <jansson.h>

#include "keel/yamlscan.h"
#include "scenario.h"

extern const cyaml_schema_field_t kh__partition_fields[];
extern const cyaml_schema_field_t kh__heal_fields[];
extern const cyaml_schema_field_t kh__net_fields[];

/* Checks step i (a partition, heal or net) of `s`, fills what the scan
 * holds (partition groups) and sets s->uses_net.  0, -EINVAL (err says
 * "FILE:LINE: KEY: problem"), -ENOMEM. */
int kh__net_step_check(const keel_yaml_scan *scan, const char *name, kh_scenario *s,
		       unsigned i, char *err, size_t errlen);
/* After every step: the scenario's `network` (s->proxied).  0 or -EINVAL. */
int kh__net_scenario_check(const keel_yaml_scan *scan, const char *name, kh_scenario *s,
			   char *err, size_t errlen);
/* The step's params (steps.params) into `o`. */
void kh__net_step_params(const kh_step *st, json_t *o);
/* Frees what the check added to the step (not libcyaml's). */
void kh__net_step_free(kh_step *st);

#endif

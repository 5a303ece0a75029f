/*
 * scenario_lint.h - the scenario parser (../src/scenario.h) for tests that
 * include reading.h, whose kh_step is another struct: loads YAML text as
 * `keel-harness lint` would.  Test thread only.
 */
#ifndef KH_SCENARIO_LINT_H
#define KH_SCENARIO_LINT_H

#include <stddef.h>

/* 0 and the scenario's node and step counts, or -errno with `err` holding
 * "NAME:LINE: KEY: problem". */
int scenario_lint_text(const char *name, const char *yaml, unsigned *nodes,
		       unsigned *steps, char *err, size_t errlen);

#endif

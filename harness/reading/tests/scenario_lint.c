/*
 * scenario_lint.c - see scenario_lint.h: kh_scenario_load_data on a
 * string, the counts out.  Test thread only.
 */
#include "scenario_lint.h"

#include <string.h>

#include "scenario.h"

int scenario_lint_text(const char *name, const char *yaml, unsigned *nodes,
		       unsigned *steps, char *err, size_t errlen)
{
	kh_scenario *sc = NULL;
	int rc = kh_scenario_load_data(name, yaml, strlen(yaml), false, &sc, err,
				       errlen);
	if (rc < 0)
		return rc;
	*nodes = sc->nodes_count;
	*steps = sc->steps_count;
	kh_scenario_free(sc);
	return 0;
}

/*
 * scenario_fault.c - the clock and disk fault steps of the scenario format
 * and the node key disk-size (scenario_fault.h): their libcyaml fields,
 * checks and params.  A target is resolved when the step runs (like
 * partition's); a node is known through the caller's callback.  Calls
 * nothing of scenario.c.  Pure; any thread.
 */
#include "scenario_fault.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kh_limits.h"

#define OPT CYAML_FLAG_OPTIONAL
#define STR_OPT(key, st, m) CYAML_FIELD_STRING_PTR(key, CYAML_FLAG_POINTER | OPT, st, m, 1, 64)

const char *const kh_disk_points[] = {
	"journal/write",        /* a journal append fails */
	"journal/sync",         /* an fsync of the journal fails */
	"journal/create",       /* a new journal file cannot be made */
	"repl/persist",         /* the HA identity file cannot be written */
	"repl/chunk-write",     /* a backup cannot write a sync chunk */
};
const unsigned kh_disk_points_count = sizeof(kh_disk_points) / sizeof(kh_disk_points[0]);

const cyaml_schema_field_t kh__clock_fields[] = {
	STR_OPT("node", kh_clock_step, node),
	STR_OPT("target", kh_clock_step, target),
	STR_OPT("offset", kh_clock_step, offset),
	STR_OPT("jump", kh_clock_step, jump),
	CYAML_FIELD_FLOAT("rate", OPT, kh_clock_step, rate),
	CYAML_FIELD_BOOL("reset", OPT, kh_clock_step, reset),
	CYAML_FIELD_END,
};

static const cyaml_schema_value_t point_schema = {
	CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 1, 64),
};

const cyaml_schema_field_t kh__disk_fields[] = {
	STR_OPT("node", kh_disk_step, node),
	STR_OPT("target", kh_disk_step, target),
	CYAML_FIELD_SEQUENCE("faults", CYAML_FLAG_POINTER | OPT, kh_disk_step, faults,
			     &point_schema, 0, KH_DISK_MAX_POINTS),
	CYAML_FIELD_UINT("pick", OPT, kh_disk_step, pick),
	CYAML_FIELD_FLOAT("probability", OPT, kh_disk_step, probability),
	CYAML_FIELD_INT("failinfo", OPT, kh_disk_step, failinfo),
	CYAML_FIELD_BOOL("off", OPT, kh_disk_step, off),
	CYAML_FIELD_END,
};

/* the checkers' shared reporter (scenario_net.h), by its short name here */
#define fail_at kh__net_fail_at

int kh__fault_parse_duration(const char *text, double *s)
{
	char *end;
	double v = strtod(text, &end);
	if (end == text || !isfinite(v))
		return -EINVAL;
	double unit = 1.0;
	if (*end == '\0' || strcmp(end, "s") == 0)
		unit = 1.0;
	else if (strcmp(end, "ms") == 0)
		unit = 0.001;
	else if (strcmp(end, "m") == 0)
		unit = 60.0;
	else if (strcmp(end, "h") == 0)
		unit = 3600.0;
	else
		return -EINVAL;
	*s = v * unit;
	return 0;
}

/* node or target (exactly one); a target one of live, backup, one, all. */
static int check_who(const kh_net_lint *l, const char *p, const char *node, const char *target)
{
	char sub[KH_PATH_MAX + 32];
	if ((node != NULL) == (target != NULL))
		return fail_at(l, p, "give either node or target (live, backup, one or all)");
	if (node && !l->known(l->ud, node)) {
		snprintf(sub, sizeof(sub), "%s.node", p);
		return fail_at(l, sub, "unknown node \"%s\"", node);
	}
	if (target && strcmp(target, "live") != 0 && strcmp(target, "backup") != 0 &&
	    strcmp(target, "one") != 0 && strcmp(target, "all") != 0) {
		snprintf(sub, sizeof(sub), "%s.target", p);
		return fail_at(l, sub, "\"%s\": expected live, backup, one or all", target);
	}
	return 0;
}

static int check_span(const kh_net_lint *l, const char *p, const char *key, const char *text,
		      double *out)
{
	char sub[KH_PATH_MAX + 32];
	snprintf(sub, sizeof(sub), "%s.%s", p, key);
	if (kh__fault_parse_duration(text, out))
		return fail_at(l, sub, "\"%s\": expected a duration such as +5s, -30s, 250ms, "
			       "2m or 1h", text);
	if (fabs(*out) > KH_CLOCK_MAX_OFFSET_S)
		return fail_at(l, sub, "at most a year either way");
	return 0;
}

int kh__fault_check_clock(const kh_net_lint *l, const char *p, kh_clock_step *ck)
{
	char sub[KH_PATH_MAX + 32];
	int rc;
	if ((rc = check_who(l, p, ck->node, ck->target)))
		return rc;
	bool has_rate = keel_yaml_linef(l->scan, "%s.rate", p) != 0;
	if (ck->reset && (ck->offset || ck->jump || has_rate)) {
		snprintf(sub, sizeof(sub), "%s.reset", p);
		return fail_at(l, sub, "reset stands alone (real time, rate 1)");
	}
	if (!ck->reset && !ck->offset && !ck->jump && !has_rate)
		return fail_at(l, p, "changes nothing (offset, jump, rate or reset: true)");
	if (ck->offset && ck->jump) {
		snprintf(sub, sizeof(sub), "%s.jump", p);
		return fail_at(l, sub, "give either offset (from real time) or jump (from where "
			       "the clock is), not both");
	}
	if (ck->offset && (rc = check_span(l, p, "offset", ck->offset, &ck->offset_s)))
		return rc;
	if (ck->jump && (rc = check_span(l, p, "jump", ck->jump, &ck->jump_s)))
		return rc;
	if (has_rate && !(ck->rate >= KH_CLOCK_MIN_RATE && ck->rate <= KH_CLOCK_MAX_RATE)) {
		snprintf(sub, sizeof(sub), "%s.rate", p);
		return fail_at(l, sub, "must be between %g and %g (clock seconds per real second)",
			       KH_CLOCK_MIN_RATE, KH_CLOCK_MAX_RATE);
	}
	return 0;
}

int kh__fault_check_disk(const kh_net_lint *l, const char *p, kh_disk_step *d)
{
	char sub[KH_PATH_MAX + 32];
	int rc;
	if ((rc = check_who(l, p, d->node, d->target)))
		return rc;
	bool has_faults = keel_yaml_linef(l->scan, "%s.faults", p) != 0;
	bool has_pick = keel_yaml_linef(l->scan, "%s.pick", p) != 0;
	bool has_prob = keel_yaml_linef(l->scan, "%s.probability", p) != 0;
	bool has_info = keel_yaml_linef(l->scan, "%s.failinfo", p) != 0;
	if (d->off) {
		if (has_faults || has_pick || has_prob || has_info) {
			snprintf(sub, sizeof(sub), "%s.off", p);
			return fail_at(l, sub, "off stands alone (it disables what this node's disk "
				       "steps enabled)");
		}
		return 0;
	}
	if (has_faults == has_pick)
		return fail_at(l, p, "give faults (a list of points) or pick (how many of the "
			       "broker's I/O points to draw), or off: true");
	if (has_faults && d->faults_count == 0) {
		snprintf(sub, sizeof(sub), "%s.faults", p);
		return fail_at(l, sub, "an empty list");
	}
	for (unsigned i = 0; i < d->faults_count; i++) {
		for (const char *q = d->faults[i]; *q; q++) {
			if (*q == ' ' || *q == '\t' || *q == ',' || *q == '=') {
				snprintf(sub, sizeof(sub), "%s.faults[%u]", p, i);
				return fail_at(l, sub, "\"%s\" is not a fault point name",
					       d->faults[i]);
			}
		}
	}
	if (has_pick && (d->pick < 1 || d->pick > kh_disk_points_count)) {
		snprintf(sub, sizeof(sub), "%s.pick", p);
		return fail_at(l, sub, "must be 1..%u (the broker's I/O points: journal/write, "
			       "journal/sync, journal/create, repl/persist, repl/chunk-write)",
			       kh_disk_points_count);
	}
	if (d->probability < 0 || d->probability > 1) {
		snprintf(sub, sizeof(sub), "%s.probability", p);
		return fail_at(l, sub, "must be between 0 and 1");
	}
	if (!has_info)
		d->failinfo = EIO;
	else if (d->failinfo < 1 || d->failinfo > 4095) {
		snprintf(sub, sizeof(sub), "%s.failinfo", p);
		return fail_at(l, sub, "an errno number (EIO 5, ENOSPC 28, ...)");
	}
	return 0;
}

int kh__fault_check_disk_size(const kh_net_lint *l, const char *path, const char *text,
			      uint64_t *bytes)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(text, &end, 10);
	uint64_t mul = 1;
	if (end == text || errno || text[0] == '-')
		goto bad;
	if (strcmp(end, "KiB") == 0)
		mul = 1024;
	else if (strcmp(end, "MiB") == 0)
		mul = 1024 * 1024;
	else if (strcmp(end, "GiB") == 0)
		mul = 1024 * 1024 * 1024;
	else if (*end != '\0')
		goto bad;
	if (v > KH_DISK_SIZE_MAX / mul || v * mul < KH_DISK_SIZE_MIN || v * mul > KH_DISK_SIZE_MAX)
		return fail_at(l, path, "\"%s\": must be between 1MiB and 1GiB", text);
	*bytes = v * mul;
	return 0;
bad:
	return fail_at(l, path, "\"%s\": expected a size such as 8MiB, 512KiB or 1GiB", text);
}

static void who(json_t *o, const char *node, const char *target)
{
	if (node)
		json_object_set_new(o, "node", json_string(node));
	if (target)
		json_object_set_new(o, "target", json_string(target));
}

void kh__fault_params(const kh_clock_step *ck, const kh_disk_step *d, json_t *o)
{
	if (ck) {
		who(o, ck->node, ck->target);
		if (ck->offset)
			json_object_set_new(o, "offset", json_string(ck->offset));
		if (ck->jump)
			json_object_set_new(o, "jump", json_string(ck->jump));
		if (ck->rate > 0)
			json_object_set_new(o, "rate", json_real(ck->rate));
		if (ck->reset)
			json_object_set_new(o, "reset", json_true());
		return;
	}
	who(o, d->node, d->target);
	if (d->off) {
		json_object_set_new(o, "off", json_true());
		return;
	}
	if (d->faults_count) {
		json_t *a = json_array();
		for (unsigned i = 0; i < d->faults_count; i++)
			json_array_append_new(a, json_string(d->faults[i]));
		json_object_set_new(o, "faults", a);
	}
	if (d->pick)
		json_object_set_new(o, "pick", json_integer(d->pick));
	if (d->probability > 0)
		json_object_set_new(o, "probability", json_real(d->probability));
	json_object_set_new(o, "failinfo", json_integer(d->failinfo));
}

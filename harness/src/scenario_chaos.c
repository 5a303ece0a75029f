/*
 * scenario_chaos.c - the chaos steps of the scenario format
 * (scenario_chaos.h; scenarios/README.md "Chaos"): `chaos` (a duration or
 * a number of faults, the mix of kinds with weights, targets, windows,
 * triggers on events, an explicit schedule, the quiet period) and
 * `await-liveness`.  The kinds' names are the table kind_names (one entry
 * per kh_chaos_kind).  Calls nothing of scenario.c.  Pure; any thread.
 */
#include "scenario_chaos.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/alloc.h"
#include "kh_limits.h"
#include "scenario_fault.h"

#define OPT CYAML_FLAG_OPTIONAL

static const char *const kind_names[KH_CHAOS_KIND__COUNT] = {
	[KH_CHAOS_KILL] = "kill",
	[KH_CHAOS_PAUSE] = "pause",
	[KH_CHAOS_RESTART] = "restart",
	[KH_CHAOS_PARTITION] = "partition",
	[KH_CHAOS_ONE_WAY] = "one-way",
	[KH_CHAOS_NET] = "net",
	[KH_CHAOS_CLOCK] = "clock",
	[KH_CHAOS_DISK] = "disk",
};

#define KINDS "kill, pause, restart, partition, one-way, net, clock or disk"

const char *kh_chaos_kind_name(kh_chaos_kind k)
{
	return (unsigned)k < KH_CHAOS_KIND__COUNT ? kind_names[k] : NULL;
}

int kh_chaos_kind_of(const char *name)
{
	for (int k = 0; name && k < KH_CHAOS_KIND__COUNT; k++) {
		if (strcmp(kind_names[k], name) == 0)
			return k;
	}
	return -1;
}

bool kh_chaos_kind_is_net(kh_chaos_kind k)
{
	return k == KH_CHAOS_PARTITION || k == KH_CHAOS_ONE_WAY || k == KH_CHAOS_NET;
}

bool kh_chaos_kind_default(kh_chaos_kind k)
{
	return k != KH_CHAOS_CLOCK && k != KH_CHAOS_DISK;
}

static const cyaml_schema_value_t str_schema = {
	CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 1, KH_MAX_PREDICATE_LEN),
};

static const cyaml_schema_field_t on_fields[] = {
	CYAML_FIELD_STRING_PTR("node", CYAML_FLAG_POINTER, kh_chaos_on, node, 1, 64),
	CYAML_FIELD_STRING_PTR("type", CYAML_FLAG_POINTER, kh_chaos_on, type, 1, 128),
	CYAML_FIELD_SEQUENCE("where", CYAML_FLAG_POINTER | OPT, kh_chaos_on, where, &str_schema,
			     0, KH_MAX_PREDICATES),
	CYAML_FIELD_UINT("occurrence", OPT, kh_chaos_on, occurrence),
	CYAML_FIELD_END,
};

static const cyaml_schema_field_t netv_fields[] = {
	CYAML_FIELD_UINT("delay-ms", OPT, kh_chaos_netv, delay_ms),
	CYAML_FIELD_UINT("jitter-ms", OPT, kh_chaos_netv, jitter_ms),
	CYAML_FIELD_UINT("bandwidth-kbps", OPT, kh_chaos_netv, bandwidth_kbps),
	CYAML_FIELD_FLOAT("loss", OPT, kh_chaos_netv, loss),
	CYAML_FIELD_END,
};

static const cyaml_schema_value_t float_schema = {
	CYAML_VALUE_FLOAT(CYAML_FLAG_DEFAULT, double),
};

static const cyaml_schema_value_t point_schema = {
	CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 1, 64),
};

static const cyaml_schema_field_t clockv_fields[] = {
	CYAML_FIELD_SEQUENCE("rates", CYAML_FLAG_POINTER | OPT, kh_chaos_clockv, rates,
			     &float_schema, 2, 2),
	CYAML_FIELD_STRING_PTR("max-jump", CYAML_FLAG_POINTER | OPT, kh_chaos_clockv, max_jump,
			       1, 32),
	CYAML_FIELD_END,
};

static const cyaml_schema_field_t diskv_fields[] = {
	CYAML_FIELD_UINT("pick", OPT, kh_chaos_diskv, pick),
	CYAML_FIELD_FLOAT("probability", OPT, kh_chaos_diskv, probability),
	CYAML_FIELD_SEQUENCE("points", CYAML_FLAG_POINTER | OPT, kh_chaos_diskv, points,
			     &point_schema, 1, KH_DISK_MAX_POINTS),
	CYAML_FIELD_END,
};

static const cyaml_schema_field_t fault_fields[] = {
	CYAML_FIELD_STRING_PTR("kind", CYAML_FLAG_POINTER, kh_chaos_fault, kind, 1, 32),
	CYAML_FIELD_STRING_PTR("target", CYAML_FLAG_POINTER | OPT, kh_chaos_fault, target, 1, 64),
	CYAML_FIELD_FLOAT("at", OPT, kh_chaos_fault, at_s),
	CYAML_FIELD_MAPPING_PTR("on", OPT, kh_chaos_fault, on, on_fields),
	CYAML_FIELD_FLOAT("after", OPT, kh_chaos_fault, after_s),
	CYAML_FIELD_FLOAT("for", OPT, kh_chaos_fault, for_s),
	CYAML_FIELD_STRING_PTR("direction", CYAML_FLAG_POINTER | OPT, kh_chaos_fault, direction,
			       1, 8),
	CYAML_FIELD_UINT("times", OPT, kh_chaos_fault, times),
	CYAML_FIELD_UINT("delay-ms", OPT, kh_chaos_fault, netv.delay_ms),
	CYAML_FIELD_UINT("jitter-ms", OPT, kh_chaos_fault, netv.jitter_ms),
	CYAML_FIELD_UINT("bandwidth-kbps", OPT, kh_chaos_fault, netv.bandwidth_kbps),
	CYAML_FIELD_FLOAT("loss", OPT, kh_chaos_fault, netv.loss),
	CYAML_FIELD_FLOAT("jump", OPT, kh_chaos_fault, jump_s),
	CYAML_FIELD_FLOAT("rate", OPT, kh_chaos_fault, rate),
	CYAML_FIELD_SEQUENCE("points", CYAML_FLAG_POINTER | OPT, kh_chaos_fault, points,
			     &point_schema, 1, KH_DISK_MAX_POINTS),
	CYAML_FIELD_FLOAT("probability", OPT, kh_chaos_fault, probability),
	CYAML_FIELD_END,
};

static const cyaml_schema_value_t fault_schema = {
	CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, kh_chaos_fault, fault_fields),
};

const cyaml_schema_field_t kh__chaos_fields[] = {
	CYAML_FIELD_FLOAT("duration", OPT, kh_chaos, duration_s),
	CYAML_FIELD_UINT("faults", OPT, kh_chaos, faults),
	CYAML_FIELD_IGNORE("mix", OPT), /* kind: weight, read from the scan */
	CYAML_FIELD_SEQUENCE("targets", CYAML_FLAG_POINTER | OPT, kh_chaos, targets, &str_schema,
			     0, KH_MAX_NODES + 4),
	CYAML_FIELD_FLOAT("min", OPT, kh_chaos, min_s),
	CYAML_FIELD_FLOAT("max", OPT, kh_chaos, max_s),
	CYAML_FIELD_FLOAT("gap-min", OPT, kh_chaos, gap_min_s),
	CYAML_FIELD_FLOAT("gap-max", OPT, kh_chaos, gap_max_s),
	CYAML_FIELD_FLOAT("quiet", OPT, kh_chaos, quiet_s),
	CYAML_FIELD_BOOL("clients", OPT, kh_chaos, clients),
	CYAML_FIELD_MAPPING_PTR("net", OPT, kh_chaos, net, netv_fields),
	CYAML_FIELD_MAPPING_PTR("clock", OPT, kh_chaos, clock, clockv_fields),
	CYAML_FIELD_MAPPING_PTR("disk", OPT, kh_chaos, disk, diskv_fields),
	CYAML_FIELD_SEQUENCE("triggers", CYAML_FLAG_POINTER | OPT, kh_chaos, triggers,
			     &fault_schema, 0, KH_CHAOS_MAX_FAULTS),
	CYAML_FIELD_SEQUENCE("schedule", CYAML_FLAG_POINTER | OPT, kh_chaos, schedule,
			     &fault_schema, 0, KH_CHAOS_MAX_FAULTS),
	CYAML_FIELD_SEQUENCE("test-fail-when", CYAML_FLAG_POINTER | OPT, kh_chaos,
			     test_fail_when, &str_schema, 0, KH_CHAOS_KIND__COUNT * KH_MAX_NODES),
	CYAML_FIELD_END,
};

const cyaml_schema_field_t kh__liveness_fields[] = {
	CYAML_FIELD_FLOAT("within", OPT, kh_liveness, within_s),
	CYAML_FIELD_END,
};

/* the checkers' shared reporter (scenario_net.h), by its short name here */
#define fail_at kh__net_fail_at

static bool target_ok(const kh_net_lint *c, const char *t)
{
	return strcmp(t, "one") == 0 || strcmp(t, "live") == 0 || strcmp(t, "backup") == 0 ||
	       strcmp(t, "all") == 0 || c->known(c->ud, t);
}

static int check_secs(const kh_net_lint *c, const char *path, double v)
{
	if (v < 0 || v > KH_MAX_SECONDS)
		return fail_at(c, path, "must be between 0 and %.0f seconds", KH_MAX_SECONDS);
	return 0;
}

/* The mix: `kind: weight` entries below path.mix (free keys). */
static int check_mix(const kh_net_lint *c, const char *p, kh_chaos *ch)
{
	char mix[KH_PATH_MAX + 16];
	int n = snprintf(mix, sizeof(mix), "%s.mix", p);
	bool any = false;
	for (size_t i = 0; i < c->scan->count; i++) {
		const keel_yaml_key *k = &c->scan->keys[i];
		if (strcmp(k->path, mix) == 0) {
			any = true;
			if (k->value && k->value[0])
				return fail_at(c, mix, "expected a mapping (kind: weight)");
			continue;
		}
		if (strncmp(k->path, mix, (size_t)n) != 0 || k->path[n] != '.')
			continue;
		int kind = kh_chaos_kind_of(k->path + n + 1);
		char *end = NULL;
		double w = k->value ? strtod(k->value, &end) : -1;
		if (kind < 0)
			return fail_at(c, k->path, "unknown fault kind (" KINDS ")");
		if (k->value == NULL || end == k->value || *end || w < 0 || w > 1000)
			return fail_at(c, k->path, "a weight: a number 0..1000");
		ch->weight[kind] = w;
	}
	if (!any) {
		for (int k = 0; k < KH_CHAOS_KIND__COUNT; k++)
			ch->weight[k] = kh_chaos_kind_default((kh_chaos_kind)k); /* the full mix */
		return 0;
	}
	for (int k = 0; k < KH_CHAOS_KIND__COUNT; k++) {
		if (ch->weight[k] > 0)
			return 0;
	}
	return fail_at(c, mix, "no kind has a weight above 0");
}

static int check_on(const kh_net_lint *c, const char *p, kh_chaos_on *on)
{
	char path[2 * KH_PATH_MAX];
	snprintf(path, sizeof(path), "%s.on.node", p);
	if (!c->known(c->ud, on->node) && strcmp(on->node, KH_HARNESS_NODE) != 0)
		return fail_at(c, path, "unknown node \"%s\"", on->node);
	if (on->where_count == 0)
		return 0;
	on->preds = keel_calloc(on->where_count, sizeof(*on->preds));
	if (on->preds == NULL)
		return -ENOMEM;
	for (unsigned k = 0; k < on->where_count; k++) {
		char why[256];
		int rc = kh_pred_parse(&on->preds[k], on->where[k], why, sizeof(why));
		if (rc == -ENOMEM)
			return rc;
		if (rc) {
			snprintf(path, sizeof(path), "%s.on.where[%u]", p, k);
			return fail_at(c, path, "%s", why);
		}
	}
	return 0;
}

static bool point_name_ok(const char *n)
{
	return strpbrk(n, " \t,=") == NULL;
}

/* The keys of one kind (clock: jump, rate; disk: points, probability) on
 * an entry at `p`: only with their kind, within range. */
static int check_fault_kinds(const kh_net_lint *c, const char *p, kh_chaos_fault *f)
{
	char path[2 * KH_PATH_MAX];
#define AT(key) (snprintf(path, sizeof(path), "%s.%s", p, key), path)
#define GIVEN(key) (keel_yaml_line(c->scan, AT(key)) != 0)
	static const char *const clock_keys[] = { "jump", "rate" };
	static const char *const disk_keys[] = { "points", "probability" };
	for (int i = 0; i < 2; i++) {
		if (f->kind_i != KH_CHAOS_CLOCK && GIVEN(clock_keys[i]))
			return fail_at(c, path, "clock faults only");
		if (f->kind_i != KH_CHAOS_DISK && GIVEN(disk_keys[i]))
			return fail_at(c, path, "disk faults only");
	}
	if (GIVEN("jump") && GIVEN("rate"))
		return fail_at(c, path, "give jump or rate, not both (a clock fault is one of them)");
	if (f->jump_s < 0 || f->jump_s > KH_CLOCK_MAX_OFFSET_S)
		return fail_at(c, AT("jump"), "seconds, 0 to a year (a size: its direction follows "
			       "the node's role)");
	if (GIVEN("rate") && !(f->rate >= KH_CLOCK_MIN_RATE && f->rate <= KH_CLOCK_MAX_RATE))
		return fail_at(c, AT("rate"), "must be between %g and %g", KH_CLOCK_MIN_RATE,
			       KH_CLOCK_MAX_RATE);
	f->probability_given = GIVEN("probability");
	if (f->probability < 0 || f->probability > 1)
		return fail_at(c, AT("probability"), "must be between 0 and 1 (0: every call fails)");
	if (GIVEN("jump") && f->jump_s == 0)
		return fail_at(c, AT("jump"), "0 changes nothing (leave jump and rate out: drawn)");
	for (unsigned k = 0; k < f->points_count; k++) {
		if (!point_name_ok(f->points[k])) {
			snprintf(path, sizeof(path), "%s.points[%u]", p, k);
			return fail_at(c, path, "\"%s\" is not a fault point name", f->points[k]);
		}
	}
	return 0;
#undef GIVEN
#undef AT
}

/* The step's `clock:` and `disk:` (or their defaults) into clockv, diskv. */
static int check_kinds_params(const kh_net_lint *c, const char *p, kh_chaos *ch)
{
	char path[2 * KH_PATH_MAX];
#define AT(key) (snprintf(path, sizeof(path), "%s.%s", p, key), path)
	kh_chaos_clockv *cv = &ch->clockv;
	kh_chaos_diskv *dv = &ch->diskv;
	cv->rate_lo = KH_CHAOS_DEFAULT_RATE_LO;
	cv->rate_hi = KH_CHAOS_DEFAULT_RATE_HI;
	cv->max_jump_s = KH_CHAOS_DEFAULT_MAX_JUMP_S;
	if (ch->clock && ch->clock->rates_count == 2) {
		cv->rate_lo = ch->clock->rates[0];
		cv->rate_hi = ch->clock->rates[1];
		if (!(cv->rate_lo >= KH_CLOCK_MIN_RATE && cv->rate_hi <= KH_CLOCK_MAX_RATE &&
		      cv->rate_lo <= cv->rate_hi))
			return fail_at(c, AT("clock.rates"), "[low, high]: low <= high, between %g "
				       "and %g", KH_CLOCK_MIN_RATE, KH_CLOCK_MAX_RATE);
	}
	if (ch->clock && ch->clock->max_jump) {
		if (kh__fault_parse_duration(ch->clock->max_jump, &cv->max_jump_s) != 0 ||
		    cv->max_jump_s < 0 || cv->max_jump_s > KH_CLOCK_MAX_OFFSET_S)
			return fail_at(c, AT("clock.max-jump"), "\"%s\": expected a duration such as "
				       "10s, 250ms or 2m (0: no jumps)", ch->clock->max_jump);
	}
	if (cv->max_jump_s == 0 && cv->rate_lo == 1 && cv->rate_hi == 1)
		return fail_at(c, AT("clock"), "no jump and no rate but 1: clock faults would "
			       "change nothing");
	dv->pick = KH_CHAOS_DEFAULT_DISK_PICK;
	dv->probability = KH_CHAOS_DEFAULT_DISK_PROBABILITY;
	dv->pool = kh_disk_points;
	dv->pool_count = kh_disk_points_count;
	if (ch->disk && ch->disk->points_count) {
		dv->pool = (const char *const *)ch->disk->points;
		dv->pool_count = ch->disk->points_count;
		for (unsigned k = 0; k < dv->pool_count; k++) {
			snprintf(path, sizeof(path), "%s.disk.points[%u]", p, k);
			if (!point_name_ok(dv->pool[k]))
				return fail_at(c, path, "\"%s\" is not a fault point name",
					       dv->pool[k]);
		}
	}
	if (ch->disk && keel_yaml_line(c->scan, AT("disk.pick")) != 0) {
		dv->pick = ch->disk->pick;
		if (dv->pick < 1 || dv->pick > dv->pool_count)
			return fail_at(c, path, "must be 1..%u (the points to draw from)",
				       dv->pool_count);
	}
	if (ch->disk && keel_yaml_line(c->scan, AT("disk.probability")) != 0) {
		dv->probability = ch->disk->probability;
		if (dv->probability < 0 || dv->probability > 1)
			return fail_at(c, path, "must be between 0 and 1 (0: every call fails)");
	}
	return 0;
#undef AT
}

/* A schedule entry (trigger false) or a trigger at path `p`. */
static int check_fault(const kh_net_lint *c, const char *p, kh_chaos_fault *f, bool trigger)
{
	char path[2 * KH_PATH_MAX];
	int rc;
#define AT(key) (snprintf(path, sizeof(path), "%s.%s", p, key), path)
	f->kind_i = kh_chaos_kind_of(f->kind);
	if (f->kind_i < 0)
		return fail_at(c, AT("kind"), "\"%s\": expected " KINDS, f->kind);
	if (f->target && !target_ok(c, f->target))
		return fail_at(c, AT("target"), "\"%s\": expected one, live, backup, all or a node",
			       f->target);
	bool has_at = keel_yaml_line(c->scan, AT("at")) != 0;
	if (trigger && (f->on == NULL || has_at))
		return fail_at(c, p, "a trigger needs on: {node, type} (and no at)");
	if (!trigger && (f->on != NULL) == has_at)
		return fail_at(c, p, "give exactly one of at (s after the step began) and on (an "
			       "event)");
	if (f->on && keel_yaml_line(c->scan, AT("on.occurrence")) == 0)
		f->on->occurrence = 1;
	else if (f->on && f->on->occurrence == 0)
		return fail_at(c, AT("on.occurrence"), "counts from 1");
	if (f->on && (rc = check_on(c, p, f->on)) != 0)
		return rc;
	if (!f->on && keel_yaml_line(c->scan, AT("after")) != 0)
		return fail_at(c, AT("after"), "only with on (after the event)");
	if ((rc = check_secs(c, AT("at"), f->at_s)) || (rc = check_secs(c, AT("after"), f->after_s)) ||
	    (rc = check_secs(c, AT("for"), f->for_s)))
		return rc;
	if (keel_yaml_line(c->scan, AT("times")) == 0)
		f->times = 1;
	else if (!trigger)
		return fail_at(c, AT("times"), "only for triggers");
	else if (f->times == 0 || f->times > KH_CHAOS_MAX_FAULTS)
		return fail_at(c, AT("times"), "must be 1..%d", KH_CHAOS_MAX_FAULTS);
	if (f->direction && (f->kind_i != KH_CHAOS_ONE_WAY ||
			     (strcmp(f->direction, "from") != 0 && strcmp(f->direction, "to") != 0)))
		return fail_at(c, AT("direction"), "one-way faults only: from (the target's bytes "
			       "dropped) or to");
	if (f->netv.loss < 0 || f->netv.loss > 1)
		return fail_at(c, AT("loss"), "must be between 0 and 1");
	return check_fault_kinds(c, p, f);
#undef AT
}

int kh__chaos_check(const kh_net_lint *c, const char *p, kh_chaos *ch, bool allow_test_steps)
{
	char path[2 * KH_PATH_MAX];
	int rc;
#define AT(key) (snprintf(path, sizeof(path), "%s.%s", p, key), path)
#define GIVEN(key) (keel_yaml_line(c->scan, AT(key)) != 0)
	bool written = ch->written = GIVEN("schedule");
	bool gen = !written && (GIVEN("duration") || GIVEN("faults"));
	if (!gen && !written)
		return fail_at(c, p, "give duration or faults (the seeded generator), or schedule "
			       "(explicit faults)");
	if (written && GIVEN("faults"))
		return fail_at(c, AT("faults"), "not with schedule (its faults are written)");
	if (written && (GIVEN("mix") || GIVEN("targets")))
		return fail_at(c, ch->targets ? AT("targets") : AT("mix"), "not with schedule (its "
			       "faults say their kind and target)");
	if ((rc = check_secs(c, AT("duration"), ch->duration_s)) != 0)
		return rc;
	if (GIVEN("faults") && (ch->faults == 0 || ch->faults > KH_CHAOS_MAX_FAULTS))
		return fail_at(c, AT("faults"), "must be 1..%d", KH_CHAOS_MAX_FAULTS);
	if (!GIVEN("min"))
		ch->min_s = KH_CHAOS_DEFAULT_MIN_S;
	if (!GIVEN("max"))
		ch->max_s = ch->min_s > KH_CHAOS_DEFAULT_MAX_S ? ch->min_s : KH_CHAOS_DEFAULT_MAX_S;
	if (!GIVEN("gap-min"))
		ch->gap_min_s = KH_CHAOS_DEFAULT_GAP_MIN_S;
	if (!GIVEN("gap-max"))
		ch->gap_max_s = ch->gap_min_s > KH_CHAOS_DEFAULT_GAP_MAX_S ? ch->gap_min_s :
				KH_CHAOS_DEFAULT_GAP_MAX_S;
	if (!GIVEN("quiet"))
		ch->quiet_s = KH_CHAOS_DEFAULT_QUIET_S;
	if ((rc = check_secs(c, AT("min"), ch->min_s)) || (rc = check_secs(c, AT("max"), ch->max_s)) ||
	    (rc = check_secs(c, AT("gap-min"), ch->gap_min_s)) ||
	    (rc = check_secs(c, AT("gap-max"), ch->gap_max_s)) ||
	    (rc = check_secs(c, AT("quiet"), ch->quiet_s)))
		return rc;
	if (ch->max_s < ch->min_s)
		return fail_at(c, AT("max"), "less than min (%g s)", ch->min_s);
	if (ch->gap_max_s < ch->gap_min_s)
		return fail_at(c, AT("gap-max"), "less than gap-min (%g s)", ch->gap_min_s);
	if (gen && (rc = check_mix(c, p, ch)) != 0)
		return rc;
	for (unsigned k = 0; k < ch->targets_count; k++) {
		snprintf(path, sizeof(path), "%s.targets[%u]", p, k);
		if (!target_ok(c, ch->targets[k]))
			return fail_at(c, path, "\"%s\": expected one, live, backup, all or a node",
				       ch->targets[k]);
	}
	if (ch->net && (ch->net->loss < 0 || ch->net->loss > 1))
		return fail_at(c, AT("net.loss"), "must be between 0 and 1");
	if ((rc = check_kinds_params(c, p, ch)) != 0)
		return rc;
	for (int k = 0; k < KH_CHAOS_KIND__COUNT; k++) {
		ch->uses_net |= ch->weight[k] > 0 && kh_chaos_kind_is_net((kh_chaos_kind)k);
		ch->uses_clock |= ch->weight[k] > 0 && k == KH_CHAOS_CLOCK;
		ch->uses_disk |= ch->weight[k] > 0 && k == KH_CHAOS_DISK;
	}
	for (unsigned k = 0; k < ch->triggers_count + ch->schedule_count; k++) {
		bool trig = k < ch->triggers_count;
		kh_chaos_fault *f = trig ? &ch->triggers[k] : &ch->schedule[k - ch->triggers_count];
		char fp[KH_PATH_MAX + 64];
		snprintf(fp, sizeof(fp), "%s.%s[%u]", p, trig ? "triggers" : "schedule",
			 trig ? k : k - ch->triggers_count);
		if ((rc = check_fault(c, fp, f, trig)) != 0)
			return rc;
		ch->uses_net |= kh_chaos_kind_is_net((kh_chaos_kind)f->kind_i);
		ch->uses_clock |= f->kind_i == KH_CHAOS_CLOCK;
		ch->uses_disk |= f->kind_i == KH_CHAOS_DISK;
	}
	if (ch->test_fail_when_count && !allow_test_steps)
		return fail_at(c, AT("test-fail-when"), "test-only (needs --allow-test-steps or "
			       "KH_ALLOW_TEST_STEPS=1)");
	for (unsigned k = 0; k < ch->test_fail_when_count; k++) {
		const char *w = ch->test_fail_when[k], *sp = strchr(w, ' ');
		char kind[32];
		snprintf(path, sizeof(path), "%s.test-fail-when[%u]", p, k);
		snprintf(kind, sizeof(kind), "%.*s", sp ? (int)(sp - w) : 0, w);
		if (sp == NULL || kh_chaos_kind_of(kind) < 0 || !c->known(c->ud, sp + 1))
			return fail_at(c, path, "\"%s\": expected \"KIND NODE\"", w);
	}
	return 0;
#undef GIVEN
#undef AT
}

static void netv_json(const kh_chaos_netv *v, json_t *o)
{
	if (v->delay_ms)
		json_object_set_new(o, "delay-ms", json_integer(v->delay_ms));
	if (v->jitter_ms)
		json_object_set_new(o, "jitter-ms", json_integer(v->jitter_ms));
	if (v->bandwidth_kbps)
		json_object_set_new(o, "bandwidth-kbps", json_integer(v->bandwidth_kbps));
	if (v->loss > 0)
		json_object_set_new(o, "loss", json_real(v->loss));
}

static json_t *faults_json(const kh_chaos_fault *fs, unsigned n)
{
	json_t *a = json_array();
	for (unsigned i = 0; i < n; i++) {
		const kh_chaos_fault *f = &fs[i];
		json_t *o = json_pack("{s:s, s:s}", "kind", f->kind, "target",
				      f->target ? f->target : "one");
		if (f->on) {
			json_t *w = json_array();
			for (unsigned k = 0; k < f->on->where_count; k++)
				json_array_append_new(w, json_string(f->on->where[k]));
			json_object_set_new(o, "on", json_pack("{s:s, s:s, s:o, s:i}", "node",
							       f->on->node, "type", f->on->type,
							       "where", w, "occurrence",
							       (int)f->on->occurrence));
			json_object_set_new(o, "after", json_real(f->after_s));
		} else {
			json_object_set_new(o, "at", json_real(f->at_s));
		}
		if (f->for_s > 0)
			json_object_set_new(o, "for", json_real(f->for_s));
		if (f->direction)
			json_object_set_new(o, "direction", json_string(f->direction));
		if (f->times > 1)
			json_object_set_new(o, "times", json_integer(f->times));
		netv_json(&f->netv, o);
		if (f->jump_s > 0)
			json_object_set_new(o, "jump", json_real(f->jump_s));
		if (f->rate > 0)
			json_object_set_new(o, "rate", json_real(f->rate));
		if (f->points_count) {
			json_t *pts = json_array();
			for (unsigned k = 0; k < f->points_count; k++)
				json_array_append_new(pts, json_string(f->points[k]));
			json_object_set_new(o, "points", pts);
		}
		if (f->probability_given)
			json_object_set_new(o, "probability", json_real(f->probability));
		json_array_append_new(a, o);
	}
	return a;
}

void kh__chaos_params(const kh_chaos *ch, json_t *o)
{
	if (ch->duration_s > 0)
		json_object_set_new(o, "duration", json_real(ch->duration_s));
	if (ch->faults)
		json_object_set_new(o, "faults", json_integer(ch->faults));
	json_t *mix = json_object(), *t = json_array();
	for (int k = 0; k < KH_CHAOS_KIND__COUNT; k++) {
		if (ch->weight[k] > 0)
			json_object_set_new(mix, kind_names[k], json_real(ch->weight[k]));
	}
	json_object_set_new(o, "mix", mix);
	for (unsigned k = 0; k < ch->targets_count; k++)
		json_array_append_new(t, json_string(ch->targets[k]));
	json_object_set_new(o, "targets", t);
	json_object_set_new(o, "min", json_real(ch->min_s));
	json_object_set_new(o, "max", json_real(ch->max_s));
	json_object_set_new(o, "gap-min", json_real(ch->gap_min_s));
	json_object_set_new(o, "gap-max", json_real(ch->gap_max_s));
	json_object_set_new(o, "quiet", json_real(ch->quiet_s));
	if (ch->clients)
		json_object_set_new(o, "clients", json_true());
	if (ch->net) {
		json_t *n = json_object();
		netv_json(ch->net, n);
		json_object_set_new(o, "net", n);
	}
	if (ch->uses_clock)
		json_object_set_new(o, "clock", json_pack("{s:[f,f], s:f}", "rates",
							  ch->clockv.rate_lo, ch->clockv.rate_hi,
							  "max-jump-s", ch->clockv.max_jump_s));
	if (ch->uses_disk) {
		json_t *pts = json_array();
		for (unsigned k = 0; k < ch->diskv.pool_count; k++)
			json_array_append_new(pts, json_string(ch->diskv.pool[k]));
		json_object_set_new(o, "disk", json_pack("{s:i, s:f, s:o}", "pick",
							 (int)ch->diskv.pick, "probability",
							 ch->diskv.probability, "points", pts));
	}
	if (ch->triggers_count)
		json_object_set_new(o, "triggers", faults_json(ch->triggers, ch->triggers_count));
	if (ch->schedule_count)
		json_object_set_new(o, "schedule", faults_json(ch->schedule, ch->schedule_count));
	if (ch->test_fail_when_count) {
		json_t *w = json_array();
		for (unsigned k = 0; k < ch->test_fail_when_count; k++)
			json_array_append_new(w, json_string(ch->test_fail_when[k]));
		json_object_set_new(o, "test-fail-when", w);
	}
}

static void faults_free(kh_chaos_fault *fs, unsigned n)
{
	for (unsigned i = 0; fs && i < n; i++) {
		kh_chaos_on *on = fs[i].on;
		if (on == NULL || on->preds == NULL)
			continue;
		for (unsigned k = 0; k < on->where_count; k++)
			kh_pred_clear(&on->preds[k]);
		keel_free(on->preds);
		on->preds = NULL;
	}
}

void kh__chaos_free(kh_chaos *ch)
{
	if (ch == NULL)
		return;
	faults_free(ch->triggers, ch->triggers_count);
	faults_free(ch->schedule, ch->schedule_count);
}

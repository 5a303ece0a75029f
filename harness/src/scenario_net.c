/*
 * scenario_net.c - the network steps of the scenario format
 * (scenario_net.h; scenarios/README.md "Network faults"): `partition`
 * (groups of endpoints, or a target resolved when it runs), `heal`, `net`
 * (degrade, cut, refuse or reset links), and the scenario's `network`
 * (proxy | direct).  An endpoint is a node of the scenario (known through
 * the caller's callback) or KH_HARNESS_NODE, the harness's clients.
 * Calls nothing of scenario.c.  Pure; any thread.
 */
#include "scenario_net.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/alloc.h"
#include "kh_limits.h"

#define OPT CYAML_FLAG_OPTIONAL

static const cyaml_schema_value_t endpoint_schema = {
	CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 1, 64),
};

const cyaml_schema_field_t kh__partition_fields[] = {
	CYAML_FIELD_IGNORE("groups", OPT), /* lists of lists: read from the scan */
	CYAML_FIELD_STRING_PTR("target", CYAML_FLAG_POINTER | OPT, kh_partition, target, 1, 16),
	CYAML_FIELD_BOOL("one-way", OPT, kh_partition, one_way),
	CYAML_FIELD_BOOL("clients", OPT, kh_partition, clients),
	CYAML_FIELD_END,
};

#define BETWEEN(st)                                                                       \
	CYAML_FIELD_SEQUENCE("between", CYAML_FLAG_POINTER | OPT, st, between,            \
			     &endpoint_schema, 0, 2),                                     \
	CYAML_FIELD_STRING_PTR("node", CYAML_FLAG_POINTER | OPT, st, node, 1, 64)

const cyaml_schema_field_t kh__heal_fields[] = {
	BETWEEN(kh_heal),
	CYAML_FIELD_END,
};

const cyaml_schema_field_t kh__net_fields[] = {
	BETWEEN(kh_net_step),
	CYAML_FIELD_STRING_PTR("direction", CYAML_FLAG_POINTER | OPT, kh_net_step, direction, 1,
			       16),
	CYAML_FIELD_UINT("delay-ms", OPT, kh_net_step, delay_ms),
	CYAML_FIELD_UINT("jitter-ms", OPT, kh_net_step, jitter_ms),
	CYAML_FIELD_UINT("bandwidth-kbps", OPT, kh_net_step, bandwidth_kbps),
	CYAML_FIELD_FLOAT("loss", OPT, kh_net_step, loss),
	CYAML_FIELD_FLOAT("duplicate", OPT, kh_net_step, duplicate),
	CYAML_FIELD_FLOAT("reorder", OPT, kh_net_step, reorder),
	CYAML_FIELD_FLOAT("corrupt", OPT, kh_net_step, corrupt),
	CYAML_FIELD_UINT("slice-bytes", OPT, kh_net_step, slice_bytes),
	CYAML_FIELD_UINT("slice-delay-ms", OPT, kh_net_step, slice_delay_ms),
	CYAML_FIELD_UINT("limit-bytes", OPT, kh_net_step, limit_bytes),
	CYAML_FIELD_BOOL("blackhole", OPT, kh_net_step, blackhole),
	CYAML_FIELD_BOOL("refuse", OPT, kh_net_step, refuse),
	CYAML_FIELD_BOOL("reset", OPT, kh_net_step, reset),
	CYAML_FIELD_END,
};

typedef kh_net_lint net_check;

int kh__net_fail_at(const kh_net_lint *c, const char *path, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	unsigned line = keel_yaml_line_near(c->scan, path);
	if (c->fail)
		c->fail(c->fail_ud, line, path, msg); /* the caller collects it */
	else
		snprintf(c->err, c->errlen, "%s:%u: %s: %s", c->name, line ? line : 1, path, msg);
	return -EINVAL;
}

/* the checkers' shared reporter (scenario_net.h), by its short name here */
#define fail_at kh__net_fail_at

static bool endpoint_known(const net_check *c, const char *name)
{
	return strcmp(name, KH_HARNESS_NODE) == 0 || c->known(c->ud, name);
}

/* `between: [a, b]` (two different endpoints) or `node: a`; *count
 * says which was given (0 none, 1 node, 2 between). */
static int check_link(const net_check *c, const char *p, char **between,
		      unsigned between_count, const char *node, bool required, unsigned *count)
{
	char path[KH_PATH_MAX + 32];
	snprintf(path, sizeof(path), "%s.between", p);
	bool has_between = keel_yaml_line(c->scan, path) != 0;
	*count = 0;
	if (has_between && node)
		return fail_at(c, path, "give either between or node, not both");
	if (!has_between && !node) {
		if (required)
			return fail_at(c, p, "needs between: [A, B] (a link) or node: A (all its "
				       "links)");
		return 0;
	}
	if (node) {
		snprintf(path, sizeof(path), "%s.node", p);
		if (!endpoint_known(c, node))
			return fail_at(c, path, "unknown node \"%s\"", node);
		*count = 1;
		return 0;
	}
	if (between_count != 2)
		return fail_at(c, path, "two endpoints (nodes, or %s for the clients)",
			       KH_HARNESS_NODE);
	for (unsigned k = 0; k < 2; k++) {
		snprintf(path, sizeof(path), "%s.between[%u]", p, k);
		if (!endpoint_known(c, between[k]))
			return fail_at(c, path, "unknown node \"%s\"", between[k]);
	}
	if (strcmp(between[0], between[1]) == 0)
		return fail_at(c, path, "\"%s\" twice: a link is between two endpoints",
			       between[0]);
	*count = 2;
	return 0;
}

/* The members of `groups` from the scan: steps[i].partition.groups[g][m]. */
static int read_groups(const net_check *c, kh_partition *pt, const char *p)
{
	char prefix[KH_PATH_MAX + 32];
	int n = snprintf(prefix, sizeof(prefix), "%s.groups", p);
	size_t plen = (size_t)n;
	for (size_t i = 0; i < c->scan->count; i++) {
		const keel_yaml_key *k = &c->scan->keys[i];
		unsigned g, m;
		int used = 0;
		if (strncmp(k->path, prefix, plen) != 0)
			continue;
		const char *rest = k->path + plen;
		if (rest[0] == '\0') {
			if (k->value && k->value[0])
				return fail_at(c, k->path, "a list of groups: [[a], [b, c]]");
			continue;
		}
		if (sscanf(rest, "[%u]%n", &g, &used) == 1 && rest[used] == '\0') {
			if (k->value)
				return fail_at(c, k->path, "a group is a list of nodes: [a, b]");
			if (g + 1 > pt->groups_count)
				pt->groups_count = g + 1;
			continue;
		}
		used = 0;
		if (sscanf(rest, "[%u][%u]%n", &g, &m, &used) != 2 || rest[used] != '\0' ||
		    k->value == NULL)
			return fail_at(c, k->path, "a group is a list of node names");
		if (!endpoint_known(c, k->value))
			return fail_at(c, k->path, "unknown node \"%s\"", k->value);
		for (unsigned j = 0; j < pt->members_count; j++) {
			if (strcmp(pt->members[j], k->value) == 0)
				return fail_at(c, k->path, "\"%s\" is in two groups (or twice)",
					       k->value);
		}
		char **mm = keel_realloc(pt->members, (pt->members_count + 1) * sizeof(*mm));
		if (mm == NULL)
			return -ENOMEM;
		pt->members = mm;
		unsigned *go = keel_realloc(pt->group_of, (pt->members_count + 1) * sizeof(*go));
		if (go == NULL)
			return -ENOMEM;
		pt->group_of = go;
		if ((pt->members[pt->members_count] = keel_strdup(k->value)) == NULL)
			return -ENOMEM;
		pt->group_of[pt->members_count++] = g;
	}
	return 0;
}

int kh__net_check_partition(const net_check *c, const char *p, kh_partition *pt)
{
	char path[KH_PATH_MAX + 32];
	int rc;
	snprintf(path, sizeof(path), "%s.groups", p);
	bool has_groups = keel_yaml_line(c->scan, path) != 0;
	if (has_groups == (pt->target != NULL))
		return fail_at(c, p, "give exactly one of groups ([[a], [b]]) and target (one, "
			       "live, backup, all)");
	if (pt->target) {
		snprintf(path, sizeof(path), "%s.target", p);
		if (strcmp(pt->target, "one") != 0 && strcmp(pt->target, "live") != 0 &&
		    strcmp(pt->target, "backup") != 0 && strcmp(pt->target, "all") != 0)
			return fail_at(c, path, "\"%s\": expected one, live, backup or all",
				       pt->target);
		if (pt->one_way && strcmp(pt->target, "all") == 0) {
			snprintf(path, sizeof(path), "%s.one-way", p);
			return fail_at(c, path, "not with target all (one way between which?)");
		}
		return 0;
	}
	if ((rc = read_groups(c, pt, p)) != 0)
		return rc;
	if (pt->groups_count < 2)
		return fail_at(c, path, "at least two groups (a partition is between groups)");
	for (unsigned g = 0; g < pt->groups_count; g++) {
		bool any = false;
		for (unsigned j = 0; j < pt->members_count; j++)
			any |= pt->group_of[j] == g;
		if (!any) {
			snprintf(path, sizeof(path), "%s.groups[%u]", p, g);
			return fail_at(c, path, "an empty group");
		}
	}
	if (pt->one_way && pt->groups_count != 2) {
		snprintf(path, sizeof(path), "%s.one-way", p);
		return fail_at(c, path, "needs exactly two groups (from the first to the second)");
	}
	for (unsigned j = 0; pt->clients && j < pt->members_count; j++) {
		if (strcmp(pt->members[j], KH_HARNESS_NODE) == 0) {
			snprintf(path, sizeof(path), "%s.clients", p);
			return fail_at(c, path, "%s is already in a group", KH_HARNESS_NODE);
		}
	}
	return 0;
}

int kh__net_check_net(const net_check *c, const char *p, kh_net_step *n)
{
	char path[KH_PATH_MAX + 32];
	unsigned count;
	int rc = check_link(c, p, n->between, n->between_count, n->node, true, &count);
	if (rc)
		return rc;
#define AT(key) (snprintf(path, sizeof(path), "%s.%s", p, key), path)
	if (n->direction == NULL || strcmp(n->direction, "both") == 0)
		n->dir = KH_NET_BOTH;
	else if (strcmp(n->direction, "forward") == 0)
		n->dir = KH_NET_FORWARD;
	else if (strcmp(n->direction, "backward") == 0)
		n->dir = KH_NET_BACKWARD;
	else
		return fail_at(c, AT("direction"), "\"%s\": expected both, forward or backward",
			       n->direction);
	if (n->delay_ms > KH_NET_MAX_DELAY_MS)
		return fail_at(c, AT("delay-ms"), "at most %d", KH_NET_MAX_DELAY_MS);
	if (n->jitter_ms > KH_NET_MAX_DELAY_MS)
		return fail_at(c, AT("jitter-ms"), "at most %d", KH_NET_MAX_DELAY_MS);
	if (n->slice_delay_ms > KH_NET_MAX_DELAY_MS)
		return fail_at(c, AT("slice-delay-ms"), "at most %d", KH_NET_MAX_DELAY_MS);
	if (n->bandwidth_kbps > KH_NET_MAX_BANDWIDTH_KBPS)
		return fail_at(c, AT("bandwidth-kbps"), "at most %d", KH_NET_MAX_BANDWIDTH_KBPS);
	if (keel_yaml_line(c->scan, AT("bandwidth-kbps")) && n->bandwidth_kbps == 0)
		return fail_at(c, path, "at least 1 (leave it out for no limit)");
	if (n->slice_bytes > KH_NET_MAX_SLICE_BYTES)
		return fail_at(c, AT("slice-bytes"), "at most %d", KH_NET_MAX_SLICE_BYTES);
	if (n->slice_delay_ms && n->slice_bytes == 0)
		return fail_at(c, AT("slice-delay-ms"), "needs slice-bytes");
	if (keel_yaml_line(c->scan, AT("limit-bytes")) && n->limit_bytes == 0)
		return fail_at(c, path, "at least 1 (leave it out for no limit)");
	if (n->loss < 0 || n->loss > 1)
		return fail_at(c, AT("loss"), "must be between 0 and 1");
	if (n->duplicate < 0 || n->duplicate > 1)
		return fail_at(c, AT("duplicate"), "must be between 0 and 1");
	if (n->reorder < 0 || n->reorder > 1)
		return fail_at(c, AT("reorder"), "must be between 0 and 1");
	if (n->corrupt < 0 || n->corrupt > 1)
		return fail_at(c, AT("corrupt"), "must be between 0 and 1");
	if (n->reorder > 0 && n->delay_ms == 0)
		return fail_at(c, AT("reorder"), "needs delay-ms (netem reorders by sending some "
			       "packets without the delay)");
	if (n->jitter_ms && n->delay_ms == 0)
		return fail_at(c, AT("jitter-ms"), "needs delay-ms (jitter is around a delay)");
	bool any = n->delay_ms || n->bandwidth_kbps || n->loss > 0 || n->slice_bytes ||
		   n->limit_bytes || n->blackhole || n->refuse || n->reset || kh__net_netns_only(n);
	if (!any)
		return fail_at(c, p, "changes nothing (delay-ms, jitter-ms, bandwidth-kbps, loss, "
			       "duplicate, reorder, corrupt, slice-bytes, limit-bytes, blackhole, "
			       "refuse, reset; heal clears)");
#undef AT
	return 0;
}

int kh__net_check_heal(const net_check *c, const char *p, kh_heal *h)
{
	unsigned count;
	return check_link(c, p, h->between, h->between_count, h->node, false, &count);
}

bool kh__net_netns_only(const kh_net_step *n)
{
	return n->duplicate > 0 || n->reorder > 0 || n->corrupt > 0;
}

int kh__net_check_network(const net_check *c, const char *network, int first_net,
			  int first_netns, unsigned nodes, bool *proxied)
{
	bool netns = network && strcmp(network, "netns") == 0;
	if (network == NULL)
		*proxied = first_net >= 0;
	else if (strcmp(network, "proxy") == 0 || netns)
		*proxied = true;
	else if (strcmp(network, "direct") == 0)
		*proxied = false;
	else
		return fail_at(c, "network", "\"%s\": expected proxy, netns or direct", network);
	if (first_netns >= 0 && !netns) {
		char p[64];
		snprintf(p, sizeof(p), "steps[%d].net", first_netns);
		return fail_at(c, p, "duplicate, reorder and corrupt need network: netns (packets; "
			       "the proxy carries a byte stream)");
	}
	if (first_net >= 0 && !*proxied) {
		char p[64];
		snprintf(p, sizeof(p), "steps[%d]", first_net);
		return fail_at(c, p, "a network step needs network: proxy (the links of a "
			       "direct scenario are not the harness's)");
	}
	if (*proxied && nodes + 1 > KH_NET_MAX_ENDPOINTS)
		return fail_at(c, "nodes", "at most %d nodes when the links go through the "
			       "proxy", KH_NET_MAX_ENDPOINTS - 1);
	return 0;
}

static void set_link(json_t *o, char *const *between, unsigned between_count, const char *node)
{
	if (node) {
		json_object_set_new(o, "node", json_string(node));
	} else if (between_count == 2) {
		json_t *a = json_array();
		json_array_append_new(a, json_string(between[0]));
		json_array_append_new(a, json_string(between[1]));
		json_object_set_new(o, "between", a);
	}
}

static const char *dir_name(kh_net_dir d)
{
	return d == KH_NET_FORWARD ? "forward" : d == KH_NET_BACKWARD ? "backward" : "both";
}

void kh__net_params(const kh_partition *pt, const kh_heal *h, const kh_net_step *n, json_t *o)
{
	if (pt) {
		if (pt->target) {
			json_object_set_new(o, "target", json_string(pt->target));
		} else {
			json_t *groups = json_array();
			for (unsigned g = 0; g < pt->groups_count; g++) {
				json_t *grp = json_array();
				for (unsigned j = 0; j < pt->members_count; j++) {
					if (pt->group_of[j] == g)
						json_array_append_new(grp, json_string(pt->members[j]));
				}
				json_array_append_new(groups, grp);
			}
			json_object_set_new(o, "groups", groups);
		}
		if (pt->one_way)
			json_object_set_new(o, "one-way", json_true());
		if (pt->clients)
			json_object_set_new(o, "clients", json_true());
	} else if (h) {
		set_link(o, h->between, h->between_count, h->node);
	} else if (n) {
		set_link(o, n->between, n->between_count, n->node);
		json_object_set_new(o, "direction", json_string(dir_name(n->dir)));
#define NUM(key, v)                                                      \
	if (v)                                                           \
		json_object_set_new(o, key, json_integer((json_int_t)(v)))
		NUM("delay-ms", n->delay_ms);
		NUM("jitter-ms", n->jitter_ms);
		NUM("bandwidth-kbps", n->bandwidth_kbps);
		NUM("slice-bytes", n->slice_bytes);
		NUM("slice-delay-ms", n->slice_delay_ms);
		NUM("limit-bytes", n->limit_bytes);
#undef NUM
		if (n->loss > 0)
			json_object_set_new(o, "loss", json_real(n->loss));
		if (n->duplicate > 0)
			json_object_set_new(o, "duplicate", json_real(n->duplicate));
		if (n->reorder > 0)
			json_object_set_new(o, "reorder", json_real(n->reorder));
		if (n->corrupt > 0)
			json_object_set_new(o, "corrupt", json_real(n->corrupt));
		if (n->blackhole)
			json_object_set_new(o, "blackhole", json_true());
		if (n->refuse)
			json_object_set_new(o, "refuse", json_true());
		if (n->reset)
			json_object_set_new(o, "reset", json_true());
	}
}

void kh__net_partition_free(kh_partition *pt)
{
	if (pt == NULL)
		return;
	for (unsigned j = 0; j < pt->members_count; j++)
		keel_free(pt->members[j]);
	keel_free(pt->members);
	keel_free(pt->group_of);
	pt->members = NULL;
	pt->group_of = NULL;
	pt->members_count = 0;
}

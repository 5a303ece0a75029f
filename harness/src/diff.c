/*
 * diff.c - replay's comparison table and views (diff.h, diff_int.h): which
 * fields of which event types are compared (rules[], mirrored in
 * harness/README.md "Replay"), and a view built from one run's rows: each
 * node's events reduced to compared items (attributed to the step they
 * happened in and to the last acting step before them), message keys,
 * findings, outcome.  The comparison itself is diff_compare.c.  Owns
 * nothing beyond its views.  Pure; one thread per view.
 */
#include "diff_int.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/alloc.h"
#include "kh_limits.h"

/*
 * The table.  Never compared anywhere: the envelope (ts, mono_ns, node,
 * seq: seq is printed, to find the event with `show`) and activation-seq
 * (a rejoin that loses its first connection counts one activation more,
 * run to run).  Identity classes: host, port, node-id, locator, tid.
 */
static const kh_diff_rule rules[] = {
	{ "state", KH_CMP_SEQUENCE, { "state" }, { { NULL } },
	  "the node's state machine: which states, in which order, after which step" },
	{ "replication.listening", KH_CMP_SEQUENCE, { "role", "incarnation" },
	  { { "host", "host" }, { "port", "port" }, { "node-id", "node-id" } },
	  "the role a start takes and its start count; the node id is random per data "
	  "directory, the address per run" },
	{ "acceptor.listening", KH_CMP_SEQUENCE, { "name" }, { { "host", "host" },
							      { "port", "port" } },
	  "the client acceptor opens before LIVE; its address is per run" },
	{ "journal.loaded", KH_CMP_SEQUENCE, { NULL }, { { NULL } },
	  "the journal is read before LIVE; its counts depend on what was in flight at a kill "
	  "(bridge-restart: 16 or 32 messages)" },
	{ "backup.announced", KH_CMP_SEQUENCE, { NULL }, { { NULL } },
	  "a backup synced and announced itself (HA protocol milestone)" },
	{ "failover", KH_CMP_SEQUENCE, { NULL }, { { NULL } },
	  "a backup took over; not why: with a ZooKeeper manager the reason it gives depends "
	  "on what it saw first (its old live's port refused, or not live, or no answer) "
	  "before the lock decided (ha-zk-partition-live, ha-zk-oneway)" },
	{ "failover.refused", KH_CMP_NONE, { NULL }, { { NULL } },
	  "a backup that cannot prove its live gone yet refuses, and may fail over moments "
	  "later when the proof comes (ha-pair-clients: 'live unreachable but not refused' in "
	  "some runs); scenarios that need a refusal await it" },
	{ "failback.started", KH_CMP_SEQUENCE, { NULL }, { { NULL } },
	  "failback milestone: the ex-backup hands over" },
	{ "failback.done", KH_CMP_SEQUENCE, { NULL }, { { NULL } },
	  "failback milestone: the ex-backup is a backup again" },
	{ "failback.timeout", KH_CMP_SEQUENCE, { NULL }, { { NULL } },
	  "failback milestone: the rejoined primary never announced itself" },
	{ "split-brain", KH_CMP_PRESENCE, { "serving" }, { { NULL } },
	  "two lives met, and whether this one serves on; repeated every check-period while "
	  "they meet, its message count depends on timing" },
	{ "replication.refused", KH_CMP_SEQUENCE, { "reason" }, { { NULL } },
	  "a live refused a backup, and why" },
	{ "thread.leak", KH_CMP_SEQUENCE, { "name", "owner", "created-at", "test" },
	  { { "tid", "tid" } },
	  "a thread left running after STOPPED; its tid is per run" },
	{ "bridge.started", KH_CMP_SEQUENCE,
	  { "name", "queue", "forwarding-address", "shared", "locator-refs" },
	  { { "locator", "locator" } }, "a bridge started (after LIVE, or start-bridge)" },
	{ "bridge.stopped", KH_CMP_SEQUENCE, { "name", "locator-refs" },
	  { { "locator", "locator" } },
	  "a bridge stopped; how many it forwarded depends on timing" },
	{ "bridge.failed", KH_CMP_SEQUENCE, { "name" }, { { NULL } },
	  "a bridge gave up (reconnect-attempts exhausted)" },
	{ "error", KH_CMP_PRESENCE, { "acceptor", "point", "cause" }, { { NULL } },
	  "a failure; how many per episode depends on timing, its message names per-run "
	  "paths" },
	{ "journal.resumed", KH_CMP_NONE, { NULL }, { { NULL } },
	  "the journal writes again after a failure: on a nearly full disk whether a write "
	  "fails at all depends on timing (journal-disk's restart); scenarios that need it "
	  "await it" },
	{ "auth.failed", KH_CMP_PRESENCE, { "user", "acceptor" }, { { NULL } },
	  "a refused login; repeats and delays depend on timing" },
	{ "connection.timeout", KH_CMP_PRESENCE, { "limit" }, { { NULL } },
	  "a time limit ended a client connection; the peer is a per-run port" },
	{ "replication.connected", KH_CMP_NONE, { NULL }, { { NULL } },
	  "links drop and connect again by timing (a rejoin may lose its first connection)" },
	{ "replication.sync.started", KH_CMP_NONE, { NULL }, { { NULL } },
	  "one per connection; its files and bytes depend on what was written when" },
	{ "replication.sync.done", KH_CMP_NONE, { NULL }, { { NULL } },
	  "the live's races a kill right after the backup's announcement" },
	{ "replication.sync.timeout", KH_CMP_NONE, { NULL }, { { NULL } },
	  "a timer against the peer's speed; scenarios that need it await it" },
	{ "replication.lost", KH_CMP_NONE, { NULL }, { { NULL } },
	  "which of two detectors notices first (connection closed, connection-ttl "
	  "expired) depends on timing" },
	{ "replication.fence", KH_CMP_NONE, { NULL }, { { NULL } },
	  "follows a lost link, which depends on timing" },
	{ "replication.alone", KH_CMP_NONE, { NULL }, { { NULL } },
	  "follows a fence, which depends on timing" },
	{ "replication.saved", KH_CMP_NONE, { NULL }, { { NULL } },
	  "a background comparison: lands in any state after the sync; its path has a time" },
	{ "producer.blocked", KH_CMP_NONE, { NULL }, { { NULL } },
	  "flow-control episodes depend on how fast the consumer drains" },
	{ "producer.unblocked", KH_CMP_NONE, { NULL }, { { NULL } },
	  "flow-control episodes depend on how fast the consumer drains" },
	{ "address.full", KH_CMP_NONE, { NULL }, { { NULL } },
	  "flow-control episodes depend on how fast the consumer drains" },
	{ "bridge.connected", KH_CMP_NONE, { NULL }, { { NULL } },
	  "reconnections depend on timing; scenarios that need one await it" },
	{ "bridge.disconnected", KH_CMP_NONE, { NULL }, { { NULL } },
	  "depends on which node stops first" },
	{ "bridge.retrying", KH_CMP_NONE, { NULL }, { { NULL } },
	  "one per attempt: how many depends on timing" },
	{ "bridge.unwritable", KH_CMP_NONE, { NULL }, { { NULL } },
	  "watermark episodes depend on timing" },
	{ "bridge.writable", KH_CMP_NONE, { NULL }, { { NULL } },
	  "watermark episodes depend on timing" },
	{ "bridge.paused", KH_CMP_NONE, { NULL }, { { NULL } },
	  "one per refused message and retry: how many depends on timing" },
	{ "bridge.resumed", KH_CMP_NONE, { NULL }, { { NULL } },
	  "one per refused message and retry: how many depends on timing" },
	{ "message.duplicate", KH_CMP_NONE, { NULL }, { { NULL } },
	  "resends after a reconnect depend on timing" },
	{ "journal.truncated", KH_CMP_NONE, { NULL }, { { NULL } },
	  "a torn tail depends on what a kill -9 interrupted" },
	{ "lock.acquired", KH_CMP_PRESENCE, { NULL }, { { NULL } },
	  "the manager's ZooKeeper lock; a request given up is still granted (then released), "
	  "so how many depends on timing; scenarios that need one await it" },
	{ "lock.lost", KH_CMP_PRESENCE, { NULL }, { { NULL } },
	  "a live's lock or lease ended; which (expiry, deletion, lease) depends on timing" },
	{ "activation.coordinated", KH_CMP_NONE, { NULL }, { { NULL } },
	  "C moved: activating, or raised past a lost backup, which a live stopped right "
	  "after its backup may not reach; scenarios that need one await it" },
	{ "zookeeper.connected", KH_CMP_NONE, { NULL }, { { NULL } },
	  "the manager's session: reconnections (to which ensemble member) depend on timing" },
	{ "zookeeper.disconnected", KH_CMP_NONE, { NULL }, { { NULL } },
	  "a broker on a killed ensemble member loses its connection, one on another does not" },
	{ "zookeeper.expired", KH_CMP_NONE, { NULL }, { { NULL } },
	  "whether a session outlives an outage depends on timing" },
	{ "zookeeper.ready", KH_CMP_NONE, { NULL }, { { NULL } },
	  "a ZooKeeper node serves (the harness's probe); scenarios await it" },
	{ "journal.space-low", KH_CMP_NONE, { NULL }, { { NULL } },
	  "depends on the machine's free disk space" },
	{ NULL, KH_CMP_PRESENCE, { NULL }, { { NULL } },
	  "a type this table does not name (a newer broker): whether it happened, per process "
	  "lifetime" },
};

const kh_diff_rule *kh_diff_rules(size_t *count)
{
	*count = sizeof(rules) / sizeof(rules[0]);
	return rules;
}

const kh_diff_rule *kh_diff_rule_of(const char *type)
{
	size_t n = sizeof(rules) / sizeof(rules[0]);
	for (size_t i = 0; i + 1 < n; i++) {
		if (strcmp(rules[i].type, type) == 0)
			return &rules[i];
	}
	return &rules[n - 1];
}

bool kh_diff_step_acts(const char *kind)
{
	static const char *const acting[] = { "start", "stop", "kill", "restart", "pause",
					      "resume", "fault", "crash", "manage", "clock", "disk" };
	for (size_t i = 0; i < sizeof(acting) / sizeof(acting[0]); i++) {
		if (strcmp(kind, acting[i]) == 0)
			return true;
	}
	return false;
}

/* ---- views ------------------------------------------------------------- */

int kh_view_create(kh_view **out)
{
	kh_view *v = keel_calloc(1, sizeof(*v));
	if (v == NULL)
		return -ENOMEM;
	*out = v;
	return 0;
}

static void item_clear(vitem *it)
{
	keel_free(it->key);
	keel_free(it->desc);
	for (unsigned i = 0; i < KH_DIFF_RULE_IDS; i++)
		keel_free(it->ids[i]);
}

void kh_view_free(kh_view *v)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < v->nnodes; i++) {
		vnode *n = &v->nodes[i];
		for (size_t k = 0; k < n->nseq; k++)
			item_clear(&n->seq[k]);
		for (size_t k = 0; k < n->npres; k++)
			item_clear(&n->pres[k]);
		keel_free(n->seq);
		keel_free(n->pres);
		keel_free(n->name);
	}
	keel_free(v->nodes);
	for (size_t i = 0; i < v->nsteps; i++) {
		vstep *s = &v->steps[i];
		keel_free(s->kind);
		keel_free(s->node);
		keel_free(s->params);
		keel_free(s->outcome);
		keel_free(s->message);
	}
	keel_free(v->steps);
	vmsg *m, *tmp;
	HASH_ITER(hh, v->msgs, m, tmp) {
		HASH_DEL(v->msgs, m);
		keel_free(m->key);
		keel_free(m->destination);
		keel_free(m);
	}
	for (size_t i = 0; i < v->nfindings; i++) {
		keel_free(v->findings[i].check);
		keel_free(v->findings[i].severity);
		keel_free(v->findings[i].message);
	}
	keel_free(v->findings);
	keel_free(v->outcome);
	keel_free(v->reason);
	keel_free(v);
}

/* keel_strdup of NULL is NULL; *ok turns false on a failed copy. */
static char *dup_or_null(const char *s, bool *ok)
{
	char *d = s ? keel_strdup(s) : NULL;
	if (s && d == NULL)
		*ok = false;
	return d;
}

int kh_view_node(kh_view *v, const char *name)
{
	vnode *n = keel_realloc(v->nodes, (v->nnodes + 1) * sizeof(*n));
	if (n == NULL)
		return -ENOMEM;
	v->nodes = n;
	memset(&n[v->nnodes], 0, sizeof(*n));
	n[v->nnodes].name = keel_strdup(name);
	if (n[v->nnodes].name == NULL)
		return -ENOMEM;
	v->nnodes++;
	return 0;
}

/* A produce step whose receipted count depends on timing: its `refused`
 * (how many fit before the address is full) or `allow-dropped`. */
static bool loose_produce(const char *kind, const char *params)
{
	if (strcmp(kind, "produce") != 0 || params == NULL)
		return false;
	json_t *j = json_loads(params, 0, NULL);
	json_t *p = json_object_get(j, "produce");
	bool loose = json_object_get(p, "refused") != NULL ||
		     json_is_true(json_object_get(p, "allow-dropped"));
	json_decref(j);
	return loose;
}

int kh_view_step(kh_view *v, long idx, const char *kind, const char *node, const char *params,
		 int64_t started_ns, int64_t finished_ns, const char *outcome,
		 const char *message)
{
	vstep *s = keel_realloc(v->steps, (v->nsteps + 1) * sizeof(*s));
	bool ok = true;
	if (s == NULL)
		return -ENOMEM;
	v->steps = s;
	s = &s[v->nsteps];
	memset(s, 0, sizeof(*s));
	s->idx = idx;
	s->kind = dup_or_null(kind, &ok);
	s->node = dup_or_null(node, &ok);
	s->params = dup_or_null(params, &ok);
	s->outcome = dup_or_null(outcome, &ok);
	s->message = dup_or_null(message, &ok);
	s->started_ns = started_ns;
	s->finished_ns = finished_ns;
	v->nsteps++;
	if (!ok || s->kind == NULL)
		return -ENOMEM;
	s->acts = kh_diff_step_acts(kind);
	s->loose = loose_produce(kind, params);
	snprintf(s->label, sizeof(s->label), "#%ld %s%s%s", idx, kind, node ? " " : "",
		 node ? node : "");
	return 0;
}

static vnode *node_of(const kh_view *v, const char *name)
{
	for (size_t i = 0; i < v->nnodes; i++) {
		if (strcmp(v->nodes[i].name, name) == 0)
			return &v->nodes[i];
	}
	return NULL;
}

/* The last step begun at or before t (position), -1 before the first. */
static long step_at(const kh_view *v, int64_t t)
{
	long lo = 0, hi = (long)v->nsteps - 1, found = -1;
	while (lo <= hi) {
		long mid = (lo + hi) / 2;
		if (v->steps[mid].started_ns >= 0 && v->steps[mid].started_ns <= t) {
			found = mid;
			lo = mid + 1;
		} else {
			hi = mid - 1;
		}
	}
	return found;
}

/* A JSON value as text: strings as they are, others compact. */
static char *value_text(json_t *val)
{
	if (json_is_string(val))
		return keel_strdup(json_string_value(val));
	char *s = json_dumps(val, JSON_COMPACT | JSON_ENCODE_ANY);
	char *d = s ? keel_strdup(s) : NULL;
	free(s); /* jansson's allocator */
	return d;
}

/* The item's key ("failover text=primary lost") and its description (the
 * type and the event's own fields, compact, cut at KH_DIFF_DESC_MAX). */
static int item_fill(vitem *it, const kh_diff_rule *r, const char *type, json_t *ev)
{
	char key[KH_DIFF_DESC_MAX], desc[KH_DIFF_DESC_MAX];
	size_t o = (size_t)snprintf(key, sizeof(key), "%s", type);
	for (unsigned i = 0; i < KH_DIFF_RULE_FIELDS && r->fields[i]; i++) {
		json_t *f = json_object_get(ev, r->fields[i]);
		char *t = f ? value_text(f) : NULL;
		if (f && t == NULL)
			return -ENOMEM;
		if (t && o < sizeof(key))
			o += (size_t)snprintf(key + o, sizeof(key) - o, " %s=%s", r->fields[i], t);
		keel_free(t);
	}
	for (unsigned i = 0; i < KH_DIFF_RULE_IDS && r->ids[i][0]; i++) {
		json_t *f = json_object_get(ev, r->ids[i][0]);
		if (f && (it->ids[i] = value_text(f)) == NULL)
			return -ENOMEM;
	}
	json_t *own = json_deep_copy(ev);
	static const char *const envelope[] = { "ts", "mono_ns", "node", "seq", "type" };
	for (size_t i = 0; own && i < sizeof(envelope) / sizeof(envelope[0]); i++)
		json_object_del(own, envelope[i]);
	char *fields = own ? json_dumps(own, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(own);
	snprintf(desc, sizeof(desc), "%s %s", type, fields ? fields : "{}");
	free(fields); /* jansson's allocator */
	it->key = keel_strdup(key);
	it->desc = keel_strdup(desc);
	return it->key && it->desc ? 0 : -ENOMEM;
}

int kh_view_event(kh_view *v, const char *node, int64_t seq, int64_t t_ns, const char *type,
		  const char *json)
{
	vnode *n = node_of(v, node);
	if (n == NULL)
		return 0;
	const kh_diff_rule *r = kh_diff_rule_of(type);
	bool starting = false;
	json_t *ev = NULL;
	if (r->cmp != KH_CMP_NONE || strcmp(type, "state") == 0) {
		ev = json_loads(json, 0, NULL);
		if (!json_is_object(ev)) {
			json_decref(ev);
			return -EINVAL;
		}
		const char *state = json_string_value(json_object_get(ev, "state"));
		starting = strcmp(type, "state") == 0 && state && strcmp(state, "STARTING") == 0;
	}
	/* A new process: its STARTING, or seq not growing (trace.c's rule). */
	if (n->any && (starting || seq <= n->last_seq))
		n->incarnation++;
	n->any = true;
	n->last_seq = seq;
	if (r->cmp == KH_CMP_NONE) {
		json_decref(ev);
		n->ignored++;
		return 0;
	}
	vitem **arr = r->cmp == KH_CMP_SEQUENCE ? &n->seq : &n->pres;
	size_t *len = r->cmp == KH_CMP_SEQUENCE ? &n->nseq : &n->npres;
	size_t *cap = r->cmp == KH_CMP_SEQUENCE ? &n->capseq : &n->cappres;
	if (*len == *cap) {
		size_t c = *cap ? *cap * 2 : 32;
		vitem *a = keel_realloc(*arr, c * sizeof(*a));
		if (a == NULL) {
			json_decref(ev);
			return -ENOMEM;
		}
		*arr = a;
		*cap = c;
	}
	vitem *it = &(*arr)[*len];
	memset(it, 0, sizeof(*it));
	it->rule = r;
	it->seq = seq;
	it->t_ns = t_ns;
	it->incarnation = n->incarnation;
	it->step = step_at(v, t_ns);
	it->phase = it->step;
	while (it->phase >= 0 && !v->steps[it->phase].acts)
		it->phase--;
	int rc = item_fill(it, r, type, ev);
	json_decref(ev);
	(*len)++;
	return rc;
}

/* The producing step of key "s<idx>-<n>" (position in steps), -1. */
static long key_step(const kh_view *v, const char *key)
{
	char *end;
	if (key[0] != 's')
		return -1;
	long idx = strtol(key + 1, &end, 10);
	if (end == key + 1 || *end != '-')
		return -1;
	for (size_t i = 0; i < v->nsteps; i++) {
		if (v->steps[i].idx == idx)
			return (long)i;
	}
	return -1;
}

int kh_view_message(kh_view *v, const char *destination, const char *key, const char *kind,
		    bool persistent, int64_t at_ns)
{
	vmsg *m;
	(void)at_ns;
	HASH_FIND_STR(v->msgs, key, m);
	if (m == NULL) {
		m = keel_calloc(1, sizeof(*m));
		if (m == NULL)
			return -ENOMEM;
		m->key = keel_strdup(key);
		m->destination = keel_strdup(destination);
		if (m->key == NULL || m->destination == NULL) {
			keel_free(m->key);
			keel_free(m->destination);
			keel_free(m);
			return -ENOMEM;
		}
		m->step = key_step(v, key);
		HASH_ADD_KEYPTR(hh, v->msgs, m->key, strlen(m->key), m);
	}
	m->persistent = m->persistent || persistent;
	if (strcmp(kind, "produced") == 0)
		m->produced++;
	else if (strcmp(kind, "receipted") == 0)
		m->receipted++;
	else if (strcmp(kind, "receipted-droppable") == 0)
		m->droppable++;
	else if (strcmp(kind, "refused") == 0)
		m->refused++;
	else if (strcmp(kind, "consumed") == 0)
		m->consumed++;
	return 0;
}

int kh_view_finding(kh_view *v, const char *check, const char *severity, const char *message)
{
	vfinding *f = keel_realloc(v->findings, (v->nfindings + 1) * sizeof(*f));
	bool ok = true;
	if (f == NULL)
		return -ENOMEM;
	v->findings = f;
	f = &f[v->nfindings++];
	f->check = dup_or_null(check, &ok);
	f->severity = dup_or_null(severity, &ok);
	f->message = dup_or_null(message, &ok);
	return ok ? 0 : -ENOMEM;
}

int kh_view_outcome(kh_view *v, const char *outcome, const char *reason)
{
	bool ok = true;
	keel_free(v->outcome);
	keel_free(v->reason);
	v->outcome = dup_or_null(outcome, &ok);
	v->reason = dup_or_null(reason, &ok);
	return ok ? 0 : -ENOMEM;
}

void kh_view_counts(const kh_view *v, size_t *sequence, size_t *presence, size_t *ignored)
{
	*sequence = *presence = *ignored = 0;
	for (size_t i = 0; i < v->nnodes; i++) {
		*sequence += v->nodes[i].nseq;
		*presence += v->nodes[i].npres;
		*ignored += v->nodes[i].ignored;
	}
}

void kh_view_size(const kh_view *v, size_t *steps, size_t *keys)
{
	*steps = v->nsteps;
	*keys = HASH_COUNT(v->msgs);
}

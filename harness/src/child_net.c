/*
 * child_net.c - the scenario's links and the network steps (child_int.h):
 * when the scenario's links are proxied (a network step, `network:
 * proxy`, or KH_NETWORK=proxy), every node's config names the other nodes
 * by the proxy's address for that link (127.<100+f>.<slot>.<n>, f = 0 for
 * the harness's clients, i+1 for node i), and the proxy (netproxy.h)
 * dials on to the real address; the harness's clients dial it too.  Owns
 * the proxy, the links' state (cuts of partitions, degradations of `net`)
 * and the steps partition, heal and net, each recorded as a harness
 * event (net.partition, net.heal, net.degrade).  Endpoint i < nodes is
 * node i; endpoint `nodes` is the harness's clients.  Main thread.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "child_int.h"
#include "kh_rand.h"
#include "netproxy.h"

typedef struct child_net {
	child *c;
	kh_netproxy *proxy;
	unsigned n;             /* endpoints: nodes + the clients */
	unsigned clients;       /* the clients' endpoint (n - 1) */
	bool closing;           /* no more logs: the recorder is closing */
	bool netns;             /* namespaces (child_netns.c), not the proxy */
	bool netem;             /* netns: the kernel has tc netem */
	bool *applied;          /* netns: [from * n + to] cut in the kernel now */
	json_t *nodes_shaped;   /* netns: nodes with a qdisc (names) */
	size_t *start_mark;     /* per node: its event count at its last start */
	uint16_t (*ports)[KH_NET_MAX_PORTS]; /* per node: the ports it is dialed on */
	unsigned *nports;
	bool *cut;              /* [from * n + to]: cut by a partition */
	kh_net_faults *degrade; /* [from * n + to]: set by net */
	kh_rand rng;            /* targets (`one`) */
} child_net;

static const char *ep_name(child *c, unsigned e)
{
	return e < c->sc->nodes_count ? c->sc->nodes[e].name : KH_HARNESS_NODE;
}

static int ep_index(child *c, const char *name)
{
	if (strcmp(name, KH_HARNESS_NODE) == 0)
		return (int)c->sc->nodes_count;
	return kh_scenario_node_index(c->sc, name);
}

/* The proxy's address for the link from endpoint `from` to node `to`. */
static void link_host(child *c, unsigned from, unsigned to, char *buf, size_t len)
{
	unsigned code = from == c->sc->nodes_count ? 0 : from + 1;
	snprintf(buf, len, "127.%u.%u.%u", KH_NET_PROXY_OCTET + code, c->o->slot, to + 1);
}

static void host_of(void *ud, int self, int target, char *buf, size_t len)
{
	link_host(ud, (unsigned)self, (unsigned)target, buf, len);
}

/* KH_NETWORK=proxy|netns: every scenario of the run that does not say
 * `network:` itself. */
static const char *env_network(void)
{
	const char *e = getenv("KH_NETWORK");
	return e && (strcmp(e, "proxy") == 0 || strcmp(e, "netns") == 0) ? e : NULL;
}


/* ---- setup ------------------------------------------------------------- */

static int add_port(child_net *cn, unsigned node, unsigned port)
{
	for (unsigned k = 0; k < cn->nports[node]; k++) {
		if (cn->ports[node][k] == port)
			return 0;
	}
	if (cn->nports[node] == KH_NET_MAX_PORTS)
		return -E2BIG;
	cn->ports[node][cn->nports[node]++] = (uint16_t)port;
	return 0;
}

/* Ports node `t` is dialed on: its STOMP port and every PORT after a
 * "${nodes.T.host}:" in any node's config (its ha.listen, a peer's
 * ha.peer...). */
static int collect_ports(child *c, char *err, size_t errlen)
{
	child_net *cn = c->net;
	for (unsigned t = 0; t < c->sc->nodes_count; t++) {
		char ref[128];
		int rc = add_port(cn, t, KH_NODE_PORT);
		snprintf(ref, sizeof(ref), "${nodes.%s.host}:", c->sc->nodes[t].name);
		for (unsigned i = 0; rc == 0 && i < c->sc->nodes_count; i++) {
			const char *text = c->sc->nodes[i].config;
			for (const char *q = text ? strstr(text, ref) : NULL; q && rc == 0;
			     q = strstr(q + 1, ref)) {
				char *end;
				unsigned long port = strtoul(q + strlen(ref), &end, 10);
				if (end != q + strlen(ref) && port > 0 && port < 65536)
					rc = add_port(cn, t, (unsigned)port);
			}
		}
		if (rc) {
			snprintf(err, errlen, "node %s: more than %d ports to carry through the proxy",
				 c->sc->nodes[t].name, KH_NET_MAX_PORTS);
			return rc;
		}
	}
	return 0;
}

int child__net_init(child *c, char *err, size_t errlen)
{
	const char *mode = c->sc->network ? c->sc->network : env_network();
	if (mode == NULL)
		mode = c->sc->proxied ? "proxy" : "direct";
	bool netns = strcmp(mode, "netns") == 0;
	if (strcmp(mode, "direct") == 0)
		return 0;
	if (c->sc->nodes_count + 1 > KH_NET_MAX_ENDPOINTS) {
		snprintf(err, errlen, "at most %d nodes when the links go through the proxy",
			 KH_NET_MAX_ENDPOINTS - 1);
		return -EINVAL;
	}
	child_net *cn = keel_calloc(1, sizeof(*cn));
	if (cn == NULL)
		return -ENOMEM;
	c->net = cn;
	cn->c = c;
	cn->n = c->sc->nodes_count + 1;
	cn->clients = c->sc->nodes_count;
	cn->start_mark = keel_calloc(cn->n, sizeof(*cn->start_mark));
	cn->ports = keel_calloc(cn->n, sizeof(*cn->ports));
	cn->nports = keel_calloc(cn->n, sizeof(*cn->nports));
	cn->cut = keel_calloc((size_t)cn->n * cn->n, sizeof(*cn->cut));
	cn->degrade = keel_calloc((size_t)cn->n * cn->n, sizeof(*cn->degrade));
	cn->applied = keel_calloc((size_t)cn->n * cn->n, sizeof(*cn->applied));
	cn->nodes_shaped = json_object();
	if (!cn->start_mark || !cn->ports || !cn->nports || !cn->cut || !cn->degrade ||
	    !cn->applied || !cn->nodes_shaped)
		return -ENOMEM;
	cn->netns = netns;
	kh_rand_init(&cn->rng, c->o->seed, 0x6e6574 /* "net" */, 0, 0);
	return netns ? 0 : collect_ports(c, err, errlen);
}

int child__net_config(child *c, unsigned ni, const char *text, char **out, char *err,
		      size_t errlen)
{
	if (c->net == NULL)
		return kh_subst_nodes(c->sc, c->o->slot, text, out, NULL, err, errlen);
	if (c->net->netns) /* the nodes keep their addresses, in their namespaces */
		return kh_subst_nodes(c->sc, c->o->slot, text, out, NULL, err, errlen);
	return kh_subst_nodes_via(c->sc, c->o->slot, (int)ni, host_of, c, text, out, NULL, err,
				  errlen);
}

static void proxy_log(void *ud, const char *line)
{
	child_net *cn = ud;
	if (!cn->closing)
		kh_recorder_log(cn->c->rec, cn->c->sid, KH_HARNESS_NODE, kh_now_ns(), line);
}

/* The first bytes a cut dropped on a link: a harness event, so that a
 * scenario can wait until a partition has really eaten something. */
static void proxy_drop(void *ud, unsigned from, unsigned to, size_t bytes)
{
	child_net *cn = ud;
	if (cn->closing)
		return;
	child__harness_event(cn->c, "net.dropped",
			     json_pack("{s:s, s:s, s:I}", "from", ep_name(cn->c, from), "to",
				       ep_name(cn->c, to), "bytes", (json_int_t)bytes));
}

static int listen_link(child *c, unsigned from, unsigned to, unsigned port, char *err,
		       size_t errlen)
{
	char lh[32], th[32];
	struct sockaddr_in la, ta;
	link_host(c, from, to, lh, sizeof(lh));
	kh_slot_host(c->o->slot, to, th, sizeof(th));
	uv_ip4_addr(lh, (int)port, &la);
	uv_ip4_addr(th, (int)port, &ta);
	int rc = kh_netproxy_listen(c->net->proxy, from, to, (struct sockaddr *)&la,
				    (struct sockaddr *)&ta);
	if (rc)
		snprintf(err, errlen, "proxy: cannot listen on %s:%u (link %s -> %s): %s", lh, port,
			 ep_name(c, from), ep_name(c, to), uv_strerror(rc));
	return rc;
}

const char *child__net_node_netns(child *c, unsigned ni, char *buf, size_t len)
{
	if (c->net == NULL || !c->net->netns)
		return NULL;
	child__netns_name(c, ni, buf, len);
	return buf;
}

static int netns_setup(child *c, char *err, size_t errlen)
{
	child_net *cn = c->net;
	int rc = child__netns_setup(c, &cn->netem, err, errlen);
	if (rc)
		return rc;
	char note[200];
	snprintf(note, sizeof(note), "keel-harness: nodes in network namespaces kh%un*, the "
		 "clients in kh%unc, on a bridge (tc netem %s)", c->o->slot, c->o->slot,
		 cn->netem ? "available" : "not available");
	kh_recorder_log(c->rec, c->sid, KH_HARNESS_NODE, kh_now_ns(), note);
	return 0;
}

int child__net_setup(child *c, char *err, size_t errlen)
{
	child_net *cn = c->net;
	int rc;
	if (cn == NULL)
		return 0;
	if (cn->netns)
		return netns_setup(c, err, errlen);
	rc = kh_netproxy_create(&cn->proxy, &c->loop, cn->n, c->o->seed, proxy_log, cn);
	if (rc) {
		snprintf(err, errlen, "proxy: %s", strerror(-rc));
		return rc;
	}
	kh_netproxy_on_drop(cn->proxy, proxy_drop, cn);
	for (unsigned to = 0; to < c->sc->nodes_count; to++) {
		for (unsigned from = 0; from < cn->n; from++) {
			if (from == to)
				continue;
			for (unsigned k = 0; k < cn->nports[to]; k++) {
				unsigned port = cn->ports[to][k];
				if (from == cn->clients && port != KH_NODE_PORT)
					continue; /* clients speak STOMP only */
				if ((rc = listen_link(c, from, to, port, err, errlen)) != 0)
					return rc;
			}
		}
		char h[32];
		link_host(c, cn->clients, to, h, sizeof(h));
		kh_node_set_client_host(c->nodes[to], h);
	}
	char note[160];
	snprintf(note, sizeof(note), "keel-harness: links through the proxy (127.%u-%u.%u.x)",
		 KH_NET_PROXY_OCTET, KH_NET_PROXY_OCTET + cn->n - 1, c->o->slot);
	kh_recorder_log(c->rec, c->sid, KH_HARNESS_NODE, kh_now_ns(), note);
	return 0;
}

void child__net_node_up(child *c, int ni)
{
	child_net *cn = c->net;
	if (cn == NULL)
		return;
	cn->start_mark[ni] = kh_node_event_count(c->nodes[ni]);
	if (cn->proxy)
		kh_netproxy_set_up(cn->proxy, (unsigned)ni, true);
}

void child__net_node_down(child *c, int ni)
{
	child_net *cn = c->net;
	if (cn == NULL || cn->proxy == NULL)
		return;
	kh_netproxy_set_up(cn->proxy, (unsigned)ni, false);
}

static void net_free(void *ud)
{
	child_net *cn = ud;
	keel_free(cn->start_mark);
	keel_free(cn->ports);
	keel_free(cn->nports);
	keel_free(cn->cut);
	keel_free(cn->degrade);
	keel_free(cn->applied);
	json_decref(cn->nodes_shaped);
	keel_free(cn);
}

void child__net_close(child *c)
{
	child_net *cn = c->net;
	if (cn == NULL)
		return;
	c->net = NULL;
	cn->closing = true;
	if (cn->netns) {
		child__netns_teardown(c);
		net_free(cn);
		return;
	}
	if (cn->proxy)
		kh_netproxy_close(cn->proxy, net_free, cn);
	else
		net_free(cn);
}

/* ---- the links' state -------------------------------------------------- */

/* The faults of from -> to, as the link's state says: the proxy's
 * degradation, cut by a partition; in netns mode the cut alone.  0, or
 * the netns command failed (err). */
static int apply(child *c, unsigned from, unsigned to, char *err, size_t errlen)
{
	child_net *cn = c->net;
	size_t k = (size_t)from * cn->n + to;
	kh_net_faults f = cn->degrade[k];
	f.blackhole |= cn->cut[k];
	if (!cn->netns)
		return kh_netproxy_set(cn->proxy, from, to, &f);
	if (f.blackhole == cn->applied[k])
		return 0;
	int rc = child__netns_cut(c, from, to, f.blackhole, err, errlen);
	if (rc == 0)
		cn->applied[k] = f.blackhole;
	return rc;
}

static uint64_t total_resets(child *c)
{
	uint64_t sum = 0;
	kh_net_stats st;
	if (c->net->proxy == NULL)
		return 0;
	for (unsigned a = 0; a < c->net->n; a++) {
		for (unsigned b = 0; b < c->net->n; b++) {
			if (a == b)
				continue;
			kh_netproxy_stats(c->net->proxy, a, b, &st);
			sum += st.resets;
		}
	}
	return sum;
}

/* The state node ni announced last in its current process, or NULL. */
static const char *node_state(child *c, unsigned ni)
{
	kh_node *n = c->nodes[ni];
	if (!kh_node_up(n))
		return NULL;
	for (size_t i = kh_node_event_count(n); i-- > c->net->start_mark[ni];) {
		if (strcmp(kh_node_event_type(n, i), "state") != 0)
			continue;
		const char *st = json_string_value(json_object_get(kh_node_event(n, i), "state"));
		return st;
	}
	return NULL;
}

static bool serving(const char *st)
{
	return st && (strcmp(st, "LIVE") == 0 || strcmp(st, "FAILING_BACK") == 0);
}

static bool backing_up(const char *st)
{
	return st && strncmp(st, "BACKUP", 6) == 0;
}

static void describe_states(child *c, char *buf, size_t len)
{
	size_t o = 0;
	buf[0] = '\0';
	for (unsigned i = 0; i < c->sc->nodes_count && o < len; i++) {
		const char *st = node_state(c, i);
		o += (size_t)snprintf(buf + o, len - o, "%s%s %s", i ? ", " : "", ep_name(c, i),
				      st ? st : kh_node_up(c->nodes[i]) ? "(no state yet)" : "down");
	}
}

/* ---- partition --------------------------------------------------------- */

/* grp[e]: the group of endpoint e, -1 when in none.  0, or the step
 * failed (target not found). */
static int resolve_groups(child *c, const kh_partition *pt, int *grp, unsigned *ngroups)
{
	child_net *cn = c->net;
	for (unsigned e = 0; e < cn->n; e++)
		grp[e] = -1;
	if (pt->target == NULL) {
		for (unsigned j = 0; j < pt->members_count; j++)
			grp[ep_index(c, pt->members[j])] = (int)pt->group_of[j];
		*ngroups = pt->groups_count;
		if (pt->clients)
			grp[cn->clients] = 1; /* the clients lose the first group */
		return 0;
	}
	unsigned nodes = c->sc->nodes_count, found = 0;
	if (strcmp(pt->target, "all") == 0) {
		for (unsigned e = 0; e < nodes; e++)
			grp[e] = (int)e;
		*ngroups = nodes;
		if (pt->clients) {
			grp[cn->clients] = (int)nodes;
			*ngroups = nodes + 1;
		}
		return 0;
	}
	if (strcmp(pt->target, "one") == 0) {
		grp[kh_rand_below(&cn->rng, nodes)] = 0;
		found = 1;
	} else {
		bool live = strcmp(pt->target, "live") == 0;
		for (unsigned e = 0; e < nodes; e++) {
			const char *st = node_state(c, e);
			if (live ? serving(st) : backing_up(st)) {
				grp[e] = 0;
				found++;
			}
		}
	}
	if (found == 0) {
		char states[512];
		describe_states(c, states, sizeof(states));
		child__step_done(c, false, "partition: target %s: no node is %s now (%s)",
				 pt->target, strcmp(pt->target, "live") == 0 ? "serving" :
				 "a backup", states);
		return -1;
	}
	for (unsigned e = 0; e < nodes; e++) {
		if (grp[e] < 0)
			grp[e] = 1;
	}
	if (pt->clients)
		grp[cn->clients] = 1;
	*ngroups = 2;
	return 0;
}

void child__start_partition(child *c, const kh_step *st)
{
	const kh_partition *pt = st->partition;
	child_net *cn = c->net;
	int grp[KH_NET_MAX_ENDPOINTS];
	unsigned ngroups = 0, cuts = 0;
	char err[512];
	if (cn == NULL) {
		child__step_done(c, false, "partition: the links are not the harness's "
				 "(network: direct)");
		return;
	}
	if (resolve_groups(c, pt, grp, &ngroups) != 0)
		return;
	for (unsigned a = 0; a < cn->n; a++) {
		for (unsigned b = 0; b < cn->n; b++) {
			if (a == b || grp[a] < 0 || grp[b] < 0 || grp[a] == grp[b])
				continue;
			if (pt->one_way && !(grp[a] == 0 && grp[b] == 1))
				continue;
			cn->cut[a * cn->n + b] = true;
			if (apply(c, a, b, err, sizeof(err)) != 0) {
				child__step_done(c, false, "partition: %s", err);
				return;
			}
			cuts++;
		}
	}
	json_t *groups = json_array();
	char text[1024];
	size_t o = 0;
	text[0] = '\0';
	for (unsigned g = 0; g < ngroups; g++) {
		json_t *members = json_array();
		if (o < sizeof(text))
			o += (size_t)snprintf(text + o, sizeof(text) - o, "%s",
					      g ? (pt->one_way ? " -/-> " : " | ") : "");
		bool first = true;
		for (unsigned e = 0; e < cn->n; e++) {
			if (grp[e] != (int)g)
				continue;
			json_array_append_new(members, json_string(ep_name(c, e)));
			if (o < sizeof(text))
				o += (size_t)snprintf(text + o, sizeof(text) - o, "%s%s",
						      first ? "" : ",", ep_name(c, e));
			first = false;
		}
		json_array_append_new(groups, members);
	}
	json_t *ev = json_pack("{s:I, s:o, s:b, s:b, s:I}", "step", (json_int_t)c->step,
			       "groups", groups, "one-way", pt->one_way, "clients", pt->clients,
			       "cut", (json_int_t)cuts);
	if (ev && pt->target)
		json_object_set_new(ev, "target", json_string(pt->target));
	child__harness_event(c, "net.partition", ev);
	child__step_done(c, true, "%s (%u direction(s) cut)", text, cuts);
}

/* ---- heal -------------------------------------------------------------- */

static int heal_pair(child *c, unsigned a, unsigned b, char *err, size_t errlen)
{
	child_net *cn = c->net;
	size_t k = (size_t)a * cn->n + b;
	bool refused = cn->proxy && kh_netproxy_refused(cn->proxy, a, b);
	bool was = cn->cut[k] || refused || cn->applied[k] ||
		   memcmp(&cn->degrade[k], &(kh_net_faults){ 0 }, sizeof(kh_net_faults)) != 0;
	if (!was)
		return 0;
	cn->cut[k] = false;
	memset(&cn->degrade[k], 0, sizeof(cn->degrade[k]));
	if (refused)
		kh_netproxy_refuse(cn->proxy, a, b, false);
	return apply(c, a, b, err, errlen);
}

/* netns: node `e` sends unshaped again (if it was shaped). */
static int unshape(child *c, unsigned e, char *err, size_t errlen)
{
	child_net *cn = c->net;
	if (!cn->netns || e >= c->sc->nodes_count ||
	    json_object_get(cn->nodes_shaped, ep_name(c, e)) == NULL)
		return 0;
	json_object_del(cn->nodes_shaped, ep_name(c, e));
	return child__netns_shape(c, e, NULL, cn->netem, err, errlen);
}

void child__start_heal(child *c, const kh_step *st)
{
	const kh_heal *h = st->heal;
	child_net *cn = c->net;
	char err[512];
	int rc = 0;
	if (cn == NULL) {
		child__step_done(c, false, "heal: the links are not the harness's "
				 "(network: direct)");
		return;
	}
	uint64_t resets = total_resets(c);
	int a = h->node ? ep_index(c, h->node) : h->between_count == 2 ?
		ep_index(c, h->between[0]) : -1;
	int b = h->between_count == 2 ? ep_index(c, h->between[1]) : -1;
	for (unsigned x = 0; x < cn->n && rc == 0; x++) {
		for (unsigned y = 0; y < cn->n && rc == 0; y++) {
			if (x == y)
				continue;
			bool on = a < 0 || (b < 0 ? (x == (unsigned)a || y == (unsigned)a) :
					    ((x == (unsigned)a && y == (unsigned)b) ||
					     (x == (unsigned)b && y == (unsigned)a)));
			if (on)
				rc = heal_pair(c, x, y, err, sizeof(err));
		}
		/* netns: a node's shaping is all its links' (heal all, or node) */
		if (rc == 0 && b < 0 && (a < 0 || x == (unsigned)a))
			rc = unshape(c, x, err, sizeof(err));
	}
	if (rc != 0) {
		child__step_done(c, false, "heal: %s", err);
		return;
	}
	resets = total_resets(c) - resets;
	json_t *ev = json_pack("{s:I, s:I}", "step", (json_int_t)c->step, "reset",
			       (json_int_t)resets);
	/* "node" is the event's own (keel-harness): the node healed is "endpoint" */
	if (ev && h->node)
		json_object_set_new(ev, "endpoint", json_string(h->node));
	else if (ev && b >= 0)
		json_object_set_new(ev, "between", json_pack("[s, s]", h->between[0],
							     h->between[1]));
	else if (ev)
		json_object_set_new(ev, "all", json_true());
	child__harness_event(c, "net.heal", ev);
	child__step_done(c, true, "healed %s%s%s%s; %" PRIu64 " connection(s) with a hole reset",
			 h->node ? "every link of " : b >= 0 ? "" : "every link",
			 h->node ? h->node : b >= 0 ? h->between[0] : "", b >= 0 ? " <-> " : "",
			 b >= 0 ? h->between[1] : "", resets);
}

/* ---- net --------------------------------------------------------------- */

/* netns: what the kernel can do: a blackhole per link (a cut), the rest
 * (netem, or tbf for a rate) on a node's outgoing packets, so only with
 * `node` and direction forward; refuse, reset, slices and limits are the
 * proxy's.  0, or why not (err). */
static int netns_net(child *c, const kh_step *st, char *err, size_t errlen)
{
	const kh_net_step *ns = st->net;
	child_net *cn = c->net;
	bool shapes = ns->delay_ms || ns->bandwidth_kbps || ns->loss > 0 || ns->duplicate > 0 ||
		      ns->reorder > 0 || ns->corrupt > 0;
	if (ns->refuse || ns->reset || ns->slice_bytes || ns->limit_bytes) {
		snprintf(err, errlen, "refuse, reset, slice-bytes and limit-bytes are the proxy's "
			 "(network: proxy), not the namespaces'");
		return -ENOTSUP;
	}
	if (!shapes)
		return 0;
	int e = ns->node ? ep_index(c, ns->node) : -1;
	if (e < 0 || (unsigned)e >= c->sc->nodes_count || ns->dir != KH_NET_FORWARD) {
		snprintf(err, errlen, "in network namespaces delay, loss, bandwidth... shape a "
			 "node's outgoing packets: give node: NODE (not the clients) and "
			 "direction: forward");
		return -ENOTSUP;
	}
	int rc = child__netns_shape(c, (unsigned)e, ns, cn->netem, err, errlen);
	if (rc == 0)
		json_object_set_new(cn->nodes_shaped, ns->node, json_true());
	return rc;
}

void child__start_net(child *c, const kh_step *st)
{
	const kh_net_step *ns = st->net;
	child_net *cn = c->net;
	char err[512];
	if (cn == NULL) {
		child__step_done(c, false, "net: the links are not the harness's (network: direct)");
		return;
	}
	if (cn->netns && netns_net(c, st, err, sizeof(err)) != 0) {
		child__step_done(c, false, "net: %s", err);
		return;
	}
	unsigned a = (unsigned)ep_index(c, ns->node ? ns->node : ns->between[0]);
	int b = ns->node ? -1 : ep_index(c, ns->between[1]);
	/* netns: netns_net shaped the node; only a blackhole is per link */
	bool degrades = cn->netns ? ns->blackhole :
			ns->delay_ms || ns->bandwidth_kbps || ns->loss > 0 || ns->slice_bytes ||
			ns->limit_bytes || ns->blackhole;
	kh_net_faults f = {
		.delay_ms = ns->delay_ms,
		.jitter_ms = ns->jitter_ms,
		.bandwidth_kbps = ns->bandwidth_kbps,
		.loss = ns->loss,
		.slice_bytes = ns->slice_bytes,
		.slice_delay_ms = ns->slice_delay_ms,
		.limit_bytes = ns->limit_bytes,
		.blackhole = ns->blackhole,
	};
	json_t *links = json_array();
	unsigned resets = 0;
	for (unsigned o = 0; o < cn->n; o++) {
		if (o == a || (b >= 0 && o != (unsigned)b))
			continue;
		/* forward: data (and connections) from a to o */
		unsigned pairs[2][2] = { { a, o }, { o, a } };
		for (int k = 0; k < 2; k++) {
			if ((k == 0 && ns->dir == KH_NET_BACKWARD) ||
			    (k == 1 && ns->dir == KH_NET_FORWARD))
				continue;
			unsigned x = pairs[k][0], y = pairs[k][1];
			char name[160];
			snprintf(name, sizeof(name), "%s>%s", ep_name(c, x), ep_name(c, y));
			json_array_append_new(links, json_string(name));
			if (degrades) {
				cn->degrade[x * cn->n + y] = f;
				if (apply(c, x, y, err, sizeof(err)) != 0) {
					json_decref(links);
					child__step_done(c, false, "net: %s", err);
					return;
				}
			}
			if (ns->refuse)
				kh_netproxy_refuse(cn->proxy, x, y, true);
			if (ns->reset)
				resets += kh_netproxy_reset(cn->proxy, x, y);
		}
	}
	json_t *ev = json_object();
	char *params = kh_step_params_json(st);
	json_t *pj = params ? json_loads(params, 0, NULL) : NULL;
	free(params);
	json_object_update(ev, json_object_get(pj, "net"));
	json_decref(pj);
	if (ns->node) { /* "node" is the event's own (keel-harness) */
		json_object_del(ev, "node");
		json_object_set_new(ev, "endpoint", json_string(ns->node));
	}
	json_object_set_new(ev, "step", json_integer((json_int_t)c->step));
	json_object_set_new(ev, "links", links);
	if (ns->reset)
		json_object_set_new(ev, "reset", json_integer(resets));
	child__harness_event(c, "net.degrade", ev);
	child__step_done(c, true, "%zu direction(s)%s%s", json_array_size(links),
			 ns->refuse ? ", refusing" : "", ns->reset ? ", connections reset" : "");
}

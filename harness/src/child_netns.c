/*
 * child_netns.c - the network-namespace mode of the scenario's links
 * (child_int.h; harness/README.md "Network faults"): each node in its own
 * namespace kh<slot>n<i>, on its usual address 127.77.<slot>.<i+1> (a
 * loopback address, so a broker without users may listen there) but on a
 * veth (route_localnet) to a bridge in kh<slot>hub; the scenario child
 * itself moves into kh<slot>nc (127.77.<slot>.254) so that its clients
 * reach the nodes across the bridge too.  A cut of the packets
 * from A to B is a permanent neighbour entry in A for B's address with a
 * MAC nobody has: A's frames are dropped by the receivers (silently; TCP
 * retransmits, and after the heal the queued data arrives).  A node's
 * outgoing packets can be shaped with tc (netem where the kernel has it,
 * else tbf for a rate).  The commands run through sh, synchronously (a
 * few ms of netlink).  Owns nothing but the namespaces of its slot, which
 * it deletes at the end and, left over by a crash, at the next setup of
 * the slot (held by the runner's lock).  Main thread.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child_int.h"

/* A MAC no interface has (locally administered). */
#define NETNS_NOWHERE_MAC "02:00:00:6b:68:00"

void child__netns_name(const child *c, unsigned i, char *buf, size_t len)
{
	snprintf(buf, len, "kh%un%u", c->o->slot, i);
}

/* The address of endpoint e (a node, or the clients at .254). */
static void host_of(const child *c, unsigned e, char *buf, size_t len)
{
	if (e < c->sc->nodes_count)
		kh_slot_host(c->o->slot, e, buf, len);
	else
		snprintf(buf, len, "127.77.%u.254", c->o->slot);
}

/* The namespace of endpoint e (a node's, or the clients'). */
static void ns_of(const child *c, unsigned e, char *buf, size_t len)
{
	if (e < c->sc->nodes_count)
		child__netns_name(c, e, buf, len);
	else
		snprintf(buf, len, "kh%unc", c->o->slot);
}

/* Runs `script` with sh; its output goes to the log.  0, or -EIO with
 * the script's last output line in err. */
static int run_sh(child *c, const char *script, char *err, size_t errlen)
{
	size_t len = strlen(script) + 16;
	char *cmd = keel_malloc(len);
	if (cmd == NULL) {
		snprintf(err, errlen, "netns: out of memory");
		return -ENOMEM;
	}
	snprintf(cmd, len, "(%s) 2>&1", script);
	FILE *f = popen(cmd, "r");
	keel_free(cmd);
	if (f == NULL) {
		snprintf(err, errlen, "netns: sh: %s", strerror(errno));
		return -errno;
	}
	char line[512], last[512] = "";
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		snprintf(last, sizeof(last), "%s", line);
		kh_recorder_log(c->rec, c->sid, KH_HARNESS_NODE, kh_now_ns(), line);
	}
	int st = pclose(f);
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		snprintf(err, errlen, "netns: %s", last[0] ? last : "a command failed");
		return -EIO;
	}
	return 0;
}

/* Appends to the script buffer (a fixed size: a few lines per node). */
static void put(char *b, size_t len, size_t *o, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void put(char *b, size_t len, size_t *o, const char *fmt, ...)
{
	va_list ap;
	if (*o >= len)
		return;
	va_start(ap, fmt);
	*o += (size_t)vsnprintf(b + *o, len - *o, fmt, ap);
	va_end(ap);
}

/* What the script deletes: this slot's namespaces. */
static void put_teardown(const child *c, char *b, size_t len, size_t *o)
{
	put(b, len, o, "for ns in $(ip netns list | awk '{print $1}' | grep -E '^kh%u(hub|n[0-9]+|nc)$');"
	    " do ip netns del $ns; done; true", c->o->slot);
}

/* Endpoint e's namespace on the bridge with its address. */
static void put_endpoint(const child *c, unsigned e, char *b, size_t len, size_t *o)
{
	char ns[32], host[32];
	unsigned s = c->o->slot;
	ns_of(c, e, ns, sizeof(ns));
	host_of(c, e, host, sizeof(host));
	put(b, len, o, "; ip netns add %s; ip -n kh%uhub link add p%u type veth peer name eth0 netns %s;"
	    " ip -n kh%uhub link set p%u master br0 up;"
	    " ip netns exec %s sysctl -qw net.ipv4.conf.all.route_localnet=1"
	    " net.ipv4.conf.eth0.route_localnet=1;"
	    " ip -n %s addr add %s/24 dev eth0; ip -n %s link set eth0 up",
	    ns, s, e, ns, s, e, ns, ns, host, ns);
}

int child__netns_setup(child *c, bool *netem, char *err, size_t errlen)
{
	static char b[KH_NETNS_SCRIPT_BYTES];
	size_t o = 0;
	unsigned s = c->o->slot;
	char ns[32];
	int rc;
	put_teardown(c, b, sizeof(b), &o);
	put(b, sizeof(b), &o, "; set -e; ip netns add kh%uhub;"
	    " ip -n kh%uhub link add br0 type bridge; ip -n kh%uhub link set br0 up", s, s, s);
	for (unsigned e = 0; e <= c->sc->nodes_count; e++)
		put_endpoint(c, e, b, sizeof(b), &o);
	if (o >= sizeof(b)) {
		snprintf(err, errlen, "netns: too many nodes for the setup script");
		return -E2BIG;
	}
	if ((rc = run_sh(c, b, err, errlen)) != 0)
		return rc;
	/* the child's own sockets (the clients') from now on in kh<slot>nc */
	ns_of(c, c->sc->nodes_count, ns, sizeof(ns));
	snprintf(b, sizeof(b), "/run/netns/%s", ns);
	int fd = open(b, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
		snprintf(err, errlen, "netns: cannot enter %s: %s", b, strerror(errno));
		rc = -errno;
	}
	if (fd >= 0)
		close(fd);
	if (rc)
		return rc;
	/* netem is a module some kernels lack: probe it once */
	child__netns_name(c, 0, ns, sizeof(ns));
	snprintf(b, sizeof(b), "ip netns exec %s tc qdisc add dev eth0 root netem delay 0ms"
		 " && ip netns exec %s tc qdisc del dev eth0 root", ns, ns);
	char why[256];
	*netem = run_sh(c, b, why, sizeof(why)) == 0;
	return 0;
}

void child__netns_teardown(child *c)
{
	char b[1024], err[256];
	size_t o = 0;
	put_teardown(c, b, sizeof(b), &o);
	if (run_sh(c, b, err, sizeof(err)) != 0)
		fprintf(stderr, "keel-harness: %s\n", err);
}

int child__netns_cut(child *c, unsigned from, unsigned to, bool cut, char *err, size_t errlen)
{
	char ns[32], host[32], b[512];
	ns_of(c, from, ns, sizeof(ns));
	host_of(c, to, host, sizeof(host));
	if (cut)
		snprintf(b, sizeof(b), "ip -n %s neigh replace %s lladdr " NETNS_NOWHERE_MAC
			 " dev eth0 nud permanent", ns, host);
	else
		snprintf(b, sizeof(b), "ip -n %s neigh del %s dev eth0 2>/dev/null; true", ns, host);
	return run_sh(c, b, err, errlen);
}

int child__netns_shape(child *c, unsigned node, const kh_net_step *ns, bool netem, char *err,
		       size_t errlen)
{
	char name[32], b[1024];
	size_t o = 0;
	child__netns_name(c, node, name, sizeof(name));
	put(b, sizeof(b), &o, "ip netns exec %s tc qdisc del dev eth0 root 2>/dev/null; ", name);
	if (ns == NULL) {
		put(b, sizeof(b), &o, "true");
		return run_sh(c, b, err, errlen);
	}
	bool needs_netem = ns->delay_ms || ns->loss > 0 || ns->duplicate > 0 || ns->reorder > 0 ||
			   ns->corrupt > 0;
	if (needs_netem && !netem) {
		snprintf(err, errlen, "netns: tc netem is not available (this kernel has no "
			 "sch_netem): delay-ms, jitter-ms, loss, duplicate, reorder and corrupt need "
			 "it; bandwidth-kbps alone works (tbf)");
		return -ENOTSUP;
	}
	if (needs_netem) {
		put(b, sizeof(b), &o, "ip netns exec %s tc qdisc add dev eth0 root netem", name);
		if (ns->delay_ms)
			put(b, sizeof(b), &o, " delay %ums %ums", ns->delay_ms, ns->jitter_ms);
		if (ns->loss > 0)
			put(b, sizeof(b), &o, " loss %.4f%%", ns->loss * 100);
		if (ns->duplicate > 0)
			put(b, sizeof(b), &o, " duplicate %.4f%%", ns->duplicate * 100);
		if (ns->reorder > 0)
			put(b, sizeof(b), &o, " reorder %.4f%%", ns->reorder * 100);
		if (ns->corrupt > 0)
			put(b, sizeof(b), &o, " corrupt %.4f%%", ns->corrupt * 100);
		if (ns->bandwidth_kbps)
			put(b, sizeof(b), &o, " rate %ukbit", ns->bandwidth_kbps);
	} else if (ns->bandwidth_kbps) {
		put(b, sizeof(b), &o, "ip netns exec %s tc qdisc add dev eth0 root tbf rate %ukbit"
		    " burst 32kbit latency 400ms", name, ns->bandwidth_kbps);
	} else {
		put(b, sizeof(b), &o, "true");
	}
	return run_sh(c, b, err, errlen);
}

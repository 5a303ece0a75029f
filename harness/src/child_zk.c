/*
 * child_zk.c - a scenario's ZooKeeper nodes (kind: zookeeper; child_int.h,
 * scenarios/README.md "ZooKeeper nodes"): the zoo.cfg in the node's
 * directory (its data directory, its client port KH_NODE_PORT on its own
 * slot address, the ensemble's members on their addresses with the quorum
 * and election ports, server ids = node index + 1) and the command the
 * node runs (`keel-harness zookeeper-node`, zknode.c).  The brokers dial
 * it as ${nodes.NAME.listen}, so through the proxy when links are
 * proxied, like replication.  Main thread.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "child_int.h"

int child__zk_setup(child *c, unsigned i, const char *dir, zk_cmd *out, char *err,
		    size_t errlen)
{
	const kh_node_spec *spec = &c->sc->nodes[i];
	char host[32], data[4200], myid[4300];
	kh_slot_host(c->o->slot, i, host, sizeof(host));
	snprintf(data, sizeof(data), "%s/data", dir);
	if (mkdir(data, 0755) != 0 && errno != EEXIST) {
		snprintf(err, errlen, "%.1000s: %s", data, strerror(errno));
		return -errno;
	}
	snprintf(out->cfg, sizeof(out->cfg), "%s/zoo.cfg", dir);
	FILE *f = fopen(out->cfg, "w");
	if (f == NULL) {
		snprintf(err, errlen, "%.1000s: %s", out->cfg, strerror(errno));
		return -errno;
	}
	fprintf(f,
		"# written by keel-harness for node %s (scenarios/README.md \"ZooKeeper nodes\")\n"
		"tickTime=%d\ninitLimit=50\nsyncLimit=20\ndataDir=%s\nclientPort=%d\n"
		"clientPortAddress=%s\nadmin.enableServer=false\n"
		"4lw.commands.whitelist=ruok,srvr,mntr,stat\nminSessionTimeout=%d\n"
		"maxSessionTimeout=60000\n",
		spec->name, KH_ZK_TICK_MS, data, KH_NODE_PORT, host, 2 * KH_ZK_TICK_MS);
	for (unsigned k = 0; k < spec->ensemble_count; k++) {
		int j = kh_scenario_node_index(c->sc, spec->ensemble[k]);
		char h[32];
		kh_slot_host(c->o->slot, (unsigned)j, h, sizeof(h));
		fprintf(f, "server.%d=%s:%d:%d\n", j + 1, h, KH_ZK_QUORUM_PORT, KH_ZK_ELECTION_PORT);
	}
	if (fclose(f) != 0) {
		snprintf(err, errlen, "%.1000s: cannot write", out->cfg);
		return -EIO;
	}
	snprintf(myid, sizeof(myid), "%s/myid", data);
	f = fopen(myid, "w");
	if (f == NULL) {
		snprintf(err, errlen, "%.1000s: %s", myid, strerror(errno));
		return -errno;
	}
	fprintf(f, "%u\n", i + 1);
	fclose(f);
	snprintf(out->host, sizeof(out->host), "%s", host);
	snprintf(out->port, sizeof(out->port), "%d", KH_NODE_PORT);
	out->argv[0] = c->o->self_exe;
	out->argv[1] = "zookeeper-node";
	out->argv[2] = spec->name;
	out->argv[3] = out->host;
	out->argv[4] = out->port;
	out->argv[5] = out->cfg;
	out->argv[6] = NULL;
	return 0;
}

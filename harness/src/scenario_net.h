/*
 * scenario_net.h - the network steps of the scenario format (partition,
 * heal, net; scenarios/README.md "Network faults") and the scenario's
 * `network` key, below scenario.c (which includes this and calls in,
 * never the other way): their types, libcyaml fields, checks (errors
 * "FILE:LINE: KEY: problem"), params JSON, and what the scan gave them
 * that libcyaml does not free.  Pure; any thread.
 */
#ifndef KH_SCENARIO_NET_H
#define KH_SCENARIO_NET_H

#include <cyaml/cyaml.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "keel/yamlscan.h"

/* The harness's own endpoint: its events (client.*, net.*) are recorded
 * as this node's, and in the network steps it stands for its clients. */
#define KH_HARNESS_NODE "keel-harness"

/* partition (scenario_net.c): cut the links between groups of endpoints
 * (nodes, and KH_HARNESS_NODE for the harness's clients), or isolate a
 * target resolved when the step runs. */
typedef struct kh_partition {
	char *target;           /* one | live | backup | all; NULL with groups */
	bool one_way;           /* only from the first group to the second */
	bool clients;           /* the clients lose the first group too */
	char **members;         /* groups' members in file order (from the scan) */
	unsigned *group_of;     /* members[i] is in group group_of[i] */
	unsigned members_count;
	unsigned groups_count;
} kh_partition;

/* heal: every link (neither given), the links between two endpoints, or
 * every link of one endpoint. */
typedef struct kh_heal {
	char **between;
	unsigned between_count;
	char *node;
} kh_heal;

/* net: degrade (or cut, refuse, reset) the links between two endpoints or
 * every link of one, in one direction of data or both. */
typedef enum kh_net_dir {
	KH_NET_BOTH,
	KH_NET_FORWARD,         /* from the first (the node) to the second (the others) */
	KH_NET_BACKWARD,
} kh_net_dir;

typedef struct kh_net_step {
	char **between;
	unsigned between_count;
	char *node;
	char *direction;        /* both | forward | backward; NULL = both */
	kh_net_dir dir;         /* parsed direction */
	unsigned delay_ms;
	unsigned jitter_ms;
	unsigned bandwidth_kbps;
	double loss;            /* 0..1 */
	double duplicate;       /* 0..1, network: netns only (tc netem) */
	double reorder;         /* 0..1, network: netns only (tc netem; needs delay) */
	double corrupt;         /* 0..1, network: netns only (tc netem) */
	unsigned slice_bytes;
	unsigned slice_delay_ms;
	uint64_t limit_bytes;
	bool blackhole;
	bool refuse;
	bool reset;
} kh_net_step;

extern const cyaml_schema_field_t kh__partition_fields[];
extern const cyaml_schema_field_t kh__heal_fields[];
extern const cyaml_schema_field_t kh__net_fields[];

/* What the checks need from the scenario being loaded. */
typedef struct kh_net_lint {
	const keel_yaml_scan *scan;
	const char *name;       /* the file, for messages */
	/* whether `node` is a node of the scenario */
	bool (*known)(void *ud, const char *node);
	void *ud;
	char *err;
	size_t errlen;
	/* when set, each problem goes here instead of into err (lint collects
	 * every error of a file) */
	void (*fail)(void *fail_ud, unsigned line, const char *path, const char *msg);
	void *fail_ud;
} kh_net_lint;

/* A problem at `path` (a printf message): to l->fail when set, else into
 * l->err as "FILE:LINE: KEY: problem" (the line from the scan).  Returns
 * -EINVAL.  Every step checker (net, fault, chaos) reports through it. */
int kh__net_fail_at(const kh_net_lint *l, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The step at `path` ("steps[3].partition"): 0, -EINVAL (l->err says
 * "FILE:LINE: KEY: problem"), -ENOMEM.  A partition's groups are read
 * from the scan here. */
int kh__net_check_partition(const kh_net_lint *l, const char *path, kh_partition *pt);
int kh__net_check_heal(const kh_net_lint *l, const char *path, kh_heal *h);
int kh__net_check_net(const kh_net_lint *l, const char *path, kh_net_step *n);
/* The scenario's `network` (NULL: proxy when it has a network step, the
 * first of which is step first_net, -1 when none; netns: namespaces, the
 * first step using a value only they have is first_netns, -1 when none):
 * *proxied (the links are the harness's, by either).  0 or -EINVAL. */
int kh__net_check_network(const kh_net_lint *l, const char *network, int first_net,
			  int first_netns, unsigned nodes, bool *proxied);
/* A net step's values that only network namespaces have (netem's). */
bool kh__net_netns_only(const kh_net_step *n);
/* The step's params (steps.params) into `o`: the one of the three given. */
void kh__net_params(const kh_partition *pt, const kh_heal *h, const kh_net_step *n, json_t *o);
/* Frees what the check added to a partition (not libcyaml's).  NULL is fine. */
void kh__net_partition_free(kh_partition *pt);

#endif

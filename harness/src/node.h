/*
 * node.h - one broker process of a scenario: spawned with uv_spawn through
 * `keel-harness exec-node` (which sets PR_SET_PDEATHSIG and execs), in the
 * scenario child's process group, with pipes for stdout, stderr and the
 * events (fd 3, `--events fd:3`).  Event lines are scanned for their
 * head (seq, type, ts, mono_ns: kh_event_head_scan), kept in the node's
 * history for awaits, and handed to the owner; output lines too.  A line
 * is parsed with jansson only when someone looks at it as JSON (an await
 * of its type, acceptor.listening, thread.leak), once.  A node is "down" once its process exited and all three pipes
 * reached EOF, so every event it wrote has been seen.  Loop thread.
 */
#ifndef KH_NODE_H
#define KH_NODE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "recorder.h"

typedef struct kh_node kh_node;

typedef struct kh_node_callbacks {
	/* An event line and its head (h->ok false: not an event; it is not
	 * kept).  kh_node_current_event() parses it when needed. */
	void (*on_event)(kh_node *n, const char *line, const kh_event_head *h, void *ud);
	/* A stdout or stderr line. */
	void (*on_output)(kh_node *n, const char *line, void *ud);
	/* The process is gone and its pipes are drained. */
	void (*on_down)(kh_node *n, void *ud);
} kh_node_callbacks;

typedef struct kh_node_config {
	const char *name;
	const char *self_exe;     /* keel-harness (for exec-node) */
	const char *broker;       /* keel-broker */
	const char *host;         /* 127.77.<slot>.<n> */
	uint16_t port;
	const char *data_dir;
	const char *config_path;  /* NULL: none */
	const char *fiu_prefix;   /* non-NULL: run under fiu-run -x -f PREFIX */
	/* With fiu_prefix: each start gets FIU_PRNG_SEED (libfiu's seed for
	 * its probability points) derived from fiu_seed and the incarnation,
	 * so one seed gives one sequence of draws per process; fiu_seeded
	 * false leaves libfiu to seed itself (the env names its own). */
	bool fiu_seeded;
	uint64_t fiu_seed;
	const char *netns;        /* non-NULL: run in this network namespace (ip netns exec) */
	/* non-NULL: a library added to LD_PRELOAD right before the broker (or
	 * valgrind), after fiu-run set its own (libfaketime for clock faults) */
	const char *preload;
	/* Extra environment ("NAME=value", NULL-terminated; may be NULL):
	 * added to the harness's own, overriding the same names. */
	const char *const *env;
	/* Non-NULL: run this command (argv, NULL-terminated: a ZooKeeper
	 * server, scenarios/README.md "ZooKeeper nodes") instead of the
	 * broker; it writes no events; no fiu-run, no Valgrind.  Copied. */
	const char *const *command;
	/* Valgrind (harness/README.md "Valgrind"): tool memcheck|helgrind|drd
	 * or NULL; XML to valgrind_xml (a --xml-file pattern with %p);
	 * suppressions file or NULL; the <test> of --xml-user-comment. */
	const char *valgrind_tool;
	const char *valgrind_xml;
	const char *valgrind_supp;
	const char *valgrind_test;
} kh_node_config;

/* Copies cfg's strings. */
int kh_node_create(kh_node **out, uv_loop_t *loop, const kh_node_config *cfg,
		   const kh_node_callbacks *cb, void *ud);
/* Closes everything; the node must be down (or never started). */
void kh_node_free(kh_node *n);

/* Spawn; -EBUSY when not down. */
int kh_node_start(kh_node *n);
/* Send a signal (SIGTERM, SIGKILL, SIGSTOP, SIGCONT); -ESRCH when down. */
int kh_node_signal(kh_node *n, int signum);

const char *kh_node_name(const kh_node *n);
/* Where the harness's clients dial it: its own address, or the proxy's
 * (kh_node_set_client_host) when its links go through the child's proxy. */
const char *kh_node_host(const kh_node *n);
/* Port of the last acceptor.listening event, else the configured one
 * (always the configured one through the proxy). */
uint16_t kh_node_port(const kh_node *n);
/* Clients dial `host` (the proxy's listener for their link) from now on;
 * NULL or "" = the node's own address.  Copied. */
void kh_node_set_client_host(kh_node *n, const char *host);
bool kh_node_up(const kh_node *n);         /* started and not yet down */
bool kh_node_paused(const kh_node *n);
int kh_node_pid(const kh_node *n);
/* Last exit: code (or -1) and signal (or 0). */
void kh_node_last_exit(const kh_node *n, int64_t *code, int *signal);
unsigned kh_node_incarnation(const kh_node *n); /* starts so far */
/* FIU_PRNG_SEED of the current (last) incarnation; 0 when not seeded. */
uint32_t kh_node_fiu_seed(const kh_node *n);
/* The seed FIU_PRNG_SEED gets for `incarnation` (1 = the first start) of a
 * node whose fiu_seed is `base`: 0..INT32_MAX (libfiu reads it with atoi). */
uint32_t kh_node_fiu_seed_for(uint64_t base, unsigned incarnation);

/* Events received so far (all incarnations), borrowed. */
size_t kh_node_event_count(const kh_node *n);
/* Event i of the history, parsed on first use (then cached); an empty
 * object if the line does not parse after all.  Borrowed. */
json_t *kh_node_event(kh_node *n, size_t i);
/* Event i's type (from its head). */
const char *kh_node_event_type(const kh_node *n, size_t i);
/* During on_event: the line being delivered, parsed (cached as above). */
json_t *kh_node_current_event(kh_node *n);

#endif

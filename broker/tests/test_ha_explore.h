/*
 * test_ha_explore.h - the explorer's world (test_ha_explore.c, with the
 * ZooKeeper model in test_ha_explore_zk.c): two nodes, their links, a
 * ZooKeeper, and what each file asks of the other.  Single-threaded.
 */
#ifndef TEST_HA_EXPLORE_H
#define TEST_HA_EXPLORE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ha.h"

enum { NN = 2, MAXC = 4, MAXQ = 10, MAXDEPTH = 4000 };

enum item_type {
	IT_NONE = 0,
	IT_CONNECTED,
	IT_CONNECT_FAILED,
	IT_CLOSED,
	IT_MSG,      /* a keel_ha_msg in .msg */
	IT_SYNC_START,
	IT_CHUNK,    /* the snapshot: .bits */
	IT_OP,       /* JOURNAL_OP .bits */
	IT_OP_ACK,   /* .bits */
};

typedef struct item {
	uint8_t type;
	uint8_t msg;
	uint8_t reason;
	uint8_t role;
	uint8_t flags; /* 1 failback, 2 journal_valid, 4 peer_may_be_live, 8 probe;
			  IT_CONNECT_FAILED: 16 timed out (not refused) */
	uint8_t node;  /* node id (first byte) */
	uint8_t bits;
	uint8_t inc;   /* sender's incarnation */
	uint32_t seq;
} item;

typedef struct conn {
	uint8_t used;
	uint8_t init;
	uint8_t open[NN];
	uint8_t qlen[NN];  /* queue towards node n */
	item q[NN][MAXQ];
} conn;

enum { PEND_LOAD = 1, PEND_LISTEN = 2, PEND_FLUSH = 4, PEND_FILES = 8 };

/* ---- the ZooKeeper model (test_ha_explore_zk.c) ---- */

enum { ZQ = 6, ZWAIT = 3, ZSESS = 8 };

enum zitem_type {
	ZI_LOCK = 1, /* requests, node -> ZooKeeper */
	ZI_UNLOCK,
	ZI_READ,
	ZI_WRITE,
	ZA_GRANT,    /* answers and notices, ZooKeeper -> node */
	ZA_SEQ,
	ZA_WDONE,
	ZA_WFAIL,
	ZA_EXPIRED,
};

typedef struct zitem {
	uint8_t type;
	uint8_t sid;     /* the session (1..ZSESS; its node is (sid - 1) & 1) */
	uint8_t conn;    /* the connection a READ / WRITE went on (answers on an older one
			    are dropped by the client) */
	uint8_t seq;     /* C: WRITE's new value, SEQ's value */
	uint8_t owner;
	int8_t version;  /* WRITE: expected; SEQ, WDONE: C's (-1: no znode) */
} zitem;

typedef struct zkw {
	uint8_t alive;          /* bit sid - 1: the session lives at ZooKeeper */
	uint8_t fresh;          /* bit sid - 1: heard since the last TIME step (cannot expire) */
	uint8_t holder;         /* the lock's session, 0: free */
	uint8_t waiters[ZWAIT]; /* sessions waiting for it, FIFO */
	uint8_t cseq, cowner;   /* C */
	int8_t cver;            /* C's version, -1: none yet */
	uint8_t nexts[2];       /* sessions each node has opened */
	uint8_t qlen[2][2];     /* [node][0: requests to ZooKeeper, 1: answers to the node] */
	zitem q[2][2][ZQ];
} zkw;

typedef struct node {
	uint8_t up;
	uint8_t started;    /* was ever started */
	uint8_t jbits;      /* the durable journal: message bits */
	uint8_t pending;    /* appended, waiting for the backup's ack */
	uint8_t alone;      /* appended while fenced: receipts held */
	uint8_t rfence;     /* HOLD_RECEIPTS in force */
	int8_t repl_conn;   /* replicating ops on this conn */
	int8_t replica_conn;/* applying ops from this conn */
	int8_t files_conn;
	uint8_t acc_open;
	uint8_t loaded;
	uint8_t held;
	uint8_t pend;       /* completions owed */
	uint8_t zsid;       /* its ZooKeeper session (zk model), 0: none */
	uint8_t zconn;      /* its connection to ZooKeeper: + 1 at each loss */
	uint8_t zconnected;
	keel_ha_persist disk;
	keel_ha ha;
} node;

typedef struct world {
	node n[NN];
	conn c[MAXC];
	uint8_t receipted;
	uint8_t produced;
	uint8_t crashes, restarts, cuts, drops, tmo, split, retries, times, probes;
	uint8_t parts;      /* PART steps taken */
	uint8_t zdiscs;     /* DISCONNECT steps taken */
	uint8_t zexps;      /* EXPIRE steps taken */
	uint8_t zparts;     /* PARTITION steps between a node and ZooKeeper taken */
	uint8_t zcut;       /* bit 2n: node n's packets to ZooKeeper dropped, bit 2n + 1:
			       ZooKeeper's to node n (one way; both bits: both ways) */
	uint8_t dcut;       /* bit t: packets towards node t are dropped (a one-way
			       partition; both bits: both ways).  What is sent meanwhile
			       waits in its queue (TCP sends it again after the heal, if
			       the link still stands); a connect times out (not refused) */
	uint32_t now_ms;    /* both nodes' clock (TIME steps) */
	zkw zk;             /* the ZooKeeper (walks with a manager) */
} world;

typedef struct bounds {
	unsigned msgs, crashes, restarts, cuts, drops, tmo, retries, times, probes, parts;
	unsigned zdisc;   /* connection losses between a node and ZooKeeper */
	unsigned zexp;    /* session expiries */
	unsigned zparts;  /* PARTITION steps between a node and ZooKeeper */
	bool manager;     /* both nodes have a ZooKeeper manager */
	bool pings;       /* the check timer runs (pings, connection-ttl) without TIME
			     steps too: the set-up of a walk that has them */
} bounds;

/* connection-ttl in the model.  A TIME step moves the clock by twice
 * that: every link silent since before it has gone connection-ttl without
 * a byte, and every lease and fence from before it is over. */
#define TTL_MS 60000u

/* The ZooKeeper session timeout in the model: a TIME step (twice
 * connection-ttl) is longer, so a session not heard since the last one may
 * expire, and every lease (90 % of it) from before it is over. */
#define ZK_S_MS TTL_MS

struct hasher {
	uint64_t a, b;
};

static inline void hmix(struct hasher *h, const void *p, size_t n)
{
	const uint8_t *s = p;
	for (size_t i = 0; i < n; i++) {
		h->a = (h->a ^ s[i]) * 0x100000001b3ull;
		h->b = (h->b ^ s[i]) * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
		h->b ^= h->b >> 29;
	}
}

/* One 64-bit value into both halves at once (the walk hashes a world per
 * step: byte-wise mixing was half the explorer's time). */
static inline void hu(struct hasher *h, uint64_t v)
{
	uint64_t x = v + 0x9E3779B97F4A7C15ull;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
	x ^= x >> 31;
	h->a = (h->a ^ x) * 0x100000001b3ull;
	h->a ^= h->a >> 29;
	h->b = (h->b + x) * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
	h->b ^= h->b >> 31;
}

/* ---- test_ha_explore.c ---- */

extern bounds B;
extern int frozen; /* a node that takes no step, or -1 */
extern uint64_t n_overflow;
extern uint64_t reached[32];
/* Feeds node n one input (the world's clock) and carries out its actions;
 * false when a bound was hit (not a real state). */
bool feed_node(world *w, int n, const keel_ha_input *in);
/* Prints the path that broke `what` and fails (or ends an expected walk). */
void fail_world(const world *w, const char *what);

#define CHECKW(w, c)                                                      \
	do {                                                              \
		if (!(c))                                                 \
			fail_world((w), #c);                              \
	} while (0)

/* ---- test_ha_explore_zk.c ---- */

/* A ZooKeeper action of node n: its request queued.  False: a bound. */
bool zk_apply(world *w, int n, const keel_ha_action *a);
/* Node n crashed (its session lives on until it expires) / (re)starts. */
void zk_node_down(world *w, int n);
/* Node n started: its session (when ZooKeeper is in reach).  False: a bound. */
bool zk_start(world *w, int n);
/* A TIME step: no session has been heard since. */
void zk_time(world *w);
/* The model's part of the world's key. */
void zk_hash(struct hasher *h, const world *w);
/* The model's invariants, and the machine's beliefs against it. */
void zk_check(const world *w);
/* Whether node nd may serve at now_ms: keel_ha_may_serve(), or, with
 * no_lease (a negative walk), what a broker without the lease's fence
 * would do: serve while it is active and believes it holds the lock. */
extern bool no_lease;
bool serves(const node *nd, uint64_t now_ms);
/* Step kinds of the model (test_ha_explore.c's step() calls zk_step). */
enum {
	ZSTEP_PROCESS = 20, /* ZooKeeper handles node a's oldest request */
	ZSTEP_DELIVER,      /* node a gets ZooKeeper's oldest answer */
	ZSTEP_EXPIRE,       /* session a expires (not heard since a TIME step) */
	ZSTEP_DISCONNECT,   /* node a's connection is lost; its first b requests
			       reached ZooKeeper, the rest are gone */
	ZSTEP_RECONNECT,    /* node a connects: its session back, or a new one */
};
bool zk_step(world *w, int kind, int a, int b);
/* Calls step(w, label, kind, a, b) for every step of the model from w. */
typedef void (*zk_step_fn)(const world *w, const char *label, int kind, int a, int b);
void zk_steps(const world *w, zk_step_fn step);

#endif

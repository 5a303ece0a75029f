/*
 * itha.h - the helpers the HA integration tests (it_ha*.c) share: a
 * pair's `ha:` config, starting and stopping its nodes, waiting for their
 * events, and the blocking client's connect / receipted send / management
 * request.  Built on itutil; every wait has a deadline and a failed step
 * fails the running cmocka test (fail_msg), naming what was missing.
 * Single-threaded, like the tests.
 */
#ifndef KEEL_ITHA_H
#define KEEL_ITHA_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "itutil.h"
#include "keel/client.h"

/* One step (a connect, a receipt, an event that follows at once) and a
 * node's start or a sync, scaled like every itutil deadline. */
#define ITHA_T_MS it_ms(5000)
#define ITHA_START_MS it_ms(20000)

/* A free loopback port (bound, read, closed: the node that gets it binds
 * it again with SO_REUSEADDR), or the test fails. */
uint16_t itha_free_port(void);
/* itutil's it_tmpdir_make, or the test fails; remove with it_tmpdir_remove. */
char *itha_tmpdir(const char *tag);

/* Timings of an `ha:` block in ms, written as given (scale with it_ms
 * what should stretch under a wrapper). */
typedef struct itha_timing {
	uint32_t check_period_ms;
	uint32_t connection_ttl_ms;
	uint32_t sync_timeout_ms; /* initial-replication-sync-timeout; 0: not written */
} itha_timing;

/* it_ha's and it_ha_paging's: check-period 1000, connection-ttl 5 s and
 * initial-replication-sync-timeout 30 s (both scaled). */
itha_timing itha_timing_default(void);

/* An `ha:` block (keel_malloc'd): role, listen and peer on 127.0.0.1, the
 * timings, retry-interval 100, then `extra` (more lines under ha:,
 * indented two blanks; NULL: none). */
char *itha_yaml(const char *role, uint16_t listen_port, uint16_t peer_port, itha_timing t,
		const char *extra);

/* Start `exe` with o (name, config, what "ready" means) and --data-dir
 * data_dir when not NULL (else itutil's fresh one): the node, ready
 * within ITHA_START_MS, or the test fails naming it.  o.extra_args is
 * replaced. */
it_broker *itha_start(const char *exe, it_broker_opts o, const char *data_dir);

/* SIGTERM; the node must exit 0 (no leak, no valgrind error) within
 * 15 s (scaled); then freed. */
void itha_stop_clean(it_broker *b);
/* SIGKILL and reap (within ITHA_T_MS); the exit code (it_exit_code).
 * The node is not freed. */
int itha_kill9(it_broker *b);

/* Index of the next event after `from` (exclusive: from < 0 = all) of
 * `type` whose `field` equals `value` (field NULL: any), or the test
 * fails after ms. */
int itha_wait_ev(it_broker *b, int from, const char *type, const char *field,
		 const char *value, uint32_t ms);
/* Field `field` of event i (borrowed; NULL when absent). */
json_t *itha_ev_get(it_broker *b, int i, const char *field);
/* The integer field `field` of event i (the test fails if it is not). */
long itha_ev_int(it_broker *b, int i, const char *field);
/* The string field `field` of event i, or NULL. */
const char *itha_ev_str(it_broker *b, int i, const char *field);

/* The backup announced itself and the live then saw its sync done (an
 * event after index live_from of the live), each within ITHA_START_MS.
 * Returns the index of the live's replication.sync.done. */
int itha_wait_synced(it_broker *live, int live_from, it_broker *backup);

/* A blocking client connected to 127.0.0.1:port, or the test fails. */
keel_bclient *itha_connect(uint16_t port);

/* { persistent: true }. */
extern const keel_kv itha_persistent_hdr[1];
/* SEND body, persistent, with a receipt; the test fails without one. */
void itha_send(keel_bclient *c, const char *dest, const char *body);

/* A management client: connected, subscribed to reply_q. */
keel_bclient *itha_mgmt_open(uint16_t port, const char *reply_q);
/* A management request on c (subscribed to reply_q): `op`, with a `name`
 * header when name is not NULL; its reply body (a new JSON value). */
json_t *itha_mgmt(keel_bclient *c, const char *reply_q, const char *op, const char *name);

/* The index in bodies[0..n) of m's body; the test fails when it is none
 * of them or was seen already (seen[] marks them). */
size_t itha_match_body(const keel_bframe *m, char bodies[][32], size_t n, bool *seen);

#endif

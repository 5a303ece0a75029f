/*
 * it_ha.c - replication (live/backup pairs) end to end: real keel-broker
 * processes with `ha:` configs, real sockets on loopback.
 *
 * argv[1] is the keel-broker binary.  Each test starts its own nodes (a
 * live on an ephemeral replication port, backups pointed at it), drives
 * them with Keel's client library and watches their events; brokers are
 * killed with SIGKILL where the test is about a crash, else stopped with
 * SIGTERM and must exit 0 (under a valgrind KEEL_BROKER_WRAPPER that is
 * valgrind's verdict).  Every wait has a deadline; the only fixed waits
 * are negative checks (NEG_MS), each commented.  Single-threaded.
 */
#include <errno.h>
#include <jansson.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "keel/alloc.h"
#include "itha.h"
#include "itutil.h"
#include "keel/client.h"

#define T_MS ITHA_T_MS
#define START_MS ITHA_START_MS
/* Negative checks: how long "does not happen" is watched for. */
#define NEG_MS it_ms(500)
#define REPLY_Q "/queue/it.ha.reply"
#define MAX_RECEIPTS 16

static const char *broker_exe;

/* ---- nodes ----------------------------------------------------------------- */

/* An `ha:` config with the default timings; `extra` adds lines under ha:
 * (indented two blanks). */
static char *ha_yaml(const char *role, uint16_t listen_port, uint16_t peer_port,
		     const char *extra)
{
	return itha_yaml(role, listen_port, peer_port, itha_timing_default(), extra);
}

/* The port a node's replication acceptor bound. */
static uint16_t repl_port(it_broker *b)
{
	int i = it_broker_wait_event(b, 0, "replication.listening", NULL, NULL, T_MS);
	assert_true(i >= 0);
	long p = itha_ev_int(b, i, "port");
	assert_true(p > 0 && p < 65536);
	return (uint16_t)p;
}

/* A primary on replication port listen_port (0: any) whose peer is
 * peer_port, data in data_dir (NULL: itutil's); returns once LIVE (it
 * finds no live peer and goes live alone). */
static it_broker *start_primary_at(const char *name, uint16_t listen_port, uint16_t peer_port,
				   const char *extra, const char *data_dir)
{
	char *y = ha_yaml("primary", listen_port, peer_port, extra);
	it_broker *b = itha_start(broker_exe, (it_broker_opts){ .name = name, .config_yaml = y },
				  data_dir);
	keel_free(y);
	return b;
}

static it_broker *start_live(const char *name, uint16_t peer_port, const char *extra)
{
	return start_primary_at(name, 0, peer_port, extra, NULL);
}

/* A backup of the live at live_port, listening on listen_port (0: any),
 * data in data_dir (NULL: itutil's).  fiu: KEEL_FIU_ENABLE for this node
 * only.  Returns once its replication acceptor listens. */
static it_broker *start_backup(const char *name, uint16_t listen_port, uint16_t live_port,
			       const char *extra, const char *data_dir, const char *fiu)
{
	char *y = ha_yaml("backup", listen_port, live_port, extra);
	it_broker_opts o = { .name = name, .config_yaml = y,
			     .ready_type = "replication.listening" };
	if (fiu)
		assert_int_equal(setenv("KEEL_FIU_ENABLE", fiu, 1), 0);
	it_broker *b = itha_start(broker_exe, o, data_dir);
	if (fiu)
		unsetenv("KEEL_FIU_ENABLE");
	keel_free(y);
	return b;
}

static void kill9(it_broker *b)
{
	assert_int_equal(itha_kill9(b), 128 + SIGKILL);
}

static bool has_event(it_broker *b, const char *type, const char *field, const char *value)
{
	return it_broker_wait_event(b, 0, type, field, value, 0) >= 0;
}

/* ---- clients ---------------------------------------------------------------- */

/* A management client: subscribed to REPLY_Q.  Open it before a backup
 * with op-ack-drop attaches: the auto-created reply queue is durable and
 * its SUBSCRIBE receipt would wait for the backup. */
static keel_bclient *mgmt_open(uint16_t port)
{
	return itha_mgmt_open(port, REPLY_Q);
}

/* broker-status's "ha" object (a new reference). */
static json_t *ha_status(keel_bclient *c)
{
	json_t *r = itha_mgmt(c, REPLY_Q, "broker-status", NULL);
	json_t *ha = json_incref(json_object_get(r, "ha"));
	assert_non_null(ha);
	/* the top-level replication state is the same */
	assert_string_equal(json_string_value(json_object_get(json_object_get(r, "replication"),
								   "state")),
			    json_string_value(json_object_get(ha, "replication")));
	json_decref(r);
	return ha;
}

#define HA_STR(ha, key) json_string_value(json_object_get((ha), (key)))

/* queue-stat's message-count of `queue`, or -1 when the broker answers
 * with an error (no such queue yet). */
static long queue_messages(keel_bclient *c, const char *queue)
{
	json_t *r = itha_mgmt(c, REPLY_Q, "queue-stat", queue);
	long n = -1;
	const char *st = json_string_value(json_object_get(r, "status"));
	assert_non_null(st);
	if (strcmp(st, "ok") == 0) {
		json_t *v = json_object_get(json_object_get(r, "queue"), "message-count");
		assert_true(json_is_integer(v));
		n = (long)json_integer_value(v);
	}
	json_decref(r);
	return n;
}

/* Receive exactly `n` messages of `dest` (any order), each body one of
 * bodies[] and each once. */
static void consume_all(uint16_t port, const char *dest, char bodies[][32], size_t n)
{
	keel_bclient *c = itha_connect(port);
	assert_int_equal(keel_bclient_subscribe(c, "s", dest, "auto", NULL, 0, T_MS), 0);
	bool *seen = keel_calloc(n, sizeof(bool));
	assert_non_null(seen);
	for (size_t got = 0; got < n; got++) {
		keel_bframe *m = NULL;
		int rc = keel_bclient_receive(c, &m, T_MS);
		if (rc != 0)
			fail_msg("only %zu of %zu messages: %s", got, n, strerror(-rc));
		itha_match_body(m, bodies, n, seen);
		keel_bclient_frame_free(m);
	}
	keel_free(seen);
	keel_bclient_close(c);
}

/*
 * An asynchronous producer on our own loop: the blocking client waits for
 * each receipt in the call; here a SEND goes out and its receipt is
 * waited for (or shown not to come) later.
 */
typedef struct aprod {
	uv_loop_t loop;
	uv_timer_t timer;
	bool fired;
	keel_client *c;
	bool connected;
	bool closed;
	int status;
	char error[256];
	char receipts[MAX_RECEIPTS][32];
	size_t nreceipts;
} aprod;

static void ap_on_connected(keel_client *c, int status, const keel_client_frame *f, void *ud)
{
	aprod *p = ud;
	(void)c;
	(void)f;
	p->status = status;
	p->connected = status == 0;
}

static void ap_on_receipt(keel_client *c, const char *id, void *ud)
{
	aprod *p = ud;
	(void)c;
	if (p->nreceipts < MAX_RECEIPTS)
		snprintf(p->receipts[p->nreceipts++], sizeof(p->receipts[0]), "%s", id);
}

static void ap_on_error(keel_client *c, const keel_client_frame *f, void *ud)
{
	aprod *p = ud;
	(void)c;
	const char *m = keel_client_frame_header(f, "message");
	snprintf(p->error, sizeof(p->error), "%s", m ? m : "ERROR");
}

static void ap_on_closed(keel_client *c, int status, void *ud)
{
	aprod *p = ud;
	(void)c;
	p->closed = true;
	p->status = status;
	p->c = NULL;
}

static void ap_on_timer(uv_timer_t *t)
{
	aprod *p = t->data;
	p->fired = true;
	/* libuv runs due timers before it polls: without this, a UV_RUN_ONCE
	 * that finds the deadline already past would then block in poll. */
	uv_stop(&p->loop);
}

static bool ap_has_receipt(const aprod *p, const char *id)
{
	for (size_t i = 0; i < p->nreceipts; i++)
		if (strcmp(p->receipts[i], id) == 0)
			return true;
	return false;
}

/* Run the loop until `*flag` or `id`'s receipt (when id), or ms pass. */
static bool ap_run(aprod *p, const bool *flag, const char *id, uint32_t ms)
{
	p->fired = false;
	uv_timer_start(&p->timer, ap_on_timer, ms, 0);
	for (;;) {
		if ((flag && *flag) || (id && ap_has_receipt(p, id)) || p->fired)
			break;
		if (p->closed && !(flag == &p->closed))
			break;
		uv_run(&p->loop, UV_RUN_ONCE);
	}
	uv_timer_stop(&p->timer);
	return (flag && *flag) || (id && ap_has_receipt(p, id));
}

static void ap_open(aprod *p, uint16_t port)
{
	memset(p, 0, sizeof(*p));
	assert_int_equal(uv_loop_init(&p->loop), 0);
	uv_timer_init(&p->loop, &p->timer);
	p->timer.data = p;
	keel_client_options o = { 0 };
	o.host = "127.0.0.1";
	o.port = port;
	o.connect_timeout_ms = T_MS;
	keel_client_callbacks cb = { .on_connected = ap_on_connected,
				     .on_receipt = ap_on_receipt,
				     .on_error = ap_on_error,
				     .on_closed = ap_on_closed };
	assert_int_equal(keel_client_create(&p->c, &p->loop, &o, &cb, p), 0);
	assert_int_equal(keel_client_connect(p->c), 0);
	if (!ap_run(p, &p->connected, NULL, T_MS))
		fail_msg("async producer: no CONNECTED (%d)", p->status);
}

static void ap_close(aprod *p)
{
	if (p->c)
		keel_client_close(p->c);
	ap_run(p, &p->closed, NULL, T_MS);
	assert_true(p->closed);
	uv_close((uv_handle_t *)&p->timer, NULL);
	uv_run(&p->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&p->loop), 0);
}

/* ---- 1. receipts wait for the backup ------------------------------------------ */

static void test_receipt_waits_for_backup(void **state)
{
	(void)state;
	uint16_t bport = itha_free_port();
	it_broker *live = start_live("ha1-live", bport, NULL);
	keel_bclient *mc = mgmt_open(it_broker_port(live));
	it_broker *backup = start_backup("ha1-backup", bport, repl_port(live), NULL, NULL,
					 "repl/op-ack-drop");
	int synced = itha_wait_synced(live, -1, backup);
	/* broker-status says what the pair is doing */
	json_t *ha = ha_status(mc);
	assert_string_equal(HA_STR(ha, "role"), "primary");
	assert_string_equal(HA_STR(ha, "state"), "LIVE");
	assert_string_equal(HA_STR(ha, "replication"), "steady");
	assert_false(json_is_true(json_object_get(ha, "fenced")));
	assert_true(json_is_true(json_object_get(ha, "peer-may-be-live")));
	json_decref(ha);

	aprod p;
	ap_open(&p, it_broker_port(live));
	assert_int_equal(keel_client_send(p.c, "/queue/ha.t1", itha_persistent_hdr, 1, "m1", 2,
					  "r1"),
			 0);
	/* The message reaches the queue: the SEND was processed... */
	uint64_t deadline = uv_hrtime() / 1000000 + T_MS;
	long count;
	while ((count = queue_messages(mc, "ha.t1")) != 1 && uv_hrtime() / 1000000 < deadline) {
		/* let the producer's loop flush the SEND between polls */
		ap_run(&p, NULL, "r1", 1);
	}
	assert_int_equal(count, 1);
	/* ...but its receipt waits for the backup's OP_ACK, which the backup
	 * never sends: negative check, watched for NEG_MS. */
	assert_false(ap_run(&p, NULL, "r1", NEG_MS));
	assert_string_equal(p.error, "");
	assert_false(has_event(live, "replication.lost", NULL, NULL));

	/* Losing the backup: the fence holds the receipt until the backup
	 * is shown gone (its port refuses: its process died), then the
	 * local sync alone is enough. */
	kill9(backup);
	int lost = itha_wait_ev(live, synced, "replication.lost", NULL, NULL, T_MS);
	itha_wait_ev(live, lost, "replication.fence", NULL, NULL, T_MS);
	if (!ap_run(&p, NULL, "r1", T_MS))
		fail_msg("no RECEIPT after the backup was lost (error: '%s')", p.error);
	assert_string_equal(p.error, "");
	int alone = itha_wait_ev(live, lost, "replication.alone", NULL, NULL, T_MS);
	assert_non_null(strstr(itha_ev_str(live, alone, "text"), "refused"));
	ap_close(&p);
	ha = ha_status(mc);
	assert_string_equal(HA_STR(ha, "replication"), "none");
	assert_false(json_is_true(json_object_get(ha, "fenced")));
	assert_false(json_is_true(json_object_get(ha, "peer-may-be-live")));
	json_decref(ha);

	keel_bclient_close(mc);
	it_broker_free(backup);
	itha_stop_clean(live);
}

/* ---- 2. a second backup is refused -------------------------------------------- */

static void test_second_backup_refused(void **state)
{
	(void)state;
	uint16_t bport = itha_free_port();
	it_broker *live = start_live("ha2-live", bport, NULL);
	uint16_t lport = repl_port(live);
	it_broker *backup = start_backup("ha2-backup", bport, lport, NULL, NULL, NULL);
	int synced = itha_wait_synced(live, -1, backup);

	it_broker *third = start_backup("ha2-third", 0, lport, NULL, NULL, NULL);
	int r1 = itha_wait_ev(live, synced, "replication.refused", "reason", "already-replicating",
			      START_MS);
	/* It keeps asking (retry-interval) and keeps being refused. */
	itha_wait_ev(live, r1, "replication.refused", "reason", "already-replicating", START_MS);
	assert_false(has_event(third, "backup.announced", NULL, NULL));
	/* Negative check: the third node does not become a synced backup. */
	assert_int_equal(it_broker_wait_event(third, 0, "state", "state", "BACKUP_SYNCED", NEG_MS),
			 -ETIMEDOUT);
	itha_stop_clean(third);

	/* The pair is unharmed: the backup still acks (a receipt comes), the
	 * live never lost it. */
	keel_bclient *c = itha_connect(it_broker_port(live));
	itha_send(c, "/queue/ha.t2", "after-refusal");
	keel_bclient_close(c);
	assert_false(has_event(live, "replication.lost", NULL, NULL));
	assert_false(has_event(backup, "failover", NULL, NULL));

	itha_stop_clean(backup);
	itha_stop_clean(live);
}

/* ---- 3. wrong cluster credentials ------------------------------------------- */

/* The live's auth.failed events for REGISTERs, from index `from` on: each
 * from the replication acceptor, naming `user` and the address, with the
 * failure count rising and its delay doubling (100 ms, 200 ms, ...).
 * Returns the index of the `n`th. */
static int cluster_failures(it_broker *live, int from, const char *user, int n)
{
	long last = 0;
	for (int k = 0; k < n; k++) {
		from = itha_wait_ev(live, from, "auth.failed", "user", user, START_MS);
		assert_string_equal(itha_ev_str(live, from, "acceptor"), "replication");
		assert_string_equal(itha_ev_str(live, from, "address"), "127.0.0.1");
		long f = itha_ev_int(live, from, "failures");
		assert_true(f > last);
		long want = 100L << (f - 1);
		assert_int_equal(itha_ev_int(live, from, "delay-ms"), want > 5000 ? 5000 : want);
		last = f;
	}
	return from;
}

static void test_wrong_cluster_password(void **state)
{
	(void)state;
	uint16_t bport = itha_free_port();
	it_broker *live = start_live("ha3-live", bport,
				     "  cluster-user: keelcluster\n"
				     "  cluster-password: right-one\n");
	it_broker *backup = start_backup("ha3-backup", bport, repl_port(live),
					 "  cluster-user: keelcluster\n"
					 "  cluster-password: wrong-one\n",
					 NULL, NULL);
	int r1 = itha_wait_ev(live, -1, "replication.refused", "reason", "authentication",
			      START_MS);
	/* refused again on its next attempt */
	itha_wait_ev(live, r1, "replication.refused", "reason", "authentication", START_MS);
	/* each refusal was a failed check, counted for the address and the
	 * cluster user, with a growing delay (issue 19 defect 5) */
	cluster_failures(live, -1, "keelcluster", 2);
	assert_false(has_event(live, "replication.sync.started", NULL, NULL));
	assert_false(has_event(backup, "backup.announced", NULL, NULL));
	/* the backup is told why */
	int e = itha_wait_ev(backup, -1, "error", NULL, NULL, T_MS);
	assert_non_null(strstr(itha_ev_str(backup, e, "message"), "authentication"));
	/* Negative check: the backup never syncs. */
	assert_int_equal(it_broker_wait_event(backup, 0, "state", "state", "BACKUP_SYNCED",
					      NEG_MS),
			 -ETIMEDOUT);
	itha_stop_clean(backup);

	/* A backup with no credentials at all is refused too (issue 19
	 * defect 4: it used to register and be sent every message). */
	int last = it_broker_event_count(live) > 0 ? (int)it_broker_event_count(live) - 1 : -1;
	backup = start_backup("ha3-nocreds", bport, repl_port(live), NULL, NULL, NULL);
	itha_wait_ev(live, last, "replication.refused", "reason", "authentication", START_MS);
	cluster_failures(live, last, "", 1);
	assert_int_equal(it_broker_wait_event(backup, 0, "state", "state", "BACKUP_SYNCED",
					      NEG_MS),
			 -ETIMEDOUT);
	assert_false(has_event(live, "replication.sync.started", NULL, NULL));
	itha_stop_clean(backup);

	/* The live serves alone, receipts on its local sync. */
	keel_bclient *c = itha_connect(it_broker_port(live));
	itha_send(c, "/queue/ha.t3", "alone");
	keel_bclient_close(c);
	itha_stop_clean(live);
}

/* ---- 4. a corrupt identity file --------------------------------------------- */

/* Start a `role` node whose identity file is garbage: it must refuse to
 * start, naming the file.  Returns its exit code. */
static int corrupt_identity(const char *role)
{
	char *dir = itha_tmpdir("ha");
	char path[512];
	snprintf(path, sizeof(path), "%s/ha-identity.json", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("{\"version\": 1, \"node-id\": garbage\n", f);
	assert_int_equal(fclose(f), 0);

	char *y = ha_yaml(role, 0, itha_free_port(), NULL);
	const char *args[] = { "--data-dir", dir, NULL };
	it_broker_opts o = { .name = "ha4", .config_yaml = y, .extra_args = args,
			     .no_wait = true };
	it_broker *b = NULL;
	assert_int_equal(it_broker_start(&b, broker_exe, &o, 0), 0);
	keel_free(y);
	int ws = 0;
	assert_int_equal(it_broker_wait_exit(b, START_MS, &ws), 0);
	int i = it_broker_wait_event(b, 0, "error", NULL, NULL, 0);
	assert_true(i >= 0);
	const char *msg = itha_ev_str(b, i, "message");
	assert_non_null(msg);
	if (strstr(msg, path) == NULL)
		fail_msg("error '%s' does not name %s", msg, path);
	/* it never started: no replication acceptor, never LIVE */
	assert_false(has_event(b, "replication.listening", NULL, NULL));
	assert_false(has_event(b, "state", "state", "LIVE"));
	/* the file is left for the operator */
	assert_int_equal(access(path, F_OK), 0);
	int code = it_exit_code(ws);
	if (code != 2)
		fprintf(stderr, "it_ha: %s with a corrupt identity file exited %d (error: %s)\n",
			role, code, msg);
	it_broker_free(b);
	it_tmpdir_remove(dir);
	return code;
}

/* Exit 2: a start refused for what the operator must fix (README,
 * keel-broker: "2 usage or configuration error"). */
static void test_corrupt_identity(void **state)
{
	(void)state;
	int primary = corrupt_identity("primary");
	int backup = corrupt_identity("backup");
	assert_int_equal(primary, 2);
	assert_int_equal(backup, 2);
}

/* ---- 5. the backup restarts --------------------------------------------------- */

#define T5_EACH 5

static void test_backup_restart(void **state)
{
	(void)state;
	char bodies[3 * T5_EACH][32];
	size_t n = 0;
	char *bdir = itha_tmpdir("ha");
	uint16_t bport = itha_free_port();
	it_broker *live = start_live("ha5-live", bport, NULL);
	uint16_t lport = repl_port(live);
	it_broker *backup = start_backup("ha5-backup", bport, lport, NULL, bdir, NULL);
	int synced = itha_wait_synced(live, -1, backup);

	keel_bclient *c = itha_connect(it_broker_port(live));
	for (int i = 0; i < T5_EACH; i++) {
		snprintf(bodies[n], sizeof(bodies[n]), "before-%d", i);
		itha_send(c, "/queue/ha.t5", bodies[n++]);
	}

	/* The backup dies: the live carries on alone, receipts at once. */
	int bl0 = itha_wait_ev(backup, -1, "replication.listening", NULL, NULL, 0);
	long inc0 = itha_ev_int(backup, bl0, "incarnation");
	kill9(backup);
	it_broker_free(backup);
	int lost = itha_wait_ev(live, synced, "replication.lost", NULL, NULL, T_MS);
	for (int i = 0; i < T5_EACH; i++) {
		snprintf(bodies[n], sizeof(bodies[n]), "alone-%d", i);
		itha_send(c, "/queue/ha.t5", bodies[n++]);
	}

	/* It comes back with the same data dir (its identity: the live's
	 * node id, adopted at the first sync; a new incarnation) and syncs
	 * again. */
	backup = start_backup("ha5-backup", bport, lport, NULL, bdir, NULL);
	int li0 = itha_wait_ev(live, -1, "replication.listening", NULL, NULL, 0);
	int bi0 = itha_wait_ev(backup, -1, "replication.listening", NULL, NULL, 0);
	assert_string_equal(itha_ev_str(backup, bi0, "node-id"), itha_ev_str(live, li0, "node-id"));
	assert_int_equal(itha_ev_int(backup, bi0, "incarnation"), inc0 + 1);
	synced = itha_wait_synced(live, lost, backup);
	for (int i = 0; i < T5_EACH; i++) {
		snprintf(bodies[n], sizeof(bodies[n]), "after-%d", i);
		itha_send(c, "/queue/ha.t5", bodies[n++]);
	}
	keel_bclient_close(c);

	/* The live dies: the backup fails over with all of them. */
	kill9(live);
	it_broker_free(live);
	itha_wait_ev(backup, -1, "failover", "text", "primary lost", T_MS);
	int jl = itha_wait_ev(backup, -1, "journal.loaded", NULL, NULL, T_MS);
	assert_int_equal(itha_ev_int(backup, jl, "messages"), (long)n);
	int li = itha_wait_ev(backup, jl, "state", "state", "LIVE", T_MS);
	int ai = it_broker_wait_event(backup, (size_t)jl, "acceptor.listening", NULL, NULL, 0);
	assert_true(ai > jl && ai < li);
	long port = itha_ev_int(backup, ai, "port");
	consume_all((uint16_t)port, "/queue/ha.t5", bodies, n);

	itha_stop_clean(backup);
	it_tmpdir_remove(bdir);
}

/* ---- 5b. two lives meet: the split brain's counts ------------------------------ */

/* Two lives: the live dies, its backup fails over and receipts; the old
 * live is brought back by an operator with check-for-live-server: false
 * (README "Two lives meet") and receipts too.  A live without a backup
 * probes its peer: BOTH split-brain events say how many messages each
 * side receipted since the split (its own from its journal, the peer's
 * from the probe or the live-too refusal), and one of them yields. */
static void test_split_brain_counts(void **state)
{
	(void)state;
	enum { ON_P = 3, ON_B = 4 };
	char body[32];
	char *pdir = itha_tmpdir("ha");
	uint16_t pport = itha_free_port(), bport = itha_free_port();
	it_broker *p = start_primary_at("ha7-p", pport, bport, NULL, pdir);
	it_broker *b = start_backup("ha7-b", bport, pport, NULL, NULL, NULL);
	itha_wait_synced(p, -1, b);
	keel_bclient *c = itha_connect(it_broker_port(p));
	itha_send(c, "/queue/ha.t7", "both-0"); /* before the split: not counted */
	keel_bclient_close(c);

	kill9(p);
	it_broker_free(p);
	int fo = itha_wait_ev(b, -1, "failover", NULL, NULL, it_ms(20000));
	int live = itha_wait_ev(b, fo, "state", "state", "LIVE", T_MS);
	int ai = it_broker_wait_event(b, (size_t)fo, "acceptor.listening", NULL, NULL, 0);
	assert_true(ai > fo && ai < live);
	c = itha_connect((uint16_t)itha_ev_int(b, ai, "port"));
	for (int i = 0; i < ON_B; i++) {
		snprintf(body, sizeof(body), "only-b-%d", i);
		itha_send(c, "/queue/ha.t7", body);
	}
	keel_bclient_close(c);

	p = start_primary_at("ha7-p", pport, bport, "  check-for-live-server: false\n", pdir);
	c = itha_connect(it_broker_port(p));
	for (int i = 0; i < ON_P; i++) {
		snprintf(body, sizeof(body), "only-p-%d", i);
		itha_send(c, "/queue/ha.t7", body);
	}
	keel_bclient_close(c);

	int sp = itha_wait_ev(p, -1, "split-brain", NULL, NULL, it_ms(20000));
	int sb = itha_wait_ev(b, -1, "split-brain", NULL, NULL, it_ms(20000));
	/* B's messages were all receipted before P came back: exactly ON_B.
	 * P probes (and is probed) from its start, so its count is what it
	 * had receipted by then: up to ON_P (all of them unless a slow run,
	 * valgrind, let the probe in first).  Each side's count reaches the
	 * other: as it was when sent (a probe goes out before its answer
	 * comes back, so P's own may have grown by then). */
	long p_own = itha_ev_int(p, sp, "receipted-since-split");
	long p_seen = itha_ev_int(b, sb, "peer-receipted-since-split");
	assert_int_equal(itha_ev_int(b, sb, "receipted-since-split"), ON_B);
	assert_int_equal(itha_ev_int(p, sp, "peer-receipted-since-split"), ON_B);
	assert_true(p_own >= 0 && p_own <= ON_P);
	assert_true(p_seen >= 0 && p_seen <= p_own);
	printf("# split brain: P receipted %ld since the split (B saw %ld), B %d\n", p_own,
	       p_seen, ON_B);
	bool p_serves = json_is_true(json_object_get(it_broker_event(p, (size_t)sp), "serving"));
	bool b_serves = json_is_true(json_object_get(it_broker_event(b, (size_t)sb), "serving"));
	assert_true(p_serves != b_serves);
	/* the one that yields syncs from the other, its own data saved */
	it_broker *y = p_serves ? b : p;
	itha_wait_ev(y, -1, "replication.saved", NULL, NULL, it_ms(20000));
	itha_wait_ev(y, -1, "backup.announced", NULL, NULL, it_ms(20000));
	itha_stop_clean(p);
	itha_stop_clean(b);
	it_tmpdir_remove(pdir);
}

/* ---- 6. the replication acceptor's posture ------------------------------------ */

/* Start a primary with `yaml` (extra: --check-config): it must exit 2,
 * and (started for real) say why in an `error` event naming `words`. */
static void refused_start(const char *yaml, bool check_config, const char *words)
{
	const char *args[] = { "--check-config", NULL };
	it_broker_opts o = { .name = "ha6", .config_yaml = yaml,
			     .extra_args = check_config ? args : NULL, .no_wait = true };
	it_broker *b = NULL;
	assert_int_equal(it_broker_start(&b, broker_exe, &o, 0), 0);
	int ws = 0;
	assert_int_equal(it_broker_wait_exit(b, START_MS, &ws), 0);
	assert_int_equal(it_exit_code(ws), 2);
	if (!check_config) {
		int i = it_broker_wait_event(b, 0, "error", NULL, NULL, 0);
		assert_true(i >= 0);
		const char *msg = itha_ev_str(b, i, "message");
		if (msg == NULL || strstr(msg, words) == NULL)
			fail_msg("error '%s' does not say '%s'", msg ? msg : "", words);
		assert_false(has_event(b, "replication.listening", NULL, NULL));
	}
	it_broker_free(b);
}

/* The replication acceptor follows the STOMP acceptor's rule: without
 * cluster credentials (user and password), loopback only; elsewhere the
 * start is refused with exit 2 and the reason (issue 19 defect 4). */
static void test_listen_posture(void **state)
{
	(void)state;
	char y[1024];
	const char *head = "users:\n  - {name: u, password-hash: \"$y$j9T$IL1E3nERihEdR9AxDgNKP."
			   "$XvYaG0NaCglaPyAsE81dSFubwJJyFK3AWvD5hR1aho.\", roles: [r]}\n"
			   "ha:\n  role: primary\n  listen: \"0.0.0.0:0\"\n";
	snprintf(y, sizeof(y), "%s  peer: \"127.0.0.1:%u\"\n", head, (unsigned)itha_free_port());
	refused_start(y, false, "refusing to listen for replication on 0.0.0.0:0 (ha.listen) "
				"without cluster credentials");
	refused_start(y, true, NULL);
	/* a user without a password is no credential */
	snprintf(y, sizeof(y), "%s  peer: \"127.0.0.1:%u\"\n  cluster-user: c\n", head,
		 (unsigned)itha_free_port());
	refused_start(y, false, "without cluster credentials");

	/* with both, any address */
	snprintf(y, sizeof(y), "%s  peer: \"127.0.0.1:%u\"\n  cluster-user: c\n"
		 "  cluster-password: p\n  check-period: 1000\n  connection-ttl: %u\n"
		 "  retry-interval: 100\n", head, (unsigned)itha_free_port(), it_ms(5000));
	it_broker_opts o = { .name = "ha6-any", .config_yaml = y };
	it_broker *b = NULL;
	assert_int_equal(it_broker_start(&b, broker_exe, &o, START_MS), 0);
	int i = itha_wait_ev(b, -1, "replication.listening", NULL, NULL, 0);
	assert_string_equal(itha_ev_str(b, i, "host"), "0.0.0.0");
	itha_stop_clean(b);
	/* without, on loopback (as every other test here) */
	b = start_live("ha6-lo", itha_free_port(), NULL);
	itha_stop_clean(b);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s KEEL-BROKER\n", argv[0]);
		return 2;
	}
	broker_exe = argv[1];
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_receipt_waits_for_backup),
		cmocka_unit_test(test_second_backup_refused),
		cmocka_unit_test(test_wrong_cluster_password),
		cmocka_unit_test(test_corrupt_identity),
		cmocka_unit_test(test_backup_restart),
		cmocka_unit_test(test_split_brain_counts),
		cmocka_unit_test(test_listen_posture),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

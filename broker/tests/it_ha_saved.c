/*
 * it_ha_saved.c - a split brain and its recovery, end to end: two real
 * keel-broker nodes on the old rules (failover-may-lose-data: true), each
 * receipting messages the other never saw; the node that then syncs from
 * the other saves its own journal (replication.saved: messages, lacking)
 * and `keelctl journal saved resend` puts what it alone had receipted
 * back into the live, where a consumer finds every receipted message.
 *
 * argv[1] is keel-broker, argv[2] keelctl.  The faults are SIGSTOP /
 * SIGCONT / SIGKILL; every step waits for an event with a deadline,
 * nothing sleeps.  Single-threaded.
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
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "keel/alloc.h"
#include "itha.h"
#include "itutil.h"
#include "keel/client.h"

#define T_MS ITHA_T_MS
#define START_MS ITHA_START_MS
#define DEST "/queue/split"
#define EACH 3

static const char *broker_exe;
static const char *keelctl_exe;

/* ---- nodes ------------------------------------------------------------------ */

/* A node of the pair on the old rules, its data in data_dir: quick to
 * drop a silent peer (check-period 300, connection-ttl 1500).  ready: the
 * event it_broker_start waits for (NULL: state LIVE). */
static it_broker *start_node(const char *name, const char *role, uint16_t listen_port,
			     uint16_t peer_port, const char *data_dir, const char *ready)
{
	itha_timing t = { .check_period_ms = it_ms(300), .connection_ttl_ms = it_ms(1500),
			  .sync_timeout_ms = it_ms(30000) };
	char *y = itha_yaml(role, listen_port, peer_port, t,
			    "  failover-may-lose-data: true\n"
			    "  allow-failback: false\n");
	it_broker_opts o = { .name = name, .config_yaml = y, .ready_type = ready };
	it_broker *b = itha_start(broker_exe, o, data_dir);
	keel_free(y);
	return b;
}

static void sig(it_broker *b, int s)
{
	assert_int_equal(kill(it_broker_pid(b), s), 0);
}

/* ---- clients ------------------------------------------------------------------- */

/* Send EACH persistent messages "<prefix>-<i>", each receipted. */
static void produce(uint16_t port, const char *prefix, char bodies[][32], size_t *n)
{
	static const keel_kv h[] = { { "persistent", 10, "true", 4 },
				     { "origin", 6, "it", 2 } };
	keel_bclient *c = itha_connect(port);
	for (int i = 0; i < EACH; i++) {
		snprintf(bodies[*n], 32, "%s-%d", prefix, i);
		int rc = keel_bclient_send(c, DEST, h, 2, bodies[*n], strlen(bodies[*n]), true,
					   T_MS);
		if (rc != 0)
			fail_msg("SEND %s: %s (%s)", bodies[*n], strerror(-rc),
				 keel_bclient_error(c));
		(*n)++;
	}
	keel_bclient_close(c);
}

/* Receive exactly n messages (any order), each body one of bodies[] once;
 * with `resent`, each carries keel-resent-from: resent. */
static void consume_exactly(uint16_t port, char bodies[][32], size_t n, const char *resent)
{
	keel_bclient *c = itha_connect(port);
	assert_int_equal(keel_bclient_subscribe(c, "s", DEST, "auto", NULL, 0, T_MS), 0);
	bool seen[64] = { false };
	assert_true(n <= 64);
	for (size_t got = 0; got < n; got++) {
		keel_bframe *m = NULL;
		int rc = keel_bclient_receive(c, &m, T_MS);
		if (rc != 0)
			fail_msg("only %zu of %zu messages: %s", got, n, strerror(-rc));
		size_t k = itha_match_body(m, bodies, n, seen);
		/* user headers came back through the saved journal */
		const char *origin = keel_client_frame_header(&m->f, "origin");
		assert_non_null(origin);
		assert_string_equal(origin, "it");
		const char *from = keel_client_frame_header(&m->f, "keel-resent-from");
		if (resent) {
			if (from == NULL || strcmp(from, resent) != 0)
				fail_msg("'%s': keel-resent-from '%s', not '%s'", bodies[k],
					 from ? from : "(none)", resent);
		}
		keel_bclient_frame_free(m);
	}
	/* and nothing more: a receive that times out (the negative check of
	 * this file, bounded) */
	keel_bframe *extra = NULL;
	int rc = keel_bclient_receive(c, &extra, it_ms(300));
	if (rc == 0)
		fail_msg("one more message: '%.*s'", (int)extra->f.body_len,
			 (const char *)extra->f.body);
	assert_int_equal(rc, -ETIMEDOUT);
	keel_bclient_close(c);
}

/* Run keelctl with `args`; its exit code, stdout in out. */
static int keelctl(const char *args, char *out, size_t outlen)
{
	char cmd[2048];
	snprintf(cmd, sizeof(cmd), "%s %s 2>&1", keelctl_exe, args);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	size_t n = fread(out, 1, outlen - 1, p);
	out[n] = '\0';
	int ws = pclose(p);
	fprintf(stderr, "$ keelctl %s\n%s", args, out);
	return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128;
}

/* ---- the split brain ------------------------------------------------------------- */

static void test_split_brain_recovered(void **state)
{
	(void)state;
	char bodies[4 * EACH][32], lost[2 * EACH][32], out[8192], args[1024];
	size_t n = 0;
	char *pdir = itha_tmpdir("ha-saved"), *bdir = itha_tmpdir("ha-saved");
	uint16_t pport = itha_free_port(), bport = itha_free_port();

	/* A pair: P live, B synced. */
	it_broker *p = start_node("saved-p", "primary", pport, bport, pdir, NULL);
	it_broker *b = start_node("saved-b", "backup", bport, pport, bdir,
				  "replication.listening");
	int psync = itha_wait_synced(p, -1, b);
	/* B had nothing of its own to save */
	assert_false(it_broker_wait_event(b, 0, "replication.saved", NULL, NULL, 0) >= 0);
	produce(it_broker_port(p), "both", bodies, &n);

	/* B is paused: P drops it after connection-ttl and receipts alone
	 * (the old rules: no fence). */
	sig(b, SIGSTOP);
	itha_wait_ev(p, psync, "replication.lost", NULL, NULL, START_MS);
	size_t on_p = n;
	produce(it_broker_port(p), "only-p", bodies, &n);

	/* P dies; B wakes, finds P gone and fails over without P's last
	 * messages: two nodes have each receipted what the other lacks. */
	itha_kill9(p);
	it_broker_free(p);
	sig(b, SIGCONT);
	int fo = itha_wait_ev(b, -1, "failover", NULL, NULL, START_MS);
	int live = itha_wait_ev(b, fo, "state", "state", "LIVE", START_MS);
	int acc = it_broker_wait_event(b, (size_t)fo, "acceptor.listening", NULL, NULL, 0);
	assert_true(acc > fo && acc < live);
	uint16_t bclients = (uint16_t)itha_ev_int(b, acc, "port");
	produce(bclients, "only-b", bodies, &n);

	/* P comes back on its data and syncs from B, the live: its own
	 * journal is saved first, and the comparison says what B lacks. */
	p = start_node("saved-p", "primary", pport, bport, pdir, "replication.listening");
	itha_wait_ev(p, -1, "backup.announced", NULL, NULL, START_MS);
	int sv = itha_wait_ev(p, -1, "replication.saved", NULL, NULL, START_MS);
	const char *path = itha_ev_str(p, sv, "path");
	assert_non_null(path);
	assert_null(itha_ev_get(p, sv, "error"));
	assert_int_equal(itha_ev_int(p, sv, "messages"), 2 * EACH);
	assert_int_equal(itha_ev_int(p, sv, "lacking"), EACH);
	char want[512];
	snprintf(want, sizeof(want), "%s/saved/001-seq", pdir);
	if (strncmp(path, want, strlen(want)) != 0)
		fail_msg("saved copy %s is not under %s", path, want);
	const char *copy = strrchr(path, '/') + 1;

	/* keelctl lists it... */
	snprintf(args, sizeof(args), "journal saved list --data-dir %s --json", pdir);
	assert_int_equal(keelctl(args, out, sizeof(out)), 0);
	json_t *arr = json_loads(out, 0, NULL);
	assert_true(json_is_array(arr));
	assert_int_equal(json_array_size(arr), 1);
	json_t *c0 = json_array_get(arr, 0);
	assert_string_equal(json_string_value(json_object_get(c0, "name")), copy);
	assert_int_equal(json_integer_value(json_object_get(c0, "messages")), 2 * EACH);
	assert_int_equal(json_integer_value(json_object_get(c0, "lacking")), EACH);
	json_decref(arr);

	/* ...and sends what B lacked to B: every receipted message is there,
	 * each once. */
	snprintf(args, sizeof(args),
		 "journal saved resend --data-dir %s --copy %s --only-lacking "
		 "--url stomp://127.0.0.1:%u",
		 pdir, copy, (unsigned)bclients);
	assert_int_equal(keelctl(args, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "sent 3 messages"));
	assert_int_equal((int)n, 3 * EACH);
	consume_exactly(bclients, bodies, n, NULL);

	/* Without --only-lacking every message of the copy goes again, each
	 * marked with the copy it came from. */
	snprintf(args, sizeof(args),
		 "journal saved resend --data-dir %s --copy %s --url stomp://127.0.0.1:%u",
		 pdir, copy, (unsigned)bclients);
	assert_int_equal(keelctl(args, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "sent 6 messages"));
	assert_non_null(strstr(out, "note: "));
	size_t k = 0;
	for (size_t i = 0; i < on_p + EACH; i++)
		snprintf(lost[k++], 32, "%s", bodies[i]);
	consume_exactly(bclients, lost, k, copy);

	/* Errors are clear: an unknown copy, a missing data directory. */
	snprintf(args, sizeof(args), "journal saved resend --data-dir %s --copy 009-nothing "
		 "--url stomp://127.0.0.1:%u", pdir, (unsigned)bclients);
	assert_int_equal(keelctl(args, out, sizeof(out)), 2);
	assert_non_null(strstr(out, "no saved copy '009-nothing'"));
	snprintf(args, sizeof(args), "journal saved list --data-dir %s/missing", pdir);
	assert_int_equal(keelctl(args, out, sizeof(out)), 2);
	assert_non_null(strstr(out, "No such file or directory"));

	itha_stop_clean(p);
	itha_stop_clean(b);
	it_tmpdir_remove(pdir);
	it_tmpdir_remove(bdir);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s KEEL-BROKER KEELCTL\n", argv[0]);
		return 2;
	}
	broker_exe = argv[1];
	keelctl_exe = argv[2];
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split_brain_recovered),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * itha.c - the HA integration tests' shared helpers (itha.h): configs,
 * nodes, events and the blocking client for live/backup pairs of real
 * keel-broker processes.  Owns nothing between calls but the strings it
 * returns (the caller frees them); a failed step fails the running cmocka
 * test.  Single-threaded.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "itha.h"
#include "keel/alloc.h"

#define MGMT "/queue/keel.management"

uint16_t itha_free_port(void)
{
	uint16_t port = it_free_port();
	assert_int_not_equal(port, 0);
	return port;
}

char *itha_tmpdir(const char *tag)
{
	char *d = it_tmpdir_make(tag);
	assert_non_null(d);
	return d;
}

itha_timing itha_timing_default(void)
{
	return (itha_timing){ .check_period_ms = 1000,
			      .connection_ttl_ms = it_ms(5000),
			      .sync_timeout_ms = it_ms(30000) };
}

char *itha_yaml(const char *role, uint16_t listen_port, uint16_t peer_port, itha_timing t,
		const char *extra)
{
	char sync[80] = "";
	if (t.sync_timeout_ms != 0)
		snprintf(sync, sizeof(sync), "  initial-replication-sync-timeout: %u\n",
			 (unsigned)t.sync_timeout_ms);
	size_t cap = 512 + (extra ? strlen(extra) : 0);
	char *y = keel_malloc(cap);
	assert_non_null(y);
	snprintf(y, cap,
		 "ha:\n"
		 "  role: %s\n"
		 "  listen: \"127.0.0.1:%u\"\n"
		 "  peer: \"127.0.0.1:%u\"\n"
		 "  check-period: %u\n"
		 "  connection-ttl: %u\n"
		 "  retry-interval: 100\n"
		 "%s%s",
		 role, (unsigned)listen_port, (unsigned)peer_port, (unsigned)t.check_period_ms,
		 (unsigned)t.connection_ttl_ms, sync, extra ? extra : "");
	return y;
}

it_broker *itha_start(const char *exe, it_broker_opts o, const char *data_dir)
{
	const char *args[] = { "--data-dir", data_dir, NULL };
	o.extra_args = data_dir ? args : NULL;
	it_broker *b = NULL;
	int rc = it_broker_start(&b, exe, &o, ITHA_START_MS);
	if (rc != 0)
		fail_msg("%s did not start: %s", o.name ? o.name : "node", strerror(-rc));
	return b;
}

void itha_stop_clean(it_broker *b)
{
	int ws = 0;
	assert_int_equal(it_broker_stop(b, it_ms(15000), &ws), 0);
	if (it_exit_code(ws) != 0)
		fail_msg("broker %d exited %d (3: threads leaked; 99: a valgrind error, see "
			 "its log)", (int)it_broker_pid(b), it_exit_code(ws));
	it_broker_free(b);
}

int itha_kill9(it_broker *b)
{
	int ws = 0;
	assert_int_equal(kill(it_broker_pid(b), SIGKILL), 0);
	assert_int_equal(it_broker_wait_exit(b, ITHA_T_MS, &ws), 0);
	return it_exit_code(ws);
}

int itha_wait_ev(it_broker *b, int from, const char *type, const char *field,
		 const char *value, uint32_t ms)
{
	int i = it_broker_wait_event(b, (size_t)(from + 1), type, field, value, ms);
	if (i < 0)
		fail_msg("no %s%s%s within %u ms: %s", type, value ? " " : "", value ? value : "",
			 ms, strerror(-i));
	return i;
}

json_t *itha_ev_get(it_broker *b, int i, const char *field)
{
	return json_object_get(it_broker_event(b, (size_t)i), field);
}

long itha_ev_int(it_broker *b, int i, const char *field)
{
	json_t *v = itha_ev_get(b, i, field);
	assert_true(json_is_integer(v));
	return (long)json_integer_value(v);
}

const char *itha_ev_str(it_broker *b, int i, const char *field)
{
	return json_string_value(itha_ev_get(b, i, field));
}

int itha_wait_synced(it_broker *live, int live_from, it_broker *backup)
{
	itha_wait_ev(backup, -1, "backup.announced", NULL, NULL, ITHA_START_MS);
	return itha_wait_ev(live, live_from, "replication.sync.done", NULL, NULL, ITHA_START_MS);
}

keel_bclient *itha_connect(uint16_t port)
{
	keel_client_options o = { 0 };
	o.host = "127.0.0.1";
	o.port = port;
	o.connect_timeout_ms = ITHA_T_MS;
	char err[256] = "";
	keel_bclient *c = NULL;
	int rc = keel_bclient_connect(&c, &o, ITHA_T_MS, err, sizeof(err));
	if (rc != 0)
		fail_msg("connect to %u: %s (%s)", (unsigned)port, strerror(-rc), err);
	return c;
}

const keel_kv itha_persistent_hdr[1] = { { "persistent", 10, "true", 4 } };

void itha_send(keel_bclient *c, const char *dest, const char *body)
{
	int rc = keel_bclient_send(c, dest, itha_persistent_hdr, 1, body, strlen(body), true,
				   ITHA_T_MS);
	if (rc != 0)
		fail_msg("SEND %s with receipt: %s (%s)", body, strerror(-rc),
			 keel_bclient_error(c));
}

keel_bclient *itha_mgmt_open(uint16_t port, const char *reply_q)
{
	keel_bclient *c = itha_connect(port);
	int rc = keel_bclient_subscribe(c, "reply", reply_q, "auto", NULL, 0, ITHA_T_MS);
	if (rc != 0)
		fail_msg("subscribe %s: %s", reply_q, keel_bclient_error(c));
	return c;
}

json_t *itha_mgmt(keel_bclient *c, const char *reply_q, const char *op, const char *name)
{
	keel_kv h[] = { KEEL_KV("operation", op), KEEL_KV("reply-to", reply_q),
			KEEL_KV("name", name ? name : "") };
	int rc = keel_bclient_send(c, MGMT, h, name ? 3 : 2, "", 0, false, ITHA_T_MS);
	if (rc != 0)
		fail_msg("%s: %s", op, keel_bclient_error(c));
	keel_bframe *f = NULL;
	rc = keel_bclient_receive(c, &f, ITHA_T_MS);
	if (rc != 0)
		fail_msg("%s reply: %s", op, strerror(-rc));
	json_t *r = json_loadb((const char *)f->f.body, f->f.body_len, 0, NULL);
	keel_bclient_frame_free(f);
	assert_non_null(r);
	return r;
}

size_t itha_match_body(const keel_bframe *m, char bodies[][32], size_t n, bool *seen)
{
	size_t k = 0;
	while (k < n && (strlen(bodies[k]) != m->f.body_len ||
			 memcmp(bodies[k], m->f.body, m->f.body_len) != 0))
		k++;
	if (k == n)
		fail_msg("unexpected message '%.*s'", (int)m->f.body_len, (const char *)m->f.body);
	if (seen[k])
		fail_msg("message '%s' twice", bodies[k]);
	seen[k] = true;
	return k;
}

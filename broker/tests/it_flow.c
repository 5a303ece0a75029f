/*
 * it_flow.c - producer flow control (BLOCK, FAIL, DROP), writability and
 * large messages, end to end against a real keel-broker process.
 *
 * argv[1] is the keel-broker binary.  One broker for the whole run (see
 * itutil.h), configured with small limits per address pattern; every test
 * uses its own addresses.  Clients are Keel's blocking client.  Every wait
 * has a deadline; nothing sleeps.  Single-threaded.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "keel/alloc.h"
#include "itutil.h"
#include "keel/client.h"

#define T_MS it_ms(5000)
#define START_MS it_ms(15000)
#define MSG_BYTES 1024

static const char *broker_exe;
static it_broker *broker;

static const char config[] =
	"address-settings:\n"
	"  - match: \"fb.#\"\n"
	"    max-size-bytes: 64KiB\n"
	"    address-full-policy: BLOCK\n"
	"  - match: \"ff.#\"\n"
	"    max-size-bytes: 4KiB\n"
	"    address-full-policy: FAIL\n"
	"  - match: \"fd.#\"\n"
	"    max-size-bytes: 4KiB\n"
	"    address-full-policy: DROP\n"
	"write-high-watermark: 16KiB\n"
	"write-low-watermark: 4KiB\n";

/* ---- helpers ----------------------------------------------------------- */

static keel_bclient *open_client(void)
{
	keel_client_options o = { 0 };
	o.host = "127.0.0.1";
	o.port = it_broker_port(broker);
	o.connect_timeout_ms = T_MS;
	char err[256] = "";
	keel_bclient *c = NULL;
	int rc = keel_bclient_connect(&c, &o, T_MS, err, sizeof(err));
	if (rc != 0)
		fail_msg("connect failed: %s (%s)", strerror(-rc), err);
	return c;
}

/* A 1 KiB body that starts with its sequence number. */
static void seq_body(char *buf, unsigned seq)
{
	memset(buf, 'a' + seq % 26, MSG_BYTES);
	snprintf(buf, 16, "%08u", seq);
	buf[8] = ':';
}

static unsigned body_seq(const keel_bframe *m)
{
	assert_int_equal(m->f.body_len, MSG_BYTES);
	char tmp[9];
	memcpy(tmp, m->f.body, 8);
	tmp[8] = '\0';
	return (unsigned)strtoul(tmp, NULL, 10);
}

static int send_seq(keel_bclient *c, const char *dest, unsigned seq, bool receipt)
{
	char body[MSG_BYTES];
	seq_body(body, seq);
	return keel_bclient_send(c, dest, NULL, 0, body, sizeof(body), receipt, T_MS);
}

static void send_ok(keel_bclient *c, const char *dest, const void *body, size_t len)
{
	int rc = keel_bclient_send(c, dest, NULL, 0, body, len, true, T_MS);
	if (rc != 0)
		fail_msg("send to %s: %s (%s)", dest, strerror(-rc), keel_bclient_error(c));
}

static void subscribe(keel_bclient *c, const char *id, const char *dest, const char *ack)
{
	int rc = keel_bclient_subscribe(c, id, dest, ack, NULL, 0, T_MS);
	if (rc != 0)
		fail_msg("subscribe %s: %s (%s)", dest, strerror(-rc), keel_bclient_error(c));
}

static keel_bframe *recv_msg(keel_bclient *c)
{
	keel_bframe *m = NULL;
	int rc = keel_bclient_receive(c, &m, T_MS);
	if (rc != 0)
		fail_msg("receive: %s (%s)", strerror(-rc), keel_bclient_error(c));
	assert_string_equal(m->f.command, "MESSAGE");
	return m;
}

/* Receive exactly seq first..last-1, in order, each once; then nothing
 * more arrives before a round trip on the same connection. */
static void recv_seqs(keel_bclient *c, unsigned first, unsigned last)
{
	for (unsigned i = first; i < last; i++) {
		keel_bframe *m = recv_msg(c);
		unsigned got = body_seq(m);
		keel_bclient_frame_free(m);
		if (got != i)
			fail_msg("expected message %u, got %u", i, got);
	}
}

/* Another connection, another address: a send and its delivery still
 * work (whatever else is blocked). */
static void witness(const char *dest)
{
	keel_bclient *w = open_client();
	subscribe(w, "w", dest, "auto");
	send_ok(w, dest, "ping", 4);
	keel_bframe *m = recv_msg(w);
	assert_int_equal(m->f.body_len, 4);
	keel_bclient_frame_free(m);
	keel_bclient_close(w);
}

static size_t count_events(const char *type, const char *address)
{
	size_t n = 0;
	for (size_t i = 0; i < it_broker_event_count(broker); i++) {
		json_t *ev = it_broker_event(broker, i);
		const char *t = json_string_value(json_object_get(ev, "type"));
		const char *a = json_string_value(json_object_get(ev, "address"));
		if (t && a && strcmp(t, type) == 0 && strcmp(a, address) == 0)
			n++;
	}
	return n;
}

/* Wait for `type` about `address` from event index `from`; returns it. */
static json_t *await_event(size_t from, const char *type, const char *address)
{
	int i = it_broker_wait_event(broker, from, type, "address", address, T_MS);
	if (i < 0)
		fail_msg("no %s event for %s after #%zu: %s", type, address, from, strerror(-i));
	return it_broker_event(broker, (size_t)i);
}

/* Flood `dest` without receipts until the broker says the producer is
 * blocked; returns how many were sent. */
static unsigned flood_until_blocked(keel_bclient *p, const char *dest, const char *address,
				    unsigned max)
{
	size_t from = it_broker_event_count(broker);
	for (unsigned i = 0; i < max; i++) {
		int rc = send_seq(p, dest, i, false);
		if (rc != 0)
			fail_msg("send %u: %s", i, strerror(-rc));
	}
	json_t *ev = await_event(from, "producer.blocked", address);
	/* what the broker took in is bounded: the limit, plus at most one
	 * socket read of frames (64 KiB) past it */
	json_int_t size = json_integer_value(json_object_get(ev, "size_bytes"));
	assert_true(size >= 64 * 1024);
	assert_true(size < 64 * 1024 + 64 * 1024 + 4 * MSG_BYTES);
	assert_string_equal(json_string_value(json_object_get(ev, "policy")), "BLOCK");
	return max;
}

/* ---- BLOCK ------------------------------------------------------------- */

/* A producer at a full BLOCK address is paused (producer.blocked), other
 * connections carry on, and once a consumer drains the address it is
 * resumed (producer.unblocked): every message arrives exactly once, in
 * order. */
static void t_block_then_resume(void **state)
{
	(void)state;
	keel_bclient *p = open_client();
	size_t from = it_broker_event_count(broker);
	/* 200 KiB: more than the limit and a read, less than the producer's
	 * socket buffers plus its client's high watermark */
	unsigned n = flood_until_blocked(p, "/queue/fb.one", "fb.one", 200);
	assert_int_equal(count_events("producer.unblocked", "fb.one"), 0);

	witness("/queue/fb.witness");

	keel_bclient *c = open_client();
	subscribe(c, "s", "/queue/fb.one", "auto");
	recv_seqs(c, 0, n);
	await_event(from, "producer.unblocked", "fb.one");
	/* the producer's connection is fine: one more, receipted */
	assert_int_equal(send_seq(p, "/queue/fb.one", n, true), 0);
	recv_seqs(c, n, n + 1);
	keel_bclient_close(c);
	keel_bclient_close(p);
}

/* A blocked producer that goes away without a word: its session is freed
 * although its socket is not read (the broker notices the peer's close),
 * so the message it held unacked is redelivered to another consumer; what
 * it sent before is delivered, each once, in order. */
static void t_block_close_releases(void **state)
{
	(void)state;
	keel_bclient *p = open_client();
	keel_bclient *w = open_client();
	subscribe(p, "held", "/queue/fb.held", "client-individual");
	send_ok(w, "/queue/fb.held", "held-one", 8);
	keel_bframe *m = recv_msg(p);
	keel_bclient_frame_free(m); /* not acked */

	flood_until_blocked(p, "/queue/fb.two", "fb.two", 200);
	keel_client_close(keel_bclient_client(p)); /* abrupt: no DISCONNECT */
	keel_bclient_close(p);

	keel_bclient *c = open_client();
	subscribe(c, "h", "/queue/fb.held", "auto");
	m = recv_msg(c);
	assert_int_equal(m->f.body_len, 8);
	assert_memory_equal(m->f.body, "held-one", 8);
	assert_string_equal(keel_client_frame_header(&m->f, "redelivered"), "true");
	keel_bclient_frame_free(m);

	/* what the broker accepted from it: a prefix, in order, once each */
	subscribe(c, "t", "/queue/fb.two", "auto");
	unsigned got = 0;
	for (;;) {
		keel_bframe *f = NULL;
		int rc = keel_bclient_receive(c, &f, it_ms(500));
		if (rc == -ETIMEDOUT)
			break;
		assert_int_equal(rc, 0);
		assert_int_equal(body_seq(f), got);
		keel_bclient_frame_free(f);
		got++;
	}
	/* at least the limit's worth (64 KiB of ~1.2 KiB messages) */
	assert_true(got >= 50 && got <= 200);
	keel_bclient_close(c);
	keel_bclient_close(w);
}

/* ---- FAIL -------------------------------------------------------------- */

/* A full FAIL address answers the SEND with an ERROR naming it (with the
 * receipt-id) and the connection stays open and usable. */
static void t_fail_keeps_connection(void **state)
{
	(void)state;
	keel_bclient *p = open_client();
	unsigned accepted = 0;
	int rc = 0;
	for (; accepted < 16; accepted++) {
		rc = send_seq(p, "/queue/ff.q", accepted, true);
		if (rc != 0)
			break;
	}
	assert_int_equal(rc, -EPROTO);
	assert_true(accepted >= 1 && accepted < 16);
	const char *why = keel_bclient_error(p);
	assert_non_null(why);
	assert_non_null(strstr(why, "'ff.q' is full"));
	assert_false(keel_bclient_closed(p));
	/* twice more: still refused, still connected */
	assert_int_equal(send_seq(p, "/queue/ff.q", 100, true), -EPROTO);
	assert_int_equal(send_seq(p, "/queue/ff.q", 101, true), -EPROTO);
	send_ok(p, "/queue/ff.other", "fine", 4);

	keel_bclient *c = open_client();
	subscribe(c, "s", "/queue/ff.q", "auto");
	recv_seqs(c, 0, accepted);
	/* drained: accepted again, on the same connection */
	assert_int_equal(send_seq(p, "/queue/ff.q", accepted, true), 0);
	recv_seqs(c, accepted, accepted + 1);
	keel_bclient_close(c);
	keel_bclient_close(p);
}

/* The ERROR carries the refused SEND's receipt-id. */
static void t_fail_error_has_receipt_id(void **state)
{
	(void)state;
	keel_bclient *p = open_client();
	keel_client *raw = keel_bclient_client(p);
	char body[MSG_BYTES];
	seq_body(body, 0);
	for (int i = 0; i < 8; i++)
		assert_int_equal(keel_client_send(raw, "/queue/ff.r", NULL, 0, body, sizeof(body),
						  NULL), 0);
	assert_int_equal(keel_client_send(raw, "/queue/ff.r", NULL, 0, body, sizeof(body),
					  "my-receipt-9"), 0);
	keel_bframe *e = NULL;
	assert_int_equal(keel_bclient_wait_error(p, &e, T_MS), 0);
	/* the first refusal has no receipt; find the one that has */
	while (keel_client_frame_header(&e->f, "receipt-id") == NULL) {
		keel_bclient_frame_free(e);
		assert_int_equal(keel_bclient_wait_error(p, &e, T_MS), 0);
	}
	assert_string_equal(keel_client_frame_header(&e->f, "receipt-id"), "my-receipt-9");
	assert_non_null(strstr(keel_client_frame_header(&e->f, "message"), "ff.r"));
	keel_bclient_frame_free(e);
	assert_false(keel_bclient_closed(p));
	send_ok(p, "/queue/ff.other2", "still here", 10);
	keel_bclient_close(p);
}

/* ---- DROP -------------------------------------------------------------- */

/* A full DROP address drops (receipts still come), emits address.full once
 * per episode, and the consumer sees the accepted prefix only. */
static void t_drop_counts_and_events(void **state)
{
	(void)state;
	keel_bclient *p = open_client();
	size_t from = it_broker_event_count(broker);
	for (unsigned i = 0; i < 20; i++)
		assert_int_equal(send_seq(p, "/queue/fd.q", i, true), 0);
	json_t *ev = await_event(from, "address.full", "fd.q");
	assert_string_equal(json_string_value(json_object_get(ev, "policy")), "DROP");
	assert_int_equal(count_events("address.full", "fd.q"), 1);

	keel_bclient *c = open_client();
	subscribe(c, "s", "/queue/fd.q", "auto");
	unsigned got = 0;
	for (;;) {
		keel_bframe *f = NULL;
		int rc = keel_bclient_receive(c, &f, it_ms(300));
		if (rc == -ETIMEDOUT)
			break;
		assert_int_equal(rc, 0);
		assert_int_equal(body_seq(f), got);
		keel_bclient_frame_free(f);
		got++;
	}
	assert_true(got >= 1 && got < 20);
	keel_bclient_close(c);
	/* drained: accepted again; a new flood is a new episode */
	from = it_broker_event_count(broker);
	for (unsigned i = 100; i < 120; i++)
		assert_int_equal(send_seq(p, "/queue/fd.q", i, true), 0);
	await_event(from, "address.full", "fd.q");
	assert_int_equal(count_events("address.full", "fd.q"), 2);
	c = open_client();
	subscribe(c, "s", "/queue/fd.q", "auto");
	recv_seqs(c, 100, 100 + got);
	keel_bclient_close(c);
	keel_bclient_close(p);
}

/* ---- writability ------------------------------------------------------- */

/* Two consumers share a queue; one never reads.  Deliveries to it stop
 * once its connection is unwritable (write-high-watermark 16 KiB), so the
 * other gets nearly everything: the silent one holds at most what the
 * kernel's socket buffers and the watermark let through. */
static void t_slow_consumer_is_not_buffered(void **state)
{
	(void)state;
	keel_bclient *slow = open_client();
	/* no credit limit: only writability holds deliveries back */
	keel_kv unlimited = { "consumer-window-size", 20, "-1", 2 };
	assert_int_equal(keel_bclient_subscribe(slow, "s", "/queue/wr.q", "client-individual",
						&unlimited, 1, T_MS), 0);
	keel_bclient *fast = open_client();
	keel_bclient *p = open_client();
	/* the slow one's client stops reading: run nothing on its loop */
	int rc = keel_bclient_subscribe(fast, "f", "/queue/wr.q", "auto", NULL, 0, T_MS);
	assert_int_equal(rc, 0);
	const unsigned n = 20000; /* 20 MiB */
	unsigned got = 0;
	for (unsigned i = 0; i < n; i++) {
		assert_int_equal(send_seq(p, "/queue/wr.q", i, false), 0);
		/* drain the fast consumer as we go, so its socket never fills */
		keel_bframe *f = NULL;
		while (keel_bclient_receive(fast, &f, 0) == 0) {
			keel_bclient_frame_free(f);
			got++;
		}
	}
	assert_int_equal(keel_bclient_send(p, "/queue/wr.other", NULL, 0, "x", 1, true, T_MS), 0);
	keel_bframe *f = NULL;
	while (keel_bclient_receive(fast, &f, it_ms(1000)) == 0) {
		keel_bclient_frame_free(f);
		got++;
	}
	unsigned slow_share = n - got;
	fprintf(stderr, "silent consumer share: %u of %u\n", slow_share, n);
	/* kernel buffers on loopback take about 3.5 MiB; without writability
	 * the silent consumer would get half (10000) */
	if (slow_share > 6000)
		fail_msg("the silent consumer was handed %u of %u messages", slow_share, n);
	keel_bclient_close(fast);
	keel_bclient_close(p);
	keel_bclient_close(slow);
}

/* ---- large messages ---------------------------------------------------- */

static size_t count_files(const char *suffix)
{
	char dir[1024];
	snprintf(dir, sizeof(dir), "%s/data/large-messages", it_broker_dir(broker));
	DIR *d = opendir(dir);
	if (d == NULL)
		fail_msg("no %s", dir);
	size_t n = 0, sl = strlen(suffix);
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		size_t l = strlen(e->d_name);
		if (l > sl && strcmp(e->d_name + l - sl, suffix) == 0)
			n++;
	}
	closedir(d);
	return n;
}

static uint8_t *pattern(size_t len, unsigned seed)
{
	uint8_t *b = keel_malloc(len);
	assert_non_null(b);
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		b[i] = (uint8_t)(x >> 16); /* NULs included: content-length framing */
	}
	return b;
}

/* Large bodies (over min-large-message-size, 100 KiB) go to a file while
 * queued and come back intact and in order with small messages between
 * them; the files go once the messages are consumed. */
static void t_large_roundtrip(void **state)
{
	(void)state;
	const size_t big1 = 3u << 20, big2 = 150 * 1024 + 7;
	uint8_t *b1 = pattern(big1, 1), *b2 = pattern(big2, 2);
	keel_bclient *p = open_client();
	send_ok(p, "/queue/lm.q", b1, big1);
	send_ok(p, "/queue/lm.q", "small", 5);
	send_ok(p, "/queue/lm.q", b2, big2);
	assert_int_equal(count_files(".msg"), 2);
	assert_int_equal(count_files(".tmp"), 0);

	keel_bclient *c = open_client();
	subscribe(c, "s", "/queue/lm.q", "client-individual");
	keel_bframe *m = recv_msg(c);
	assert_int_equal(m->f.body_len, big1);
	assert_memory_equal(m->f.body, b1, big1);
	char cl[32];
	snprintf(cl, sizeof(cl), "%zu", big1);
	assert_string_equal(keel_client_frame_header(&m->f, "content-length"), cl);
	assert_int_equal(keel_bclient_ack(c, m, NULL, T_MS), 0);
	keel_bclient_frame_free(m);
	m = recv_msg(c);
	assert_int_equal(m->f.body_len, 5);
	assert_int_equal(keel_bclient_ack(c, m, NULL, T_MS), 0);
	keel_bclient_frame_free(m);
	m = recv_msg(c);
	assert_int_equal(m->f.body_len, big2);
	assert_memory_equal(m->f.body, b2, big2);
	assert_int_equal(keel_bclient_ack(c, m, NULL, T_MS), 0);
	keel_bclient_frame_free(m);
	/* acked (the receipt came after the ack was applied): files gone */
	assert_int_equal(count_files(".msg"), 0);
	keel_free(b1);
	keel_free(b2);
	keel_bclient_close(c);
	keel_bclient_close(p);
}

/* A large SEND to a full FAIL address is refused like any other; its body
 * is read and thrown away, nothing is left on disk, the connection lives. */
static void t_large_refused_when_full(void **state)
{
	(void)state;
	keel_bclient *p = open_client();
	unsigned i = 0;
	while (send_seq(p, "/queue/ff.big", i, true) == 0)
		assert_true(++i < 16);
	const size_t len = 500 * 1024;
	uint8_t *b = pattern(len, 3);
	int rc = keel_bclient_send(p, "/queue/ff.big", NULL, 0, b, len, true, T_MS);
	assert_int_equal(rc, -EPROTO);
	assert_non_null(strstr(keel_bclient_error(p), "ff.big"));
	assert_int_equal(count_files(".msg"), 0);
	assert_int_equal(count_files(".tmp"), 0);
	send_ok(p, "/queue/ff.big2", b, len); /* a large one that is accepted */
	assert_int_equal(count_files(".msg"), 1);
	keel_bclient *c = open_client();
	subscribe(c, "s", "/queue/ff.big2", "auto");
	keel_bframe *m = recv_msg(c);
	assert_int_equal(m->f.body_len, len);
	assert_memory_equal(m->f.body, b, len);
	keel_bclient_frame_free(m);
	/* a round trip on the producer: the broker is done with the file */
	send_ok(p, "/queue/ff.other3", "x", 1);
	assert_int_equal(count_files(".msg"), 0);
	keel_free(b);
	keel_bclient_close(c);
	keel_bclient_close(p);
}

/* A consumer that closes in the middle of a large body: the message is
 * redelivered whole to the next one. */
static void t_large_consumer_dies_midway(void **state)
{
	(void)state;
	const size_t len = 8u << 20;
	uint8_t *b = pattern(len, 4);
	keel_bclient *p = open_client();
	send_ok(p, "/queue/lm.die", b, len);
	keel_bclient *c1 = open_client();
	subscribe(c1, "s", "/queue/lm.die", "client-individual");
	/* the subscribe's receipt came; the body is on its way: cut now */
	keel_client_close(keel_bclient_client(c1));
	keel_bclient_close(c1);
	keel_bclient *c2 = open_client();
	subscribe(c2, "s", "/queue/lm.die", "client-individual");
	keel_bframe *m = recv_msg(c2);
	assert_int_equal(m->f.body_len, len);
	assert_memory_equal(m->f.body, b, len);
	assert_int_equal(keel_bclient_ack(c2, m, NULL, T_MS), 0);
	keel_bclient_frame_free(m);
	assert_int_equal(count_files(".msg"), 0);
	keel_free(b);
	keel_bclient_close(c2);
	keel_bclient_close(p);
}

/* ---- pipelined frames on a raw socket ------------------------------------ */

static void raw_write(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n > 0) {
		ssize_t k = send(fd, b, n, MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			fail_msg("raw send: %s", strerror(errno));
		b += k;
		n -= (size_t)k;
	}
}

/* The next frame (EOLs between frames skipped) up to its NUL, into buf:
 * only for body-less frames (RECEIPT, CONNECTED, ERROR). */
static void raw_read_frame(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	for (;;) {
		char ch;
		ssize_t k = recv(fd, &ch, 1, 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			fail_msg("raw recv: %s", k == 0 ? "closed" : strerror(errno));
		if (n == 0 && (ch == '\n' || ch == '\r'))
			continue;
		if (ch == '\0')
			break;
		assert_true(n + 1 < cap);
		buf[n++] = ch;
	}
	buf[n] = '\0';
}

/* A STOMP 1.2 connection on a plain socket whose reads time out (T_MS). */
static int raw_connect(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct timeval tv = { .tv_sec = T_MS / 1000, .tv_usec = (T_MS % 1000) * 1000 };
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(it_broker_port(broker)) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	static const char c[] = "CONNECT\naccept-version:1.2\nhost:keel\n\n";
	raw_write(fd, c, sizeof(c)); /* with its NUL */
	char f[1024];
	raw_read_frame(fd, f, sizeof(f));
	assert_memory_equal(f, "CONNECTED\n", 10);
	return fd;
}

/* Append a SEND of `body` to `out` (receipt NULL: none). */
static void raw_send_frame(char **out, size_t *len, size_t *cap, const char *dest,
			   bool persistent, const char *receipt, const uint8_t *body, size_t n)
{
	char head[512];
	int h = snprintf(head, sizeof(head),
			 "SEND\ndestination:%s\npersistent:%s\ncontent-length:%zu\n%s%s%s\n",
			 dest, persistent ? "true" : "false", n, receipt ? "receipt:" : "",
			 receipt ? receipt : "", receipt ? "\n" : "");
	assert_true(h > 0 && (size_t)h < sizeof(head));
	size_t need = *len + (size_t)h + n + 1;
	if (need > *cap) {
		*cap = need * 2;
		*out = keel_realloc(*out, *cap);
		assert_non_null(*out);
	}
	memcpy(*out + *len, head, (size_t)h);
	memcpy(*out + *len + h, body, n);
	(*out)[*len + (size_t)h + n] = '\0';
	*len = need;
}

/* Large SENDs commit (fsync) on the broker's threadpool while more frames
 * arrive: everything a producer pipelines in one go - large ones,
 * persistent or not, small ones between them, more than the broker
 * commits at once, then a DISCONNECT - is routed and receipted in order. */
static void t_large_pipelined(void **state)
{
	(void)state;
	enum { N = 10 };
	uint8_t *body[N];
	size_t blen[N];
	char *out = NULL, rid[32], f[1024];
	size_t len = 0, cap = 0;
	for (unsigned i = 0; i < N; i++) {
		blen[i] = i % 3 == 2 ? 10 + i : 200 * 1024 + 1000 * i;
		body[i] = pattern(blen[i], 20 + i);
		snprintf(rid, sizeof(rid), "r%u", i);
		raw_send_frame(&out, &len, &cap, "/queue/lm.pipe", i % 4 != 1, rid, body[i],
			       blen[i]);
	}
	static const char bye[] = "DISCONNECT\nreceipt:bye\n\n";
	out = keel_realloc(out, len + sizeof(bye));
	assert_non_null(out);
	memcpy(out + len, bye, sizeof(bye));
	len += sizeof(bye);
	int fd = raw_connect();
	raw_write(fd, out, len);
	for (unsigned i = 0; i < N; i++) {
		raw_read_frame(fd, f, sizeof(f));
		snprintf(rid, sizeof(rid), "receipt-id:r%u\n", i);
		if (strncmp(f, "RECEIPT\n", 8) != 0 || strstr(f, rid) == NULL)
			fail_msg("receipt %u: got '%s'", i, f);
	}
	raw_read_frame(fd, f, sizeof(f));
	assert_non_null(strstr(f, "receipt-id:bye\n"));
	close(fd);
	keel_bclient *c = open_client();
	subscribe(c, "s", "/queue/lm.pipe", "client-individual");
	for (unsigned i = 0; i < N; i++) {
		keel_bframe *m = recv_msg(c);
		assert_int_equal(m->f.body_len, blen[i]);
		assert_memory_equal(m->f.body, body[i], blen[i]);
		assert_int_equal(keel_bclient_ack(c, m, NULL, T_MS), 0);
		keel_bclient_frame_free(m);
		keel_free(body[i]);
	}
	assert_int_equal(count_files(".msg"), 0);
	assert_int_equal(count_files(".tmp"), 0);
	keel_free(out);
	keel_bclient_close(c);
}

/* A large SEND to a full FAIL address in the middle of a pipeline: it is
 * refused (ERROR with its receipt-id, connection kept; its body read and
 * thrown away), the large SENDs around it go through.  (The ERROR of a
 * refusal is not held behind receipts waiting for the journal, so r0's
 * RECEIPT may come before or after it.) */
static void t_large_pipelined_refusal(void **state)
{
	(void)state;
	keel_bclient *p = open_client();
	unsigned i = 0;
	while (send_seq(p, "/queue/ff.pipe", i, true) == 0)
		assert_true(++i < 16);
	keel_bclient_close(p);
	const size_t big = 300 * 1024;
	uint8_t *b = pattern(big, 40);
	char *out = NULL, f[1024];
	size_t len = 0, cap = 0;
	raw_send_frame(&out, &len, &cap, "/queue/lm.pipe2", true, "r0", b, big);
	raw_send_frame(&out, &len, &cap, "/queue/ff.pipe", true, "r1", b, big);
	raw_send_frame(&out, &len, &cap, "/queue/lm.pipe2", true, "r2", b, big);
	int fd = raw_connect();
	raw_write(fd, out, len);
	bool r0 = false, r1 = false;
	for (int k = 0; k < 2; k++) {
		raw_read_frame(fd, f, sizeof(f));
		if (strncmp(f, "RECEIPT\n", 8) == 0 && strstr(f, "receipt-id:r0\n") != NULL)
			r0 = true;
		else if (strncmp(f, "ERROR\n", 6) == 0 && strstr(f, "receipt-id:r1\n") != NULL &&
			 strstr(f, "ff.pipe") != NULL)
			r1 = true;
		else
			fail_msg("frame %d: got '%s'", k, f);
	}
	assert_true(r0 && r1);
	raw_read_frame(fd, f, sizeof(f));
	if (strncmp(f, "RECEIPT\n", 8) != 0 || strstr(f, "receipt-id:r2\n") == NULL)
		fail_msg("third: got '%s'", f);
	close(fd);
	keel_bclient *c = open_client();
	subscribe(c, "s", "/queue/lm.pipe2", "auto");
	for (unsigned k = 0; k < 2; k++) {
		keel_bframe *m = recv_msg(c);
		assert_int_equal(m->f.body_len, big);
		assert_memory_equal(m->f.body, b, big);
		keel_bclient_frame_free(m);
	}
	keel_free(out);
	keel_free(b);
	keel_bclient_close(c);
}

/* A producer that writes a large persistent SEND (no receipt) and closes
 * at once: the message is still taken (the connection, whose end of
 * stream arrives while the body's commit runs, closes only after it). */
static void t_large_then_close(void **state)
{
	(void)state;
	const size_t big = 1u << 20;
	uint8_t *b = pattern(big, 30);
	char *out = NULL;
	size_t len = 0, cap = 0;
	raw_send_frame(&out, &len, &cap, "/queue/lm.close", true, NULL, b, big);
	int fd = raw_connect();
	raw_write(fd, out, len);
	close(fd);
	keel_bclient *c = open_client();
	subscribe(c, "s", "/queue/lm.close", "client-individual");
	keel_bframe *m = recv_msg(c);
	assert_int_equal(m->f.body_len, big);
	assert_memory_equal(m->f.body, b, big);
	assert_int_equal(keel_bclient_ack(c, m, NULL, T_MS), 0);
	keel_bclient_frame_free(m);
	assert_int_equal(count_files(".msg"), 0);
	keel_free(out);
	keel_free(b);
	keel_bclient_close(c);
}

/* ---- main -------------------------------------------------------------- */

static int grp_setup(void **state)
{
	(void)state;
	it_broker_opts o = { .name = "flow", .config_yaml = config };
	int rc = it_broker_start(&broker, broker_exe, &o, START_MS);
	if (rc != 0) {
		fprintf(stderr, "broker did not start: %s\n", strerror(-rc));
		return -1;
	}
	return 0;
}

static int grp_teardown(void **state)
{
	(void)state;
	int ws = 0;
	int rc = it_broker_stop(broker, it_ms(10000), &ws);
	it_broker_free(broker);
	broker = NULL;
	if (rc != 0 || it_exit_code(ws) != 0) {
		fprintf(stderr, "broker stop: rc %d, exit %d\n", rc, it_exit_code(ws));
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s KEEL-BROKER\n", argv[0]);
		return 2;
	}
	broker_exe = argv[1];
	signal(SIGPIPE, SIG_IGN);
	if (getenv("IT_FILTER") != NULL)
		cmocka_set_test_filter(getenv("IT_FILTER"));
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_block_then_resume),
		cmocka_unit_test(t_block_close_releases),
		cmocka_unit_test(t_fail_keeps_connection),
		cmocka_unit_test(t_fail_error_has_receipt_id),
		cmocka_unit_test(t_drop_counts_and_events),
		cmocka_unit_test(t_slow_consumer_is_not_buffered),
		cmocka_unit_test(t_large_roundtrip),
		cmocka_unit_test(t_large_refused_when_full),
		cmocka_unit_test(t_large_consumer_dies_midway),
		cmocka_unit_test(t_large_pipelined),
		cmocka_unit_test(t_large_pipelined_refusal),
		cmocka_unit_test(t_large_then_close),
	};
	return cmocka_run_group_tests_name("flow", tests, grp_setup, grp_teardown);
}

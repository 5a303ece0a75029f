/*
 * test_netproxy.c - the scenario child's TCP proxy (netproxy.h) on a real
 * libuv loop with real sockets on loopback: a client (endpoint 0) dials
 * the proxy, which dials a test server (endpoint 1).  Each fault mode,
 * per direction: pass-through, delay (one way only), jitter (order kept),
 * bandwidth, loss, blackhole (one way; the end swallowed; reset at heal),
 * a partition at connect time (the SYN dropped, connected after the heal;
 * one way too), refuse,
 * target down, reset, slices, close after N bytes, a target that refuses,
 * back pressure; a dialer in another process never refused while links
 * are cut and healed.  Waits are on conditions with a deadline.  One
 * thread (and a forked dialer).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <cmocka.h>
#include <uv.h>

#include "kh_limits.h"
#include "kh_rand.h"
#include "netproxy.h"

#define MAX_ACCEPTED 8

typedef struct peer {
	uv_tcp_t tcp;
	uv_connect_t creq;
	uv_shutdown_t sreq;
	bool init, connected, done_connect, eof, closed, reading;
	int connect_status;
	int read_err;
	char *rx;
	size_t rx_len, rx_cap;
	unsigned reads;
	size_t max_read;
	uint64_t first_rx_ns, last_rx_ns;
	size_t pending_write;
} peer;

typedef struct env {
	uv_loop_t loop;
	uv_timer_t tick;
	kh_netproxy *p;
	bool proxy_closed;
	uv_tcp_t server;
	bool server_open;
	bool server_reads;      /* accepted peers start reading at once */
	peer *acc[MAX_ACCEPTED];
	unsigned nacc;
	peer client;
	struct sockaddr_in target, listen;
	char addr_text[64];
} env;

static env *E;

/* ---- helpers ----------------------------------------------------------- */

#define WAIT(cond, ms)                                                               \
	do {                                                                         \
		uint64_t end_ = uv_hrtime() + (uint64_t)(ms) * 1000000;              \
		while (!(cond)) {                                                    \
			if (uv_hrtime() > end_)                                      \
				fail_msg("line %d: timed out waiting for %s", __LINE__, #cond); \
			uv_run(&E->loop, UV_RUN_ONCE);                               \
		}                                                                    \
	} while (0)

static void on_tick(uv_timer_t *t)
{
	(void)t; /* wakes the loop so WAIT checks its condition */
}

static void peer_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	(void)h;
	(void)hint;
	static char b[65536];
	*buf = uv_buf_init(b, sizeof(b));
}

static void peer_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	peer *pe = s->data;
	if (n > 0) {
		if (pe->rx_len + (size_t)n > pe->rx_cap) {
			pe->rx_cap = (pe->rx_len + (size_t)n) * 2;
			pe->rx = realloc(pe->rx, pe->rx_cap);
		}
		memcpy(pe->rx + pe->rx_len, buf->base, (size_t)n);
		pe->rx_len += (size_t)n;
		pe->reads++;
		if ((size_t)n > pe->max_read)
			pe->max_read = (size_t)n;
		if (pe->first_rx_ns == 0)
			pe->first_rx_ns = uv_hrtime();
		pe->last_rx_ns = uv_hrtime();
	} else if (n == UV_EOF) {
		pe->eof = true;
	} else if (n < 0) {
		pe->read_err = (int)n;
		uv_read_stop(s);
	}
}

static void peer_read(peer *pe)
{
	pe->reading = true;
	uv_read_start((uv_stream_t *)&pe->tcp, peer_alloc, peer_on_read);
}

static void on_peer_connect(uv_connect_t *req, int status)
{
	peer *pe = req->data;
	pe->done_connect = true;
	pe->connect_status = status;
	if (status == 0) {
		pe->connected = true;
		peer_read(pe);
	}
}

static void client_connect(void)
{
	peer *pe = &E->client;
	memset(pe, 0, sizeof(*pe));
	uv_tcp_init(&E->loop, &pe->tcp);
	pe->init = true;
	pe->tcp.data = pe;
	pe->creq.data = pe;
	assert_int_equal(uv_tcp_connect(&pe->creq, &pe->tcp, (struct sockaddr *)&E->listen,
					on_peer_connect), 0);
	WAIT(pe->done_connect, 5000);
}

static void on_peer_write(uv_write_t *req, int status)
{
	peer *pe = req->data;
	(void)status;
	pe->pending_write -= ((uv_buf_t *)(req + 1))->len;
	free(req);
}

static void peer_write(peer *pe, const char *data, size_t len)
{
	uv_write_t *req = malloc(sizeof(*req) + sizeof(uv_buf_t) + len);
	uv_buf_t *b = (uv_buf_t *)(req + 1);
	char *copy = (char *)(b + 1);
	memcpy(copy, data, len);
	*b = uv_buf_init(copy, (unsigned)len);
	req->data = pe;
	pe->pending_write += len;
	assert_int_equal(uv_write(req, (uv_stream_t *)&pe->tcp, b, 1, on_peer_write), 0);
}

static void on_peer_closed(uv_handle_t *h)
{
	peer *pe = h->data;
	pe->closed = true;
}

static void on_server_conn(uv_stream_t *s, int status)
{
	(void)s;
	if (status < 0 || E->nacc == MAX_ACCEPTED)
		return;
	peer *pe = calloc(1, sizeof(*pe));
	uv_tcp_init(&E->loop, &pe->tcp);
	pe->init = true;
	pe->tcp.data = pe;
	uv_accept((uv_stream_t *)&E->server, (uv_stream_t *)&pe->tcp);
	pe->connected = true;
	E->acc[E->nacc++] = pe;
	if (E->server_reads)
		peer_read(pe);
}

static void on_proxy_closed(void *ud)
{
	((env *)ud)->proxy_closed = true;
}

static void fill(char *buf, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (char)((i * 131 + seed * 7 + i / 251) & 0xff);
}

static kh_net_stats stats(unsigned from, unsigned to)
{
	kh_net_stats st;
	kh_netproxy_stats(E->p, from, to, &st);
	return st;
}

static void faults(unsigned from, unsigned to, kh_net_faults f)
{
	assert_int_equal(kh_netproxy_set(E->p, from, to, &f), 0);
}

/* ---- setup: a server, a proxy for link 0 -> 1 -------------------------- */

static int setup(void **state)
{
	(void)state;
	E = calloc(1, sizeof(*E));
	uv_loop_init(&E->loop);
	uv_timer_init(&E->loop, &E->tick);
	uv_timer_start(&E->tick, on_tick, 5, 5);
	uv_tcp_init(&E->loop, &E->server);
	E->server_open = true;
	E->server_reads = true;
	uv_ip4_addr("127.0.0.1", 0, &E->target);
	if (uv_tcp_bind(&E->server, (struct sockaddr *)&E->target, 0) != 0 ||
	    uv_listen((uv_stream_t *)&E->server, 16, on_server_conn) != 0)
		return -1;
	int len = sizeof(E->target);
	uv_tcp_getsockname(&E->server, (struct sockaddr *)&E->target, &len);
	/* the proxy: another loopback address, the same port */
	snprintf(E->addr_text, sizeof(E->addr_text), "127.88.%u.1", (unsigned)getpid() % 200 + 1);
	uv_ip4_addr(E->addr_text, ntohs(E->target.sin_port), &E->listen);
	if (kh_netproxy_create(&E->p, &E->loop, 2, 42, NULL, NULL) != 0)
		return -1;
	if (kh_netproxy_listen(E->p, 0, 1, (struct sockaddr *)&E->listen,
			       (struct sockaddr *)&E->target) != 0)
		return -1;
	kh_netproxy_set_up(E->p, 1, true);
	return 0;
}

static void close_peer(peer *pe)
{
	if (pe->init && !uv_is_closing((uv_handle_t *)&pe->tcp))
		uv_close((uv_handle_t *)&pe->tcp, on_peer_closed);
	else
		pe->closed = true;
}

static int teardown(void **state)
{
	(void)state;
	kh_netproxy_close(E->p, on_proxy_closed, E);
	WAIT(E->proxy_closed, 5000);
	close_peer(&E->client);
	for (unsigned i = 0; i < E->nacc; i++)
		close_peer(E->acc[i]);
	if (E->server_open)
		uv_close((uv_handle_t *)&E->server, NULL);
	uv_close((uv_handle_t *)&E->tick, NULL);
	uv_run(&E->loop, UV_RUN_DEFAULT);
	/* every handle and request of the proxy is gone */
	assert_int_equal(uv_loop_close(&E->loop), 0);
	free(E->client.rx);
	for (unsigned i = 0; i < E->nacc; i++) {
		free(E->acc[i]->rx);
		free(E->acc[i]);
	}
	free(E);
	E = NULL;
	return 0;
}

static unsigned drops_told;
static size_t drop_bytes;

static void on_drop(void *ud, unsigned from, unsigned to, size_t bytes)
{
	(void)ud;
	assert_int_equal(from, 0);
	assert_int_equal(to, 1);
	drops_told++;
	drop_bytes = bytes;
}

static double ms_since(uint64_t t0_ns, uint64_t t_ns)
{
	return (double)(t_ns - t0_ns) / 1e6;
}

/* ---- tests ------------------------------------------------------------- */

static void test_passthrough(void **state)
{
	(void)state;
	size_t up = 256 * 1024, down = 64 * 1024;
	char *a = malloc(up), *b = malloc(down);
	fill(a, up, 1);
	fill(b, down, 2);
	client_connect();
	assert_int_equal(E->client.connect_status, 0);
	peer_write(&E->client, a, up);
	WAIT(E->nacc == 1 && E->acc[0]->rx_len == up, 5000);
	assert_memory_equal(E->acc[0]->rx, a, up);
	peer_write(E->acc[0], b, down);
	WAIT(E->client.rx_len == down, 5000);
	assert_memory_equal(E->client.rx, b, down);
	/* a FIN travels through: the server reads its EOF */
	E->client.sreq.data = &E->client;
	uv_shutdown(&E->client.sreq, (uv_stream_t *)&E->client.tcp, NULL);
	WAIT(E->acc[0]->eof, 5000);
	assert_int_equal(stats(0, 1).bytes, up);
	assert_int_equal(stats(1, 0).bytes, down);
	assert_int_equal(stats(0, 1).connections, 1);
	free(a);
	free(b);
}

static void test_delay_one_direction(void **state)
{
	(void)state;
	faults(0, 1, (kh_net_faults){ .delay_ms = 200 });
	client_connect();
	uint64_t t0 = uv_hrtime();
	peer_write(&E->client, "ping", 4);
	WAIT(E->nacc == 1 && E->acc[0]->rx_len == 4, 5000);
	assert_true(ms_since(t0, E->acc[0]->first_rx_ns) >= 195.0);
	/* the other direction has no delay */
	uint64_t t1 = uv_hrtime();
	peer_write(E->acc[0], "pong", 4);
	WAIT(E->client.rx_len == 4, 5000);
	assert_true(ms_since(t1, E->client.first_rx_ns) < 150.0);
}

static void test_jitter_keeps_order(void **state)
{
	(void)state;
	faults(0, 1, (kh_net_faults){ .delay_ms = 20, .jitter_ms = 20 });
	client_connect();
	char msg[64 * 100];
	fill(msg, sizeof(msg), 3);
	/* writes in separate loop turns, so the proxy reads several chunks */
	for (int i = 0; i < 64; i++) {
		peer_write(&E->client, msg + i * 100, 100);
		uv_run(&E->loop, UV_RUN_NOWAIT);
	}
	WAIT(E->nacc == 1 && E->acc[0]->rx_len == sizeof(msg), 5000);
	assert_memory_equal(E->acc[0]->rx, msg, sizeof(msg));
}

static void test_rand_is_seeded(void **state)
{
	(void)state;
	kh_rand a, b, c;
	kh_rand_init(&a, 42, 1, 2, 3);
	kh_rand_init(&b, 42, 1, 2, 3);
	kh_rand_init(&c, 43, 1, 2, 3);
	bool differs = false;
	for (int i = 0; i < 100; i++) {
		uint64_t x = kh_rand_next(&a), y = kh_rand_next(&b), z = kh_rand_next(&c);
		assert_int_equal(x, y);
		differs |= x != z;
	}
	assert_true(differs);
}

static void test_bandwidth(void **state)
{
	(void)state;
	size_t n = 50 * 1000;
	char *buf = malloc(n);
	fill(buf, n, 4);
	/* 800 kbit/s = 100 kB/s: 50 kB take 0.5 s one way, not the other */
	faults(0, 1, (kh_net_faults){ .bandwidth_kbps = 800 });
	client_connect();
	uint64_t t0 = uv_hrtime();
	peer_write(&E->client, buf, n);
	WAIT(E->nacc == 1 && E->acc[0]->rx_len == n, 5000);
	double took = ms_since(t0, E->acc[0]->last_rx_ns);
	assert_true(took >= 450.0);
	assert_memory_equal(E->acc[0]->rx, buf, n);
	uint64_t t1 = uv_hrtime();
	peer_write(E->acc[0], buf, n);
	WAIT(E->client.rx_len == n, 5000);
	assert_true(ms_since(t1, E->client.last_rx_ns) < 300.0);
	free(buf);
}

static void test_loss(void **state)
{
	(void)state;
	faults(0, 1, (kh_net_faults){ .loss = 1.0 });
	client_connect();
	uint64_t t0 = uv_hrtime();
	peer_write(&E->client, "ping", 4);
	WAIT(E->nacc == 1 && E->acc[0]->rx_len == 4, 5000);
	assert_true(ms_since(t0, E->acc[0]->first_rx_ns) >= KH_NET_LOSS_RTO_MS - 5);
}

static void test_blackhole_one_way_then_heal(void **state)
{
	(void)state;
	client_connect();
	peer_write(&E->client, "hello", 5);
	WAIT(E->nacc == 1 && E->acc[0]->rx_len == 5, 5000);
	drops_told = 0;
	kh_netproxy_on_drop(E->p, on_drop, NULL);
	faults(0, 1, (kh_net_faults){ .blackhole = true });
	char big[1000];
	fill(big, sizeof(big), 5);
	peer_write(&E->client, big, sizeof(big));
	WAIT(stats(0, 1).dropped == sizeof(big), 5000);
	/* told once, of the first read it dropped */
	assert_int_equal(drops_told, 1);
	assert_true(drop_bytes > 0 && drop_bytes <= sizeof(big));
	peer_write(&E->client, big, 10);
	WAIT(stats(0, 1).dropped == sizeof(big) + 10, 5000);
	assert_int_equal(drops_told, 1);
	/* the other way still carries */
	peer_write(E->acc[0], "back", 4);
	WAIT(E->client.rx_len == 4, 5000);
	/* the client's FIN falls into the hole too: the server never hears
	 * of it; its bytes after it do not come either */
	uv_shutdown(&E->client.sreq, (uv_stream_t *)&E->client.tcp, NULL);
	peer_write(E->acc[0], "more", 4);
	WAIT(E->client.rx_len == 8, 5000);
	assert_int_equal(E->acc[0]->rx_len, 5);
	assert_false(E->acc[0]->eof);
	assert_int_equal(stats(0, 1).resets, 0);
	/* the heal resets the connection: its stream has a hole */
	faults(0, 1, (kh_net_faults){ 0 });
	WAIT(E->acc[0]->read_err != 0 || E->acc[0]->eof, 5000);
	assert_int_equal(E->acc[0]->read_err, UV_ECONNRESET);
	assert_int_equal(stats(0, 1).resets, 1);
	assert_int_equal(E->acc[0]->rx_len, 5);
	WAIT(kh_netproxy_open_connections(E->p) == 0, 5000);
}

/* The client's SYN went out and was sent again: nobody answered it. */
static bool client_syn_unanswered(void)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	uv_os_fd_t fd;
	if (uv_fileno((uv_handle_t *)&E->client.tcp, &fd) != 0 ||
	    getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
		return false;
	return ti.tcpi_state == TCP_SYN_SENT && ti.tcpi_retransmits >= 1;
}

static void client_connect_start(void)
{
	peer *pe = &E->client;
	memset(pe, 0, sizeof(*pe));
	uv_tcp_init(&E->loop, &pe->tcp);
	pe->init = true;
	pe->tcp.data = pe;
	pe->creq.data = pe;
	assert_int_equal(uv_tcp_connect(&pe->creq, &pe->tcp, (struct sockaddr *)&E->listen,
					on_peer_connect), 0);
}

/* A link cut both ways when the dialer connects: its SYN is dropped (no
 * refusal, no answer), the target never hears of it; after the heal the
 * SYN sent again connects. */
static void test_partition_at_connect(void **state)
{
	(void)state;
	faults(0, 1, (kh_net_faults){ .blackhole = true });
	faults(1, 0, (kh_net_faults){ .blackhole = true });
	client_connect_start();
	WAIT(client_syn_unanswered(), 5000);
	assert_false(E->client.done_connect);
	assert_int_equal(E->nacc, 0);
	faults(0, 1, (kh_net_faults){ 0 });
	faults(1, 0, (kh_net_faults){ 0 });
	WAIT(E->client.done_connect, 10000);
	assert_int_equal(E->client.connect_status, 0);
	peer_write(&E->client, "late", 4);
	WAIT(E->nacc == 1 && E->acc[0]->rx_len == 4, 5000);
	assert_memory_equal(E->acc[0]->rx, "late", 4);
}

/* Cut one way only (target -> dialer): the SYN-ACK would be lost, so the
 * connect hangs the same way; also when the target is down (a partition
 * hides that it is down). */
static void test_partition_one_way_at_connect(void **state)
{
	(void)state;
	faults(1, 0, (kh_net_faults){ .blackhole = true });
	kh_netproxy_set_up(E->p, 1, false);
	client_connect_start();
	WAIT(client_syn_unanswered(), 5000);
	assert_false(E->client.done_connect);
	kh_netproxy_set_up(E->p, 1, true);
	faults(1, 0, (kh_net_faults){ 0 });
	WAIT(E->client.done_connect, 10000);
	assert_int_equal(E->client.connect_status, 0);
	peer_write(&E->client, "queued", 6);
	WAIT(E->nacc == 1 && E->acc[0]->rx_len == 6, 5000);
	assert_memory_equal(E->acc[0]->rx, "queued", 6);
}

/* A dialer in another process connects without a pause while the link
 * is cut and healed over and over: it may go unanswered (a cut drops
 * SYNs), it must never be refused (to the HA pair a refusal means "no
 * process listens there": a partition that refuses looks like a dead
 * live).  The listener swaps of cut and heal leave no closed port. */
static int dial_loop(const struct sockaddr_in *to, int stop_fd)
{
	int refused = 0;
	for (;;) {
		struct pollfd sp = { .fd = stop_fd, .events = POLLIN };
		if (poll(&sp, 1, 0) > 0)
			break;
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		if (fd < 0)
			return 255;
		if (connect(fd, (const struct sockaddr *)to, sizeof(*to)) != 0 &&
		    errno != EINPROGRESS) {
			refused += errno == ECONNREFUSED;
			close(fd);
			continue;
		}
		struct pollfd pf = { .fd = fd, .events = POLLOUT };
		if (poll(&pf, 1, 1) > 0) {
			int err = 0;
			socklen_t len = sizeof(err);
			getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
			refused += err == ECONNREFUSED;
		}
		close(fd);
	}
	return refused > 254 ? 254 : refused;
}

static void test_swaps_never_refuse(void **state)
{
	(void)state;
	int stop[2];
	assert_int_equal(pipe(stop), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(stop[1]);
		_exit(dial_loop(&E->listen, stop[0]));
	}
	close(stop[0]);
	/* each cut comes while the dialer connects (the heal before waited
	 * for a connection of it), each heal while a SYN of it is dropped.
	 * (The proxy before this test swapped by closing first: the dialer
	 * was refused, and after a few swaps the address did not bind again
	 * at all: no connection within the deadline.) */
	for (int i = 0; i < 300; i++) {
		uint64_t before = stats(0, 1).connections;
		WAIT(stats(0, 1).connections > before, 5000);
		faults(0, 1, (kh_net_faults){ .blackhole = true });
		if (i % 2)
			faults(1, 0, (kh_net_faults){ .blackhole = true });
		for (int k = 0; k < 5; k++)
			uv_run(&E->loop, UV_RUN_NOWAIT);
		faults(0, 1, (kh_net_faults){ 0 });
		faults(1, 0, (kh_net_faults){ 0 });
	}
	close(stop[1]);
	int st = 0;
	/* the dialer ends after its next 1 ms poll; the proxy's loop runs
	 * meanwhile so that the connections it accepted close */
	uint64_t end = uv_hrtime() + 5000ull * 1000000;
	pid_t w;
	while ((w = waitpid(pid, &st, WNOHANG)) == 0 && uv_hrtime() < end)
		uv_run(&E->loop, UV_RUN_ONCE);
	if (w == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		fail_msg("the dialer did not stop");
	}
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0); /* connections refused */
}

static void test_refuse_and_down(void **state)
{
	(void)state;
	assert_int_equal(kh_netproxy_refuse(E->p, 0, 1, true), 0);
	client_connect();
	assert_int_equal(E->client.connect_status, UV_ECONNREFUSED);
	close_peer(&E->client);
	WAIT(E->client.closed, 5000);
	assert_int_equal(kh_netproxy_refuse(E->p, 0, 1, false), 0);
	client_connect();
	assert_int_equal(E->client.connect_status, 0);
	close_peer(&E->client);
	WAIT(E->client.closed, 5000);
	/* the target endpoint down: refused as if nothing listened */
	kh_netproxy_set_up(E->p, 1, false);
	client_connect();
	assert_int_equal(E->client.connect_status, UV_ECONNREFUSED);
	close_peer(&E->client);
	WAIT(E->client.closed, 5000);
	kh_netproxy_set_up(E->p, 1, true);
	client_connect();
	assert_int_equal(E->client.connect_status, 0);
	peer_write(&E->client, "x", 1);
	WAIT(E->nacc >= 1 && E->acc[E->nacc - 1]->rx_len == 1, 5000);
}

static void test_reset(void **state)
{
	(void)state;
	client_connect();
	peer_write(&E->client, "hi", 2);
	WAIT(E->nacc == 1 && E->acc[0]->rx_len == 2, 5000);
	assert_int_equal(kh_netproxy_reset(E->p, 1, 0), 0); /* none dialed that way */
	assert_int_equal(kh_netproxy_reset(E->p, 0, 1), 1);
	WAIT(E->client.read_err != 0 && E->acc[0]->read_err != 0, 5000);
	assert_int_equal(E->client.read_err, UV_ECONNRESET);
	assert_int_equal(E->acc[0]->read_err, UV_ECONNRESET);
}

static void test_slice(void **state)
{
	(void)state;
	char buf[2000];
	fill(buf, sizeof(buf), 6);
	faults(0, 1, (kh_net_faults){ .slice_bytes = 100, .slice_delay_ms = 10 });
	client_connect();
	peer_write(&E->client, buf, sizeof(buf));
	WAIT(E->nacc == 1 && E->acc[0]->rx_len == sizeof(buf), 5000);
	assert_memory_equal(E->acc[0]->rx, buf, sizeof(buf));
	/* 20 slices 10 ms apart: a loaded machine may read two at once */
	if (E->acc[0]->max_read > 100 || E->acc[0]->reads < 20)
		print_message("slices: %u reads, the largest %zu bytes\n", E->acc[0]->reads,
			      E->acc[0]->max_read);
	assert_true(E->acc[0]->reads >= 10);
	assert_true(E->acc[0]->max_read <= 300);
}

static void test_limit(void **state)
{
	(void)state;
	char buf[5000];
	fill(buf, sizeof(buf), 7);
	faults(0, 1, (kh_net_faults){ .limit_bytes = 1000 });
	client_connect();
	peer_write(&E->client, buf, sizeof(buf));
	WAIT(E->nacc == 1 && (E->acc[0]->eof || E->acc[0]->read_err), 5000);
	assert_int_equal(E->acc[0]->rx_len, 1000);
	assert_memory_equal(E->acc[0]->rx, buf, 1000);
	WAIT(E->client.eof || E->client.read_err, 5000);
	assert_int_equal(stats(0, 1).limited, 1);
}

static void test_target_refuses(void **state)
{
	(void)state;
	uv_close((uv_handle_t *)&E->server, NULL);
	E->server_open = false;
	uv_run(&E->loop, UV_RUN_NOWAIT);
	client_connect();
	/* connected to the proxy; the refusal comes back as a reset */
	assert_int_equal(E->client.connect_status, 0);
	WAIT(E->client.read_err != 0 || E->client.eof, 5000);
	assert_int_equal(E->client.read_err, UV_ECONNRESET);
	assert_int_equal(stats(0, 1).refused, 1);
}

/* The target closes (FIN) while the client goes on sending: the proxy's
 * writes to it then fail with EPIPE, which must come back as an error
 * (the client is reset), not as a SIGPIPE that kills the process. */
static void test_target_gone_no_sigpipe(void **state)
{
	(void)state;
	client_connect();
	peer_write(&E->client, "hi", 2);
	WAIT(E->nacc == 1 && E->acc[0]->rx_len == 2, 5000);
	close_peer(E->acc[0]);
	WAIT(E->acc[0]->closed && E->client.eof, 5000); /* the FIN came through */
	char buf[4096];
	fill(buf, sizeof(buf), 9);
	for (int i = 0; i < 50 && E->client.read_err == 0; i++) {
		peer_write(&E->client, buf, sizeof(buf));
		uv_run(&E->loop, UV_RUN_NOWAIT);
	}
	WAIT(E->client.read_err != 0 || kh_netproxy_open_connections(E->p) == 0, 5000);
}

static void test_back_pressure(void **state)
{
	(void)state;
	size_t n = 24 * 1024 * 1024;
	char *buf = malloc(n);
	fill(buf, n, 8);
	E->server_reads = false;
	client_connect();
	peer_write(&E->client, buf, n);
	WAIT(E->nacc == 1, 5000);
	/* the server reads nothing: the proxy stops reading once it holds
	 * its buffer, and the rest stays with the client */
	WAIT(stats(0, 1).pauses >= 1, 10000);
	assert_true(kh_netproxy_held(E->p) <= KH_NET_BUFFER_BYTES + KH_NET_READ_BYTES);
	assert_true(E->client.pending_write > 0);
	peer_read(E->acc[0]);
	WAIT(E->acc[0]->rx_len == n, 30000);
	assert_memory_equal(E->acc[0]->rx, buf, n);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rand_is_seeded),
		cmocka_unit_test_setup_teardown(test_passthrough, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delay_one_direction, setup, teardown),
		cmocka_unit_test_setup_teardown(test_jitter_keeps_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bandwidth, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loss, setup, teardown),
		cmocka_unit_test_setup_teardown(test_blackhole_one_way_then_heal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_partition_at_connect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_partition_one_way_at_connect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_swaps_never_refuse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refuse_and_down, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slice, setup, teardown),
		cmocka_unit_test_setup_teardown(test_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_target_refuses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_target_gone_no_sigpipe, setup, teardown),
		cmocka_unit_test_setup_teardown(test_back_pressure, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

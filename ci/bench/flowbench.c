/*
 * flowbench.c - raw-socket STOMP producer/consumer for the flow-control and
 * large-message benchmarks (ci/bench/flow-bench.sh).  Holds no message
 * whole: bodies are generated and checked on the fly, 64 KiB at a time.
 *
 *   flowbench large PORT BYTES   one message of BYTES to /queue/bench.large
 *                                (receipted), then receive and verify it
 *   flowbench flood PORT COUNT   a producer thread floods COUNT 1 KiB
 *                                messages at /queue/bench.flood while a
 *                                slow consumer thread drains it; checks that
 *                                every message arrives exactly once, in order
 *
 * Exit 0 on success, 1 on a check failure, 2 on usage.  Blocking sockets,
 * two threads at most, no allocation per message.  Built by the script
 * with `cc -O2 -pthread`.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (64 * 1024)
#define FLOOD_BODY 1024

static uint16_t port;

static void die(const char *what)
{
	fprintf(stderr, "flowbench: %s: %s\n", what, errno ? strerror(errno) : "failed");
	exit(1);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint8_t pat(uint64_t i)
{
	return (uint8_t)(i * 131 + (i >> 13) + 7);
}

/* ---- a connection with a small read buffer ------------------------------ */

typedef struct conn {
	int fd;
	uint8_t buf[CHUNK];
	size_t off, len;
} conn;

static void write_all(conn *c, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n > 0) {
		ssize_t k = send(c->fd, b, n, MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			die("send");
		b += k;
		n -= (size_t)k;
	}
}

static void fill(conn *c)
{
	if (c->off == c->len)
		c->off = c->len = 0;
	if (c->len == sizeof(c->buf)) {
		memmove(c->buf, c->buf + c->off, c->len - c->off);
		c->len -= c->off;
		c->off = 0;
	}
	ssize_t k;
	do
		k = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
	while (k < 0 && errno == EINTR);
	if (k <= 0) {
		errno = k == 0 ? ECONNRESET : errno;
		die("recv");
	}
	c->len += (size_t)k;
}

static int getbyte(conn *c)
{
	if (c->off == c->len)
		fill(c);
	return c->buf[c->off++];
}

/* Read a frame's command and headers (into `head`, NUL-separated lines);
 * returns content-length or -1 when absent. */
static long long read_head(conn *c, char *head, size_t cap, char *cmd, size_t cmdcap)
{
	int ch;
	while ((ch = getbyte(c)) == '\n' || ch == '\r')
		; /* heart-beats / EOLs between frames */
	size_t n = 0;
	int prev = -1;
	head[n++] = (char)ch;
	for (;;) {
		ch = getbyte(c);
		if (ch == '\r')
			continue;
		if (n + 1 >= cap) {
			errno = EMSGSIZE;
			die("frame head");
		}
		head[n++] = (char)ch;
		if (ch == '\n' && prev == '\n')
			break;
		prev = ch;
	}
	head[n] = '\0';
	size_t cl = strcspn(head, "\n");
	snprintf(cmd, cmdcap, "%.*s", (int)cl, head);
	const char *p = strstr(head, "\ncontent-length:");
	return p ? atoll(p + 16) : -1;
}

static void expect_nul(conn *c)
{
	if (getbyte(c) != 0) {
		errno = EPROTO;
		die("frame without NUL");
	}
}

/* Skip a body without content-length up to its NUL. */
static void skip_to_nul(conn *c)
{
	while (getbyte(c) != 0)
		;
}

static void stomp_connect(conn *c)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	c->off = c->len = 0;
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&a, sizeof(a)) != 0)
		die("connect");
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	const char f[] = "CONNECT\naccept-version:1.2\nhost:bench\n\n";
	write_all(c, f, sizeof(f)); /* includes the NUL */
	char head[4096], cmd[32];
	long long cl = read_head(c, head, sizeof(head), cmd, sizeof(cmd));
	if (strcmp(cmd, "CONNECTED") != 0) {
		fprintf(stderr, "flowbench: got %s\n%s\n", cmd, head);
		exit(1);
	}
	if (cl > 0)
		while (cl--)
			getbyte(c);
	else
		skip_to_nul(c);
}

/* Wait for the RECEIPT (anything else: failure). */
static void await_receipt(conn *c)
{
	char head[4096], cmd[32];
	long long cl = read_head(c, head, sizeof(head), cmd, sizeof(cmd));
	if (strcmp(cmd, "RECEIPT") != 0) {
		fprintf(stderr, "flowbench: expected RECEIPT, got %s\n%s\n", cmd, head);
		exit(1);
	}
	if (cl > 0)
		while (cl--)
			getbyte(c);
	else
		skip_to_nul(c);
}

/* ---- large ------------------------------------------------------------ */

static int run_large(uint64_t bytes)
{
	static conn p, c;
	static uint8_t chunk[CHUNK];
	char head[4096], cmd[32];
	stomp_connect(&p);
	double t0 = now_s();
	int n = snprintf(head, sizeof(head),
			 "SEND\ndestination:/queue/bench.large\nreceipt:big\n"
			 "content-length:%llu\n\n", (unsigned long long)bytes);
	write_all(&p, head, (size_t)n);
	for (uint64_t off = 0; off < bytes;) {
		size_t k = bytes - off < CHUNK ? (size_t)(bytes - off) : CHUNK;
		for (size_t i = 0; i < k; i++)
			chunk[i] = pat(off + i);
		write_all(&p, chunk, k);
		off += k;
	}
	write_all(&p, "", 1);
	await_receipt(&p);
	double t1 = now_s();

	stomp_connect(&c);
	const char sub[] = "SUBSCRIBE\nid:1\ndestination:/queue/bench.large\nack:auto\n\n";
	write_all(&c, sub, sizeof(sub));
	long long cl = read_head(&c, head, sizeof(head), cmd, sizeof(cmd));
	if (strcmp(cmd, "MESSAGE") != 0 || cl < 0 || (uint64_t)cl != bytes) {
		fprintf(stderr, "flowbench: got %s with content-length %lld, want %llu\n", cmd, cl,
			(unsigned long long)bytes);
		return 1;
	}
	for (uint64_t i = 0; i < bytes; i++) {
		if (c.off == c.len)
			fill(&c);
		/* compare what is buffered in one go */
		size_t k = c.len - c.off;
		if (k > bytes - i)
			k = (size_t)(bytes - i);
		for (size_t j = 0; j < k; j++) {
			if (c.buf[c.off + j] != pat(i + j)) {
				fprintf(stderr, "flowbench: byte %llu differs\n",
					(unsigned long long)(i + j));
				return 1;
			}
		}
		c.off += k;
		i += k - 1;
	}
	expect_nul(&c);
	double t2 = now_s();
	double mib = (double)bytes / (1024.0 * 1024.0);
	printf("large: %.0f MiB sent in %.2f s (%.0f MiB/s), received and verified in %.2f s "
	       "(%.0f MiB/s)\n", mib, t1 - t0, mib / (t1 - t0), t2 - t1, mib / (t2 - t1));
	close(p.fd);
	close(c.fd);
	return 0;
}

/* ---- flood ------------------------------------------------------------ */

static unsigned flood_count;

static void *flood_producer(void *arg)
{
	static conn p;
	static char frame[FLOOD_BODY + 256];
	(void)arg;
	stomp_connect(&p);
	for (unsigned i = 0; i < flood_count; i++) {
		bool last = i + 1 == flood_count;
		int n = snprintf(frame, sizeof(frame),
				 "SEND\ndestination:/queue/bench.flood\ncontent-length:%d\n%s\n",
				 FLOOD_BODY, last ? "receipt:last\n" : "");
		char *body = frame + n;
		memset(body, 'a' + i % 26, FLOOD_BODY);
		snprintf(body, 12, "%010u", i);
		body[10] = ':';
		body[FLOOD_BODY] = '\0';
		write_all(&p, frame, (size_t)n + FLOOD_BODY + 1);
	}
	await_receipt(&p);
	close(p.fd);
	return NULL;
}

static int run_flood(unsigned count)
{
	static conn c;
	char head[4096], cmd[32];
	flood_count = count;
	stomp_connect(&c);
	const char sub[] = "SUBSCRIBE\nid:1\ndestination:/queue/bench.flood\nack:auto\n\n";
	write_all(&c, sub, sizeof(sub));
	pthread_t t;
	double t0 = now_s();
	if (pthread_create(&t, NULL, flood_producer, NULL) != 0)
		die("pthread_create");
	for (unsigned i = 0; i < count; i++) {
		long long cl = read_head(&c, head, sizeof(head), cmd, sizeof(cmd));
		if (strcmp(cmd, "MESSAGE") != 0 || cl != FLOOD_BODY) {
			fprintf(stderr, "flowbench: message %u: got %s (%lld bytes)\n", i, cmd, cl);
			return 1;
		}
		char num[11];
		for (int j = 0; j < FLOOD_BODY; j++) {
			int ch = getbyte(&c);
			if (j < 10)
				num[j] = (char)ch;
		}
		num[10] = '\0';
		expect_nul(&c);
		unsigned got = (unsigned)strtoul(num, NULL, 10);
		if (got != i) {
			fprintf(stderr, "flowbench: expected message %u, got %u\n", i, got);
			return 1;
		}
		/* slow: a pause every 64 messages */
		if (i % 64 == 63) {
			struct timespec d = { 0, 1000000 };
			nanosleep(&d, NULL);
		}
	}
	pthread_join(t, NULL);
	double t1 = now_s();
	printf("flood: %u messages of %d bytes, each received once and in order, in %.2f s "
	       "(%.0f msg/s)\n", count, FLOOD_BODY, t1 - t0, count / (t1 - t0));
	close(c.fd);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: flowbench large|flood PORT N\n");
		return 2;
	}
	port = (uint16_t)atoi(argv[2]);
	unsigned long long n = strtoull(argv[3], NULL, 10);
	if (strcmp(argv[1], "large") == 0)
		return run_large(n);
	if (strcmp(argv[1], "flood") == 0)
		return run_flood((unsigned)n);
	fprintf(stderr, "usage: flowbench large|flood PORT N\n");
	return 2;
}

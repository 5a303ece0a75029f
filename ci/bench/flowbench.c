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
 *   flowbench sync PORT COUNT    one producer: SEND persistent 1 KiB with a
 *                                receipt, wait for the RECEIPT, repeat; prints
 *                                msg/s and receipt latency p50/p99
 *   flowbench bulk PORT COUNT SIZE
 *                                COUNT persistent messages of SIZE bytes, each
 *                                with a receipt (pipelined), to
 *                                /queue/bench.bulk while a consumer receives
 *                                and verifies them; prints MB/s
 *   flowbench fill PORT COUNT    COUNT persistent 1 KiB messages to
 *                                /queue/bench.paging with no consumer, a
 *                                receipt every 100 (8 outstanding at most);
 *                                prints msg/s once the last is receipted
 *   flowbench drain PORT COUNT   consume /queue/bench.paging (auto ack)
 *                                until COUNT distinct messages arrived or
 *                                none for 15 s; prints msg/s, lost,
 *                                duplicated and out-of-order (by the
 *                                sequence number fill wrote in each)
 *   flowbench disk DIR           what the disk under DIR allows, without a
 *                                broker: 1 KiB pwrite + fdatasync into a
 *                                preallocated file (as the journal does), and
 *                                10 MiB files written in 64 KiB pieces and
 *                                fsynced (as a persistent large message)
 *
 * Every mode also prints one `result: key=value ...` line for scripts.
 * Exit 0 on success, 1 on a check failure, 2 on usage.  Blocking sockets,
 * three threads at most, no allocation per message.  Built by the script
 * with `cc -O2 -pthread`.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lc.h"

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
	printf("result: mode=large bytes=%llu send_mbps=%.0f recv_mbps=%.0f\n",
	       (unsigned long long)bytes, (double)bytes / 1e6 / (t1 - t0),
	       (double)bytes / 1e6 / (t2 - t1));
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
	lc_thread *t;
	double t0 = now_s();
	if (lc_thread_start(&t, "fb-flood", "flowbench", flood_producer, NULL) != 0)
		die("lc_thread_start");
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
	lc_thread_join(t, NULL);
	double t1 = now_s();
	printf("flood: %u messages of %d bytes, each received once and in order, in %.2f s "
	       "(%.0f msg/s)\n", count, FLOOD_BODY, t1 - t0, count / (t1 - t0));
	printf("result: mode=flood count=%u msgps=%.0f\n", count, count / (t1 - t0));
	close(c.fd);
	return 0;
}

/* ---- sync: one receipt at a time ----------------------------------------- */

#define SYNC_BODY 1024
#define SYNC_MAX 1000000

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int run_sync(unsigned count)
{
	static conn p;
	static char frame[SYNC_BODY + 256];
	if (count == 0 || count > SYNC_MAX) {
		fprintf(stderr, "flowbench: sync: COUNT must be 1..%d\n", SYNC_MAX);
		return 2;
	}
	double *lat = malloc(count * sizeof(*lat));
	if (lat == NULL)
		die("malloc");
	stomp_connect(&p);
	double t0 = now_s();
	for (unsigned i = 0; i < count; i++) {
		int n = snprintf(frame, sizeof(frame),
				 "SEND\ndestination:/queue/bench.sync\npersistent:true\n"
				 "receipt:%u\ncontent-length:%d\n\n", i, SYNC_BODY);
		memset(frame + n, 'a' + i % 26, SYNC_BODY);
		frame[n + SYNC_BODY] = '\0';
		double a = now_s();
		write_all(&p, frame, (size_t)n + SYNC_BODY + 1);
		await_receipt(&p);
		lat[i] = now_s() - a;
	}
	double total = now_s() - t0;
	qsort(lat, count, sizeof(*lat), cmp_double);
	double p50 = lat[count / 2] * 1e3, p99 = lat[(size_t)count * 99 / 100] * 1e3;
	printf("sync: %u persistent 1 KiB SENDs, each RECEIPT waited for: %.0f msg/s, "
	       "receipt mean %.3f ms, p50 %.3f ms, p90 %.3f ms, p99 %.3f ms, max %.3f ms\n",
	       count, count / total, total / count * 1e3, p50,
	       lat[(size_t)count * 9 / 10] * 1e3, p99, lat[count - 1] * 1e3);
	printf("result: mode=sync count=%u msgps=%.0f p50_ms=%.3f p99_ms=%.3f\n", count,
	       count / total, p50, p99);
	free(lat);
	close(p.fd);
	return 0;
}

/* ---- bulk: many persistent large messages, receipted ---------------------- */

/* Byte `o` of message `m`: period CHUNK, so a message's expected bytes are
 * one 2*CHUNK buffer (any slice of at most CHUNK from offset o % CHUNK). */
static void bulk_pattern(uint8_t *buf, unsigned m)
{
	for (size_t o = 0; o < 2 * CHUNK; o++)
		buf[o] = (uint8_t)(pat(o % CHUNK) + m * 29u);
}

static struct {
	unsigned count;
	uint64_t size;
	conn p;
	double t_last_receipt;
} bulk;

static void *bulk_receipts(void *arg)
{
	(void)arg;
	for (unsigned i = 0; i < bulk.count; i++)
		await_receipt(&bulk.p);
	bulk.t_last_receipt = now_s();
	return NULL;
}

static void *bulk_producer(void *arg)
{
	static uint8_t src[2 * CHUNK];
	char head[512];
	(void)arg;
	for (unsigned i = 0; i < bulk.count; i++) {
		bulk_pattern(src, i);
		int n = snprintf(head, sizeof(head),
				 "SEND\ndestination:/queue/bench.bulk\npersistent:true\n"
				 "receipt:%u\ncontent-length:%llu\n\n", i,
				 (unsigned long long)bulk.size);
		write_all(&bulk.p, head, (size_t)n);
		for (uint64_t off = 0; off < bulk.size;) {
			size_t k = bulk.size - off < CHUNK ? (size_t)(bulk.size - off) : CHUNK;
			write_all(&bulk.p, src, k);
			off += k;
		}
		write_all(&bulk.p, "", 1);
	}
	return NULL;
}

static int run_bulk(unsigned count, uint64_t size)
{
	static conn c;
	static uint8_t want[2 * CHUNK];
	char head[4096], cmd[32];
	if (count == 0 || size == 0) {
		fprintf(stderr, "flowbench: bulk: COUNT and SIZE must be > 0\n");
		return 2;
	}
	bulk.count = count;
	bulk.size = size;
	stomp_connect(&c);
	const char sub[] = "SUBSCRIBE\nid:1\ndestination:/queue/bench.bulk\nack:auto\n\n";
	write_all(&c, sub, sizeof(sub));
	stomp_connect(&bulk.p);
	lc_thread *tp, *tr;
	double t0 = now_s();
	if (lc_thread_start(&tr, "fb-receipts", "flowbench", bulk_receipts, NULL) != 0 ||
	    lc_thread_start(&tp, "fb-producer", "flowbench", bulk_producer, NULL) != 0)
		die("lc_thread_start");
	for (unsigned m = 0; m < count; m++) {
		long long cl = read_head(&c, head, sizeof(head), cmd, sizeof(cmd));
		if (strcmp(cmd, "MESSAGE") != 0 || cl < 0 || (uint64_t)cl != size) {
			fprintf(stderr, "flowbench: message %u: got %s with content-length %lld, "
				"want %llu\n", m, cmd, cl, (unsigned long long)size);
			return 1;
		}
		bulk_pattern(want, m);
		for (uint64_t o = 0; o < size;) {
			if (c.off == c.len)
				fill(&c);
			size_t k = c.len - c.off;
			if (k > size - o)
				k = (size_t)(size - o);
			if (k > CHUNK)
				k = CHUNK;
			if (memcmp(c.buf + c.off, want + o % CHUNK, k) != 0) {
				fprintf(stderr, "flowbench: message %u differs near byte %llu\n", m,
					(unsigned long long)o);
				return 1;
			}
			c.off += k;
			o += k;
		}
		expect_nul(&c);
	}
	double t_recv = now_s();
	lc_thread_join(tp, NULL);
	lc_thread_join(tr, NULL);
	double mb = (double)size * count / 1e6;
	double sent_s = bulk.t_last_receipt - t0, recv_s = t_recv - t0;
	printf("bulk: %u persistent messages of %llu bytes (%.0f MB), each receipted: "
	       "last receipt after %.2f s (%.0f MB/s), all received and verified after "
	       "%.2f s (%.0f MB/s)\n", count, (unsigned long long)size, mb, sent_s,
	       mb / sent_s, recv_s, mb / recv_s);
	printf("result: mode=bulk count=%u size=%llu receipted_mbps=%.0f received_mbps=%.0f\n",
	       count, (unsigned long long)size, mb / sent_s, mb / recv_s);
	close(bulk.p.fd);
	close(c.fd);
	return 0;
}

/* ---- disk: the floor under the broker's figures ---------------------------- */

static int run_disk(const char *dir)
{
	enum { SYNCS = 2000, FILES = 20, FILE_SIZE = 10 * 1024 * 1024 };
	static uint8_t chunk[CHUNK];
	static double lat[SYNCS];
	char path[4096];
	snprintf(path, sizeof(path), "%s/flowbench-disk.tmp", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || posix_fallocate(fd, 0, (off_t)SYNCS * 1024) != 0 || fsync(fd) != 0)
		die(path);
	memset(chunk, 'j', sizeof(chunk));
	double t0 = now_s();
	for (int i = 0; i < SYNCS; i++) {
		double a = now_s();
		if (pwrite(fd, chunk, 1024, (off_t)i * 1024) != 1024 || fdatasync(fd) != 0)
			die("pwrite/fdatasync");
		lat[i] = now_s() - a;
	}
	double sync_s = now_s() - t0;
	close(fd);
	unlink(path);
	qsort(lat, SYNCS, sizeof(lat[0]), cmp_double);

	t0 = now_s();
	for (int f = 0; f < FILES; f++) {
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0)
			die(path);
		for (size_t off = 0; off < FILE_SIZE; off += CHUNK)
			if (write(fd, chunk, CHUNK) != CHUNK)
				die("write");
		if (fsync(fd) != 0)
			die("fsync");
		close(fd);
		unlink(path);
	}
	double file_s = now_s() - t0;
	double mbps = (double)FILES * FILE_SIZE / 1e6 / file_s;
	printf("disk: 1 KiB pwrite+fdatasync: %.0f/s, p50 %.3f ms, p99 %.3f ms; "
	       "10 MiB write+fsync+unlink: %.0f MB/s\n", SYNCS / sync_s, lat[SYNCS / 2] * 1e3,
	       lat[SYNCS * 99 / 100] * 1e3, mbps);
	printf("result: mode=disk syncps=%.0f sync_p50_ms=%.3f sync_p99_ms=%.3f file_mbps=%.0f\n",
	       SYNCS / sync_s, lat[SYNCS / 2] * 1e3, lat[SYNCS * 99 / 100] * 1e3, mbps);
	return 0;
}

static int usage(void)
{
	fprintf(stderr, "usage: flowbench large|flood|sync|fill|drain PORT N\n"
			"       flowbench bulk PORT COUNT SIZE\n"
			"       flowbench disk DIR\n");
	return 2;
}

/* ---- fill / drain: a backlog with no consumer, then consumed ------------- */

#define PG_BODY 1024
#define PG_EVERY 100
#define PG_WINDOW 8

static int run_fill(unsigned long long count)
{
	static conn p;
	static char frame[PG_BODY + 256];
	stomp_connect(&p);
	unsigned long long outstanding = 0;
	double t0 = now_s();
	for (unsigned long long i = 0; i < count; i++) {
		bool rec = (i + 1) % PG_EVERY == 0 || i + 1 == count;
		int n = snprintf(frame, sizeof(frame),
				 "SEND\ndestination:/queue/bench.paging\npersistent:true\n"
				 "content-length:%d\n%s\n", PG_BODY, rec ? "receipt:r\n" : "");
		char *body = frame + n;
		memset(body, 'a' + (int)(i % 26), PG_BODY);
		snprintf(body, 22, "%020llu", i);
		body[20] = ':';
		body[PG_BODY] = '\0';
		write_all(&p, frame, (size_t)n + PG_BODY + 1);
		if (rec && ++outstanding > PG_WINDOW) {
			await_receipt(&p);
			outstanding--;
		}
	}
	while (outstanding--)
		await_receipt(&p);
	double t1 = now_s();
	printf("fill: %llu persistent 1 KiB messages, a receipt every %d, no consumer: "
	       "%.1f s, %.0f msg/s\n", count, PG_EVERY, t1 - t0, (double)count / (t1 - t0));
	printf("result: mode=fill count=%llu msgps=%.0f\n", count, (double)count / (t1 - t0));
	close(p.fd);
	return 0;
}

static int run_drain(unsigned long long count)
{
	static conn c;
	char head[4096], cmd[32];
	uint8_t *seen = calloc(count / 8 + 1, 1);
	if (seen == NULL)
		die("calloc");
	stomp_connect(&c);
	const char sub[] = "SUBSCRIBE\nid:1\ndestination:/queue/bench.paging\nack:auto\n\n";
	write_all(&c, sub, sizeof(sub));
	unsigned long long distinct = 0, dup = 0, bad = 0, disorder = 0, last = 0, got = 0;
	double t0 = now_s(), tlast = t0;
	while (distinct < count) {
		if (c.off == c.len) {
			struct pollfd pf = { .fd = c.fd, .events = POLLIN };
			int r = poll(&pf, 1, 15000);
			if (r == 0)
				break; /* nothing more comes */
			if (r < 0 && errno != EINTR)
				die("poll");
		}
		long long cl = read_head(&c, head, sizeof(head), cmd, sizeof(cmd));
		if (strcmp(cmd, "MESSAGE") != 0 || cl != PG_BODY) {
			fprintf(stderr, "flowbench: got %s (%lld bytes)\n%s\n", cmd, cl, head);
			return 1;
		}
		char num[21];
		for (int j = 0; j < PG_BODY; j++) {
			int ch = getbyte(&c);
			if (j < 20)
				num[j] = (char)ch;
		}
		num[20] = '\0';
		expect_nul(&c);
		unsigned long long i = strtoull(num, NULL, 10);
		got++;
		tlast = now_s();
		if (i >= count) {
			bad++;
			continue;
		}
		if (seen[i / 8] & (1u << (i % 8))) {
			dup++;
			continue;
		}
		seen[i / 8] |= (uint8_t)(1u << (i % 8));
		if (distinct && i < last)
			disorder++;
		last = i;
		distinct++;
	}
	double secs = tlast - t0;
	printf("drain: %llu of %llu messages in %.1f s, %.0f msg/s; lost %llu, duplicated %llu, "
	       "out of order %llu, not ours %llu\n", distinct, count, secs,
	       secs > 0 ? (double)got / secs : 0.0, count - distinct, dup, disorder, bad);
	printf("result: mode=drain count=%llu msgps=%.0f lost=%llu duplicated=%llu "
	       "disorder=%llu\n", count, secs > 0 ? (double)got / secs : 0.0, count - distinct,
	       dup, disorder);
	free(seen);
	close(c.fd);
	return distinct == count && dup == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "disk") == 0)
		return run_disk(argv[2]);
	if (argc < 4)
		return usage();
	port = (uint16_t)atoi(argv[2]);
	unsigned long long n = strtoull(argv[3], NULL, 10);
	if (strcmp(argv[1], "bulk") == 0 && argc == 5)
		return run_bulk((unsigned)n, strtoull(argv[4], NULL, 10));
	if (argc != 4)
		return usage();
	if (strcmp(argv[1], "large") == 0)
		return run_large(n);
	if (strcmp(argv[1], "flood") == 0)
		return run_flood((unsigned)n);
	if (strcmp(argv[1], "sync") == 0)
		return run_sync((unsigned)n);
	if (strcmp(argv[1], "fill") == 0)
		return run_fill(n);
	if (strcmp(argv[1], "drain") == 0)
		return run_drain(n);
	return usage();
}
